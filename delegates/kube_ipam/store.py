"""kube-ipam's etcd store: reads and the transactions that apply rules.py's decisions.

Every write is one etcd transaction guarded by compares, so no lock is taken and
no read-then-write race exists: a reservation is created only where both our key
and kube-ipam's legacy key are absent (create_revision == 0), and an existing
record is changed only at the mod_revision it was read at. A transaction that
loses a race changes nothing and returns False; the caller reads again.

etcd failures leave as multipy.clients.etcd.EtcdUnavailable.
"""

from __future__ import annotations

from collections.abc import Sequence

from multipy.clients.etcd import Absent, ModRevisionIs
from multipy.ipam.ranges import IPAddress, IPNetwork

from .records import Keys, Lease, Owner, legacy_key, legacy_used, parse_ip
from .rules import ReleasePlan


class Store:
    """One pool (subnet) in one etcd."""

    def __init__(self, etcd, subnet: IPNetwork) -> None:
        self.etcd = etcd
        self.keys = Keys(subnet)

    # -- reads

    def lease(self, ip: IPAddress) -> Lease | None:
        kv = self.etcd.get(self.keys.ip(ip))
        return None if kv is None else Lease.from_json(ip, kv.value, kv.mod_revision)

    def owner(self, container_id: str, ifname: str) -> Owner | None:
        kv = self.etcd.get(self.keys.owner(container_id, ifname))
        return None if kv is None else Owner.from_json(container_id, ifname, kv.value, kv.mod_revision)

    def taken_near(self, ip: IPAddress) -> set[IPAddress]:
        """The reserved addresses of the 256-address block around `ip`: one prefix read, keys only."""
        prefix = self.keys.ips
        return {a for a in (parse_ip(kv.key[len(prefix):]) for kv in self.etcd.get_prefix(self.keys.block(ip), True))
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

    def reserve(self, owner: Owner, leases: Sequence[Lease], seen: Sequence[Lease | None]) -> bool:
        """Writes `leases` and their `owner` index at once, if nothing changed since `seen` was read
        (None: the address was free, in our records and in kube-ipam's) and the attachment
        holds no index yet."""
        compares = [Absent(self.keys.owner(owner.container_id, owner.ifname))]
        for lease, before in zip(leases, seen, strict=True):
            key = self.keys.ip(lease.ip)
            if before is None:
                compares += [Absent(key), Absent(legacy_key(lease.network, lease.ip))]
            else:
                compares.append(ModRevisionIs(key, before.revision))
        puts = [(self.keys.ip(lease.ip), lease.to_json()) for lease in leases]
        puts.append((self.keys.owner(owner.container_id, owner.ifname), owner.to_json()))
        return self.etcd.txn(compares, puts=puts)

    def release(self, owner: Owner, plan: ReleasePlan) -> bool:
        """Applies `plan` and drops the owner index, if neither changed since they were read."""
        owner_key = self.keys.owner(owner.container_id, owner.ifname)
        compares = [ModRevisionIs(owner_key, owner.revision)]
        compares += [ModRevisionIs(self.keys.ip(lease.ip), lease.revision) for lease in plan.touched]
        puts = [(self.keys.ip(lease.ip), lease.unbound().to_json()) for lease in plan.unbind]
        deletes = [self.keys.ip(lease.ip) for lease in plan.delete] + [owner_key]
        return self.etcd.txn(compares, puts=puts, deletes=deletes)

    def remove(self, lease: Lease) -> bool:
        """Deletes one lease as it was read (the operator's release)."""
        key = self.keys.ip(lease.ip)
        return self.etcd.txn([ModRevisionIs(key, lease.revision)], deletes=[key])
