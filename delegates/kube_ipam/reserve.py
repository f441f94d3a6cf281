"""Reserving and releasing addresses: read the store, decide (rules.py), write one transaction,
and on a lost race read again.

An attachment (container ID + ifname) holds its addresses through one owner
index, so a repeated ADD returns what it holds and DEL finds them directly.
"""

from __future__ import annotations

from collections.abc import Callable

from multipy.clients.etcd import EtcdUnavailable
from multipy.cni.errors import TRY_AGAIN_LATER, CNIError
from multipy.ipam.allocator import candidates, exhausted_error
from multipy.ipam.ranges import IPAddress, RangeSet

from .annotations import Wanted
from .config import KubeIpamConfig
from .records import DYNAMIC, FIXED, Lease, Owner
from .rules import Claimant, decide_fixed, release_plan, start_point
from .store import Store

# A transaction only fails when another writer changed the same keys in between; a few
# rounds settle any realistic contention on one address or one attachment.
ATTEMPTS = 8


def holdings(store: Store, container_id: str, ifname: str) -> tuple[Owner | None, list[Lease] | None]:
    """An attachment's index and its leases, if every one of them is still the attachment's (read only)."""
    owner = store.owner(container_id, ifname)
    if owner is None:
        return None, None
    leases = [store.lease(ip) for ip in owner.ips]
    if owner.ips and all(lease is not None and lease.held_by(container_id, ifname) for lease in leases):
        return owner, leases  # type: ignore[return-value]
    return owner, None


def held(store: Store, me: Claimant) -> list[Lease] | None:
    """What this attachment already holds (a repeated ADD), or None.

    An index whose addresses are no longer all this attachment's (an operator released
    one) is dropped, so the ADD starts afresh rather than returning half a reservation.
    """
    owner, leases = holdings(store, me.container_id, me.ifname)
    if owner is not None and leases is None:
        release_owner(store, owner)
    return leases


def _write(store: Store, me: Claimant, write: Callable[[], bool]) -> bool:
    """One reserving transaction. When etcd took the write but the answer was lost, what the
    store says now decides: the attachment's index is there exactly when the write applied."""
    try:
        return write()
    except EtcdUnavailable as error:
        if not error.outcome_unknown:
            raise
        try:
            if store.owner(me.container_id, me.ifname) is not None:
                return True
        except EtcdUnavailable:
            pass
        raise error from None


def reserve_fixed(store: Store, me: Claimant, wanted: list[Wanted]) -> list[Lease]:
    """The `wanted` addresses for `me`, bound to its pod's namespace/name; refused if another pod holds one."""
    ips = [w.ip for w in wanted]
    for _ in range(ATTEMPTS):
        mine = held(store, me)
        if mine is not None:
            return mine
        seen = [store.lease(ip) for ip in ips]
        for w, lease in zip(wanted, seen, strict=True):
            # Raises when another pod holds it; otherwise creating, re-binding this pod's own
            # reservation and re-writing this attachment's are the same guarded write.
            decide_fixed(w.ip, lease, store.legacy_holder(me.network, w.ip) if lease is None else None, me, w.source)
        leases = [me.lease(ip, FIXED) for ip in ips]
        if _write(store, me, lambda leases=leases, seen=seen: store.reserve(me.owner(ips), leases, seen)):
            return leases
    raise CNIError(TRY_AGAIN_LATER, f"fixed address(es) {', '.join(map(str, ips))}: the reservation changed "
                                    f"under {ATTEMPTS} attempts in a row; try again")


def reserve_dynamic(store: Store, cfg: KubeIpamConfig, me: Claimant) -> list[Lease]:
    """One address of rangeStart..rangeEnd, searched from a spot spread by the attachment's identity
    (or what the attachment already holds).

    Addresses are read a 256-address block at a time; each try is one create-if-absent
    transaction, so two ADDs racing for an address cannot both get it: the loser moves on.
    """
    mine = held(store, me)
    if mine is not None:
        return mine
    range_set = RangeSet((cfg.range,), "ipam.subnet")
    blocks: dict[str, set[IPAddress]] = {}
    legacy_read: set[str] = set()
    for candidate in candidates(range_set, start_point(cfg.range, me.container_id, me.ifname)):
        ip = candidate.ip
        block = store.keys.block(ip)
        taken = blocks.get(block)
        if taken is None:
            taken = blocks[block] = store.taken_near(ip)
        if ip in taken:
            continue
        lease = me.lease(ip, DYNAMIC)
        if _write(store, me, lambda lease=lease: store.reserve(me.owner([lease.ip]), [lease], [None])):
            return [lease]
        # Lost: another ADD took the address, kube-ipam's records hold it, or a concurrent
        # ADD of this very attachment won (then every further try would fail too).
        mine = held(store, me)
        if mine is not None:
            return mine
        taken.add(ip)
        if block not in legacy_read:
            legacy_read.add(block)
            taken |= store.legacy_taken_near(me.network, ip)
    raise exhausted_error(range_set)


def release_owner(store: Store, owner: Owner) -> bool:
    return store.release(owner, release_plan(owner, [store.lease(ip) for ip in owner.ips]))


def release(store: Store, container_id: str, ifname: str) -> None:
    """DEL: dynamic leases go, name-bound ones lose their container; nothing held is fine."""
    for _ in range(ATTEMPTS):
        owner = store.owner(container_id, ifname)
        if owner is None or release_owner(store, owner):
            return
    raise CNIError(TRY_AGAIN_LATER, f"releasing {container_id} on {ifname}: the reservation changed under "
                                    f"{ATTEMPTS} attempts in a row; try again")
