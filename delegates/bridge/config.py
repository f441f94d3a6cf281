"""The bridge plugin's keys, checked as strictly as Go's json.Unmarshal into its NetConf.

Keys and defaults of containernetworking/plugins 1.1.1 main/bridge. A wrong type or
value is code 7 naming the key and the value; a key this plugin cannot honour
(`vlan`, `macspoofchk`) is code 2 rather than being silently ignored. DEL, GC and
STATUS read only the keys they use, so a conf that could never ADD is still deletable.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace

from multipy.cni.errors import INVALID_NETWORK_CONFIG, UNSUPPORTED_FIELD, CNIError
from multipy.cni.result import DNS
from multipy.plugins.contract import Invocation

DEFAULT_BRIDGE = "cni0"
# What a conf is checked against before the plugin runs (the contract's config_schema); the
# checks below remain for the confs that reach the plugin unchecked (flannel's, a NAD's).
SCHEMA_FILE = os.path.join(os.path.dirname(__file__), "bridge.schema.json")
_MAC = re.compile(r"^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$")
_BAD_IFNAME = re.compile(r"[/:\s]")


@dataclass(frozen=True)
class BridgeConf:
    name: str
    bridge: str = DEFAULT_BRIDGE
    is_gateway: bool = False
    is_default_gateway: bool = False
    force_address: bool = False
    ip_masq: bool = False
    mtu: int = 0
    hairpin: bool = False
    promisc: bool = False
    enable_dad: bool = False
    mac: str = ""  # the container end's, lower-case with colons; "" lets the kernel pick
    ipam_type: str = ""  # "" is layer 2 only: no addresses, no gateway, no masquerading
    dns: DNS | None = None

    @property
    def layer3(self) -> bool:
        return bool(self.ipam_type)


def _show(value) -> str:
    return json.dumps(value)


def _invalid(key: str, problem: str) -> CNIError:
    return CNIError(INVALID_NETWORK_CONFIG, f"bridge: {key}: {problem}")


def _flag(conf: dict, key: str) -> bool:
    value = conf.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid(key, f"must be true or false, got {_show(value)}")
    return value


def _integer(conf: dict, key: str) -> int:
    value = conf.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise _invalid(key, f"must be an integer, got {_show(value)}")
    return int(value)


def _text(obj: dict, key: str, path: str, default: str = "") -> str:
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _invalid(path, f"must be a string, got {_show(value)}")
    return value


def _object(obj: dict, key: str, path: str = "") -> dict:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(path or key, f"must be an object, got {_show(value)}")
    return value


def _ifname(value: str, key: str) -> str:
    if not value or len(value) > 15 or value in (".", "..") or _BAD_IFNAME.search(value):
        raise _invalid(key, f"{_show(value)} is not a valid interface name (1-15 characters, no '/', ':' or spaces)")
    return value


def _mac(value: str, source: str) -> str:
    if not _MAC.match(value):
        raise _invalid(source, f"invalid MAC address {_show(value)}")
    if int(value[:2], 16) & 1:  # the kernel refuses it for a link, with a less helpful message
        raise _invalid(source, f"{_show(value)} is a multicast address, not one a link can have")
    return value.lower().replace("-", ":")


def _dns(conf: dict) -> DNS | None:
    doc = _object(conf, "dns")
    lists = {}
    for key in ("nameservers", "search", "options"):
        value = doc.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise _invalid(f"dns.{key}", f"must be a list of strings, got {_show(value)}")
        lists[key] = list(value or [])
    dns = DNS(lists["nameservers"], _text(doc, "domain", "dns.domain"), lists["search"], lists["options"])
    return None if dns.is_empty() else dns


def _requested_mac(conf: dict, inv: Invocation) -> str:
    """CNI_ARGS MAC, then args.cni.mac, then runtimeConfig.mac: the last one set wins (reference order)."""
    found = ""
    if inv.arg("MAC"):
        found = _mac(inv.arg("MAC"), "CNI_ARGS MAC")
    cni_args = _object(_object(conf, "args"), "cni", "args.cni")
    for value, source in (
        (_text(cni_args, "mac", "args.cni.mac"), "args.cni.mac"),
        (_text(_object(conf, "runtimeConfig"), "mac", "runtimeConfig.mac"), "runtimeConfig.mac"),
    ):
        if value:
            found = _mac(value, source)
    return found


def parse(conf: dict, inv: Invocation) -> BridgeConf:
    name = conf.get("name")
    if not isinstance(name, str) or not name:
        raise _invalid("name", f"the network name is missing or not a string: {_show(name)}")
    essentials = BridgeConf(name=name, ip_masq=_flag(conf, "ipMasq"),
                            ipam_type=_text(_object(conf, "ipam"), "type", "ipam.type"))
    if inv.command not in ("ADD", "CHECK"):
        # DEL needs no more than this: a conf that could never ADD must still be deletable.
        return essentials
    mtu = _integer(conf, "mtu")
    if mtu and not 68 <= mtu <= 65535:
        raise _invalid("mtu", f"{mtu} is out of range (68-65535, or 0 for the kernel's default)")
    vlan = _integer(conf, "vlan")
    if vlan:
        raise CNIError(UNSUPPORTED_FIELD, f"bridge: vlan: {vlan} is not supported by the native bridge")
    if _flag(conf, "macspoofchk"):
        raise CNIError(UNSUPPORTED_FIELD, "bridge: macspoofchk: true is not supported by the native bridge")
    is_default_gateway = _flag(conf, "isDefaultGateway")
    hairpin, promisc = _flag(conf, "hairpinMode"), _flag(conf, "promiscMode")
    if hairpin and promisc:
        raise _invalid("hairpinMode", "cannot set hairpin mode and promiscuous mode at the same time")
    return replace(
        essentials,
        bridge=_ifname(_text(conf, "bridge", "bridge", DEFAULT_BRIDGE) or DEFAULT_BRIDGE, "bridge"),
        is_gateway=_flag(conf, "isGateway") or is_default_gateway,
        is_default_gateway=is_default_gateway,
        force_address=_flag(conf, "forceAddress"),
        mtu=mtu,
        hairpin=hairpin,
        promisc=promisc,
        enable_dad=_flag(conf, "enabledad"),
        # CHECK compares the MAC the result recorded; only ADD asks for one.
        mac=_requested_mac(conf, inv) if inv.command == "ADD" else "",
        dns=_dns(conf),
    )
