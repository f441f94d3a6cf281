"""Netlink for native plugins, in multipy's own words; the only module that imports pyroute2.

`Netlink.open(netns)` gives a `Namespace`: an rtnetlink socket of that namespace with the
few verbs plugins need (create veth, macvlan, bridge (or dummy); set MTU, MAC, up, master, name,
hairpin, promiscuity; addresses; routes; look a link up as a `Link`). No pyroute2 message,
attribute name or exception gets out of here: links and routes are small dataclasses,
every refusal is a LinkError, an OSError with the kernel's errno (`exc.errno == errno.EEXIST`),
and a namespace that is gone is netns.NetnsGone.

The socket is made by netns.run_in's thread after its setns() and handed to pyroute2
as `use_socket`: a socket belongs to the namespace it was created in, so nothing forks
(pyroute2's own `IPRoute(netns=...)` forks a child to make it) and the caller's thread
never leaves its namespace. pyroute2 0.9 (asyncio) then runs its event loop on the
caller's thread, so one Namespace is used by the thread that opened it.

pyroute2 costs ~150-250 ms to import (it loads every subsystem), so it is imported on
first use, never by merely importing this module.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from . import netns as _netns

MAIN_TABLE = 254
PROTO_BOOT = 3  # what the reference's netlink library leaves the kernel to pick for the routes it adds
PROTO_STATIC = 4  # what `ip route` (and pyroute2) put on a route by default

_NETLINK_ROUTE = 0
_BUFFER = 1 << 20  # pyroute2's own SO_SNDBUF/SO_RCVBUF for the sockets it makes
_IFF_UP = 0x1
_IFF_PROMISC = 0x100
_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
_ANY = {4: ipaddress.ip_network("0.0.0.0/0"), 6: ipaddress.ip_network("::/0")}

Address = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IP = ipaddress.IPv4Address | ipaddress.IPv6Address


class LinkError(OSError):
    """A netlink request the kernel refused; `errno` is the kernel's code, `strerror` its text."""


@dataclass(frozen=True)
class Link:
    """One link as the kernel describes it."""

    index: int
    name: str
    kind: str  # "bridge", "veth", "macvlan", ...; "" for a link without one (lo, a NIC)
    mac: str  # lower-case colon form; "" when the link has none
    mtu: int
    up: bool  # administratively (IFF_UP)
    operstate: str  # "UP", "DOWN", "UNKNOWN", "LOWERLAYERDOWN", ...
    promisc: bool
    master: int | None  # the bridge it is a port of
    link_index: int | None  # a veth's peer, a macvlan's lower link (indexes of the namespace it was made from)
    macvlan_mode: str  # "bridge", "private", ... for a macvlan; "" otherwise


@dataclass(frozen=True)
class KernelRoute:
    """One route; `oif` None with `hops` for a multipath route."""

    dst: Network
    oif: int | None = None
    gateway: IP | None = None
    table: int = MAIN_TABLE
    priority: int = 0
    scope: int = 0
    proto: int = PROTO_BOOT
    hops: tuple[int, ...] = ()  # the devices of a multipath route, first hop first

    @property
    def device(self) -> int | None:
        """The device the route leaves by (a multipath route's first hop)."""
        return self.oif if self.oif is not None else (self.hops[0] if self.hops else None)


def _import_pyroute2():
    """IPRoute and NetlinkError, imported with find_library('c') answered by name.

    pyroute2's netns module looks libc up with ctypes.util.find_library('c'), which on
    Linux execs `/sbin/ldconfig -p`: a process spawned per ADD. Whether a release does it at
    import or on first use (0.9: in the functions that take a namespace name, such as
    `IPRoute(netns=...)`'s forked child, which multipy never calls on a CNI path), the import
    is guarded, so no pyroute2 release costs a plugin an ldconfig run.
    """
    import ctypes.util  # ~14 ms (it brings shutil, tempfile, subprocess): paid with pyroute2's own import only

    real = ctypes.util.find_library

    def find_library(name: str):
        return _netns.LIBC_NAME if name == "c" else real(name)

    ctypes.util.find_library = find_library
    try:
        from pyroute2.iproute.linux import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError
    finally:
        ctypes.util.find_library = real
    return IPRoute, NetlinkError


_pyroute2 = None
_pyroute2_lock = threading.Lock()  # find_library is swapped process-wide while pyroute2 is imported: one importer


def _route_socket() -> socket.socket:
    """An rtnetlink socket of the calling thread's namespace (netns.run_in's thread, for a pod)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, _NETLINK_ROUTE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
    return sock


class Netlink:
    """Opens Namespaces; stateless, so one instance is shared per process or daemon."""

    @contextmanager
    def open(self, netns: str | None = None) -> Iterator[Namespace]:
        """The namespace at path `netns` (None: the caller's own). NetnsGone when it is not there."""
        global _pyroute2  # imported classes, not request state: safe to share
        with _pyroute2_lock:
            if _pyroute2 is None:
                _pyroute2 = _import_pyroute2()
        iproute, error_type = _pyroute2
        sock = _netns.run_in(netns, _route_socket)
        try:
            ipr = iproute(use_socket=sock)
        except BaseException:
            sock.close()
            raise
        try:
            yield Namespace(ipr, error_type)
        finally:
            ipr.close()
            sock.close()


class Namespace:
    """The links, addresses and routes of one network namespace, over one rtnetlink socket.

    Used by the thread that opened it (pyroute2 keeps its event loop per thread).
    """

    def __init__(self, ipr, error_type) -> None:
        self._ipr = ipr
        self._error_type = error_type

    def _call(self, method: str, *args, **kwargs):
        try:
            return getattr(self._ipr, method)(*args, **kwargs)
        except self._error_type as exc:
            code = getattr(exc, "code", 0) or 0
            raise LinkError(code, os.strerror(code) if code else str(exc)) from None

    # ---------------------------------------------------------------- links

    def link(self, name: str | None = None, *, index: int | None = None) -> Link | None:
        """The link called `name` (or with `index`), or None when there is none."""
        try:
            found = self._call("link", "get", **({"index": index} if index is not None else {"ifname": name}))
        except LinkError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        return _link(found[0])

    def create_link(self, name: str, kind: str, mtu: int = 0) -> None:
        """A link with no peer and no lower link: "bridge", "dummy", "ifb", ..."""
        self._call("link", "add", ifname=name, kind=kind, **_optional(mtu=mtu))

    def create_veth(self, name: str, peer: str, peer_netns: str, mtu: int = 0, peer_mac: str = "") -> None:
        """A veth pair: `name` here, `peer` created straight into the namespace at path `peer_netns`."""
        with _netns.fd(peer_netns) as fd:
            spec = {"ifname": peer, "net_ns_fd": fd, **_optional(mtu=mtu, address=peer_mac)}
            self._call("link", "add", ifname=name, kind="veth", peer=spec, **_optional(mtu=mtu))

    def create_macvlan(self, name: str, lower: int, mode: str, netns: str, mtu: int = 0, mac: str = "") -> None:
        """A macvlan on link index `lower` of this namespace, created straight into the namespace at path `netns`."""
        with _netns.fd(netns) as fd:
            self._call("link", "add", ifname=name, kind="macvlan", link=lower, macvlan_mode=mode, net_ns_fd=fd,
                       **_optional(mtu=mtu, address=mac))  # fmt: skip

    def delete_link(self, index: int) -> bool:
        """Delete a link (a veth takes its peer along); False when it was already gone."""
        try:
            self._call("link", "del", index=index)
        except LinkError as exc:
            if exc.errno == errno.ENODEV:
                return False
            raise
        return True

    def set_up(self, index: int, up: bool = True) -> None:
        self._call("link", "set", index=index, state="up" if up else "down")

    def set_mtu(self, index: int, mtu: int) -> None:
        self._call("link", "set", index=index, mtu=mtu)

    def set_mac(self, index: int, mac: str) -> None:
        self._call("link", "set", index=index, address=mac)

    def set_master(self, index: int, master: int, up: bool = False) -> None:
        """Make the link a port of bridge `master`; `up`: bring it up in the same message (the kernel
        enslaves first, then changes the flags, as two separate calls would)."""
        self._call("link", "set", index=index, master=master, **({"state": "up"} if up else {}))

    def rename(self, index: int, name: str) -> None:
        self._call("link", "set", index=index, ifname=name)

    def set_promisc(self, index: int, on: bool = True) -> None:
        self._call("link", "set", index=index, flags=_IFF_PROMISC if on else 0, change=_IFF_PROMISC)

    def set_hairpin(self, index: int, on: bool) -> None:
        """Hairpin mode of a bridge port: frames may leave by the port they came in by."""
        self._call("brport", "set", index=index, mode=int(on))

    # ---------------------------------------------------------------- addresses

    def addresses(self, index: int) -> list[Address]:
        return [
            ipaddress.ip_interface(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}")
            for msg in self._call("get_addr", index=index)
        ]

    def add_address(self, index: int, address: Address) -> None:
        """Add `address`; an IPv4 one below /31 gets its broadcast address, as `ip addr add ... brd +`."""
        spec = {"index": index, "address": str(address.ip), "prefixlen": address.network.prefixlen}
        if address.version == 4 and address.network.prefixlen < 31:
            spec["broadcast"] = str(address.network.broadcast_address)
        self._call("addr", "add", **spec)

    def del_address(self, index: int, address: Address) -> None:
        self._call("addr", "del", index=index, address=str(address.ip), prefixlen=address.network.prefixlen)

    # ---------------------------------------------------------------- routes

    def routes(self, version: int, table: int | None = MAIN_TABLE) -> list[KernelRoute]:
        """The routes of one IP version in `table` (None: every table)."""
        found = [_route(msg, version) for msg in self._call("get_routes", family=_FAMILY[version])]
        return [r for r in found if table is None or r.table == table]

    def default_routes(self, version: int, table: int = MAIN_TABLE) -> list[KernelRoute]:
        return [_route(msg, version) for msg in self._call("get_default_routes", family=_FAMILY[version], table=table)]

    def append_route(self, route: KernelRoute) -> None:
        """Add `route` beside any of the same destination (NLM_F_APPEND: a second default route is fine)."""
        self._call("route", "append", **_route_spec(route))

    def replace_route(self, route: KernelRoute) -> None:
        self._call("route", "replace", **_route_spec(route))

    def del_route(self, route: KernelRoute) -> None:
        spec = {"family": _FAMILY[route.dst.version], "dst_len": route.dst.prefixlen, "table": route.table,
                "oif": route.oif, "gateway": str(route.gateway) if route.gateway is not None else None,
                "priority": route.priority or None}  # fmt: skip
        if route.dst.prefixlen:
            spec["dst"] = str(route.dst.network_address)
        self._call("route", "del", **spec)


def _optional(**values) -> dict:
    """Only the values that are set: an unset MTU or MAC is the kernel's choice."""
    return {key: value for key, value in values.items() if value}


def _link(msg) -> Link:
    info = msg.get_attr("IFLA_LINKINFO")
    kind = (info.get_attr("IFLA_INFO_KIND") if info is not None else None) or ""
    data = info.get_attr("IFLA_INFO_DATA") if info is not None and kind == "macvlan" else None
    return Link(
        index=msg["index"],
        name=msg.get_attr("IFLA_IFNAME"),
        kind=kind,
        mac=msg.get_attr("IFLA_ADDRESS") or "",
        mtu=msg.get_attr("IFLA_MTU") or 0,
        up=bool(msg["flags"] & _IFF_UP),
        operstate=msg.get_attr("IFLA_OPERSTATE") or "",
        promisc=bool(msg["flags"] & _IFF_PROMISC),
        master=msg.get_attr("IFLA_MASTER"),
        link_index=msg.get_attr("IFLA_LINK"),
        macvlan_mode=(data.get_attr("IFLA_MACVLAN_MODE") if data is not None else None) or "",
    )


def _route(msg, version: int) -> KernelRoute:
    address = msg.get_attr("RTA_DST") or _ANY[version].network_address
    gateway = msg.get_attr("RTA_GATEWAY")
    return KernelRoute(
        dst=ipaddress.ip_network(f"{address}/{msg['dst_len']}", strict=False),
        oif=msg.get_attr("RTA_OIF"),
        gateway=ipaddress.ip_address(gateway) if gateway else None,
        table=msg.get_attr("RTA_TABLE") or msg["table"],
        priority=msg.get_attr("RTA_PRIORITY") or 0,
        scope=msg["scope"],
        proto=msg["proto"],
        hops=tuple(hop["oif"] for hop in msg.get_attr("RTA_MULTIPATH") or ()),
    )


def _route_spec(route: KernelRoute) -> dict:
    spec: dict = {"dst": str(route.dst), "proto": route.proto}
    if route.oif is not None:
        spec["oif"] = route.oif
    if route.gateway is not None:
        spec["gateway"] = str(route.gateway)
    return {**spec, **_optional(priority=route.priority, table=route.table, scope=route.scope)}
