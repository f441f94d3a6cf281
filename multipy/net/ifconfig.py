"""Putting an IPAM result onto an interface, as the reference pkg/ipam ConfigureIface does.

Addresses of `result.ips` whose `interface` points at `ifname`, then link up,
then every route of the result: a route without its own gateway goes via the
first gateway of its family, so flannel's gateway-less routes work. Routes are
appended (NLM_F_APPEND, the reference's RouteAddEcmp): a second default route,
as the seed puts on net1 beside eth0's, is added rather than refused.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from . import sysctl
from .netlink import KernelRoute, Link, LinkError, Namespace

if TYPE_CHECKING:
    from multipy.cni.result import Result


class ConfigureError(Exception):
    """Configuring the interface failed; the message reads like the reference's."""


def configure(ns: Namespace, netns: str | None, ifname: str, result: Result, link: Link | None = None) -> Link:
    """Apply `result` to `ifname` through `ns`, the Namespace open on `netns`; returns the link as looked up.

    `link`: the caller's own lookup of `ifname` (its index and MAC), which saves asking the kernel again.
    """
    if not result.interfaces:
        raise ConfigureError("no interfaces to configure")
    link = link or ns.link(ifname)
    if link is None:
        raise ConfigureError(f"failed to lookup {ifname!r}: Link not found")
    gateways: dict[int, ipaddress.IPv4Address | ipaddress.IPv6Address] = {}
    ipv6_enabled = False
    for ipc in result.ips:
        if ipc.interface is None:
            continue
        if not 0 <= ipc.interface < len(result.interfaces) or result.interfaces[ipc.interface].name != ifname:
            raise ConfigureError(f"failed to add IP addr {ipc.address} to {ifname!r}: invalid interface index")
        if ipc.address.version == 6 and not ipv6_enabled:
            _enable_ipv6(netns, ifname)
            ipv6_enabled = True
        try:
            ns.add_address(link.index, ipc.address)
        except LinkError as exc:
            raise ConfigureError(f"failed to add IP addr {ipc.address} to {ifname!r}: {exc.strerror}") from None
        if ipc.gateway is not None:
            gateways.setdefault(ipc.gateway.version, ipc.gateway)
    try:
        ns.set_up(link.index)
    except LinkError as exc:
        raise ConfigureError(f"failed to set {ifname!r} UP: {exc.strerror}") from None
    for route in result.routes:
        gw = route.gw if route.gw is not None else gateways.get(route.dst.version)
        kernel_route = KernelRoute(route.dst, oif=link.index, gateway=gw, table=route.table or 0,
                                   priority=route.priority or 0, scope=route.scope or 0)  # fmt: skip
        try:
            ns.append_route(kernel_route)
        except LinkError as exc:
            raise ConfigureError(f"failed to add route '{route.dst} via {gw} dev {ifname}': {exc.strerror}") from None
    return link


def _enable_ipv6(netns: str | None, ifname: str) -> None:
    # A namespace may start with IPv6 disabled; the reference turns it on for lo and the link.
    wanted = {}
    for name in ("lo", ifname):
        key = f"net/ipv6/conf/{name}/disable_ipv6"
        try:
            if sysctl.read(netns, key) != "0":
                wanted[key] = "0"
        except OSError:
            continue
    if wanted:
        sysctl.write(netns, wanted)
