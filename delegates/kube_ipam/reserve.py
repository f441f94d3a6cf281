"""Reserving and releasing addresses: read the store, decide (rules.py), write one transaction,
and on a lost race read again.

An attachment (container ID + ifname) holds its addresses through one owner
index, so a repeated ADD returns what it holds and DEL finds them directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from multipy.clients.etcd import EtcdUnavailable
from multipy.cni.errors import TRY_AGAIN_LATER, CNIError
from multipy.failpoints import failpoint
from multipy.ipam.ranges import RangeSet

from .annotations import Wanted
from .config import KubeIpamConfig
from .records import DYNAMIC, FIXED, Lease, Owner
from .rules import Claimant, block_capacity, decide_fixed, release_plan, search_pieces, start_point
from .store import Store

# A transaction only fails when another writer changed the same keys in between; a few
# rounds settle any realistic contention on one address or one attachment.
ATTEMPTS = 8
# Full-block hints written within a reserving transaction (etcd allows 128 operations in one).
RIDING_HINTS = 60


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
        failpoint("kube_ipam.reserve.before_write")
        written = write()
        failpoint("kube_ipam.reserve.after_write")
        return written
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


class _Search:
    """One dynamic search over rangeStart..rangeEnd: what was read, what was found full, the stale hints.

    Addresses are integers here. A block is `ip >> 8` (256 addresses), a region `ip >> 12` (16 blocks)."""

    def __init__(self, store: Store, cfg: KubeIpamConfig) -> None:
        rng = cfg.range
        self.store, self.network = store, cfg.network
        self.make = type(rng.start)
        self.first, self.last, self.gateway = int(rng.start), int(rng.end), int(rng.gateway)
        self.span = str(rng)
        self.full_regions = store.full_regions(self.span)  # one read of at most 16 keys per /16
        self.hinted: dict[int, set[int]] = {}  # region -> its blocks hinted full (read per region searched)
        self.taken: dict[int, set[int]] = {}  # block -> taken addresses (read)
        self.found_full: set[int] = set()  # blocks read full and not hinted: hinted with the next write
        self.skipped = False  # a hint kept a block or region from being read
        self.stale: set[int] = set()  # blocks hinted full (or in a region hinted full), yet with a free address
        self.legacy_read: set[int] = set()
        self.offset = 0

    def capacity(self, block: int) -> tuple[int, int, int]:
        return block_capacity(block << 8, self.first, self.last, self.gateway)

    def full_with(self, block: int, extra: int | None = None) -> bool:
        """Is every address the block can hand out taken (counting `extra` as taken too)?"""
        low, high, capacity = self.capacity(block)
        taken = self.taken[block]
        count = sum(1 for t in taken if low <= t <= high and t != self.gateway)
        return count + (extra is not None and extra not in taken) >= capacity

    def _note(self, block: int) -> None:
        if self.full_with(block) and block not in self.hinted.get(block >> 4, ()):
            self.found_full.add(block)

    def _free_in(self, block: int, low: int, high: int) -> Iterator[int]:
        """From the start's offset within the block on, wrapping: concurrent ADDs sent to the same
        block (its neighbours full) do not all race for its first free address."""
        taken = self.taken[block]  # grows while iterating: addresses lost to other ADDs
        pivot = min(max((block << 8) | self.offset, low), high)
        for ip in (*range(pivot, high + 1), *range(low, pivot)):
            if ip != self.gateway and ip not in taken:
                yield ip

    def free(self, start: int) -> Iterator[int]:
        """Candidate free addresses in search order, skipping what the hints say is full."""
        self.offset = start & 0xFF
        for low, high in search_pieces(self.first, self.last, start):
            block, region = low >> 8, low >> 12
            if block not in self.taken:
                if region in self.full_regions:
                    self.skipped = True
                    continue
                hinted = self.hinted.get(region)
                if hinted is None:
                    hinted = self.hinted[region] = self.store.full_blocks_of(low, self.span)
                if block in hinted:
                    self.skipped = True
                    continue
                self.taken[block] = self.store.taken_near(self.make(low))
                self._note(block)
            yield from self._free_in(block, low, high)
        if not self.skipped:
            return
        # Nothing free where the hints let us look: read the whole pool once before calling it exhausted.
        by_block: dict[int, set[int]] = {}
        for ip in self.store.taken_all():
            by_block.setdefault(ip >> 8, set()).add(ip)
        for low, high in search_pieces(self.first, self.last, start):
            block = low >> 8
            if block in self.taken:  # read above: every candidate of it was tried
                continue
            self.taken.setdefault(block, by_block.get(block, set()))
            for ip in self._free_in(block, low, high):
                self.stale.add(block)
                yield ip

    def _region_full(self, region: int, full_blocks: set[int]) -> bool:
        """Are all blocks of the region that the range reaches hinted or now full?"""
        hinted = self.hinted.get(region)
        if hinted is None:
            return False
        for block in range(region << 4, (region << 4) + 16):
            if self.capacity(block)[2] and block not in hinted and block not in full_blocks:
                return False
        return True

    def hints(self, block: int, ip: int) -> tuple[list[str], list[str]]:
        """What a reservation of `ip` writes along: hints of full blocks and regions, removal of stale ones."""
        keys = self.store.keys
        full = set(sorted(self.found_full)[:RIDING_HINTS])  # the rest: note_full() after the reservation
        after = self.full_with(block, ip)
        if after and block not in self.hinted.get(block >> 4, ()):
            full.add(block)
        regions = {b >> 4 for b in full if b >> 4 not in self.full_regions and self._region_full(b >> 4, full)}
        unhint = []
        if block in self.stale and not after:
            unhint = [keys.block_hint(ip), keys.region_hint(ip)]
        puts = [keys.block_hint(b << 8) for b in sorted(full)] + [keys.region_hint(r << 12) for r in sorted(regions)]
        return puts, unhint

    def unwritten(self, written: int) -> list[str]:
        """Hints of blocks (and their regions) found full that did not ride along with the reservation."""
        keys = self.store.keys
        rest = set(sorted(self.found_full)[written:])
        regions = {b >> 4 for b in rest if b >> 4 not in self.full_regions and self._region_full(b >> 4, self.found_full)}
        return [keys.block_hint(b << 8) for b in sorted(rest)] + [keys.region_hint(r << 12) for r in sorted(regions)]

    def lost(self, block: int, ip: int) -> None:
        """`ip` went to someone else (or kube-ipam's records hold it)."""
        taken = self.taken[block]
        taken.add(ip)
        if block not in self.legacy_read:
            self.legacy_read.add(block)
            taken |= {int(a) for a in self.store.legacy_taken_near(self.network, self.make(ip))}
        self._note(block)


def reserve_dynamic(store: Store, cfg: KubeIpamConfig, me: Claimant) -> list[Lease]:
    """One address of rangeStart..rangeEnd, searched from a spot spread by the attachment's identity
    (or what the attachment already holds).

    The full/ hints (records.py) steer the search: the hinted regions (one read), the hinted blocks
    of the region it lands in (one read), then one block of keys; so an ADD costs four small reads
    whether the range is 1% or 99% full, spread or packed. Each try is one create-if-absent
    transaction, so two ADDs racing for an address cannot both get it: the loser moves on. The
    blocks this ADD finds full, or fills, get their hints in the same transaction.
    """
    mine = held(store, me)
    if mine is not None:
        return mine
    search = _Search(store, cfg)
    for ip in search.free(int(start_point(cfg.range, me.container_id, me.ifname))):
        block = ip >> 8
        lease = me.lease(search.make(ip), DYNAMIC)
        hints, unhint = search.hints(block, ip)

        def write(lease=lease, hints=hints, unhint=unhint) -> bool:
            return store.reserve(me.owner([lease.ip]), [lease], [None], hints, search.span, unhint)

        if _write(store, me, write):
            if len(search.found_full) > RIDING_HINTS:  # a pool filled without hints: index the rest once
                try:
                    store.note_full(search.unwritten(RIDING_HINTS), search.span)
                except EtcdUnavailable:
                    pass
            return [lease]
        # Lost: another ADD took the address, kube-ipam's records hold it, or a concurrent
        # ADD of this very attachment won (then every further try would fail too).
        mine = held(store, me)
        if mine is not None:
            return mine
        search.lost(block, ip)
    try:  # the next ADD skips them; only an index, so a failure to write it changes nothing
        store.note_full(search.unwritten(0), search.span)
    except EtcdUnavailable:
        pass
    size = search.last - search.first + 1 - (search.first <= search.gateway <= search.last)
    range_set = RangeSet((cfg.range,), "ipam.subnet")
    raise CNIError(TRY_AGAIN_LATER, f"no IP addresses available in range set: {range_set} (kube-ipam network "
                                    f"{cfg.network}, pool {cfg.subnet}: all {size} addresses of rangeStart..rangeEnd "
                                    "are reserved; they come back as pods are deleted)")


def release_owner(store: Store, owner: Owner) -> bool:
    failpoint("kube_ipam.release.before_write")
    return store.release(owner, release_plan(owner, [store.lease(ip) for ip in owner.ips]))


def release(store: Store, container_id: str, ifname: str) -> None:
    """DEL: dynamic leases go, name-bound ones lose their container; nothing held is fine."""
    for _ in range(ATTEMPTS):
        owner = store.owner(container_id, ifname)
        if owner is None or release_owner(store, owner):
            return
    raise CNIError(TRY_AGAIN_LATER, f"releasing {container_id} on {ifname}: the reservation changed under "
                                    f"{ATTEMPTS} attempts in a row; try again")
