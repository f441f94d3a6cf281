"""Specific addresses a runtime asks for, from the three places CNI puts them.

As host-local's LoadIPAMConfig, the requests are the union, in this order:
CNI_ARGS `IP=` (a comma list here; Go 1.1.1 takes one address), the conf's
`args.cni.ips`, and `runtimeConfig.ips` (the `ips` capability). Each item is
an address or an address/prefix whose prefix is ignored, as Go's ip.IP reads
it. A repeated address counts once.
"""

from __future__ import annotations

from dataclasses import dataclass

from multipy.cni.errors import INVALID_ENVIRONMENT, INVALID_NETWORK_CONFIG

from .ranges import IPAddress, invalid, parse_ip


@dataclass(frozen=True)
class Requested:
    """One requested address and where it came from (`source`, for error messages)."""

    ip: IPAddress
    source: str


def parse_requested(value, path: str, code: int = INVALID_NETWORK_CONFIG) -> IPAddress:
    """An address, or address/prefix with the prefix dropped."""
    if isinstance(value, str) and "/" in value:
        addr, _, prefix = value.partition("/")
        ip = parse_ip(addr, path, code)
        if not (prefix.isascii() and prefix.isdigit() and int(prefix) <= ip.max_prefixlen):
            raise invalid(path, value, "is not an IP address or address/prefix", code)
        return ip
    return parse_ip(value, path, code)


def _object(conf: dict, key: str, path: str) -> dict:
    value = conf.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(path, value, "is not an object")
    return value


def _ips(holder: dict, path: str) -> list[Requested]:
    values = holder.get("ips")
    if values is None:
        return []
    if not isinstance(values, list):
        raise invalid(path, values, "is not a list of IP addresses")
    return [Requested(parse_requested(v, f"{path}[{n}]"), f"{path}[{n}]") for n, v in enumerate(values)]


def requested_ips(conf: dict, env_ip: str = "") -> list[Requested]:
    """The addresses asked for by CNI_ARGS IP (`env_ip`), args.cni.ips and runtimeConfig.ips."""
    found: list[Requested] = []
    if env_ip:
        for n, item in enumerate(env_ip.split(",")):
            source = f"CNI_ARGS IP item {n}"
            found.append(Requested(parse_requested(item.strip(), source, INVALID_ENVIRONMENT), source))
    args = _object(conf, "args", "args")
    found += _ips(_object(args, "cni", "args.cni"), "args.cni.ips")
    found += _ips(_object(conf, "runtimeConfig", "runtimeConfig"), "runtimeConfig.ips")
    unique: dict[IPAddress, Requested] = {}
    for req in found:
        unique.setdefault(req.ip, req)
    return list(unique.values())
