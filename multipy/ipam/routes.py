"""`ipam.routes`: the routes an IPAM plugin returns with its addresses."""

from __future__ import annotations

import ipaddress

from multipy.cni.errors import INVALID_NETWORK_CONFIG, CNIError
from multipy.cni.result import Route

from .ranges import invalid, parse_ip

# Route fields that libcni 1.1 added beside dst and gw (types.Route), all integers.
_INT_FIELDS = ("mtu", "advmss", "priority", "table", "scope")


def _dst(obj: dict, path: str):
    value = obj.get("dst")
    if value is None or value == "":
        raise CNIError(INVALID_NETWORK_CONFIG, f'{path}.dst: missing (a destination such as "0.0.0.0/0")')
    addr, _, prefix = value.partition("/") if isinstance(value, str) else ("", "", "")
    if not (addr and prefix.isascii() and prefix.isdigit()) or "%" in addr:
        raise invalid(f"{path}.dst", value, 'is not a destination in CIDR notation (such as "0.0.0.0/0")')
    try:
        # Host bits are accepted, as by libcni; the kernel masks them anyway.
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise invalid(f"{path}.dst", value, 'is not a destination in CIDR notation (such as "0.0.0.0/0")') from None


def parse_route(obj, path: str) -> Route:
    if not isinstance(obj, dict):
        raise invalid(path, obj, 'is not a route: expected an object such as {"dst": "0.0.0.0/0"}')
    dst = _dst(obj, path)
    gw = obj.get("gw")
    gateway = None if gw is None or gw == "" else parse_ip(gw, f"{path}.gw")
    if gateway is not None and gateway.version != dst.version:
        raise invalid(f"{path}.gw", gw, f"is not of the same family as dst {dst}")
    ints = {}
    for key in _INT_FIELDS:
        value = obj.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise invalid(f"{path}.{key}", value, "is not a non-negative integer")
        ints[key] = value
    return Route(
        dst,
        gateway,
        mtu=ints["mtu"] or 0,
        advmss=ints["advmss"] or 0,
        priority=ints["priority"] or 0,
        table=ints["table"],
        scope=ints["scope"],
    )


def parse_routes(value, path: str) -> list[Route]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid(path, value, "is not a list of routes")
    return [parse_route(obj, f"{path}[{n}]") for n, obj in enumerate(value)]
