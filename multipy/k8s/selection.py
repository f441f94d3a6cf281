"""The pod's network selection annotations, as Multus reads them (multus.md, "Annotations and status").

`k8s.v1.cni.cncf.io/networks` names extra networks, `v1.multus-cni.io/default-network` replaces
the cluster network. Both take the comma form `net-a, ns/net-b@ifname` or, when the value holds
`[`, `{` or `"`, a JSON list of selection objects. Everything is checked here, before any
delegate runs: a typo in an annotation must fail the ADD with the annotation, the element and the
value named, not surface later as a delegate's puzzling error.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from dataclasses import dataclass, field

from multipy.cni.env import validate_ifname
from multipy.cni.errors import INVALID_NETWORK_CONFIG, CNIError

NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
DEFAULT_NETWORK_ANNOTATION = "v1.multus-cni.io/default-network"
STATUS_ANNOTATION = "k8s.v1.cni.cncf.io/network-status"

_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(rf"{_LABEL}\Z")
_DNS1123_SUBDOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\Z")
_MAC = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}\Z")

# JSON keys that are capability args, and the runtimeConfig key (capability) each becomes.
_CAPABILITIES = {
    "ips": "ips",
    "mac": "mac",
    "portMappings": "portMappings",
    "bandwidth": "bandwidth",
    "infiniband-guid": "infinibandGUID",
    "deviceID": "deviceID",
}
_KEYS = ("name", "namespace", "interface", "default-route", "cni-args", *_CAPABILITIES)


@dataclass(frozen=True)
class Selection:
    """One network a pod asks for."""

    name: str  # the NetworkAttachmentDefinition's name
    namespace: str  # given, else the pod's namespace
    interface: str | None = None  # the ifname asked for
    # Capability args for this attachment only: "ips" (CIDR strings), "mac", "portMappings",
    # "bandwidth", "infinibandGUID", "deviceID".
    runtime_config: dict = field(default_factory=dict)
    cni_args: dict = field(default_factory=dict)  # merged into the delegate conf's args.cni
    default_route: tuple[str, ...] = ()  # gateway IPs from "default-route"

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def parse_networks(value: str, pod_namespace: str, annotation: str = NETWORKS_ANNOTATION) -> list[Selection]:
    """The selections of an annotation value, in order; an empty value selects nothing."""
    text = value.strip()
    if not text:
        return []
    if any(ch in text for ch in '[{"'):
        return _parse_json(text, pod_namespace, annotation)
    return [_parse_item(item.strip(), text, pod_namespace, annotation) for item in text.split(",")]


def parse_default_network(value: str, pod_namespace: str) -> Selection:
    """The one network that replaces the cluster network, on the runtime's own interface."""
    annotation = DEFAULT_NETWORK_ANNOTATION
    selections = parse_networks(value, pod_namespace, annotation)
    if len(selections) != 1:
        raise CNIError(
            INVALID_NETWORK_CONFIG,
            f"pod annotation {annotation}: {json.dumps(value)} names {len(selections)} networks; "
            "the default network must be exactly one",
        )
    chosen = selections[0]
    if chosen.interface is not None:
        raise CNIError(
            INVALID_NETWORK_CONFIG,
            f'pod annotation {annotation}: network {chosen.ref}: "interface": {json.dumps(chosen.interface)} is not '
            "allowed: the default network always gets the runtime's interface name (CNI_IFNAME)",
        )
    return chosen


# ---- the two forms -----------------------------------------------------------


@dataclass(frozen=True)
class _Place:
    """Where a problem is, for the message: the annotation and the element or item."""

    annotation: str
    where: str

    def error(self, problem: str) -> CNIError:
        return CNIError(INVALID_NETWORK_CONFIG, f"pod annotation {self.annotation}: {self.where}: {problem}")

    def bad(self, key: str, value, problem: str) -> CNIError:
        return self.error(f'"{key}": {_show(value)} {problem}')


def _parse_item(item: str, whole: str, pod_namespace: str, annotation: str) -> Selection:
    if not item:
        raise CNIError(
            INVALID_NETWORK_CONFIG,
            f"pod annotation {annotation}: {json.dumps(whole)} has an empty item (a stray comma?)",
        )
    place = _Place(annotation, f"item {json.dumps(item)}")
    slashes = item.split("/")
    if len(slashes) > 2:
        raise place.error("more than one '/' (expected [namespace/]name[@interface])")
    namespace, rest = slashes if len(slashes) == 2 else (None, slashes[0])
    ats = rest.split("@")
    if len(ats) > 2:
        raise place.error("more than one '@' (expected [namespace/]name[@interface])")
    name, interface = ats if len(ats) == 2 else (ats[0], None)
    if namespace is not None:
        _check_namespace(place, namespace)
    return Selection(
        name=_check_name(place, name),
        namespace=namespace if namespace is not None else pod_namespace,
        interface=_check_interface(place, interface) if interface is not None else None,
    )


def _parse_json(text: str, pod_namespace: str, annotation: str) -> list[Selection]:
    try:
        data = json.loads(text)
    except ValueError as error:
        raise CNIError(INVALID_NETWORK_CONFIG, f"pod annotation {annotation}: not valid JSON: {error}") from None
    if not isinstance(data, list):
        raise CNIError(
            INVALID_NETWORK_CONFIG,
            f"pod annotation {annotation}: expected a JSON list of network selection objects, got {_kind(data)}",
        )
    return [
        _parse_element(element, _Place(annotation, f"element {n}"), pod_namespace) for n, element in enumerate(data)
    ]


def _parse_element(element, place: _Place, pod_namespace: str) -> Selection:
    if not isinstance(element, dict):
        raise place.error(f"expected a network selection object, got {_kind(element)} {_show(element)}")
    _check_keys(place, element)
    # Go decodes null and "" into the zero value, which means "not given" for every key.
    given = {key: value for key, value in element.items() if value is not None and value != ""}
    if "name" not in given:
        raise place.error('"name" is missing')
    name = _check_name(place, _string(place, "name", given["name"]))
    namespace = pod_namespace
    if "namespace" in given:
        namespace = _check_namespace(place, _string(place, "namespace", given["namespace"]))
    interface = None
    if "interface" in given:
        interface = _check_interface(place, _string(place, "interface", given["interface"]))
    runtime_config = {}
    for key, capability in _CAPABILITIES.items():
        if key in given:
            checked = _CHECKS[key](place, key, given[key])
            if checked:
                runtime_config[capability] = checked
    default_route = _check_default_route(place, given["default-route"]) if "default-route" in given else ()
    cni_args = _object(place, "cni-args", given["cni-args"]) if "cni-args" in given else {}
    return Selection(name, namespace, interface, runtime_config, cni_args, default_route)


# ---- checks -------------------------------------------------------------------


def _check_keys(place: _Place, element: dict) -> None:
    for key in element:
        if key in _KEYS:
            continue
        close = difflib.get_close_matches(key, _KEYS, n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        raise place.error(f"unknown key {json.dumps(key)}{hint}; the keys are {', '.join(_KEYS)}")


def _check_name(place: _Place, name: str) -> str:
    if not name:
        raise place.error('"name" is empty')
    if len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        raise place.bad(
            "name", name,
            "is not a valid NetworkAttachmentDefinition name (a DNS-1123 subdomain: lowercase letters, digits, "
            "'-' and '.', starting and ending with a letter or digit, at most 253 characters)",
        )  # fmt: skip
    return name


def _check_namespace(place: _Place, namespace: str) -> str:
    if not namespace:
        raise place.error('"namespace" is empty')
    if len(namespace) > 63 or not _DNS1123_LABEL.match(namespace):
        raise place.bad(
            "namespace", namespace,
            "is not a valid namespace (a DNS-1123 label: lowercase letters, digits and '-', starting and "
            "ending with a letter or digit, at most 63 characters)",
        )  # fmt: skip
    return namespace


def _check_interface(place: _Place, interface: str) -> str:
    try:
        validate_ifname(interface, '"interface"')
    except CNIError as error:
        # env's wording, but this is the pod's configuration, not the runtime's environment.
        raise place.error(error.msg) from None
    return interface


def _check_ips(place: _Place, key: str, value) -> list[str]:
    for text in _strings(place, key, value):
        if not _is_cidr(text):
            raise place.bad(key, text, "is not an IP address with a prefix length")
    return list(value)


def _is_cidr(text: str) -> bool:
    # As Go's net.ParseCIDR: addr/prefixlen only, so no bare address, netmask form or zone,
    # all of which Python's ipaddress would accept.
    addr, slash, prefix = text.partition("/")
    if not (slash and addr and prefix.isascii() and prefix.isdigit()) or "%" in addr:
        return False
    try:
        ipaddress.ip_interface(text)
    except ValueError:
        return False
    return True


def _check_mac(place: _Place, key: str, value) -> str:
    mac = _string(place, key, value)
    if not _MAC.match(mac):
        raise place.bad(key, mac, "is not a MAC address (six two-digit hex octets separated by ':')")
    first = int(mac[:2], 16)
    if first & 1:
        raise place.bad(key, mac, "is a multicast address: an interface needs a unicast MAC (an even first octet)")
    if int(mac.replace(":", ""), 16) == 0:
        raise place.bad(key, mac, "is the all-zero address, which no interface can have")
    return mac


def _check_port_mappings(place: _Place, key: str, value) -> list:
    if not isinstance(value, list):
        raise place.bad(key, value, "is not a list of port mapping objects")
    for n, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise place.error(f'"{key}"[{n}]: {_show(entry)} is not a port mapping object')
    return value


def _check_default_route(place: _Place, value) -> tuple[str, ...]:
    gateways: dict[int, str] = {}
    for text in _strings(place, "default-route", value):
        try:
            if "%" in text:
                raise ValueError(text)
            address = ipaddress.ip_address(text)
        except ValueError:
            raise place.bad("default-route", text, "is not an IP address") from None
        if address.version in gateways:
            raise place.bad(
                "default-route", value,
                f"has two IPv{address.version} gateways: a pod has at most one default route per address family",
            )  # fmt: skip
        gateways[address.version] = str(address)
    return tuple(gateways.values())


def _object(place: _Place, key: str, value) -> dict:
    if not isinstance(value, dict):
        raise place.bad(key, value, "is not a JSON object")
    return dict(value)


def _string(place: _Place, key: str, value) -> str:
    if not isinstance(value, str):
        raise place.bad(key, value, "is not a string")
    return value


def _strings(place: _Place, key: str, value) -> list[str]:
    if not isinstance(value, list):
        raise place.bad(key, value, "is not a list of strings")
    for item in value:
        if not isinstance(item, str):
            raise place.bad(key, item, "is not a string")
    return value


def _show(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def _kind(value) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


_CHECKS = {
    "ips": _check_ips,
    "mac": _check_mac,
    "portMappings": _check_port_mappings,
    "bandwidth": _object,
    "infiniband-guid": _string,
    "deviceID": _string,
}
