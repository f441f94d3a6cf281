"""kube-ipam: fixed addresses from pod annotations and dynamic ones from a range, reserved in etcd.

Does what cloudnativer/kube-ipam documents (its keys and annotations), and what it
only promises: fixedStart/fixedEnd, atomic reservations, conflict checks, fixed
addresses that stay with the pod's name across recreation, fail-closed API and
etcd errors, idempotent ADD, CHECK, GC and STATUS.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from multipy.cni.errors import INTERNAL, INVALID_NETWORK_CONFIG, STATUS_UNAVAILABLE, UNKNOWN_CONTAINER, CNIError
from multipy.cni.gc import valid_attachments
from multipy.cni.result import DNS, IPConfig, Result
from multipy.cni.version import SUPPORTED_VERSIONS
from multipy.ipam.requests import requested_ips
from multipy.ipam.resolv import read_resolv_conf
from multipy.plugins.contract import Invocation, Services

from . import annotations, config, pods
from .connect import Clients, etcd_errors
from .reserve import holdings, release, release_owner, reserve_dynamic, reserve_fixed
from .rules import Claimant, check_fixed
from .store import Store

if TYPE_CHECKING:
    from multipy.plugins.operator import Check, StatusProbe


def _fixed_request(conf: dict, inv: Invocation, pod: pods.Pod | None, cfg: config.KubeIpamConfig, clients: Clients):
    """What the pod asks for: its kube-ipam.* annotations, else the runtime's IP=/ips, else None."""
    given = pods.from_runtime(conf)
    if given is None and pod is not None:
        given = pods.from_api(pod, lambda: clients.kube(cfg.kubeconfig), cfg.kubeconfig)
    by_annotation = annotations.parse(given)
    by_runtime = annotations.from_requested(requested_ips(conf, inv.arg("IP")))
    if by_annotation and by_runtime and {w.ip for w in by_annotation.wanted} != {w.ip for w in by_runtime.wanted}:
        raise CNIError(
            INVALID_NETWORK_CONFIG,
            f"{annotations.IP} asks for {', '.join(str(w.ip) for w in by_annotation.wanted)} but "
            f"{by_runtime.wanted[0].source} asks for {', '.join(str(w.ip) for w in by_runtime.wanted)}: "
            "ask in one place",
        )
    return by_annotation or by_runtime


class KubeIpam:
    supported_versions = SUPPORTED_VERSIONS

    def __init__(self, services: Services) -> None:
        self._clients = Clients(services)

    # `multipy doctor`: reservations of gone pods (plugins/operator.py); doctor.py is imported only when it runs.
    doctor_checks = staticmethod(lambda conf, probe: import_module(f"{__package__}.doctor").doctor_checks(conf, probe))

    @staticmethod
    def status_checks(conf: dict, probe: StatusProbe) -> list[Check]:
        """`multipy status`'s lines for one kube-ipam network (see node_checks)."""
        from .node_checks import status_checks

        return status_checks(conf, probe)

    def _store(self, location: config.Location) -> Store:
        return Store(self._clients.etcd(location.etcd), location.subnet)

    def add(self, inv: Invocation, conf: dict) -> Result:
        cfg = config.load(conf)
        dns = read_resolv_conf(cfg.resolv_conf) if cfg.resolv_conf else DNS()
        pod = pods.identify(inv)
        me = Claimant(cfg.network, inv.container_id, inv.ifname, pod.ref if pod else "", pod.uid if pod else "")
        request = _fixed_request(conf, inv, pod, cfg, self._clients)
        # Every check that needs no store comes first: a refused ADD leaves nothing behind.
        fixed = check_fixed(cfg, request) if request else None
        store = self._store(cfg.location)
        with etcd_errors(f"ADD {inv.container_id} on {inv.ifname}"):
            if fixed is not None:
                leases, gateway = reserve_fixed(store, me, fixed[0]), fixed[1]
            else:
                leases, gateway = reserve_dynamic(store, cfg, me), cfg.range.gateway
        return Result(
            cfg.cni_version,
            ips=[IPConfig(cfg.range.interface(lease.ip), gateway) for lease in leases],
            routes=list(cfg.routes),
            dns=dns,
        )

    def delete(self, inv: Invocation, conf: dict) -> None:
        location = config.location(conf)
        with etcd_errors(f"DEL {inv.container_id} on {inv.ifname}"):
            release(self._store(location), inv.container_id, inv.ifname)

    def check(self, inv: Invocation, conf: dict) -> None:
        location = config.location(conf)
        with etcd_errors(f"CHECK {inv.container_id} on {inv.ifname}"):
            _, leases = holdings(self._store(location), inv.container_id, inv.ifname)
        if not leases:
            raise CNIError(UNKNOWN_CONTAINER, f"kube-ipam: container {inv.container_id} holds no address on "
                                              f"{inv.ifname} in {location.subnet} (network {location.network})")
        prev = conf.get("prevResult")
        if prev is None:
            return
        try:
            reported = {ipc.address.ip for ipc in Result.from_json(prev).ips}
        except CNIError as error:
            raise CNIError(error.code, f"kube-ipam CHECK: prevResult: {error.msg}") from None
        missing = [str(lease.ip) for lease in leases if lease.ip not in reported]
        if missing:
            raise CNIError(INTERNAL, f"kube-ipam: {inv.container_id} on {inv.ifname} holds {', '.join(missing)}, "
                                     "which prevResult does not list")

    def gc(self, inv: Invocation, conf: dict) -> None:
        """Releases what attachments of this network hold unless the runtime lists them as valid."""
        valid = valid_attachments(conf)
        location = config.location(conf)
        with etcd_errors("GC"):
            store = self._store(location)
            for owner in store.owners():
                if owner.network == location.network and (owner.container_id, owner.ifname) not in valid:
                    release_owner(store, owner)  # lost to a concurrent change: the next GC retries

    def status(self, inv: Invocation, conf: dict) -> None:
        location = config.location(conf)
        with etcd_errors("STATUS", STATUS_UNAVAILABLE):
            self._clients.etcd(location.etcd).status()
