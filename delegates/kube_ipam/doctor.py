"""What `multipy doctor` finds for a kube-ipam network (KubeIpam.doctor_checks): reservations in etcd
whose pod the Kubernetes API no longer has, by the rule of `multipy ipam gc` (gc.py), and with --fix
their release, done as gc does it.

kube-ipam's store is the cluster's and its owner indexes name no node, so a node cannot prove one
stale from its own records: the API decides, as for gc. The pool is read first and the pods are
listed second (gc.py says why that order is safe); what gc.plan would release without
--include-fixed (a fixed address stays bound to its pod's name) is one `etcd-owner-without-pod`
finding per attachment (subject: its owner key) or per lease no attachment indexes (subject:
"<pool> <ip>"). --fix hands it to gc.apply, which writes against the revision read, and only when
`probe.removable` says its container has no record and no request in flight on this node as well:
a container with a record here is left to that record's DEL (the doctor's record-without-netns).

The API is the one gc would ask: ipam.kubeConfig, else the in-cluster service account (probe.kube).
With none, with etcd unreachable, or the pods unlistable, one finding says what was not checked,
and nothing is released. Each pool (etcd, subnet) is examined once per run, however many networks
of the conf share it.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from multipy.clients.etcd import EtcdUnavailable
from multipy.clients.kube import KubeConfigError, KubeError
from multipy.cni.errors import CNIError
from multipy.plugins.operator import Finding

from . import config
from . import gc as ipam_gc
from .connect import KUBE_TIMEOUT, open_etcd
from .records import pool_id
from .store import Store

if TYPE_CHECKING:
    from multipy.plugins.operator import DoctorProbe

KIND = "etcd-owner-without-pod"
NOT_CHECKED = "etcd-owners-not-checked"

_seen: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # probe -> the pools it has examined


def _first(probe: DoctorProbe, key) -> bool:
    """True the first time this run's probe is given `key` (always, for a probe that cannot be told apart)."""
    first = getattr(probe, "first", None)
    if callable(first):
        return bool(first(key))
    try:
        seen = _seen.setdefault(probe, set())
    except TypeError:
        return True
    if key in seen:
        return False
    seen.add(key)
    return True


def _kubeconfig(conf: dict) -> str | None:
    """ipam.kubeConfig, else None: the in-cluster service account (as `multipy ipam gc`)."""
    ipam = conf.get("ipam") if isinstance(conf.get("ipam"), dict) else {}
    path = ipam.get("kubeConfig")
    return path.strip() if isinstance(path, str) and path.strip() else None


def _removable(probe: DoctorProbe, container_id: str) -> bool:
    return not container_id or probe.removable(container_id)


def doctor_checks(conf: dict, probe: DoctorProbe) -> list[Finding]:
    name = conf.get("name") if isinstance(conf.get("name"), str) else ""
    try:
        where = config.location(conf)
    except CNIError as error:
        return [Finding(NOT_CHECKED, f"{name}: kube-ipam", f"kube-ipam store unknown: {error.msg}")]
    if not _first(probe, ("kube-ipam pool", where.etcd, str(where.subnet))):
        return []
    subject = f"{name}: kube-ipam pool {pool_id(where.subnet)} at {where.etcd.url}"
    kubeconfig = _kubeconfig(conf)
    try:
        kube = probe.kube(kubeconfig, timeout=KUBE_TIMEOUT)
    except KubeConfigError as error:
        return [Finding(NOT_CHECKED, subject, f"not checked: no Kubernetes API to tell gone pods ({error}); "
                                              "name one in ipam.kubeConfig")]  # fmt: skip
    try:
        store = Store(open_etcd(probe.etcd, where.etcd, connect_timeout=probe.timeout), where.subnet)
        leases, owners = store.leases(), store.owners()  # reservations first, pods second: see gc.py
    except CNIError as error:
        return [Finding(NOT_CHECKED, subject, f"not checked: {error.msg}")]
    except EtcdUnavailable as error:
        return [Finding(NOT_CHECKED, subject, f"not checked: etcd unreachable: {error}")]
    try:
        pods = ipam_gc.Pods(kube.list_pods())
    except KubeError as error:
        return [Finding(NOT_CHECKED, subject, f"not checked: cannot list pods: {error}")]
    todo = ipam_gc.plan(leases, owners, pods, include_fixed=False)
    findings = []
    for item in todo.owners:
        findings.append(_owner_finding(store, todo, item, probe))
    for decision in todo.removals:
        findings.append(_lease_finding(store, decision, probe))
    return findings


def _here(removable: bool, container_id: str) -> str:
    if removable:
        return f"no record of container {container_id} on this node"
    return (f"container {container_id} has a record or a request in flight on this node: "
            "its DEL releases this, not --fix")  # fmt: skip


def _owner_finding(store: Store, todo: ipam_gc.Plan, item: ipam_gc.OwnerRelease, probe: DoctorProbe) -> Finding:
    owner = item.owner
    mine = [d for d in todo.decisions if d.lease.held_by(owner.container_id, owner.ifname)]
    held = [f"releases {d.lease.ip}" for d in mine if d.verb == "release"]
    held += [f"detaches {d.lease.ip} (it stays reserved for the pod's name)" for d in mine if d.verb == "detach"]
    removable = _removable(probe, owner.container_id)
    detail = f"{item.reason}; {', '.join(held) or 'holds no address: only its index is left'}; " \
             f"{_here(removable, owner.container_id)}"  # fmt: skip
    fixed = False
    if probe.fix and removable:
        try:
            _, changed = ipam_gc.apply(store, ipam_gc.Plan([item], [], []))
            fixed = not changed and store.owner(owner.container_id, owner.ifname) is None
        except EtcdUnavailable as error:
            detail += f"; release failed: {error}"
        else:
            detail += "; released" if fixed else "; changed since read: left alone"
    return Finding(KIND, store.keys.owner(owner.container_id, owner.ifname), detail, removable, fixed)


def _lease_finding(store: Store, decision: ipam_gc.Decision, probe: DoctorProbe) -> Finding:
    lease = decision.lease
    removable = _removable(probe, lease.container_id)
    detail = f"{decision.reason}; a {lease.kind} lease no owner index holds"
    if lease.container_id:
        detail += f"; {_here(removable, lease.container_id)}"
    fixed = False
    if probe.fix and removable:
        try:
            done, _ = ipam_gc.apply(store, ipam_gc.Plan([], [decision], []))
            fixed = bool(done)
        except EtcdUnavailable as error:
            detail += f"; release failed: {error}"
        else:
            detail += "; released" if fixed else "; changed since read: left alone"
    return Finding(KIND, f"{pool_id(store.keys.subnet)} {lease.ip}", detail, removable, fixed)
