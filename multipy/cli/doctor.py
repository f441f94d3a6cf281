"""`multipy doctor`: what this node leaked, and with --fix, removing what is provably stale.

Found, each as one line (or one JSON object with -o json):
  record-without-netns  an attachment record whose pod namespace is gone (the runtime's DEL never came);
                        --fix runs that DEL from the record, as the runtime would (delegates release
                        their addresses; the record goes when every delegate's DEL succeeded)
  unreadable-record     a record file that cannot be read (truncated, a FIFO, a symlink...): reported,
                        never removed (its attachment is unknown: GC keeps everything it may own)
  orphan-link           a link in a recorded pod namespace that no record of that namespace owns
                        (a killed ADD's macvlan under its temporary name, ...): reported only
  temp-file             a killed writer's temporary record file; --fix removes those older than 10 min
and what each plugin declares through `doctor_checks` (plugins/operator.py), such as host-local's
lease-without-record (--fix releases a lease whose container has no record at all and no request in flight).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

import click

from multipy.files import stale_temps, unlink_quietly
from multipy.orchestrator import lock
from multipy.orchestrator.commands import STALE_TEMP_AGE
from multipy.orchestrator.record import CorruptRecord, RecordStore
from multipy.plugins.operator import Finding

from .commands import EXIT_INVALID, EXIT_UNREADABLE, cli
from .output import echo_json, output_option
from .status import DEFAULT_CONF


class Node:
    """The records of one cniDir, read once, and the DoctorProbe plugins get."""

    def __init__(self, cni_dir: str, fix: bool, timeout: float = 2.0) -> None:
        self.cni_dir = cni_dir
        self.store = RecordStore(cni_dir)
        self.fix = fix
        self.timeout = timeout
        self._clients = None

    def record_names(self) -> list[tuple[str, str, str]]:
        try:
            names = os.listdir(self.cni_dir)
        except OSError:
            return []
        found = []
        for name in sorted(names):
            parts = name.split(":")
            if len(parts) == 3 and not name.startswith("."):
                found.append((parts[0], parts[1], parts[2]))
        return found

    # -- DoctorProbe

    def owned(self, container_id: str, ifname: str) -> bool:
        return any(cid == container_id and ifn == ifname for _, cid, ifn in self.record_names())

    def removable(self, container_id: str) -> bool:
        if self.store.networks_of_container(container_id):
            return False
        try:
            with lock.held(self.cni_dir, container_id, wait=0):
                return not self.store.networks_of_container(container_id)
        except (lock.Busy, Exception):  # noqa: BLE001 - anything unclear: not provably stale
            return False

    def _pool(self):
        if self._clients is None:
            from multipy.clients.pool import ClientPool

            self._clients = ClientPool()
        return self._clients

    @property
    def etcd(self):
        return self._pool().etcd

    @property
    def kube(self):
        return self._pool().kube

    def close(self) -> None:
        if self._clients is not None:
            self._clients.close()


def _links(netns: str) -> list[str] | None:
    from multipy.net.netns import NetnsGone, run_in

    try:
        return sorted(name for _, name in run_in(netns, socket.if_nameindex))
    except (NetnsGone, OSError):
        return None


def _delete(conf_raw: bytes, network: str, record) -> str | None:
    """The runtime's DEL for `record`, in this process; None when it succeeded, else its error."""
    from multipy import entry
    from multipy.cni import skel

    class _In:
        def read(self) -> bytes:
            return conf_raw

    class _Out:
        text = ""

        def write(self, text: str) -> None:
            self.text += text

        def flush(self) -> None:
            pass

    environ = {**os.environ, "CNI_COMMAND": "DEL", "CNI_CONTAINERID": record.container_id,
               "CNI_IFNAME": record.ifname, "CNI_NETNS": record.netns, "CNI_ARGS": record.cni_args}  # fmt: skip
    out = _Out()
    code = skel.run(entry.build, environ=environ, stdin=_In(), stdout=out)
    if code == 0:
        return None
    try:
        return json.loads(out.text).get("msg", out.text)
    except ValueError:
        return out.text or f"exit {code}"


def examine(conf_raw: bytes, conf, fix: bool, registry=None) -> list[Finding]:
    node = Node(conf.cni_dir, fix)
    findings: list[Finding] = []
    try:
        findings += _records(node, conf_raw, conf)
        findings += _temps(node)
        findings += _plugin_findings(node, conf, registry)
    finally:
        node.close()
    return findings


def _records(node: Node, conf_raw: bytes, conf) -> list[Finding]:
    findings: list[Finding] = []
    by_netns: dict[str, set[str]] = {}
    readable = []
    for network, cid, ifname in node.record_names():
        path = os.path.join(node.cni_dir, f"{network}:{cid}:{ifname}")
        try:
            record = node.store.load(network, cid, ifname)
        except (CorruptRecord, Exception) as exc:  # noqa: BLE001 - a name no record can have is as unreadable
            findings.append(Finding("unreadable-record", path, f"{exc}; its attachment is unknown, so GC keeps "
                                    "everything it may own: remove it by hand once the pod is gone"))  # fmt: skip
            continue
        if record is None:
            continue
        readable.append((path, network, record))
        if record.netns:
            by_netns.setdefault(record.netns, set()).update(a.ifname for a in record.attachments)
            by_netns[record.netns].add(record.ifname)
    for path, network, record in readable:
        if not record.netns or os.path.exists(record.netns):
            continue
        fixable = network == conf.name
        detail = f"pod namespace {record.netns} is gone; {len(record.attachments)} delegate(s) still recorded"
        fixed = False
        if node.fix and fixable:
            error = _delete(conf_raw, network, record)
            fixed = error is None
            detail += "; DEL done" if fixed else f"; DEL failed: {error}"
        elif not fixable:
            detail += f" (network {network!r} is not the conf's {conf.name!r}: run with its conf)"
        findings.append(Finding("record-without-netns", path, detail, fixable, fixed))
    for netns, owned in sorted(by_netns.items()):
        if not os.path.exists(netns):
            continue
        links = _links(netns)
        for name in links or []:
            if name != "lo" and name not in owned:
                findings.append(Finding("orphan-link", f"{netns}: {name}", "no record of this namespace names it"))
    return findings


def _temps(node: Node) -> list[Finding]:
    findings = []
    now = time.time()
    for path in stale_temps(node.cni_dir):
        try:
            age = now - os.lstat(path).st_mtime
        except OSError:
            continue
        fixable = age >= STALE_TEMP_AGE
        fixed = False
        if node.fix and fixable:
            unlink_quietly(path)
            fixed = not os.path.lexists(path)
        findings.append(Finding("temp-file", path, f"a killed writer's temporary record file, {age:.0f}s old"
                                + ("" if fixable else " (young: a writer may be live)"), fixable, fixed))
    return findings


def _plugin_findings(node: Node, conf, registry) -> list[Finding]:
    from multipy.cni.errors import CNIError
    from multipy.plugins.registry import DELEGATE_GROUP, IPAM_GROUP, Registry

    registry = registry or Registry()
    findings: list[Finding] = []
    for delegate in conf.resolved:
        net = delegate.network
        for plugin in net.plugins:
            ipam = plugin.get("ipam") if isinstance(plugin.get("ipam"), dict) else {}
            for group, plugin_type in ((DELEGATE_GROUP, plugin.get("type")), (IPAM_GROUP, ipam.get("type"))):
                if not isinstance(plugin_type, str) or not plugin_type:
                    continue
                try:
                    hook = getattr(registry.find(group, plugin_type), "doctor_checks", None)
                except CNIError:
                    continue
                if hook is None:
                    continue
                conf_for_plugin = {"cniVersion": net.cni_version, "name": net.name, **plugin}
                try:
                    findings += hook(conf_for_plugin, node)
                except Exception as error:  # noqa: BLE001 - a plugin's bug must not hide the rest
                    findings.append(Finding("plugin", f"{net.name}: {plugin_type}",
                                            f"doctor_checks failed: {type(error).__name__}: {error}"))  # fmt: skip
    return findings


@cli.command()
@click.option("--conf", "conf_path", type=click.Path(dir_okay=False, allow_dash=True), default=DEFAULT_CONF,
              show_default=True, help="The multus conf the runtime uses.")  # fmt: skip
@click.option("--fix", is_flag=True, help="Remove what is provably stale (see above).")
@output_option
def doctor(conf_path: str, fix: bool, output: str) -> None:
    """Find what this node leaked: records without a pod namespace, links no record owns, leases
    and etcd owners without a record, temporary files; with --fix, remove what is provably stale.

    \b
    Exit codes: 0 nothing left over (or everything found was fixed); 1 leftovers remain;
    2 the conf cannot be read or is invalid.
    """
    from multipy.cni.errors import CNIError
    from multipy.config import multus

    try:
        with click.open_file(conf_path, "rb") as f:
            raw = f.read()
        conf = multus.load(json.loads(raw))
    except OSError as error:
        click.echo(f"multipy doctor: {conf_path}: cannot read: {error.strerror}", err=True)
        sys.exit(EXIT_UNREADABLE)
    except (ValueError, CNIError) as error:
        click.echo(f"multipy doctor: {conf_path}: {getattr(error, 'msg', error)}", err=True)
        sys.exit(EXIT_UNREADABLE)
    findings = examine(raw, conf, fix, cli._registry())
    left = [f for f in findings if not f.fixed]
    if output == "json":
        echo_json({"conf": conf_path, "cniDir": conf.cni_dir, "clean": not left,
                   "findings": [f.as_dict() for f in findings]})  # fmt: skip
    else:
        for f in findings:
            state = "fixed" if f.fixed else ("stale" if f.fixable else "found")
            click.echo(f"{state:5}  {f.kind}  {f.subject}: {f.detail}")
        click.echo(f"{len(findings)} finding(s), {len(findings) - len(left)} fixed" if findings else "nothing leaked")
    sys.exit(EXIT_INVALID if left else 0)
