"""`multipy ipam`: what kube-ipam has reserved in etcd, and releasing it by hand.

The store is found from a conf (`--conf`, the multus conf by default: every
kube-ipam IPAM of its delegates) or given directly (`--etcd-url` and the TLS
files), in which case every pool in that etcd is read.

Exit codes: 0 done; 1 no such reservation; 2 bad arguments or an unusable conf;
3 etcd unreachable; 4 refused, the reservation is in use by a container (see --force).
"""

from __future__ import annotations

import ipaddress
import json
import sys
from dataclasses import dataclass, field

import click

from delegates.kube_ipam import config as kube_config
from delegates.kube_ipam.connect import open_etcd
from delegates.kube_ipam.records import LEGACY_PREFIX, POOLS, Lease, parse_ip, pool_id, subnet_of
from delegates.kube_ipam.store import Store
from multipy.clients.etcd import EtcdUnavailable
from multipy.cni.errors import CNIError
from multipy.config import multus, network

from .commands import cli

EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_IN_USE = 4

DEFAULT_CONF = "/etc/cni/net.d/10-multus.conf"
LEGACY = "kube-ipam"  # the kind shown for kube-ipam's own (read-only) records


class Failure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Pool:
    """One subnet's pool in one etcd, and the networks of the conf that use it."""

    store: Store
    networks: set[str] = field(default_factory=set)

    @property
    def id(self) -> str:
        return pool_id(self.store.keys.subnet)


@dataclass
class Source:
    pools: list[Pool]
    legacy: list[tuple[object, str]]  # (etcd, prefix) where kube-ipam's own records may be
    clients: list = field(default_factory=list)

    def close(self) -> None:
        for client in self.clients:
            client.close()


# -- finding the store


def _kube_ipam_confs(path: str) -> list[dict]:
    """Every kube-ipam plugin conf of the file, with its network's name, as a runtime hands it over."""
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except OSError as error:
        raise Failure(EXIT_USAGE, f"{path}: cannot read: {error.strerror}") from None
    except ValueError as error:
        raise Failure(EXIT_USAGE, f"{path}: not valid JSON: {error}") from None
    if not isinstance(doc, dict):
        raise Failure(EXIT_USAGE, f"{path}: not a JSON object")
    try:
        if "delegates" in doc or "clusterNetwork" in doc:
            networks = [d.network for d in multus.load(doc).delegates]
        else:
            networks = [network.from_dict(doc)]
    except CNIError as error:
        raise Failure(EXIT_USAGE, f"{path}: {error.msg}") from None
    found = []
    for net in networks:
        for plugin in net.plugins:
            ipam = plugin.get("ipam")
            if isinstance(ipam, dict) and ipam.get("type") == "kube-ipam":
                found.append(dict(plugin, name=net.name, cniVersion=net.cni_version))
    if not found:
        raise Failure(EXIT_USAGE, f"{path}: no delegate uses kube-ipam (give --etcd-url to read a store directly)")
    return found


def _connect(etcd_config: dict, clients: dict, made: list):
    key = json.dumps(etcd_config, sort_keys=True)
    if key not in clients:
        try:
            clients[key] = open_etcd(etcd_config)
        except CNIError as error:
            raise Failure(EXIT_USAGE, error.msg) from None
        made.append(clients[key])
    return clients[key]


def _from_conf(path: str) -> Source:
    clients: dict = {}
    made: list = []
    pools: dict[tuple[str, str], Pool] = {}
    for conf in _kube_ipam_confs(path):
        try:
            where = kube_config.location(conf)
        except CNIError as error:
            raise Failure(EXIT_USAGE, f"{path}: network {conf['name']}: {error.msg}") from None
        etcd_config = where.etcd.as_dict()
        slot = (json.dumps(etcd_config, sort_keys=True), str(where.subnet))
        if slot not in pools:
            pools[slot] = Pool(Store(_connect(etcd_config, clients, made), where.subnet))
        pools[slot].networks.add(where.network)
    legacy = sorted({(pool.store.etcd, f"{LEGACY_PREFIX}{n}/used/") for pool in pools.values() for n in pool.networks},
                    key=lambda item: item[1])
    return Source(list(pools.values()), legacy, made)


def _from_flags(url: str, cert: str | None, key: str | None, ca: str | None) -> Source:
    etcd_config = {"etcdURL": url}
    for name, value in (("etcdCertFile", cert), ("etcdKeyFile", key), ("etcdTrustedCAFileFile", ca)):
        if value:
            etcd_config[name] = value
    made: list = []
    etcd = _connect(etcd_config, {}, made)
    ids = {kv.key[len(POOLS):].partition("/")[0] for kv in etcd.get_prefix(POOLS, keys_only=True)}
    pools = [Pool(Store(etcd, subnet)) for subnet in filter(None, map(subnet_of, sorted(ids)))]
    return Source(pools, [(etcd, LEGACY_PREFIX)], made)


def _legacy_rows(source: Source) -> list[dict]:
    """kube-ipam's own `/etcd-cni/networks/<net>/used/<ip>` records, read-only."""
    rows = []
    for etcd, prefix in source.legacy:
        for kv in etcd.get_prefix(prefix):
            net, marker, ip_text = kv.key[len(LEGACY_PREFIX):].partition("/used/")
            ip = parse_ip(ip_text) if marker else None
            if ip is not None:
                rows.append({"pool": f"{LEGACY_PREFIX}{net}", "ip": str(ip), "kind": LEGACY, "network": net,
                             "pod": "", "podUID": "", "containerID": kv.value.strip(), "ifname": ""})  # fmt: skip
    return rows


# -- rows


def _row(pool: Pool, lease: Lease) -> dict:
    return {"pool": pool.id, "ip": str(lease.ip), "kind": lease.kind, "network": lease.network, "pod": lease.pod,
            "podUID": lease.pod_uid, "containerID": lease.container_id, "ifname": lease.ifname}  # fmt: skip


def _sort_key(row: dict):
    ip = ipaddress.ip_address(row["ip"])
    return (row["pool"], ip.version, int(ip))


_COLUMNS = (("IP", "ip"), ("KIND", "kind"), ("NETWORK", "network"), ("POD", "pod"),
            ("CONTAINER", "containerID"), ("IFNAME", "ifname"), ("POOL", "pool"))  # fmt: skip


def _table(rows: list[dict]) -> str:
    cells = [[title for title, _ in _COLUMNS]] + [[row[k] or "-" for _, k in _COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(_COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells)


def _pod_arg(value: str | None) -> str | None:
    if value is None:
        return None
    namespace, slash, name = value.partition("/")
    if not (slash and namespace and name and "/" not in name):
        raise click.BadParameter(f"{value!r} is not namespace/name", param_hint="--pod")
    return value


def _ip_arg(value: str):
    ip = parse_ip(value)
    if ip is None:
        raise click.BadParameter(f"{value!r} is not an IP address", param_hint="IP")
    return ip


def _pools_holding(source: Source, ip) -> list[Pool]:
    return [p for p in source.pools if ip.version == p.store.keys.subnet.version and ip in p.store.keys.subnet]


# -- commands


@cli.group("ipam")
@click.option("--conf", "conf_path", type=click.Path(dir_okay=False), default=DEFAULT_CONF, show_default=True,
              help="A multus conf (or a network conf) whose kube-ipam delegates name the store.")
@click.option("--etcd-url", help="Read this etcd directly (kube-ipam's etcdURL: comma-separated URLs); --conf is not read.")
@click.option("--etcd-cert", type=click.Path(dir_okay=False), help="Client certificate (etcdCertFile).")
@click.option("--etcd-key", type=click.Path(dir_okay=False), help="Client key (etcdKeyFile).")
@click.option("--etcd-ca", type=click.Path(dir_okay=False), help="CA of the etcd server (etcdTrustedCAFileFile).")
@click.pass_context
def ipam(ctx, conf_path, etcd_url, etcd_cert, etcd_key, etcd_ca) -> None:
    """kube-ipam's reservations: list, show and release them."""
    if (etcd_cert or etcd_key or etcd_ca) and not etcd_url:
        raise click.UsageError("--etcd-cert/--etcd-key/--etcd-ca need --etcd-url")

    def open_source() -> Source:
        if etcd_url:
            return _from_flags(etcd_url, etcd_cert, etcd_key, etcd_ca)
        return _from_conf(conf_path)

    ctx.obj = open_source


def _run(ctx, body) -> None:
    """Runs `body(source)` and turns failures into a message and an exit code."""
    source = None
    try:
        source = ctx.obj()
        body(source)
    except Failure as failure:
        click.echo(f"multipy ipam: {failure}", err=True)
        sys.exit(failure.code)
    except EtcdUnavailable as error:
        click.echo(f"multipy ipam: {error}", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    finally:
        if source is not None:
            source.close()


_output = click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True)


@ipam.command("ls")
@click.option("--network", help="Only this network's reservations.")
@click.option("--pod", callback=lambda c, p, v: _pod_arg(v), help="Only this pod's (namespace/name).")
@click.option("--kind", type=click.Choice(["fixed", "dynamic", LEGACY]), help="Only this kind.")
@_output
@click.pass_context
def ls(ctx, network, pod, kind, output) -> None:
    """List every reservation (kube-ipam's own records too, as kind kube-ipam)."""

    def body(source: Source) -> None:
        rows = [_row(pool, lease) for pool in source.pools for lease in pool.store.leases()]
        rows += _legacy_rows(source)
        rows = [r for r in rows if (network is None or r["network"] == network) and (pod is None or r["pod"] == pod)
                and (kind is None or r["kind"] == kind)]  # fmt: skip
        rows.sort(key=_sort_key)
        if output == "json":
            click.echo(json.dumps(rows, indent=2))
        elif rows:
            click.echo(_table(rows))
        else:
            click.echo("no reservations", err=True)

    _run(ctx, body)


@ipam.command("show")
@click.argument("ip", callback=lambda c, p, v: _ip_arg(v))
@_output
@click.pass_context
def show(ctx, ip, output) -> None:
    """Show who holds IP."""

    def body(source: Source) -> None:
        rows = [_row(pool, lease) for pool in _pools_holding(source, ip)
                if (lease := pool.store.lease(ip)) is not None]  # fmt: skip
        rows += [r for r in _legacy_rows(source) if r["ip"] == str(ip)]
        if not rows:
            if output == "json":
                click.echo("[]")
            raise Failure(EXIT_NOT_FOUND, f"{ip} is not reserved")
        if output == "json":
            click.echo(json.dumps(rows, indent=2))
            return
        for n, row in enumerate(rows):
            if n:
                click.echo("")
            width = max(len(k) for k in row)
            for k, v in row.items():
                click.echo(f"{k.ljust(width)}  {v or '-'}")

    _run(ctx, body)


@ipam.command("release")
@click.argument("ip", required=False, callback=lambda c, p, v: None if v is None else _ip_arg(v))
@click.option("--pod", callback=lambda c, p, v: _pod_arg(v), help="Release every fixed reservation of namespace/name.")
@click.option("--force", is_flag=True, help="Also when a container still uses the address (it must be gone).")
@_output
@click.pass_context
def release(ctx, ip, pod, force, output) -> None:
    """Release IP, or a pod's fixed reservations (--pod), so others may have them.

    A reservation in use by a container is refused without --force: releasing it would let
    a second pod get an address the first still uses.
    """
    if (ip is None) == (pod is None):
        raise click.UsageError("give either IP or --pod namespace/name")

    def body(source: Source) -> None:
        if ip is not None:
            chosen = [(p, lease) for p in _pools_holding(source, ip) if (lease := p.store.lease(ip)) is not None]
            if not chosen:
                legacy = [r for r in _legacy_rows(source) if r["ip"] == str(ip)]
                hint = " (only kube-ipam's own records hold it; multipy does not change those)" if legacy else ""
                raise Failure(EXIT_NOT_FOUND, f"{ip} is not reserved{hint}")
        else:
            chosen = [(p, lease) for p in source.pools for lease in p.store.leases()
                      if lease.pod == pod and lease.kind == "fixed"]  # fmt: skip
            if not chosen:
                raise Failure(EXIT_NOT_FOUND, f"pod {pod} holds no fixed reservation")
        busy = [lease for _, lease in chosen if lease.container_id]
        if busy and not force:
            users = ", ".join(f"{lease.ip} (container {lease.container_id} on {lease.ifname})" for lease in busy)
            raise Failure(EXIT_IN_USE, f"in use: {users}; DEL that attachment first, or --force if the container is gone")
        released, changed = [], []
        for p, lease in chosen:
            (released if p.store.remove(lease) else changed).append(_row(p, lease))
        if output == "json":
            click.echo(json.dumps({"released": released, "changed": changed}, indent=2))
        else:
            for row in released:
                click.echo(f"released {row['ip']} ({row['kind']}, {row['pod'] or row['containerID']})")
        if changed:
            raise Failure(EXIT_IN_USE, f"changed while releasing, left alone: {', '.join(r['ip'] for r in changed)}")

    _run(ctx, body)
