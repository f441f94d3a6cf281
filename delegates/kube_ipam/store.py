"""kube-ipam's etcd store: reads and the transactions that apply rules.py's decisions.

Every write is one etcd transaction guarded by compares, so no lock is taken and
no read-then-write race exists: a reservation is created only where both our key
and kube-ipam's legacy key are absent (create_revision == 0), and an existing
record is changed only at the mod_revision it was read at. A transaction that
loses a race changes nothing and returns False; the caller reads again.

etcd failures leave as multipy.clients.etcd.EtcdUnavailable.

With MULTIPY_KUBE_IPAM_STATS=<file> in the environment (benchmarks), the store counts its etcd
reads, transactions and lost transactions, and the process appends them to <file> as one JSON
line when it exits. Without it nothing is counted: the hot path pays one dict lookup per Store.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from multipy.clients.etcd import Absent, ModRevisionIs
from multipy.ipam.ranges import IPAddress, IPNetwork

from .records import Keys, Lease, Owner, full_hint_value, ip_int, legacy_key, legacy_used, parse_ip
from .rules import ReleasePlan

STATS_ENV = "MULTIPY_KUBE_IPAM_STATS"
HINTS_PER_TXN = 100  # etcd refuses a transaction of more than 128 operations (--max-txn-ops)
_totals: dict[str, int] = {}


def _write_stats(path: str) -> None:
    import json

    line = json.dumps({"command": os.environ.get("CNI_COMMAND", ""), **_totals}) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())  # one write under PIPE_BUF: lines of concurrent processes never mix
        finally:
            os.close(fd)
    except OSError:
        pass


class _Counted:
    """An etcd client that counts what the store asks of it (MULTIPY_KUBE_IPAM_STATS only)."""

    def __init__(self, etcd, path: str) -> None:
        self._etcd = etcd
        if not _totals:
            import atexit

            _totals.update(reads=0, txns=0, lost=0)
            atexit.register(_write_stats, path)

    def get(self, *args, **kwargs):
        _totals["reads"] += 1
        return self._etcd.get(*args, **kwargs)

    def get_prefix(self, *args, **kwargs):
        _totals["reads"] += 1
        return self._etcd.get_prefix(*args, **kwargs)

    def txn(self, *args, **kwargs):
        _totals["txns"] += 1
        done = self._etcd.txn(*args, **kwargs)
        _totals["lost"] += not done
        return done

    def __getattr__(self, name):
        return getattr(self._etcd, name)


class Store:
    """One pool (subnet) in one etcd."""

    def __init__(self, etcd, subnet: IPNetwork) -> None:
        stats = os.environ.get(STATS_ENV)
        self.etcd = _Counted(etcd, stats) if stats else etcd
        self.keys = Keys(subnet)

    # -- reads

    def lease(self, ip: IPAddress) -> Lease | None:
        kv = self.etcd.get(self.keys.ip(ip))
        return None if kv is None else Lease.from_json(ip, kv.value, kv.mod_revision)

    def owner(self, container_id: str, ifname: str) -> Owner | None:
        kv = self.etcd.get(self.keys.owner(container_id, ifname))
        return None if kv is None else Owner.from_json(container_id, ifname, kv.value, kv.mod_revision)

    def taken_near(self, ip: IPAddress) -> set[int]:
        """The reserved addresses (as integers) of the 256-address block around `ip`: one prefix read, keys only."""
        prefix = self.keys.ips
        return {a for a in (ip_int(kv.key[len(prefix):]) for kv in self.etcd.get_prefix(self.keys.block(ip), True))
                if a is not None}  # fmt: skip

    def full_regions(self, span: str) -> set[int]:
        """The regions (address >> 12) hinted full for the range `span` ("start-end"): one prefix read.
        A hint written for another range of the same pool is not ours to trust."""
        return self._hinted(self.keys.full_regions, span)

    def full_blocks_of(self, ip: int, span: str) -> set[int]:
        """The blocks (address >> 8) of the region of `ip` hinted full for `span`: one prefix read."""
        return self._hinted(f"{self.keys.full}b/", span, self.keys.region_blocks(ip))

    def _hinted(self, base: str, span: str, prefix: str | None = None) -> set[int]:
        value, found = full_hint_value(span), set()
        for kv in self.etcd.get_prefix(prefix or base):
            if kv.value == value:
                try:
                    found.add(int(kv.key[len(base):], 16))
                except ValueError:
                    pass
        return found

    def taken_all(self) -> set[int]:
        """Every reserved address of the pool (as integers): one keys-only read of the whole pool."""
        prefix = self.keys.ips
        return {a for a in (ip_int(kv.key[len(prefix):]) for kv in self.etcd.get_prefix(prefix, True))
                if a is not None}  # fmt: skip

    def legacy_holder(self, network: str, ip: IPAddress) -> str | None:
        """The container kube-ipam's own records give `ip` to ("" if unnamed), or None."""
        kv = self.etcd.get(legacy_key(network, ip))
        return None if kv is None else kv.value.strip()

    def legacy_taken_near(self, network: str, ip: IPAddress) -> set[IPAddress]:
        """kube-ipam's own reservations in the block of `ip` (IPv4 keys share the block's prefix)."""
        if ip.version == 6:  # kube-ipam writes compressed IPv6 text: no common prefix, one read
            return {ip} if self.legacy_holder(network, ip) is not None else set()
        used = legacy_used(network)
        block = str(ip).rpartition(".")[0] + "."
        found = (parse_ip(kv.key[len(used):]) for kv in self.etcd.get_prefix(used + block, True))
        return {a for a in found if a is not None}

    def leases(self) -> list[Lease]:
        """Every lease of the pool (operators and GC; the CNI hot path never scans)."""
        prefix = self.keys.ips
        out = []
        for kv in self.etcd.get_prefix(prefix):
            ip = parse_ip(kv.key[len(prefix):])
            if ip is not None:
                out.append(Lease.from_json(ip, kv.value, kv.mod_revision))
        return out

    def owners(self) -> list[Owner]:
        prefix = self.keys.owners
        out = []
        for kv in self.etcd.get_prefix(prefix):
            container_id, _, ifname = kv.key[len(prefix):].partition("/")
            out.append(Owner.from_json(container_id, ifname, kv.value, kv.mod_revision))
        return out

    # -- writes

    def reserve(
        self, owner: Owner, leases: Sequence[Lease], seen: Sequence[Lease | None],
        hints: Sequence[str] = (), span: str = "", unhint: Sequence[str] = (),
    ) -> bool:  # fmt: skip
        """Writes `leases` and their `owner` index at once, if nothing changed since `seen` was read
        (None: the address was free, in our records and in kube-ipam's) and the attachment
        holds no index yet. Rides along, unguarded: the full/ hint keys `hints` for the range `span`,
        and the removal of the stale hint keys `unhint`."""
        compares = [Absent(self.keys.owner(owner.container_id, owner.ifname))]
        for lease, before in zip(leases, seen, strict=True):
            key = self.keys.ip(lease.ip)
            if before is None:
                compares += [Absent(key), Absent(legacy_key(lease.network, lease.ip))]
            else:
                compares.append(ModRevisionIs(key, before.revision))
        puts = [(self.keys.ip(lease.ip), lease.to_json()) for lease in leases]
        puts.append((self.keys.owner(owner.container_id, owner.ifname), owner.to_json()))
        puts += [(key, full_hint_value(span)) for key in hints]
        return self.etcd.txn(compares, puts=puts, deletes=list(unhint))

    def note_full(self, hints: Sequence[str], span: str) -> None:
        """Writes the full/ hint keys `hints` for the range `span`, unguarded: an index, never a reservation."""
        for i in range(0, len(hints), HINTS_PER_TXN):
            self.etcd.txn([], puts=[(key, full_hint_value(span)) for key in hints[i:i + HINTS_PER_TXN]])

    def _unhints(self, ip: IPAddress) -> list[str]:
        return [self.keys.block_hint(int(ip)), self.keys.region_hint(int(ip))]

    def release(self, owner: Owner, plan: ReleasePlan) -> bool:
        """Applies `plan` and drops the owner index, if neither changed since they were read."""
        owner_key = self.keys.owner(owner.container_id, owner.ifname)
        compares = [ModRevisionIs(owner_key, owner.revision)]
        compares += [ModRevisionIs(self.keys.ip(lease.ip), lease.revision) for lease in plan.touched]
        puts = [(self.keys.ip(lease.ip), lease.unbound().to_json()) for lease in plan.unbind]
        deletes = [self.keys.ip(lease.ip) for lease in plan.delete] + [owner_key]
        # A freed address un-fulls its block and region (deleting an absent hint is a no-op).
        deletes += sorted({key for lease in plan.delete for key in self._unhints(lease.ip)})
        return self.etcd.txn(compares, puts=puts, deletes=deletes)

    def remove(self, lease: Lease) -> bool:
        """Deletes one lease as it was read (the operator's release)."""
        key = self.keys.ip(lease.ip)
        return self.etcd.txn([ModRevisionIs(key, lease.revision)], deletes=[key, *self._unhints(lease.ip)])
