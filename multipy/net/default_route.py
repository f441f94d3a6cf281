"""Moving a pod's default route to the interface its annotation names (Multus's "default-route")."""

from __future__ import annotations

import ipaddress

from .netlink import MAIN_TABLE, PROTO_STATIC, KernelRoute, Netlink

_ANY = {4: ipaddress.ip_network("0.0.0.0/0"), 6: ipaddress.ip_network("::/0")}


def take(netlink: Netlink | None, netns: str, ifname: str, gateways: list[str]) -> None:
    """Per family of `gateways`: drop the default routes of every other interface, then route
    the default through the gateway on `ifname`. Nothing else in the namespace changes."""
    with (netlink or Netlink()).open(netns) as pod:
        link = pod.link(ifname)
        if link is None:
            raise OSError(f"interface {ifname} is not in {netns}")
        for gateway in gateways:
            gw = ipaddress.ip_address(gateway)
            for route in pod.routes(gw.version, MAIN_TABLE):
                if route.dst.prefixlen == 0 and route.oif != link.index:
                    pod.del_route(route)
            pod.replace_route(KernelRoute(_ANY[gw.version], oif=link.index, gateway=gw, table=MAIN_TABLE,
                                          proto=PROTO_STATIC))  # fmt: skip
