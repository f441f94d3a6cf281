"""The macvlan netconf, read and checked before anything touches the kernel.

Keys as containernetworking/plugins main/macvlan reads them: master, mode, mtu,
mac (conf < CNI_ARGS MAC < runtimeConfig.mac), ipam, dns. Every problem is a
CNIError naming the key and the value, so a bad conf never creates a link.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from multipy.cni.errors import INVALID_ENVIRONMENT, INVALID_NETWORK_CONFIG, UNSUPPORTED_FIELD, CNIError
from multipy.cni.result import DNS, Result
from multipy.cni.version import at_least

from .mac import parse_mac

# What a conf is checked against before the plugin runs (the contract's config_schema); the
# checks below remain for the confs that reach the plugin unchecked (a NAD's, CNI_ARGS).
SCHEMA_FILE = os.path.join(os.path.dirname(__file__), "macvlan.schema.json")


def _schema() -> dict:
    with open(SCHEMA_FILE, "rb") as f:
        return json.loads(f.read())


MODES = tuple(_schema()["properties"]["mode"]["enum"])  # one list of modes: the schema's
MIN_MTU = 68  # the kernel's floor for an Ethernet link (ETH_MIN_MTU)


@dataclass(frozen=True)
class MacvlanConf:
    master: str  # "" until resolved: the interface of the host's default route
    mode: str
    mtu: int  # 0: the kernel's choice, i.e. the master's MTU
    mac: str  # "" lets the kernel pick one
    ipam_type: str  # "" means L2 only: the link comes up without addresses
    dns: DNS
    cni_version: str


def _show(value) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _invalid(key: str, value, problem: str, code: int = INVALID_NETWORK_CONFIG) -> CNIError:
    return CNIError(code, f"invalid {key} {_show(value)}: {problem}")


def _string(obj: dict, key: str, where: str = "") -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _invalid(where + key, value, "expected a string")
    return value


def _object(obj: dict, key: str) -> dict:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(key, value, "expected an object")
    return value


def ipam_type(conf: dict) -> str:
    """The IPAM plugin's type, "" for none; all DEL, GC and STATUS need to know."""
    return _string(_object(conf, "ipam"), "type", "ipam.")


def _mtu(conf: dict) -> int:
    value = conf.get("mtu")
    if value is None:
        return 0
    # bool is an int in Python, not in JSON.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid("mtu", value, "expected an integer")
    if value < 0 or 0 < value < MIN_MTU:
        raise _invalid("mtu", value, f"must be 0 (the master's MTU) or in [{MIN_MTU}, the master's MTU]")
    return value


def _mode(conf: dict) -> str:
    mode = _string(conf, "mode") or "bridge"
    if mode not in MODES:
        raise CNIError(
            INVALID_NETWORK_CONFIG, f"unknown macvlan mode {_show(mode)}: mode must be one of {', '.join(MODES)}"
        )
    return mode


def _mac(conf: dict, cni_args_mac: str) -> str:
    # Later sources win, as in the reference's loadConf.
    chosen, source, code = _string(conf, "mac"), "mac", INVALID_NETWORK_CONFIG
    if cni_args_mac:
        chosen, source, code = cni_args_mac, "CNI_ARGS MAC", INVALID_ENVIRONMENT
    runtime_mac = _string(_object(conf, "runtimeConfig"), "mac", "runtimeConfig.")
    if runtime_mac:
        chosen, source, code = runtime_mac, "runtimeConfig.mac", INVALID_NETWORK_CONFIG
    if not chosen:
        return ""
    try:
        return parse_mac(chosen)
    except ValueError as exc:
        raise _invalid(source, chosen, str(exc), code) from None


def _dns(conf: dict) -> DNS:
    value = conf.get("dns")
    if value is None:
        return DNS()
    try:
        return Result.from_json({"cniVersion": "1.0.0", "dns": value}).dns
    except CNIError as exc:
        raise _invalid("dns", value, exc.msg.removeprefix("invalid CNI result: ")) from None


def _unsupported(conf: dict) -> None:
    # Later reference releases added these; silently ignoring them would build the wrong link.
    if conf.get("linkInContainer"):
        raise CNIError(
            UNSUPPORTED_FIELD,
            f"unsupported field linkInContainer {_show(conf['linkInContainer'])}: "
            "multipy's macvlan only uses a master of the host network namespace",
        )
    if conf.get("bcqueuelen") is not None:
        raise CNIError(
            UNSUPPORTED_FIELD,
            f"unsupported field bcqueuelen {_show(conf['bcqueuelen'])}: multipy's macvlan cannot set it",
        )


def load(conf: dict, cni_args_mac: str = "") -> MacvlanConf:
    _unsupported(conf)
    version = conf.get("cniVersion") or "0.1.0"
    kind = ipam_type(conf)
    if not kind and not at_least(version, "0.3.0"):
        raise CNIError(
            INVALID_NETWORK_CONFIG,
            f'a macvlan without ipam has no result in cniVersion "{version}": use 0.3.0 or later, or an ipam',
        )
    return MacvlanConf(
        master=_string(conf, "master"),
        mode=_mode(conf),
        mtu=_mtu(conf),
        mac=_mac(conf, cni_args_mac),
        ipam_type=kind,
        dns=_dns(conf),
        cni_version=version,
    )
