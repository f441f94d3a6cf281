"""Netlink for native plugins, in multipy's own words; the only module that imports pyroute2.

`Netlink.open(netns)` gives a `Namespace`: an rtnetlink socket of that namespace with the
few verbs plugins need (create veth, macvlan, bridge (or dummy); set MTU, MAC, up, master, name,
hairpin, promiscuity; addresses; routes; look a link up as a `Link`). No pyroute2 message,
attribute name or exception gets out of here: links and routes are small dataclasses,
every refusal is a LinkError, an OSError with the kernel's errno (`exc.errno == errno.EEXIST`),
and a namespace that is gone is netns.NetnsGone.

pyroute2 encodes and decodes the messages (its ifinfmsg, ifaddrmsg and rtmsg, with their
attribute names); multipy.net.rtnl sends them and collects the replies, synchronously, on a
plain socket. Each verb builds exactly the message pyroute2's IPRoute builds for the same call
(a unit test compares the bytes), without IPRoute's event loop and request filters, which cost
more than the kernel's work (see rtnl's docstring).

The socket is made by netns.run_in's thread after its setns(): a socket belongs to the namespace
it was created in, so nothing forks and the caller's thread never leaves its namespace. One
Namespace is used by one thread at a time.

pyroute2 costs ~150-250 ms to import (its package imports every subsystem), so it is imported on
first use, never by merely importing this module.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from . import netns as _netns
from . import rtnl
from .rtnl import LinkError

__all__ = ["IP", "MAIN_TABLE", "PROTO_BOOT", "PROTO_STATIC", "Address", "KernelRoute", "Link", "LinkError",
           "Namespace", "Netlink", "Network"]  # fmt: skip

MAIN_TABLE = 254
PROTO_BOOT = 3  # what the reference's netlink library leaves the kernel to pick for the routes it adds
PROTO_STATIC = 4  # what `ip route` (and pyroute2) put on a route by default

_IFF_UP = 0x1
_IFF_PROMISC = 0x100
_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
_ANY = {4: ipaddress.ip_network("0.0.0.0/0"), 6: ipaddress.ip_network("::/0")}
_RTN_UNICAST = 1
# What Link is made of (linux/if_link.h): IFLA_ADDRESS, IFNAME, MTU, LINK, MASTER, OPERSTATE, LINKINFO.
_LINK_ATTRS = frozenset({1, 3, 4, 5, 10, 16, 18})
_IFINFOMSG = 16  # bytes of struct ifinfomsg, before the attributes
# rtnetlink message types (linux/rtnetlink.h) and the message class that carries each.
_NEWLINK, _DELLINK, _GETLINK = 16, 17, 18
_NEWADDR, _DELADDR, _GETADDR = 20, 21, 22
_NEWROUTE, _DELROUTE, _GETROUTE = 24, 25, 26
_CLASS = {**dict.fromkeys((_NEWLINK, _DELLINK, _GETLINK), "link"),
          **dict.fromkeys((_NEWADDR, _DELADDR, _GETADDR), "addr"),
          **dict.fromkeys((_NEWROUTE, _DELROUTE, _GETROUTE), "route")}  # fmt: skip
# The flags pyroute2's IPRoute puts on each kind of request.
_ASK = rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK  # get, set, del
_CREATE = _ASK | rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL
_APPEND = _ASK | rtnl.NLM_F_CREATE | rtnl.NLM_F_APPEND
_REPLACE = _ASK | rtnl.NLM_F_CREATE | rtnl.NLM_F_REPLACE
_DUMP = rtnl.NLM_F_REQUEST | rtnl.NLM_F_DUMP

Address = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IP = ipaddress.IPv4Address | ipaddress.IPv6Address


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


def _import_pyroute2() -> dict:
    """pyroute2's message classes, imported with find_library('c') answered by name.

    pyroute2's netns module looks libc up with ctypes.util.find_library('c'), which on
    Linux execs `/sbin/ldconfig -p`: a process spawned per ADD. Whether a release does it at
    import or on first use, the import is guarded, so no pyroute2 release costs a plugin an
    ldconfig run.
    """
    import ctypes.util  # ~14 ms (it brings shutil, tempfile, subprocess): paid with pyroute2's own import only

    real = ctypes.util.find_library

    def find_library(name: str):
        return _netns.LIBC_NAME if name == "c" else real(name)

    ctypes.util.find_library = find_library
    try:
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
        from pyroute2.netlink.rtnl.rtmsg import rtmsg
    finally:
        ctypes.util.find_library = real
    return {"link": ifinfmsg, "addr": ifaddrmsg, "route": rtmsg}


_pyroute2: dict | None = None
_pyroute2_lock = threading.Lock()  # find_library is swapped process-wide while pyroute2 is imported: one importer


class Netlink:
    """Opens Namespaces; stateless, so one instance is shared per process or daemon."""

    @contextmanager
    def open(self, netns: str | None = None) -> Iterator[Namespace]:
        """The namespace at path `netns` (None: the caller's own). NetnsGone when it is not there."""
        global _pyroute2  # imported classes, not request state: safe to share
        with _pyroute2_lock:
            if _pyroute2 is None:
                _pyroute2 = _import_pyroute2()
        sock = _netns.run_in(netns, rtnl.socket_here)
        try:
            yield Namespace(rtnl.Conversation(sock), _pyroute2)
        finally:
            sock.close()


class Namespace:
    """The links, addresses and routes of one network namespace, over one rtnetlink socket.

    Used by one thread at a time.
    """

    def __init__(self, conversation: rtnl.Conversation, classes: dict) -> None:
        self._conversation = conversation
        self._classes = classes

    def _ask(self, kind: str, msg_type: int, flags: int, fields: dict, attrs: list,
             link_attrs: frozenset[int] | None = None) -> list:  # fmt: skip
        """One request: a `kind` message ("link", "addr", "route") with `fields` and `attrs`; its decoded
        replies (link ones with only the attribute types in `link_attrs`, when given)."""
        msg = self._classes[kind]()
        for name, value in fields.items():
            msg[name] = value
        msg["attrs"] = attrs
        seq = self._conversation.next_seq()
        header = msg["header"]
        header["type"], header["flags"], header["sequence_number"] = msg_type, flags, seq
        msg.encode()
        replies = []
        for reply_type, data, offset in self._conversation.exchange(msg.data, seq, dump=flags == _DUMP):
            if reply_type in _CLASS:
                if link_attrs is not None and _CLASS[reply_type] == "link":
                    data, offset = rtnl.trimmed(data, offset, _IFINFOMSG, link_attrs), 0
                reply = self._classes[_CLASS[reply_type]](data, offset=offset)
                reply.decode()
                replies.append(reply)
        return replies

    def _set(self, index: int, attrs: list = (), flags: int = 0, change: int = 0) -> None:
        self._ask("link", _NEWLINK, _ASK, {"index": index, "flags": flags, "change": change}, list(attrs))

    # ---------------------------------------------------------------- links

    def link(self, name: str | None = None, *, index: int | None = None) -> Link | None:
        """The link called `name` (or with `index`), or None when there is none."""
        fields, attrs = ({"index": index}, []) if index is not None else ({}, [("IFLA_IFNAME", name)])
        try:
            found = self._ask("link", _GETLINK, _ASK, fields, attrs, link_attrs=_LINK_ATTRS)
        except LinkError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        return _link(found[0]) if found else None  # an ACK without the link: not seen, but not a crash either

    def create_link(self, name: str, kind: str, mtu: int = 0) -> None:
        """A link with no peer and no lower link: "bridge", "dummy", "ifb", ..."""
        self._ask("link", _NEWLINK, _CREATE, {}, [("IFLA_IFNAME", name), *_optional(IFLA_MTU=mtu),
                                                  ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", kind)]})])  # fmt: skip

    def create_veth(self, name: str, peer: str, peer_netns: str, mtu: int = 0, peer_mac: str = "") -> None:
        """A veth pair: `name` here, `peer` created straight into the namespace at path `peer_netns`."""
        with _netns.fd(peer_netns) as fd:
            peer_attrs = [("IFLA_IFNAME", peer), ("IFLA_NET_NS_FD", fd), *_optional(IFLA_MTU=mtu, IFLA_ADDRESS=peer_mac)]
            info = [("IFLA_INFO_KIND", "veth"), ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": peer_attrs})]})]
            self._ask("link", _NEWLINK, _CREATE, {}, [("IFLA_IFNAME", name), *_optional(IFLA_MTU=mtu),
                                                      ("IFLA_LINKINFO", {"attrs": info})])  # fmt: skip

    def create_macvlan(self, name: str, lower: int, mode: str, netns: str, mtu: int = 0, mac: str = "") -> None:
        """A macvlan on link index `lower` of this namespace, created straight into the namespace at path `netns`."""
        with _netns.fd(netns) as fd:
            info = [("IFLA_INFO_KIND", "macvlan"), ("IFLA_INFO_DATA", {"attrs": [("IFLA_MACVLAN_MODE", mode)]})]
            self._ask("link", _NEWLINK, _CREATE, {}, [
                ("IFLA_IFNAME", name), ("IFLA_LINK", lower), ("IFLA_NET_NS_FD", fd),
                *_optional(IFLA_MTU=mtu, IFLA_ADDRESS=mac), ("IFLA_LINKINFO", {"attrs": info})])  # fmt: skip

    def delete_link(self, index: int) -> bool:
        """Delete a link (a veth takes its peer along); False when it was already gone."""
        try:
            self._ask("link", _DELLINK, _ASK, {"index": index}, [])
        except LinkError as exc:
            if exc.errno == errno.ENODEV:
                return False
            raise
        return True

    def set_up(self, index: int, up: bool = True) -> None:
        self._set(index, flags=_IFF_UP if up else 0, change=_IFF_UP)

    def set_mtu(self, index: int, mtu: int) -> None:
        self._set(index, [("IFLA_MTU", mtu)])

    def set_mac(self, index: int, mac: str) -> None:
        self._set(index, [("IFLA_ADDRESS", mac)])

    def set_master(self, index: int, master: int, up: bool = False) -> None:
        """Make the link a port of bridge `master`; `up`: bring it up in the same message (the kernel
        enslaves first, then changes the flags, as two separate calls would)."""
        self._set(index, [("IFLA_MASTER", master)], flags=_IFF_UP if up else 0, change=_IFF_UP if up else 0)

    def rename(self, index: int, name: str) -> None:
        self._set(index, [("IFLA_IFNAME", name)])

    def set_promisc(self, index: int, on: bool = True) -> None:
        self._set(index, flags=_IFF_PROMISC if on else 0, change=_IFF_PROMISC)

    def set_hairpin(self, index: int, on: bool) -> None:
        """Hairpin mode of a bridge port: frames may leave by the port they came in by."""
        info = [("IFLA_INFO_KIND", "bridge_slave"), ("IFLA_INFO_SLAVE_DATA", {"attrs": [("IFLA_BRPORT_MODE", int(on))]})]
        self._set(index, [("IFLA_LINKINFO", {"attrs": info})])

    # ---------------------------------------------------------------- addresses

    def addresses(self, index: int) -> list[Address]:
        # The index asks the kernel to filter (strict checking, see rtnl.socket_here); filtered here too.
        return [
            ipaddress.ip_interface(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}")
            for msg in self._ask("addr", _GETADDR, _DUMP, {"index": index}, [])
            if msg["index"] == index
        ]

    def add_address(self, index: int, address: Address) -> None:
        """Add `address`; an IPv4 one below /31 gets its broadcast address, as `ip addr add ... brd +`."""
        attrs = [("IFA_ADDRESS", str(address.ip))]
        if address.version == 4:
            if address.network.prefixlen < 31:
                attrs.append(("IFA_BROADCAST", str(address.network.broadcast_address)))
            attrs.append(("IFA_LOCAL", str(address.ip)))
        self._ask("addr", _NEWADDR, _CREATE, _address_fields(index, address), attrs)

    def del_address(self, index: int, address: Address) -> None:
        attrs = [("IFA_ADDRESS", str(address.ip)), *([("IFA_LOCAL", str(address.ip))] if address.version == 4 else [])]
        self._ask("addr", _DELADDR, _ASK, _address_fields(index, address), attrs)

    # ---------------------------------------------------------------- routes

    def routes(self, version: int, table: int | None = MAIN_TABLE) -> list[KernelRoute]:
        """The routes of one IP version in `table` (None: every table)."""
        # The table asks the kernel to filter (strict checking, see rtnl.socket_here); filtered here too.
        fields = {"family": _FAMILY[version], "table": _table_field(table) if table else 0}
        found = [_route(msg, version) for msg in self._ask("route", _GETROUTE, _DUMP, fields,
                                                           [("RTA_TABLE", table)] if table else [])]  # fmt: skip
        return [r for r in found if table is None or r.table == table]

    def default_routes(self, version: int, table: int = MAIN_TABLE) -> list[KernelRoute]:
        return [r for r in self.routes(version, table) if r.dst.prefixlen == 0]

    def append_route(self, route: KernelRoute) -> None:
        """Add `route` beside any of the same destination (NLM_F_APPEND: a second default route is fine)."""
        self._ask("route", _NEWROUTE, _APPEND, *_route_message(route))

    def replace_route(self, route: KernelRoute) -> None:
        self._ask("route", _NEWROUTE, _REPLACE, *_route_message(route))

    def del_route(self, route: KernelRoute) -> None:
        fields = {"family": _FAMILY[route.dst.version], "dst_len": route.dst.prefixlen,
                  "table": _table_field(route.table)}  # fmt: skip
        attrs: list = [("RTA_TABLE", route.table or MAIN_TABLE)]
        if route.oif is not None:
            attrs.append(("RTA_OIF", route.oif))
        if route.gateway is not None:
            attrs.append(("RTA_GATEWAY", str(route.gateway)))
        attrs += _optional(RTA_PRIORITY=route.priority)
        if route.dst.prefixlen:
            attrs.append(("RTA_DST", str(route.dst.network_address)))
        self._ask("route", _DELROUTE, _ASK, fields, attrs)


def _optional(**values) -> list[tuple[str, object]]:
    """Only the attributes that are set: an unset MTU or MAC is the kernel's choice."""
    return [(key, value) for key, value in values.items() if value]


def _address_fields(index: int, address: Address) -> dict:
    return {"family": _FAMILY[address.version], "prefixlen": address.network.prefixlen, "index": index}


def _table_field(table: int) -> int:
    """rtmsg's 8-bit table field: the table, or main with the real one in RTA_TABLE (255 and up)."""
    return table if 0 < table < 255 else MAIN_TABLE


def _route_message(route: KernelRoute) -> tuple[dict, list]:
    """rtmsg fields and attributes of a unicast route, as pyroute2's IPRoute.route("add", ...) makes them;
    table 0 means main, without RTA_TABLE."""
    fields = {"family": _FAMILY[route.dst.version], "dst_len": route.dst.prefixlen, "table": _table_field(route.table),
              "proto": route.proto, "scope": route.scope, "type": _RTN_UNICAST}  # fmt: skip
    attrs: list = [("RTA_DST", str(route.dst.network_address))] if route.dst.prefixlen else []
    if route.oif is not None:
        attrs.append(("RTA_OIF", route.oif))
    if route.gateway is not None:
        attrs.append(("RTA_GATEWAY", str(route.gateway)))
    attrs += _optional(RTA_PRIORITY=route.priority, RTA_TABLE=route.table)
    return fields, attrs


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
