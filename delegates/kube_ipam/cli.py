"""`multipy ipam`: what kube-ipam has reserved in etcd, releasing it by hand, and releasing what
belongs to pods the Kubernetes API no longer has (`gc`, see gc.py).

kube-ipam offers this group to multipy's CLI through the `multipy.cli` entry-point group; this is
the only module of kube-ipam that imports click, and it is imported only when `multipy ipam` runs
or `multipy --help` lists it. Clients come from one ClientPool per command, closed when it ends.

The store is found from a conf (`--conf`, the multus conf by default: every
kube-ipam IPAM of its delegates) or given directly (`--etcd-url` and the TLS
files), in which case every pool in that etcd is read.

Exit codes: 0 done; 1 no such reservation; 2 bad arguments or an unusable conf;
3 etcd unreachable; 4 refused, the reservation is in use by a container (see --force);
5 the Kubernetes API cannot be read (gc).
"""

from __future__ import annotations

import ipaddress
import json
import sys
from dataclasses import dataclass, field

import click

from multipy.cli.output import echo_json, output_option
from multipy.clients import kube as kube_client
from multipy.clients.etcd import EtcdUnavailable
from multipy.clients.pool import ClientPool
from multipy.cni.errors import CNIError
from multipy.config import multus, network
from multipy.files import MIB, read_regular

from . import config as kube_config
from . import gc as ipam_gc
from .config import EtcdConfig
from .connect import KUBE_TIMEOUT, open_etcd
from .records import LEGACY_PREFIX, POOLS, Lease, parse_ip, pool_id, subnet_of
from .store import Store

EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_IN_USE = 4
EXIT_API_UNAVAILABLE = 5

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
    clients: ClientPool
    kubeconfigs: list[str] = field(default_factory=list)  # the conf's: its kube-ipam kubeConfigs, else its kubeconfig


# -- finding the store


def _kube_ipam_confs(path: str) -> tuple[list[dict], str]:
    """Every kube-ipam plugin conf of the file, with its network's name, as a runtime hands it over,
    and the file's own `kubeconfig` ("" if none)."""
    try:
        doc = json.loads(read_regular(path, MIB, follow_symlinks=True))  # bounded: never /dev/zero or a FIFO
    except OSError as error:
        raise Failure(EXIT_USAGE, f"{path}: cannot read: {error.strerror}") from None
    except (ValueError, RecursionError) as error:
        raise Failure(EXIT_USAGE, f"{path}: not valid JSON: {error}") from None
    if not isinstance(doc, dict):
        raise Failure(EXIT_USAGE, f"{path}: not a JSON object")
    try:
        if "delegates" in doc or "clusterNetwork" in doc:
            # A delegate known only as a NetworkAttachmentDefinition (network None) names no store here.
            networks = [d.network for d in multus.load(doc).delegates if d.network is not None]
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
    kubeconfig = doc.get("kubeconfig") if isinstance(doc.get("kubeconfig"), str) else ""
    return found, kubeconfig


def _connect(clients: ClientPool, where: EtcdConfig):
    """The pool's client for `where`: networks on one etcd share it."""
    try:
        return open_etcd(clients.etcd, where)
    except CNIError as error:
        raise Failure(EXIT_USAGE, error.msg) from None


def _from_conf(path: str, clients: ClientPool) -> Source:
    pools: dict[tuple[EtcdConfig, str], Pool] = {}
    confs, top_kubeconfig = _kube_ipam_confs(path)
    kubeconfigs: list[str] = []
    for conf in confs:
        try:
            where = kube_config.location(conf)
        except CNIError as error:
            raise Failure(EXIT_USAGE, f"{path}: network {conf['name']}: {error.msg}") from None
        slot = (where.etcd, str(where.subnet))
        if slot not in pools:
            pools[slot] = Pool(Store(_connect(clients, where.etcd), where.subnet))
        pools[slot].networks.add(where.network)
        named = conf["ipam"].get("kubeConfig")
        if isinstance(named, str) and named.strip() and named.strip() not in kubeconfigs:
            kubeconfigs.append(named.strip())
    legacy = sorted({(pool.store.etcd, f"{LEGACY_PREFIX}{n}/used/") for pool in pools.values() for n in pool.networks},
                    key=lambda item: item[1])
    return Source(list(pools.values()), legacy, clients, kubeconfigs or ([top_kubeconfig] if top_kubeconfig else []))


def _from_flags(url: str, cert: str | None, key: str | None, ca: str | None, clients: ClientPool) -> Source:
    etcd = _connect(clients, EtcdConfig(url, cert or "", key or "", ca or ""))
    ids = {kv.key[len(POOLS):].partition("/")[0] for kv in etcd.get_prefix(POOLS, keys_only=True)}
    pools = [Pool(Store(etcd, subnet)) for subnet in filter(None, map(subnet_of, sorted(ids)))]
    return Source(pools, [(etcd, LEGACY_PREFIX)], clients)


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


@click.group("ipam")
@click.option("--conf", "conf_path", type=click.Path(dir_okay=False), default=DEFAULT_CONF, show_default=True,
              help="A multus conf (or a network conf) whose kube-ipam delegates name the store.")
@click.option("--etcd-url", help="Read this etcd directly (kube-ipam's etcdURL: comma-separated URLs); --conf is not read.")
@click.option("--etcd-cert", type=click.Path(dir_okay=False), help="Client certificate (etcdCertFile).")
@click.option("--etcd-key", type=click.Path(dir_okay=False), help="Client key (etcdKeyFile).")
@click.option("--etcd-ca", type=click.Path(dir_okay=False), help="CA of the etcd server (etcdTrustedCAFileFile).")
@click.pass_context
def ipam(ctx, conf_path, etcd_url, etcd_cert, etcd_key, etcd_ca) -> None:
    """kube-ipam's reservations: list, show and release them, and release those of gone pods (gc).

    \b
    Exit codes: 0 done; 1 no such reservation; 2 bad arguments or an unusable conf;
    3 etcd unreachable; 4 refused: in use by a container (see release --force);
    5 the Kubernetes API cannot be read (gc).
    """
    if (etcd_cert or etcd_key or etcd_ca) and not etcd_url:
        raise click.UsageError("--etcd-cert/--etcd-key/--etcd-ca need --etcd-url")

    def open_source(clients: ClientPool) -> Source:
        if etcd_url:
            return _from_flags(etcd_url, etcd_cert, etcd_key, etcd_ca, clients)
        return _from_conf(conf_path, clients)

    ctx.obj = open_source


def _run(ctx, body) -> None:
    """Runs `body(source)` and turns failures into a message and an exit code."""
    with ClientPool() as clients:
        try:
            body(ctx.obj(clients))
        except Failure as failure:
            click.echo(f"multipy ipam: {failure}", err=True)
            sys.exit(failure.code)
        except EtcdUnavailable as error:
            click.echo(f"multipy ipam: {error}", err=True)
            sys.exit(EXIT_UNAVAILABLE)


@ipam.command("ls")
@click.option("--network", help="Only this network's reservations.")
@click.option("--pod", callback=lambda c, p, v: _pod_arg(v), help="Only this pod's (namespace/name).")
@click.option("--kind", type=click.Choice(["fixed", "dynamic", LEGACY]), help="Only this kind.")
@output_option
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
@output_option
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
@output_option
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


def _pods(kubeconfig: str | None, source: Source) -> ipam_gc.Pods:
    """Every pod of the cluster, listed once: through --kubeconfig, else the conf's, else in-cluster."""
    if not kubeconfig and len(source.kubeconfigs) > 1:
        raise Failure(EXIT_USAGE, f"the conf names several kubeconfigs ({', '.join(source.kubeconfigs)}): "
                                  "give --kubeconfig")
    path = kubeconfig or (source.kubeconfigs[0] if source.kubeconfigs else None)
    try:
        client = source.clients.kube(path, timeout=KUBE_TIMEOUT)
    except kube_client.KubeConfigError as error:
        raise Failure(EXIT_USAGE, f"{error} (give --kubeconfig)") from None
    try:
        return ipam_gc.Pods(client.list_pods())
    except kube_client.KubeError as error:
        raise Failure(EXIT_API_UNAVAILABLE, f"cannot list pods, nothing released: {error}") from None


_GC_WORDS = {"release": ("released", "would release"), "detach": ("detached", "would detach"),
             "keep": ("kept", "kept"), "changed": ("left alone, changed since read:", "left alone, changed since read:")}  # fmt: skip


@ipam.command("gc")
@click.option("--dry-run", is_flag=True, help="Only print what would be released.")
@click.option("--include-fixed", is_flag=True,
              help="Also release fixed (name-bound) reservations whose pod name no longer exists.")
@click.option("--kubeconfig", type=click.Path(dir_okay=False),
              help="The cluster to ask.  [default: the conf's kube-ipam kubeConfig, else its kubeconfig, "
                   "else the in-cluster service account]")
@output_option
@click.pass_context
def gc(ctx, dry_run, include_fixed, kubeconfig, output) -> None:
    """Release reservations of pods the Kubernetes API no longer has.

    Lists the pods once (all namespaces). A dynamic reservation goes when its pod's
    namespace/name is gone or, where its pod UID was recorded, names another incarnation.
    An attachment of a gone container is released as its DEL would have been: a fixed
    address stays reserved for the pod's name (a recreated StatefulSet pod gets it back)
    unless --include-fixed and the name is gone. Reservations that record no pod are kept.
    Each release is one etcd transaction against the revision read, so one that changed
    meanwhile is left alone.

    \b
    Exit codes: 0 done (nothing stale included); 2 bad arguments or an unusable conf;
    3 etcd unreachable; 5 the Kubernetes API cannot be read (unreachable, or the
    credentials refused): nothing is released.
    """

    def body(source: Source) -> None:
        # Reservations first, pods second: see gc.py for why this order is safe.
        snapshot = [(pool, pool.store.leases(), pool.store.owners()) for pool in source.pools]
        pods = _pods(kubeconfig, source)
        report: dict[str, list] = {"release": [], "detach": [], "keep": [], "changed": []}
        for pool, leases, owners in snapshot:
            todo = ipam_gc.plan(leases, owners, pods, include_fixed)
            report["keep"] += [(pool, d) for d in todo.decisions if d.verb == "keep"]
            if dry_run:
                done, changed = [d for d in todo.decisions if d.verb != "keep"], []
            else:
                done, changed = ipam_gc.apply(pool.store, todo)
            for decision in done:
                report[decision.verb].append((pool, decision))
            report["changed"] += [(pool, d) for d in changed]
        rows = {verb: sorted((dict(_row(pool, d.lease), reason=d.reason) for pool, d in items), key=_sort_key)
                for verb, items in report.items()}  # fmt: skip
        if output == "json":
            echo_json({"dryRun": dry_run, "pods": len(pods), "released": rows["release"],
                       "detached": rows["detach"], "kept": rows["keep"], "changed": rows["changed"]})  # fmt: skip
            return
        for verb in ("release", "detach", "changed", "keep"):
            word = _GC_WORDS[verb][1 if dry_run else 0]
            for row in rows[verb]:
                click.echo(f"{word} {row['ip']} ({row['kind']}, {row['pod'] or row['containerID'] or '-'}): "
                           f"{row['reason']}")
        counts = ", ".join(f"{len(rows[v])} {_GC_WORDS[v][1 if dry_run else 0].split(',')[0]}"
                           for v in ("release", "detach", "changed", "keep"))  # fmt: skip
        click.echo(f"{counts}; {len(pods)} pod(s) listed{' (dry run: nothing changed)' if dry_run else ''}", err=True)

    _run(ctx, body)
