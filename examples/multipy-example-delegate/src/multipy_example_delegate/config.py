"""The keys `example-dummy` reads from its conf, checked before anything touches the kernel.

A bad value is a CNIError with the spec's code 7 (invalid network config) whose message names
the key and the value, so an operator can fix the conf without reading code.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

from multipy.cni.errors import INVALID_NETWORK_CONFIG, CNIError
from multipy.cni.result import Result

EXAMPLE = '"192.0.2.10/24"'


@dataclass(frozen=True)
class DummyConf:
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface


def _invalid(key: str, problem: str) -> CNIError:
    return CNIError(INVALID_NETWORK_CONFIG, f"example-dummy: {key}: {problem}")


def load(conf: dict) -> DummyConf:
    value = conf.get("address")
    if value is None:
        raise _invalid("address", f"missing (an address with its prefix length, such as {EXAMPLE})")
    # ip_interface() would also take a bare address (as a /32) or an integer: the prefix must be said.
    if not isinstance(value, str) or "/" not in value:
        raise _invalid("address", f"{json.dumps(value)} is not an address with a prefix length, such as {EXAMPLE}")
    try:
        address = ipaddress.ip_interface(value.strip())
    except ValueError:
        raise _invalid(
            "address", f"{json.dumps(value)} is not an address with a prefix length, such as {EXAMPLE}"
        ) from None
    return DummyConf(address)


def prev_result(conf: dict) -> Result:
    """What ADD returned, which CHECK compares the kernel against (multipy always sends it to CHECK)."""
    value = conf.get("prevResult")
    if not isinstance(value, dict):
        raise _invalid("prevResult", "missing: CHECK compares the kernel with the result of ADD")
    return Result.from_json(value)
