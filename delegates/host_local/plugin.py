"""host-local: addresses from local range sets, reserved in files under dataDir.

Behaves as containernetworking/plugins ipam/host-local 1.1.1 (the store is
shared with it, see store.py), plus GC and STATUS from spec 1.1.0. Where it
differs: stricter config checks (multipy.ipam.ranges), errors carrying spec
codes and the JSON path, duplicate ADDs refused with a requested IP too,
reservations that never appear empty, and DEL/GC needing only the store's
location from the conf.
"""

from __future__ import annotations

import os

from multipy.cni.errors import INTERNAL, IO_FAILURE, STATUS_UNAVAILABLE, CNIError
from multipy.cni.gc import valid_attachments
from multipy.cni.result import DNS, IPConfig, Result
from multipy.cni.version import SUPPORTED_VERSIONS
from multipy.failpoints import failpoint
from multipy.ipam.resolv import read_resolv_conf
from multipy.plugins.contract import Invocation, Services

from . import config
from .reserve import reserve_all
from .store import DiskStore


class HostLocal:
    supported_versions = SUPPORTED_VERSIONS

    def __init__(self, services: Services) -> None:
        pass  # files only: no clients to take

    def add(self, inv: Invocation, conf: dict) -> Result:
        cfg = config.load(conf, inv.arg("IP"))
        dns = read_resolv_conf(cfg.resolv_conf) if cfg.resolv_conf else DNS()
        store = DiskStore(cfg.location.path)
        with store.locked():
            allocations = reserve_all(store, cfg.range_sets, cfg.requested, inv.container_id, inv.ifname)
            failpoint("host_local.add.after_reserve")
        return Result(
            cfg.cni_version,
            ips=[IPConfig(a.address, a.gateway) for a in allocations],
            routes=list(cfg.routes),
            dns=dns,
        )

    def delete(self, inv: Invocation, conf: dict) -> None:
        store = DiskStore(config.location(conf).path)
        if not store.exists():
            return  # nothing was ever reserved here; DEL must not create anything
        with store.locked():
            held = store.holdings()
            mine = [ip for ip, o in held.items() if o is not None and o.is_for(inv.container_id, inv.ifname)]
            if not mine:  # Go's fallback: files written before ifnames were recorded
                mine = [ip for ip, o in held.items() if o is not None and o.is_legacy_for(inv.container_id)]
            failpoint("host_local.del.before_release")
            store.release(mine)

    def check(self, inv: Invocation, conf: dict) -> None:
        cfg = config.load(conf, inv.arg("IP"))
        store = DiskStore(cfg.location.path)
        found = False
        if store.exists():
            with store.locked():
                found = any(
                    o is not None and o.may_be_for(inv.container_id, inv.ifname) for o in store.holdings().values()
                )
        if not found:
            raise CNIError(
                INTERNAL,
                f"host-local: Failed to find address added by container {inv.container_id} "
                f"(no reservation for {inv.container_id} on {inv.ifname} in {store.path})",
            )

    @staticmethod
    def doctor_checks(conf: dict, probe) -> list:
        """`multipy doctor`: leases whose container has no record (plugins/operator.py). Under the store's
        lock no ADD can reserve, so a lease seen here with no record of its container, and no request of
        that container in flight (probe.removable), is provably stale; --fix releases it."""
        from multipy.plugins.operator import Finding

        try:
            store = DiskStore(config.location(conf).path)
        except CNIError as error:
            return [Finding("lease-without-record", str(conf.get("name", "")), f"host-local store unknown: {error.msg}")]
        if not store.exists():
            return []
        findings = []
        with store.locked():
            for ip, owner in sorted(store.holdings().items(), key=lambda item: (item[0].version, item[0])):
                subject = os.path.join(store.path, str(ip))
                if owner is None:
                    findings.append(Finding("unreadable-lease", subject, "cannot be read: the address stays taken"))
                    continue
                if not probe.removable(owner.container_id):
                    continue
                fixed = False
                if probe.fix:
                    store.release([ip])
                    fixed = True
                findings.append(Finding("lease-without-record", subject,
                                        f"held by {owner}, which has no attachment record", True, fixed))  # fmt: skip
        return findings

    def gc(self, inv: Invocation, conf: dict) -> None:
        valid = valid_attachments(conf)
        valid_ids = {cid for cid, _ in valid}
        store = DiskStore(config.location(conf).path)
        if not store.exists():
            return
        with store.locked():
            held = store.holdings()
            # A file from before ifnames were recorded names only the container: keep it while
            # any attachment of that container is valid, as upstream's GC does.
            stale = [
                ip
                for ip, o in held.items()
                if o is not None
                and not ((o.container_id, o.ifname) in valid or (o.ifname is None and o.container_id in valid_ids))
            ]
            store.release(stale)
        unreadable = sorted(str(ip) for ip, o in held.items() if o is None)
        if unreadable:
            raise CNIError(
                IO_FAILURE,
                f"host-local GC released {len(stale)} reservation(s) but could not read "
                f"{', '.join(unreadable)} in {store.path}",
            )

    def status(self, inv: Invocation, conf: dict) -> None:
        cfg = config.load(conf)
        # Ready when the store can be written: the network's directory, or the closest
        # existing parent ADD would create it under.
        probe = cfg.location.path
        while not os.path.lexists(probe):
            probe = os.path.dirname(probe)
        if not (os.path.isdir(probe) and os.access(probe, os.W_OK | os.X_OK)):
            raise CNIError(
                STATUS_UNAVAILABLE,
                f"host-local cannot keep reservations: {probe} is not a writable directory",
            )
