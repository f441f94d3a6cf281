"""kube-ipam's configuration (the `ipam` object), every key checked.

The keys are kube-ipam's (cloudnativer/kube-ipam backend/allocator/config.go and
its README): one subnet with rangeStart/rangeEnd for dynamic addresses, and
fixedStart/fixedEnd, which kube-ipam documents but drops, for the addresses
pods ask for by annotation. The two spans must not overlap: a fixed address
is never handed out dynamically, and the reverse.

Decisions:
- `name` is accepted and ignored (kube-ipam overwrites it with the network name);
  `gateway2` is accepted and ignored, as kube-ipam never reads it.
- `ranges` (kube-ipam's multi-range form) is refused: fixed and dynamic spans are
  defined against one subnet, and a network with several would need several pools.
- `etcdConfig.etcdTrustedCAFileFile` is kube-ipam's (misspelt) key; the spelling
  `etcdTrustedCAFile` is accepted too, and both at once must agree.
- An unknown key is an error naming it: a typo must not silently drop a setting.

Errors are CNIError(7) naming the JSON path and value.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from multipy.cni.errors import INVALID_NETWORK_CONFIG, CNIError
from multipy.cni.result import Route
from multipy.ipam.conf import ipam_section, runtime_config, string
from multipy.ipam.ranges import (
    IPAddress,
    IPNetwork,
    Range,
    invalid,
    last_address,
    parse_ip,
    parse_range,
    parse_subnet,
    show,
)
from multipy.ipam.routes import parse_routes

DEFAULT_KUBECONFIG = "/etc/kubernetes/pki/kubectl.kubeconfig"  # kube-ipam's default

# What `ipam` is checked against before the plugin runs (the contract's config_schema). The keys
# known here are the schema's, so the two cannot drift; the checks below remain for the confs that
# reach the plugin unchecked (a NAD's).
SCHEMA_FILE = os.path.join(os.path.dirname(__file__), "kube-ipam.schema.json")


def _schema() -> dict:
    with open(SCHEMA_FILE, "rb") as f:
        return json.loads(f.read())


_KEYS = _schema()["properties"]
_IPAM_KEYS = frozenset(_KEYS) - {"ranges"}  # `ranges` is known, and refused
_ETCD_KEYS = tuple(_KEYS["etcdConfig"]["properties"])


@dataclass(frozen=True)
class EtcdConfig:
    """`ipam.etcdConfig`: where the store lives. `url` is kube-ipam's comma-separated etcdURL."""

    url: str
    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""

    def as_dict(self) -> dict:
        """The kube-ipam form, which Services.etcd factories take (and may cache by)."""
        out = {"etcdURL": self.url}
        for key, value in (("etcdCertFile", self.cert_file), ("etcdKeyFile", self.key_file),
                           ("etcdTrustedCAFileFile", self.ca_file)):
            if value:
                out[key] = value
        return out


@dataclass(frozen=True)
class Span:
    """An inclusive span of addresses."""

    start: IPAddress
    end: IPAddress

    def __contains__(self, ip: IPAddress) -> bool:
        return ip.version == self.start.version and self.start <= ip <= self.end

    def overlaps(self, other: Span) -> bool:
        return self.start <= other.end and other.start <= self.end

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


@dataclass(frozen=True)
class Location:
    """Where a network's reservations live: its etcd, and the pool its subnet names there."""

    network: str
    subnet: IPNetwork
    etcd: EtcdConfig


@dataclass(frozen=True)
class KubeIpamConfig:
    network: str
    cni_version: str
    range: Range  # subnet, the dynamic span [start, end] and the gateway
    gateway_given: bool  # ipam.gateway set explicitly (else the subnet's first address)
    fixed: Span | None  # fixedStart..fixedEnd; None: any address of the subnet outside the dynamic span
    routes: tuple[Route, ...]
    resolv_conf: str
    kubeconfig: str
    etcd: EtcdConfig

    @property
    def subnet(self) -> IPNetwork:
        return self.range.subnet

    @property
    def dynamic(self) -> Span:
        return Span(self.range.start, self.range.end)

    @property
    def location(self) -> Location:
        return Location(self.network, self.subnet, self.etcd)


def _unknown(obj: dict, known, path: str) -> None:
    extra = sorted(k for k in obj if k not in known)
    if extra:
        raise CNIError(
            INVALID_NETWORK_CONFIG,
            f"{path}: unknown key(s) {', '.join(show(k) for k in extra)} (kube-ipam knows {', '.join(sorted(known))})",
        )


def network_name(conf: dict) -> str:
    name = conf.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise CNIError(
            INVALID_NETWORK_CONFIG,
            f"name: {show(name)} cannot name a kube-ipam network (a non-empty name without '/' is needed)",
        )
    return name


def load_etcd(ipam: dict) -> EtcdConfig:
    """`ipam.etcdConfig` alone: DEL, GC, STATUS and the operator CLI need no more than where the store is."""
    path = "ipam.etcdConfig"
    raw = ipam.get("etcdConfig")
    if raw is None:
        raise CNIError(INVALID_NETWORK_CONFIG, f"{path}: missing (kube-ipam keeps its reservations in etcd: "
                                               'give at least {"etcdURL": "https://host:2379"})')
    if not isinstance(raw, dict):
        raise invalid(path, raw, "is not an object")
    _unknown(raw, _ETCD_KEYS, path)
    url = string(raw, "etcdURL", f"{path}.etcdURL", strip=True)
    if not url:
        raise CNIError(INVALID_NETWORK_CONFIG, f"{path}.etcdURL: missing (comma-separated URLs such as "
                                               '"https://10.0.0.1:2379,https://10.0.0.2:2379")')
    ca = string(raw, "etcdTrustedCAFileFile", f"{path}.etcdTrustedCAFileFile", strip=True)
    alias = string(raw, "etcdTrustedCAFile", f"{path}.etcdTrustedCAFile", strip=True)
    if ca and alias and ca != alias:
        raise CNIError(
            INVALID_NETWORK_CONFIG,
            f"{path}: etcdTrustedCAFileFile {show(ca)} and etcdTrustedCAFile {show(alias)} disagree (give one)",
        )
    # Endpoint syntax and TLS files are checked where the client is made (connect.py), which
    # names these keys: the client library owns those rules.
    return EtcdConfig(
        url=url,
        cert_file=string(raw, "etcdCertFile", f"{path}.etcdCertFile", strip=True),
        key_file=string(raw, "etcdKeyFile", f"{path}.etcdKeyFile", strip=True),
        ca_file=ca or alias,
    )


def _fixed_bound(ipam: dict, key: str, subnet: IPNetwork) -> IPAddress | None:
    value = ipam.get(key)
    if value is None or value == "":
        return None
    path = f"ipam.{key}"
    ip = parse_ip(value, path)
    if ip.version != subnet.version or ip not in subnet:
        raise invalid(path, value, f"is not in subnet {subnet}")
    if ip == subnet.network_address:
        raise invalid(path, value, f"is the network address of {subnet}: it cannot be handed out")
    if subnet.version == 4 and ip == subnet.broadcast_address:
        raise invalid(path, value, f"is the broadcast address of {subnet}: it cannot be handed out")
    return ip


def _fixed_span(ipam: dict, rng: Range) -> Span | None:
    subnet = rng.subnet
    start = _fixed_bound(ipam, "fixedStart", subnet)
    end = _fixed_bound(ipam, "fixedEnd", subnet)
    if start is None and end is None:
        return None
    # One bound alone: the span reaches to the subnet's edge on the other side.
    start = start if start is not None else subnet.network_address + 1
    end = end if end is not None else last_address(subnet)
    if start > end:
        raise invalid("ipam.fixedStart", ipam.get("fixedStart") or str(start), f"is after fixedEnd {end}")
    span = Span(start, end)
    dynamic = Span(rng.start, rng.end)
    if span.overlaps(dynamic):
        defaults = "" if ipam.get("rangeStart") and ipam.get("rangeEnd") else (
            " (rangeStart/rangeEnd default to the whole subnet: set them beside the fixed span)"
        )
        raise CNIError(
            INVALID_NETWORK_CONFIG,
            f"ipam.fixedStart..fixedEnd ({span}) overlaps the dynamic range rangeStart..rangeEnd ({dynamic}): "
            f"a fixed address must never be handed out dynamically{defaults}",
        )
    return span


def load(conf: dict) -> KubeIpamConfig:
    """The whole config, checked (ADD and CHECK)."""
    network = network_name(conf)
    ipam = ipam_section(conf, "kube-ipam")
    _unknown(ipam, _IPAM_KEYS | {"ranges"}, "ipam")
    if "ranges" in ipam:
        raise CNIError(
            INVALID_NETWORK_CONFIG,
            "ipam.ranges: not supported by multipy's kube-ipam: fixedStart/fixedEnd and rangeStart/rangeEnd "
            "are spans of one subnet; give ipam.subnet (use one network per subnet)",
        )
    if ipam.get("subnet") in (None, ""):
        raise CNIError(INVALID_NETWORK_CONFIG, 'ipam.subnet: missing (a subnet such as "10.188.0.0/16")')
    rng = parse_range(ipam, "ipam")
    if (runtime_config(conf) or {}).get("ipRanges"):
        raise CNIError(
            INVALID_NETWORK_CONFIG,
            "runtimeConfig.ipRanges: not supported by kube-ipam (its ranges come from ipam.subnet); "
            "drop the ipRanges capability from this network",
        )
    kubeconfig = string(ipam, "kubeConfig", "ipam.kubeConfig", strip=True) or DEFAULT_KUBECONFIG
    string(ipam, "name", "ipam.name", strip=True)
    return KubeIpamConfig(
        network=network,
        cni_version=conf.get("cniVersion") or "0.1.0",
        range=rng,
        gateway_given=ipam.get("gateway") not in (None, ""),
        fixed=_fixed_span(ipam, rng),
        routes=tuple(parse_routes(ipam.get("routes"), "ipam.routes")),
        resolv_conf=string(ipam, "resolvConf", "ipam.resolvConf", strip=True),
        kubeconfig=kubeconfig,
        etcd=load_etcd(ipam),
    )


def location(conf: dict) -> Location:
    """Only what DEL, GC and STATUS need: a range or annotation rule that broke since ADD
    must not keep an address from being released."""
    ipam = ipam_section(conf, "kube-ipam")
    return Location(network_name(conf), parse_subnet(ipam.get("subnet"), "ipam.subnet"), load_etcd(ipam))
