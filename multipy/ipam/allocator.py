"""Choosing addresses from range sets: pure functions, the store stays with the caller.

The order is host-local's (backend/allocator RangeIter): round robin, starting
right after the set's last reserved address (when it is still in the set,
else at the first range's start), through every range in set order, wrapping
around and ending with the last reserved address itself. Each range's gateway
is skipped. A crash-looping container therefore does not get the same address
again until the whole set has been used.

A caller holds its store's lock, reads which addresses are taken, and walks
`candidates` (or calls `next_free`) until its store accepts one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass

from multipy.cni.errors import INVALID_NETWORK_CONFIG, TRY_AGAIN_LATER, CNIError

from .ranges import IPAddress, IPInterface, Range, RangeSet
from .requests import Requested


@dataclass(frozen=True)
class Allocation:
    """An address of `range`: what goes into a result's ips[]."""

    ip: IPAddress
    range: Range

    @property
    def address(self) -> IPInterface:
        return self.range.interface(self.ip)

    @property
    def gateway(self) -> IPAddress:
        return self.range.gateway


def candidates(range_set: RangeSet, last_reserved: IPAddress | None = None) -> Iterator[Allocation]:
    """Every address of the set that may be handed out, each once, in round-robin order."""
    ranges = range_set.ranges
    index = next((n for n, r in enumerate(ranges) if last_reserved is not None and r.contains(last_reserved)), None)
    if index is None:
        first = (0, ranges[0].start)
    else:
        first = _after(ranges, index, last_reserved)
    index, ip = first
    while True:
        r = ranges[index]
        if ip != r.gateway:
            yield Allocation(ip, r)
        index, ip = _after(ranges, index, ip)
        if (index, ip) == first:
            return


def _after(ranges: Sequence[Range], index: int, ip: IPAddress) -> tuple[int, IPAddress]:
    if ip == ranges[index].end:
        index = (index + 1) % len(ranges)
        return index, ranges[index].start
    return index, ip + 1


def next_free(
    range_set: RangeSet,
    last_reserved: IPAddress | None,
    taken: Collection[IPAddress] | Callable[[IPAddress], bool],
) -> Allocation | None:
    """The first candidate not `taken` (a set of addresses, or a predicate); None when the set is full."""
    is_taken = taken if callable(taken) else taken.__contains__
    return next((c for c in candidates(range_set, last_reserved) if not is_taken(c.ip)), None)


def place_requested(range_set: RangeSet, ip: IPAddress) -> Allocation:
    """`ip` as an allocation of `range_set`; refused outside the set's ranges or on a gateway."""
    r = range_set.range_for(ip)
    if r is None:
        raise CNIError(INVALID_NETWORK_CONFIG, f"requested IP address {ip} is not in range set {range_set}")
    if ip == r.gateway:
        raise CNIError(
            INVALID_NETWORK_CONFIG,
            f"requested ip {ip} is subnet's gateway (the gateway of {r.subnet} cannot be handed out)",
        )
    return Allocation(ip, r)


def match_requests(
    range_sets: Sequence[RangeSet], requests: Sequence[Requested]
) -> tuple[list[Requested | None], list[Requested]]:
    """Which request each set serves (one per set, first asked first), and the requests left over."""
    left = list(requests)
    chosen: list[Requested | None] = []
    for range_set in range_sets:
        pick = next((req for req in left if range_set.contains(req.ip)), None)
        if pick is not None:
            left.remove(pick)
        chosen.append(pick)
    return chosen, left


def unmatched_error(
    range_sets: Sequence[RangeSet], chosen: Sequence[Requested | None], left: Sequence[Requested]
) -> CNIError:
    """host-local's "failed to allocate all requested IPs", saying why for each address."""
    reasons = []
    for req in left:
        holder = next((n for n, s in enumerate(range_sets) if s.contains(req.ip)), None)
        if holder is None:
            why = "is not in any range set (" + "; ".join(str(s) for s in range_sets) + ")"
        else:
            why = f"was not used: range set {holder} already gets {chosen[holder].ip}, and a set gives one address"
        reasons.append(f"{req.ip} from {req.source} {why}")
    return CNIError(
        INVALID_NETWORK_CONFIG,
        f"failed to allocate all requested IPs: {' '.join(str(r.ip) for r in left)}: {'; '.join(reasons)}",
    )


def exhausted_error(range_set: RangeSet) -> CNIError:
    # Addresses come back as containers go, so a retry may well succeed.
    return CNIError(TRY_AGAIN_LATER, f"no IP addresses available in range set: {range_set}")


def unavailable_error(ip: IPAddress, range_set: RangeSet, holder: str = "") -> CNIError:
    held = f" (held by {holder})" if holder else ""
    return CNIError(TRY_AGAIN_LATER, f"requested IP address {ip} is not available in range set {range_set}{held}")
