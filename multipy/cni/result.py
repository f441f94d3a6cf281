"""The one CNI result type, converted between spec versions exactly as libcni does.

libcni (containernetworking/cni pkg/types/{020,040,100}) has one Go type per
group of versions and converts only between neighbouring groups:

    0.1.0, 0.2.0  <->  0.3.0, 0.3.1, 0.4.0  <->  1.0.0, 1.1.0

`Result` holds the union of what any version can say. `convert` walks the same
steps libcni walks, so whatever libcni loses on the way is lost here too, and
`to_json` is the only place that knows each version's wire shape.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field, replace

from .errors import DECODE_FAILURE, INCOMPATIBLE_VERSION, CNIError
from .version import SUPPORTED_VERSIONS  # noqa: F401 - re-exported: one list of versions

# Index of the Go type (types020, types040, types100) that holds each version.
_GROUP = {"0.1.0": 0, "0.2.0": 0, "0.3.0": 1, "0.3.1": 1, "0.4.0": 1, "1.0.0": 2, "1.1.0": 2}


@dataclass
class Interface:
    name: str
    mac: str = ""
    mtu: int = 0  # mtu, socket_path and pci_id exist only in types100 (1.x)
    sandbox: str = ""
    socket_path: str = ""
    pci_id: str = ""


@dataclass
class IPConfig:
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    interface: int | None = None  # index into Result.interfaces


@dataclass
class Route:
    dst: ipaddress.IPv4Network | ipaddress.IPv6Network
    gw: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    mtu: int = 0
    advmss: int = 0
    priority: int = 0
    table: int | None = None  # None and 0 differ on the wire: Go uses *int
    scope: int | None = None


@dataclass
class DNS:
    nameservers: list[str] = field(default_factory=list)
    domain: str = ""
    search: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.nameservers or self.domain or self.search or self.options)


@dataclass
class Result:
    cni_version: str
    interfaces: list[Interface] = field(default_factory=list)
    ips: list[IPConfig] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    dns: DNS = field(default_factory=DNS)

    @classmethod
    def from_json(cls, data: dict) -> Result:
        """Parse any supported version's wire format into the canonical type."""
        if not isinstance(data, dict):
            raise _invalid("result", f"expected a JSON object, got {_show(data)}")
        version = _version_of(data)
        if _GROUP[version] == 0:
            return _parse_020(data, version)
        return _parse_current(data, version)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Result:
        try:
            data = json.loads(raw)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
            raise CNIError(DECODE_FAILURE, f"invalid CNI result JSON: {exc}") from None
        return cls.from_json(data)

    def convert(self, version: str) -> Result:
        """A copy as libcni's converters would produce it for `version`."""
        src, dst = _GROUP.get(self.cni_version), _GROUP.get(version)
        if src is None or dst is None:
            raise CNIError(
                INCOMPATIBLE_VERSION,
                f"no converter for CNI result version {self.cni_version} to {version}",
            )
        out = self._copy(version)
        # libcni has converters only between neighbouring groups (1.x -> 0.2
        # goes through 0.4.0), so walk one group at a time.
        while src != dst:
            nxt = src + 1 if dst > src else src - 1
            _STEPS[src, nxt](out)
            src = nxt
        return out

    def to_json(self, version: str) -> dict:
        """The wire dict for `version`, keys in the order Go prints them."""
        out = self.convert(version)
        group = _GROUP[version]
        if group == 0:
            return out._wire_020()
        if group == 1:
            return out._wire_current(ip_version=True, interface_extras=False, omit_empty_dns=False)
        # types100 marshals through a map to drop an empty dns, and Go writes
        # map keys sorted, at every depth.
        return _sorted_keys(out._wire_current(ip_version=False, interface_extras=True, omit_empty_dns=True))

    def _copy(self, version: str) -> Result:
        # Results are passed between delegates; a conversion must never alias.
        dns = DNS(list(self.dns.nameservers), self.dns.domain, list(self.dns.search), list(self.dns.options))
        return Result(
            version,
            [replace(i) for i in self.interfaces],
            [replace(i) for i in self.ips],
            [replace(r) for r in self.routes],
            dns,
        )

    def _wire_020(self) -> dict:
        out: dict = {"cniVersion": self.cni_version}
        for key, ipc in zip(("ip4", "ip6"), _first_per_family(self.ips), strict=True):
            if ipc is not None:
                fam = ipc.address.version
                out[key] = _ip_020_wire(ipc, [r for r in self.routes if r.dst.version == fam])
        # types020 has no MarshalJSON, so an empty DNS struct still prints as {}.
        out["dns"] = dns_wire(self.dns)
        return out

    def _wire_current(self, ip_version: bool, interface_extras: bool, omit_empty_dns: bool) -> dict:
        out: dict = {"cniVersion": self.cni_version}
        if self.interfaces:
            out["interfaces"] = [_interface_wire(i, interface_extras) for i in self.interfaces]
        if self.ips:
            out["ips"] = [_ip_wire(i, ip_version) for i in self.ips]
        if self.routes:
            out["routes"] = [_route_wire(r) for r in self.routes]
        # Only types100 got the MarshalJSON that drops an empty dns (cni #1039);
        # types040 still prints "dns": {}.
        if not (omit_empty_dns and self.dns.is_empty()):
            out["dns"] = dns_wire(self.dns)
        return out


# ---- conversion steps between neighbouring groups ----------------------------


def _first_per_family(ips: list[IPConfig]) -> tuple[IPConfig | None, IPConfig | None]:
    v4 = next((i for i in ips if i.address.version == 4), None)
    v6 = next((i for i in ips if i.address.version == 6), None)
    return v4, v6


def _down_to_020(r: Result) -> None:
    # 0.2.0 has one ip4 and one ip6 block with the routes nested inside, so it
    # keeps the first address of each family and only the routes that fit.
    kept = [i for i in _first_per_family(r.ips) if i is not None]
    if not kept:
        raise CNIError(INCOMPATIBLE_VERSION, "cannot convert: no valid IP addresses")
    families = [i.address.version for i in kept]
    # libcni builds the 0.2.0 routes from dst and gw alone: mtu, table etc. go.
    r.routes = [Route(rt.dst, rt.gw) for fam in families for rt in r.routes if rt.dst.version == fam]
    r.ips = [IPConfig(i.address, i.gateway) for i in kept]
    r.interfaces = []


def _up_from_020(r: Result) -> None:
    # ip4 then ip6 become ips; routes are copied whole (types.Route.Copy keeps
    # every field); 0.2.0 has no interfaces to carry.
    r.ips = [IPConfig(i.address, i.gateway) for i in _first_per_family(r.ips) if i is not None]
    r.interfaces = []


def _without_interface_extras(r: Result) -> None:
    # types040.Interface is name, mac and sandbox only; routes keep all their
    # fields in both directions because 040 and 100 share types.Route.
    r.interfaces = [Interface(i.name, i.mac, sandbox=i.sandbox) for i in r.interfaces]


_STEPS = {
    (1, 0): _down_to_020,
    (0, 1): _up_from_020,
    (1, 2): _without_interface_extras,
    (2, 1): _without_interface_extras,
}


# ---- wire output --------------------------------------------------------------


def dns_wire(dns: DNS) -> dict:
    """DNS as the wire has it (also Multus's network-status shape): empty fields left out."""
    out: dict = {}
    if dns.nameservers:
        out["nameservers"] = list(dns.nameservers)
    if dns.domain:
        out["domain"] = dns.domain
    if dns.search:
        out["search"] = list(dns.search)
    if dns.options:
        out["options"] = list(dns.options)
    return out


def _route_wire(rt: Route) -> dict:
    out: dict = {"dst": str(rt.dst)}
    if rt.gw is not None:
        out["gw"] = str(rt.gw)
    if rt.mtu:
        out["mtu"] = rt.mtu
    if rt.advmss:
        out["advmss"] = rt.advmss
    if rt.priority:
        out["priority"] = rt.priority
    if rt.table is not None:
        out["table"] = rt.table
    if rt.scope is not None:
        out["scope"] = rt.scope
    return out


def _interface_wire(iface: Interface, extras: bool) -> dict:
    out: dict = {"name": iface.name}  # no omitempty on name in Go
    if iface.mac:
        out["mac"] = iface.mac
    if extras and iface.mtu:
        out["mtu"] = iface.mtu
    if iface.sandbox:
        out["sandbox"] = iface.sandbox
    if extras and iface.socket_path:
        out["socketPath"] = iface.socket_path
    if extras and iface.pci_id:
        out["pciID"] = iface.pci_id
    return out


def _ip_wire(ipc: IPConfig, with_version: bool) -> dict:
    out: dict = {}
    if with_version:
        # Always derived from the address, as libcni's 1.x -> 0.4 converter does.
        out["version"] = str(ipc.address.version)
    if ipc.interface is not None:
        out["interface"] = ipc.interface
    out["address"] = str(ipc.address)
    if ipc.gateway is not None:
        out["gateway"] = str(ipc.gateway)
    return out


def _ip_020_wire(ipc: IPConfig, routes: list[Route]) -> dict:
    out: dict = {"ip": str(ipc.address)}
    if ipc.gateway is not None:
        out["gateway"] = str(ipc.gateway)
    if routes:
        out["routes"] = [_route_wire(r) for r in routes]
    return out


def _sorted_keys(value):
    if isinstance(value, dict):
        return {k: _sorted_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(v) for v in value]
    return value


# ---- wire input ---------------------------------------------------------------


def _show(value) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _invalid(path: str, problem: str) -> CNIError:
    return CNIError(DECODE_FAILURE, f"invalid CNI result: {path}: {problem}")


def _version_of(data: dict) -> str:
    version = data.get("cniVersion")
    if version is None or version == "":
        return "0.1.0"  # libcni's DecodeVersion: results before 0.2.0 had no version
    if not isinstance(version, str):
        raise _invalid("cniVersion", f"expected a string, got {_show(version)}")
    if version not in _GROUP:
        raise CNIError(INCOMPATIBLE_VERSION, f"unsupported CNI result version {_show(version)}")
    return version


def _object(value, path: str) -> dict:
    if not isinstance(value, dict):
        raise _invalid(path, f"expected an object, got {_show(value)}")
    return value


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _list(obj: dict, key: str, path: str) -> list:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _invalid(_at(path, key), f"expected a list, got {_show(value)}")
    return value


def _str(obj: dict, key: str, path: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _invalid(_at(path, key), f"expected a string, got {_show(value)}")
    return value


def _int(obj: dict, key: str, path: str, default=0):
    value = obj.get(key)
    if value is None:
        return default
    # bool is an int in Python but not in JSON; Go's decoder refuses it too.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(_at(path, key), f"expected an integer, got {_show(value)}")
    return value


def _strings(obj: dict, key: str, path: str) -> list[str]:
    values = _list(obj, key, path)
    for n, value in enumerate(values):
        if not isinstance(value, str):
            raise _invalid(f"{_at(path, key)}[{n}]", f"expected a string, got {_show(value)}")
    return list(values)


def _cidr_text(obj: dict, key: str, path: str) -> str:
    value = obj.get(key)
    if value is None:
        raise _invalid(_at(path, key), "missing")
    # Go's net.ParseCIDR wants addr/prefixlen: no bare address, no netmask
    # form and no zone, all of which Python's ipaddress would accept.
    text = value if isinstance(value, str) else ""
    addr, _, prefix = text.partition("/")
    if not (addr and prefix.isascii() and prefix.isdigit()) or "%" in addr:
        raise _invalid(_at(path, key), f"invalid CIDR {_show(value)}")
    return text


def _interface_addr(obj: dict, key: str, path: str):
    text = _cidr_text(obj, key, path)
    try:
        return ipaddress.ip_interface(text)
    except ValueError:
        raise _invalid(_at(path, key), f"invalid CIDR {_show(text)}") from None


def _network(obj: dict, key: str, path: str):
    text = _cidr_text(obj, key, path)
    try:
        # libcni accepts host bits in a route dst; the kernel masks them anyway.
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise _invalid(_at(path, key), f"invalid CIDR {_show(text)}") from None


def _address(obj: dict, key: str, path: str):
    value = obj.get(key)
    if value is None or value == "":
        return None  # Go's net.IP decodes "" as nil
    if not isinstance(value, str) or "%" in value:
        raise _invalid(_at(path, key), f"invalid IP address {_show(value)}")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise _invalid(_at(path, key), f"invalid IP address {_show(value)}") from None


def _parse_dns(value) -> DNS:
    if value is None:
        return DNS()
    obj = _object(value, "dns")
    return DNS(
        _strings(obj, "nameservers", "dns"),
        _str(obj, "domain", "dns"),
        _strings(obj, "search", "dns"),
        _strings(obj, "options", "dns"),
    )


def _parse_route(value, path: str) -> Route:
    # types.Route is shared by every version, so every version may carry mtu etc.
    obj = _object(value, path)
    return Route(
        _network(obj, "dst", path),
        _address(obj, "gw", path),
        _int(obj, "mtu", path),
        _int(obj, "advmss", path),
        _int(obj, "priority", path),
        _int(obj, "table", path, None),
        _int(obj, "scope", path, None),
    )


def _parse_interface(value, path: str, extras: bool) -> Interface:
    obj = _object(value, path)
    iface = Interface(_str(obj, "name", path), _str(obj, "mac", path), sandbox=_str(obj, "sandbox", path))
    if extras:  # types040.Interface has no such fields, so 0.x input loses them
        iface.mtu = _int(obj, "mtu", path)
        iface.socket_path = _str(obj, "socketPath", path)
        iface.pci_id = _str(obj, "pciID", path)
    return iface


def _parse_ip(value, path: str, n_interfaces: int, with_version: bool) -> IPConfig:
    obj = _object(value, path)
    if with_version:
        # Checked for type like Go does, then ignored: output recomputes it
        # from the address, so a wrong "version" cannot misfile an address.
        _str(obj, "version", path)
    index = _int(obj, "interface", path, None)
    if index is not None and not 0 <= index < n_interfaces:
        raise _invalid(f"{path}.interface", f"index {index} out of range for {n_interfaces} interfaces")
    return IPConfig(_interface_addr(obj, "address", path), _address(obj, "gateway", path), index)


def _parse_020(data: dict, version: str) -> Result:
    result = Result(version, dns=_parse_dns(data.get("dns")))
    for key in ("ip4", "ip6"):
        if data.get(key) is None:
            continue
        obj = _object(data[key], key)
        result.ips.append(IPConfig(_interface_addr(obj, "ip", key), _address(obj, "gateway", key)))
        routes = _list(obj, "routes", key)
        result.routes.extend(_parse_route(r, f"{key}.routes[{n}]") for n, r in enumerate(routes))
    return result


def _parse_current(data: dict, version: str) -> Result:
    is_040 = _GROUP[version] == 1
    interfaces = [
        _parse_interface(v, f"interfaces[{n}]", not is_040) for n, v in enumerate(_list(data, "interfaces", ""))
    ]
    ips = [_parse_ip(v, f"ips[{n}]", len(interfaces), is_040) for n, v in enumerate(_list(data, "ips", ""))]
    routes = [_parse_route(v, f"routes[{n}]") for n, v in enumerate(_list(data, "routes", ""))]
    return Result(version, interfaces, ips, routes, _parse_dns(data.get("dns")))
