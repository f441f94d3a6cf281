"""Address ranges and range sets, parsed and checked by host-local's rules.

host-local (containernetworking/plugins plugins/ipam/host-local/backend/allocator)
gives one address per *range set*; a set is a list of ranges of one family.
A range is a subnet plus the inclusive span [rangeStart, rangeEnd] handed out
from it, and a gateway that is never handed out:

    gateway     subnet + 1 unless given
    rangeStart  subnet + 1 (the gateway is then skipped by the allocator)
    rangeEnd    the last address, or for IPv4 the one before the broadcast

Stricter than the 1.1.1 binary, so that a bad config fails at once instead of
handing out a broken address: the gateway must be inside the subnet, rangeStart
must not be after rangeEnd, and an IPv4 range may not include the network or
broadcast address. Unknown keys are ignored, so plugins that extend the range
object (kube-ipam's fixedStart/fixedEnd) parse theirs beside `parse_range`.

Errors are CNIError(INVALID_NETWORK_CONFIG) naming the JSON path and value.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from multipy.cni.errors import INVALID_NETWORK_CONFIG, CNIError
from multipy.cni.version import at_least

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def show(value) -> str:
    """A config value as it appears in JSON, for error messages."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def invalid(path: str, value, problem: str, code: int = INVALID_NETWORK_CONFIG) -> CNIError:
    return CNIError(code, f"{path}: {show(value)} {problem}")


def parse_ip(value, path: str, code: int = INVALID_NETWORK_CONFIG) -> IPAddress:
    """A bare address as Go's net.ParseIP reads it; IPv4-mapped IPv6 becomes IPv4 (canonicalizeIP)."""
    # Python would also take an int, a zone ("%eth0") or a prefix; Go takes none of them.
    if not isinstance(value, str) or "%" in value or "/" in value:
        raise invalid(path, value, "is not an IP address", code)
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise invalid(path, value, "is not an IP address", code) from None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def parse_subnet(value, path: str) -> IPNetwork:
    """`addr/prefix` naming a network with room for at least two addresses."""
    if value is None or value == "":
        raise CNIError(INVALID_NETWORK_CONFIG, f'{path}: missing (a subnet such as "10.1.2.0/24")')
    text = value if isinstance(value, str) else ""
    addr, _, prefix = text.partition("/")
    # Go's ParseCIDR wants addr/prefixlen: no netmask form, no zone, no bare address.
    if not (addr and prefix.isascii() and prefix.isdigit()) or "%" in addr:
        raise invalid(path, value, 'is not a subnet in CIDR notation (such as "10.1.2.0/24")')
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise invalid(path, value, 'is not a subnet in CIDR notation (such as "10.1.2.0/24")') from None
    net = iface.network
    if net.prefixlen > net.max_prefixlen - 2:
        raise invalid(path, value, f"is too small to allocate from: use a /{net.max_prefixlen - 2} or shorter prefix")
    if iface.ip != net.network_address:
        raise invalid(
            path,
            value,
            f"has host bits set: for a subnet mask of length {net.prefixlen} "
            f"the network address is {net.network_address}",
        )
    return net


@dataclass(frozen=True)
class Range:
    """One span of a subnet to allocate from; `start` and `end` are inclusive."""

    subnet: IPNetwork
    start: IPAddress
    end: IPAddress
    gateway: IPAddress

    @property
    def family(self) -> int:
        return self.subnet.version

    def in_subnet(self, ip: IPAddress) -> bool:
        return ip.version == self.family and ip in self.subnet

    def contains(self, ip: IPAddress) -> bool:
        """Within [start, end]: the addresses this range may hand out (its gateway aside)."""
        return ip.version == self.family and self.start <= ip <= self.end

    def overlaps(self, other: Range) -> bool:
        return self.family == other.family and self.start <= other.end and other.start <= self.end

    def interface(self, ip: IPAddress) -> IPInterface:
        """`ip` with this range's prefix length, as a result's `address`."""
        return ipaddress.ip_interface((ip, self.subnet.prefixlen))

    def __str__(self) -> str:
        # Go's Range.String(), which operators see in host-local's errors.
        return f"{self.start}-{self.end}"


def _optional_ip(obj: dict, key: str, path: str) -> IPAddress | None:
    value = obj.get(key)
    # Go decodes "" into a nil net.IP: the same as leaving the key out.
    if value is None or value == "":
        return None
    return parse_ip(value, f"{path}.{key}")


def _bound(obj: dict, key: str, path: str, subnet: IPNetwork) -> IPAddress | None:
    ip = _optional_ip(obj, key, path)
    if ip is None:
        return None
    where = f"{path}.{key}"
    if ip.version != subnet.version or ip not in subnet:
        raise invalid(where, obj[key], f"is not in subnet {subnet}")
    if subnet.version == 4 and ip == subnet.network_address:
        raise invalid(where, obj[key], f"is the network address of {subnet}: it cannot be handed out")
    if subnet.version == 4 and ip == subnet.broadcast_address:
        raise invalid(where, obj[key], f"is the broadcast address of {subnet}: it cannot be handed out")
    return ip


def last_address(subnet: IPNetwork) -> IPAddress:
    """The default rangeEnd: the last address, or for IPv4 the one before the broadcast."""
    last = subnet.broadcast_address
    return last - 1 if subnet.version == 4 else last


def parse_range(obj, path: str) -> Range:
    """One range object `{subnet, rangeStart, rangeEnd, gateway}` found at JSON `path`."""
    if not isinstance(obj, dict):
        raise invalid(path, obj, 'is not a range: expected an object such as {"subnet": "10.1.2.0/24"}')
    subnet = parse_subnet(obj.get("subnet"), f"{path}.subnet")
    start = _bound(obj, "rangeStart", path, subnet)
    end = _bound(obj, "rangeEnd", path, subnet)
    if start is not None and end is not None and start > end:
        raise invalid(f"{path}.rangeStart", obj["rangeStart"], f"is after rangeEnd {end}")
    if start is None:
        start = subnet.network_address + 1
        if end is not None and end < start:
            raise invalid(f"{path}.rangeEnd", obj["rangeEnd"], f"is before the default rangeStart {start}")
    if end is None:
        end = last_address(subnet)  # never before start: an IPv4 start is not the broadcast address
    gateway = _optional_ip(obj, "gateway", path)
    if gateway is None:
        gateway = subnet.network_address + 1
    elif gateway.version != subnet.version or gateway not in subnet:
        raise invalid(f"{path}.gateway", obj["gateway"], f"is not in subnet {subnet}")
    return Range(subnet, start, end, gateway)


@dataclass(frozen=True)
class RangeSet:
    """Ranges of one family from which one address is allocated; `source` is its JSON path."""

    ranges: tuple[Range, ...]
    source: str = field(default="", compare=False)

    @property
    def family(self) -> int:
        return self.ranges[0].family

    def range_for(self, ip: IPAddress) -> Range | None:
        return next((r for r in self.ranges if r.contains(ip)), None)

    def contains(self, ip: IPAddress) -> bool:
        return self.range_for(ip) is not None

    def overlaps(self, other: RangeSet) -> bool:
        return any(a.overlaps(b) for a in self.ranges for b in other.ranges)

    def __iter__(self) -> Iterator[Range]:
        return iter(self.ranges)

    def __len__(self) -> int:
        return len(self.ranges)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.ranges)


def parse_range_set(value, path: str) -> RangeSet:
    """A JSON list of range objects: non-empty, one family, no two ranges overlapping."""
    if not isinstance(value, list):
        raise invalid(path, value, 'is not a range set: expected a list of ranges such as [{"subnet": "10.1.2.0/24"}]')
    if not value:
        raise CNIError(INVALID_NETWORK_CONFIG, f"{path}: empty range set")
    ranges = tuple(parse_range(obj, f"{path}[{n}]") for n, obj in enumerate(value))
    for n, r in enumerate(ranges[1:], 1):
        if r.family != ranges[0].family:
            raise CNIError(
                INVALID_NETWORK_CONFIG,
                f"{path}[{n}]: mixed address families: {r.subnet} is IPv{r.family} "
                f"but {path}[0] ({ranges[0].subnet}) is IPv{ranges[0].family}",
            )
    clash = _first_overlap(ranges)
    if clash:
        i, j = clash
        raise CNIError(
            INVALID_NETWORK_CONFIG,
            f"{path}[{j}]: subnets {ranges[i]} and {ranges[j]} overlap ({path}[{i}] and {path}[{j}])",
        )
    return RangeSet(ranges, path)


def _first_overlap(items) -> tuple[int, int] | None:
    """The first pair (i, j), i < j, of `items` (Ranges or RangeSets) that overlap, or None."""
    for i, a in enumerate(items):
        for j in range(i + 1, len(items)):
            if a.overlaps(items[j]):
                return i, j
    return None


def _list(value, path: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid(path, value, "is not a list of range sets")
    return value


_LEGACY_KEYS = ("rangeStart", "rangeEnd", "gateway")


def range_sets(ipam: dict, runtime_config: dict | None, cni_version: str) -> list[RangeSet]:
    """Every range set of a host-local style `ipam`, in allocation order.

    As LoadIPAMConfig: runtimeConfig.ipRanges first, then the legacy top-level
    range (ipam.subnet and friends), then ipam.ranges. Sets must not overlap,
    and before 0.3.0 a result holds one address per family only.
    """
    sets: list[RangeSet] = []
    ip_ranges = (runtime_config or {}).get("ipRanges")
    for n, value in enumerate(_list(ip_ranges, "runtimeConfig.ipRanges")):
        sets.append(parse_range_set(value, f"runtimeConfig.ipRanges[{n}]"))
    if ipam.get("subnet") not in (None, ""):
        sets.append(RangeSet((parse_range(ipam, "ipam"),), "ipam.subnet"))
    else:
        # Go silently drops a top-level rangeStart/rangeEnd/gateway without a subnet.
        stray = [k for k in _LEGACY_KEYS if ipam.get(k) not in (None, "")]
        if stray:
            raise CNIError(
                INVALID_NETWORK_CONFIG,
                f"ipam.{stray[0]} is set but ipam.subnet is missing: put the range in ipam.ranges or give ipam.subnet",
            )
    for n, value in enumerate(_list(ipam.get("ranges"), "ipam.ranges")):
        sets.append(parse_range_set(value, f"ipam.ranges[{n}]"))
    if not sets:
        raise CNIError(INVALID_NETWORK_CONFIG, "no IP ranges specified: set ipam.ranges (or ipam.subnet)")
    for family in (4, 6):
        same = [s.source for s in sets if s.family == family]
        if len(same) > 1 and not at_least(cni_version or "0.1.0", "0.3.0"):
            raise CNIError(
                INVALID_NETWORK_CONFIG,
                f"CNI version {cni_version or '0.1.0'} does not support more than 1 address per family: "
                f"{', '.join(same)} are all IPv{family} (use cniVersion 0.3.0 or later)",
            )
    clash = _first_overlap(sets)
    if clash:
        i, j = clash
        raise CNIError(
            INVALID_NETWORK_CONFIG,
            f"range set {i} overlaps with {j}: {sets[j].source} ({sets[j]}) overlaps {sets[i].source} ({sets[i]})",
        )
    return sets
