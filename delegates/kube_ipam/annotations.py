"""The pod annotations a fixed address is asked for with, parsed (kube-ipam lib/cni.go keys).

    kube-ipam.ip:      "10.188.0.218"    an address, address/prefix, or a comma list of them
    kube-ipam.netmask: "255.255.0.0"     optional, a dotted-quad IPv4 netmask
    kube-ipam.gateway: "10.188.0.1"      optional

Stricter than kube-ipam, which panics on a missing netmask and ignores a bad
one: every value is checked and an error names the annotation and its value.
IPv6 is supported (kube-ipam refuses it): an IPv6 address carries its prefix
as address/prefix, since a dotted netmask cannot describe it. Whether the
addresses fit the network is decided in rules.py, not here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from multipy.cni.errors import INVALID_NETWORK_CONFIG, CNIError
from multipy.ipam.ranges import IPAddress, invalid, parse_ip
from multipy.ipam.requests import Requested

IP = "kube-ipam.ip"
NETMASK = "kube-ipam.netmask"
GATEWAY = "kube-ipam.gateway"


@dataclass(frozen=True)
class Wanted:
    """One address a pod asks for; `source` names where. `prefixlen`, when it said one, came from `prefix_source`."""

    ip: IPAddress
    source: str
    prefixlen: int | None = None
    prefix_source: str = ""


@dataclass(frozen=True)
class FixedRequest:
    wanted: tuple[Wanted, ...]
    gateway: IPAddress | None = None
    gateway_source: str = ""


def _where(key: str) -> str:
    return f"annotation {key}"


def _netmask(value) -> int:
    """A dotted-quad netmask's prefix length; hostmasks ("0.0.255.255") and holes are refused."""
    path = _where(NETMASK)
    if not isinstance(value, str) or value.count(".") != 3:
        raise invalid(path, value, 'is not a dotted-quad netmask (such as "255.255.0.0")')
    try:
        mask = int(ipaddress.IPv4Address(value.strip()))
    except ValueError:
        raise invalid(path, value, 'is not a dotted-quad netmask (such as "255.255.0.0")') from None
    ones = 32 - (~mask & 0xFFFFFFFF).bit_length()
    if mask != (0xFFFFFFFF << (32 - ones)) & 0xFFFFFFFF:
        raise invalid(path, value, "is not a netmask: its one bits must be contiguous from the left")
    return ones


def _address(item: str, value: str) -> Wanted:
    path = _where(IP)
    item = item.strip()
    addr, slash, prefix = item.partition("/")
    ip = parse_ip(addr.strip(), path) if addr.strip() else None
    if ip is None:
        raise invalid(path, value, "has an empty item (expected addresses such as \"10.188.0.218\", comma-separated)")
    prefixlen = None
    if slash:
        if not (prefix.isascii() and prefix.isdigit() and int(prefix) <= ip.max_prefixlen):
            raise invalid(path, value, f"has {item!r}, which is not an address/prefix")
        prefixlen = int(prefix)
    return Wanted(ip, path, prefixlen, f"{path} {item!r}" if slash else "")


def parse(annotations: dict | None) -> FixedRequest | None:
    """The fixed request in a pod's annotations, or None when it asks for none (no kube-ipam.ip)."""
    if not annotations:
        return None
    if not isinstance(annotations, dict):
        raise invalid("pod annotations", annotations, "are not an object of strings")
    value = annotations.get(IP)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None  # a netmask or gateway alone asks for nothing: kube-ipam ignores them too
    if not isinstance(value, str):
        raise invalid(_where(IP), value, "is not a string")
    wanted: list[Wanted] = []
    for item in value.split(","):
        w = _address(item, value)
        if any(o.ip == w.ip for o in wanted):
            raise invalid(_where(IP), value, f"names {w.ip} twice")
        wanted.append(w)
    mask = annotations.get(NETMASK)
    if mask not in (None, ""):
        prefixlen = _netmask(mask)
        resolved = []
        for w in wanted:
            if w.ip.version != 4:
                raise invalid(_where(NETMASK), mask, f"is an IPv4 netmask but {w.ip} is IPv6: give {IP} as address/prefix")
            if w.prefixlen is not None and w.prefixlen != prefixlen:
                raise CNIError(
                    INVALID_NETWORK_CONFIG,
                    f"{_where(NETMASK)}: {mask!r} (/{prefixlen}) contradicts {_where(IP)} {w.ip}/{w.prefixlen}",
                )
            resolved.append(Wanted(w.ip, w.source, prefixlen, f"{_where(NETMASK)} {mask!r}"))
        wanted = resolved
    gateway = annotations.get(GATEWAY)
    gw = None if gateway in (None, "") else parse_ip(gateway.strip() if isinstance(gateway, str) else gateway,
                                                     _where(GATEWAY))
    return FixedRequest(tuple(wanted), gw, _where(GATEWAY) if gw is not None else "")


def from_requested(requested: list[Requested]) -> FixedRequest | None:
    """The runtime's own requests (CNI_ARGS IP=, args.cni.ips, runtimeConfig.ips) as a fixed request."""
    if not requested:
        return None
    return FixedRequest(tuple(Wanted(r.ip, r.source) for r in requested))
