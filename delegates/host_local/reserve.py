"""ADD's transaction: one address per range set, all or nothing, under the store's lock."""

from __future__ import annotations

from multipy.cni.errors import INTERNAL, CNIError
from multipy.ipam.allocator import (
    Allocation,
    candidates,
    exhausted_error,
    match_requests,
    place_requested,
    unavailable_error,
    unmatched_error,
)
from multipy.ipam.ranges import RangeSet
from multipy.ipam.requests import Requested

from .store import DiskStore, Owner


def reserve_all(
    store: DiskStore, range_sets: list[RangeSet], requested: list[Requested], container_id: str, ifname: str
) -> list[Allocation]:
    """Reserve for (container_id, ifname) in every set; on any failure nothing stays reserved."""
    chosen, left = match_requests(range_sets, requested)
    if left:  # before touching the store: Go reserves first and releases afterwards
        raise unmatched_error(range_sets, chosen, left)
    held = store.holdings()
    owner = Owner(container_id, ifname)
    done: list[Allocation] = []
    try:
        for index, (range_set, request) in enumerate(zip(range_sets, chosen, strict=True)):
            try:
                done.append(_reserve_one(store, held, index, range_set, request, owner))
            except CNIError as err:
                where = f"failed to allocate for range {index} ({range_set.source})"
                raise CNIError(err.code, f"{where}: {err.msg}", err.details) from None
            held[done[-1].ip] = owner
    except BaseException as exc:
        try:
            store.release(a.ip for a in done)
        except CNIError as undo:  # report the cause; say what may still be held
            if isinstance(exc, CNIError):
                exc.details = "; ".join(filter(None, [exc.details, f"rollback incomplete: {undo.msg}"]))
        raise
    return done


def _reserve_one(
    store: DiskStore,
    held: dict,
    index: int,
    range_set: RangeSet,
    request: Requested | None,
    owner: Owner,
) -> Allocation:
    mine = sorted(
        ip
        for ip, o in held.items()
        if o is not None and o.may_be_for(owner.container_id, owner.ifname or "") and range_set.contains(ip)
    )
    if mine:
        # The runtime sent ADD twice without a DEL between (SPEC: never). Go checks this only
        # without a requested IP and reports a plain error, 999; so do we, for either path.
        raise CNIError(
            INTERNAL,
            f"{mine[0]} has been allocated to {owner.container_id}, duplicate allocation is not allowed "
            f"({owner.container_id} on {owner.ifname} already holds it: DEL before adding again)",
        )
    if request is not None:
        allocation = place_requested(range_set, request.ip)
        if allocation.ip in held or not store.reserve(allocation.ip, owner, index):
            holder = held.get(allocation.ip)
            raise unavailable_error(allocation.ip, range_set, str(holder) if holder else "")
        return allocation
    for candidate in candidates(range_set, store.last_reserved(index)):
        if candidate.ip not in held and store.reserve(candidate.ip, owner, index):
            return candidate
    raise exhausted_error(range_set)
