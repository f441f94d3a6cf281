"""What kube-ipam keeps in etcd: the key layout and the two record types.

Under PREFIX, one pool per subnet (two networks on one subnet share it, so
they cannot hand out the same address):

    /multipy/ipam/pools/<pool>/ips/<ip>                 one Lease per address, fixed or dynamic
    /multipy/ipam/pools/<pool>/owners/<cid>/<ifname>    one Owner per attachment: which addresses it holds
    /multipy/ipam/pools/<pool>/full/b/<block>            a hint: every address of the 256-address block in
                                                         rangeStart-rangeEnd ({"range": ...}) was taken when written
    /multipy/ipam/pools/<pool>/full/r/<region>           the same for a region of 16 blocks (4,096 addresses)

`<pool>` is the subnet with '-' for '/' (`10.188.0.0-16`). `<ip>` is the
dotted quad, or for IPv6 the exploded form: either way the addresses of one
256-address block share a key prefix (`10.188.1.`), so the allocator reads a
block of leases with one prefix read instead of one read per address.

`<block>` and `<region>` are the address shifted right by 8 and 12 bits, in fixed-width hex (6 and
5 digits for IPv4), so the block hints of a region share its key prefix.

The `full/` hints are an index for the dynamic search, never a reservation: an ADD that finds a
block full (or takes its last free address) writes the block's hint, and the region's once all
its blocks are hinted; a DEL that frees an address drops both in its own transaction. A search
reads the region hints (at most 16 keys for a /16), then the block hints of the region it
searches (at most 16), then one block: four small reads whether the pool is 1% or 99% full,
spread or packed. Before it calls the range exhausted it reads the whole pool once, as a hint
can be stale after a race: a stale hint costs time, never an address.

A dynamic lease lives as long as its attachment. A fixed lease asked for by a
pod is bound to the pod's namespace/name: DEL clears its container fields and
keeps it, so the pod recreated under the same name gets the address back.

kube-ipam's own layout, `/etcd-cni/networks/<network>/used/<ip>` (value: the
container ID), is only read: an address recorded there is treated as taken,
inside the same transaction that reserves an address here.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from dataclasses import dataclass, field, replace

from multipy.ipam.ranges import IPAddress, IPNetwork

PREFIX = "/multipy/ipam/"
POOLS = f"{PREFIX}pools/"
LEGACY_PREFIX = "/etcd-cni/networks/"

FIXED = "fixed"
DYNAMIC = "dynamic"


def pool_id(subnet: IPNetwork) -> str:
    return f"{subnet.network_address}-{subnet.prefixlen}"


def subnet_of(pool: str) -> IPNetwork | None:
    """The subnet a pool id names, or None for a key that is not one of ours."""
    addr, _, prefix = pool.rpartition("-")
    try:
        return ipaddress.ip_network(f"{addr}/{prefix}")
    except ValueError:
        return None


def ip_text(ip: IPAddress) -> str:
    return ip.exploded if ip.version == 6 else str(ip)


def block_text(ip: IPAddress) -> str:
    """The key prefix shared by the 256-address block of `ip`."""
    if ip.version == 6:
        return ip.exploded[:-2]
    return str(ip).rpartition(".")[0] + "."


def parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def ip_int(text: str) -> int | None:
    """parse_ip(text) as an integer, fast for the dotted quads of our keys (a scan of a full pool)."""
    if ":" not in text:
        try:
            return int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
        except OSError:
            return None
    ip = parse_ip(text)
    return None if ip is None else int(ip)


@dataclass(frozen=True)
class Keys:
    """Key names of one pool."""

    subnet: IPNetwork

    @property
    def pool(self) -> str:
        return f"{POOLS}{pool_id(self.subnet)}/"

    @property
    def ips(self) -> str:
        return f"{self.pool}ips/"

    @property
    def owners(self) -> str:
        return f"{self.pool}owners/"

    def ip(self, ip: IPAddress) -> str:
        return f"{self.ips}{ip_text(ip)}"

    def block(self, ip: IPAddress) -> str:
        return f"{self.ips}{block_text(ip)}"

    def owner(self, container_id: str, ifname: str) -> str:
        return f"{self.owners}{container_id}/{ifname}"

    @property
    def full(self) -> str:
        return f"{self.pool}full/"

    @property
    def full_regions(self) -> str:
        return f"{self.full}r/"

    def _digits(self) -> int:
        return 8 if self.subnet.version == 4 else 32  # hex digits of a whole address

    def block_hint(self, ip: int) -> str:
        """The hint key of the 256-address block of `ip` (an integer)."""
        return f"{self.full}b/{ip >> 8:0{self._digits() - 2}x}"

    def region_hint(self, ip: int) -> str:
        """The hint key of the 16-block region of `ip`."""
        return f"{self.full_regions}{ip >> 12:0{self._digits() - 3}x}"

    def region_blocks(self, ip: int) -> str:
        """The key prefix of the block hints of the region of `ip`."""
        return f"{self.full}b/{ip >> 12:0{self._digits() - 3}x}"


def full_hint_value(span: str) -> str:
    """A full/ hint's value: the range ("start-end") whose addresses of the block were all taken."""
    return json.dumps({"range": span}, separators=(",", ":"))


def legacy_key(network: str, ip: IPAddress) -> str:
    return f"{LEGACY_PREFIX}{network}/used/{ip}"


def legacy_used(network: str) -> str:
    return f"{LEGACY_PREFIX}{network}/used/"


@dataclass(frozen=True)
class Lease:
    """One reserved address. `revision` is etcd's mod_revision when read (0: not stored)."""

    ip: IPAddress
    network: str
    kind: str
    pod: str = ""  # namespace/name; a fixed lease with a pod outlives its containers
    pod_uid: str = ""
    container_id: str = ""
    ifname: str = ""
    revision: int = field(default=0, compare=False)

    @property
    def name_bound(self) -> bool:
        return self.kind == FIXED and bool(self.pod)

    def held_by(self, container_id: str, ifname: str) -> bool:
        return self.container_id == container_id and self.ifname == ifname

    def unbound(self) -> Lease:
        """The name-bound reservation left when its container goes."""
        return replace(self, container_id="", ifname="")

    def to_json(self) -> str:
        return json.dumps(
            {"network": self.network, "kind": self.kind, "pod": self.pod, "podUID": self.pod_uid,
             "containerID": self.container_id, "ifname": self.ifname},
            separators=(",", ":"),
        )  # fmt: skip

    @classmethod
    def from_json(cls, ip: IPAddress, text: str, revision: int = 0) -> Lease:
        """Lenient: a record someone edited by hand still reads (as `kind` "unknown" if need be)."""
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            return cls(ip, "", "unknown", revision=revision)

        def text_of(key: str) -> str:
            value = doc.get(key)
            return value if isinstance(value, str) else ""

        kind = text_of("kind") if text_of("kind") in (FIXED, DYNAMIC) else "unknown"
        return cls(ip, text_of("network"), kind, text_of("pod"), text_of("podUID"),
                   text_of("containerID"), text_of("ifname"), revision)  # fmt: skip


@dataclass(frozen=True)
class Owner:
    """The index of one attachment's addresses, so DEL finds them without a scan."""

    container_id: str
    ifname: str
    network: str
    ips: tuple[IPAddress, ...]
    pod: str = ""
    revision: int = field(default=0, compare=False)

    def to_json(self) -> str:
        return json.dumps(
            {"network": self.network, "ips": [str(ip) for ip in self.ips], "pod": self.pod}, separators=(",", ":")
        )

    @classmethod
    def from_json(cls, container_id: str, ifname: str, text: str, revision: int = 0) -> Owner:
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        doc = doc if isinstance(doc, dict) else {}
        ips = doc.get("ips") if isinstance(doc.get("ips"), list) else []
        parsed = tuple(ip for ip in (parse_ip(v) if isinstance(v, str) else None for v in ips) if ip is not None)
        network = doc.get("network") if isinstance(doc.get("network"), str) else ""
        pod = doc.get("pod") if isinstance(doc.get("pod"), str) else ""
        return cls(container_id, ifname, network, parsed, pod, revision)
