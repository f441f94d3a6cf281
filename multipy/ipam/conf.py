"""Reading an IPAM plugin's settings out of its network config: the `ipam` object and its keys.

Errors are CNIError(INVALID_NETWORK_CONFIG) naming the JSON path and value.
"""

from __future__ import annotations

from multipy.cni.errors import INVALID_NETWORK_CONFIG, CNIError
from multipy.ipam.ranges import invalid


def ipam_section(conf: dict, plugin_name: str) -> dict:
    """`conf["ipam"]`, which must be an object."""
    ipam = conf.get("ipam")
    if ipam is None:
        raise CNIError(INVALID_NETWORK_CONFIG, f"IPAM config missing 'ipam' key: {plugin_name} reads its settings from it")
    if not isinstance(ipam, dict):
        raise invalid("ipam", ipam, "is not an object")
    return ipam


def string(obj: dict, key: str, path: str, strip: bool = False) -> str:
    """`obj[key]` as a string, "" when absent or null; `path` names it in errors."""
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise invalid(path, value, "is not a string")
    return value.strip() if strip else value


def runtime_config(conf: dict) -> dict | None:
    """`conf["runtimeConfig"]`, which must be an object if given."""
    value = conf.get("runtimeConfig")
    if value is not None and not isinstance(value, dict):
        raise invalid("runtimeConfig", value, "is not an object")
    return value
