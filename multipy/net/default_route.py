"""Moving a pod's default route to the interface its annotation names (Multus's "default-route")."""

from __future__ import annotations

import ipaddress
import socket

from .netlink import Netlink

_MAIN_TABLE = 254


def take(netlink: Netlink, netns: str, ifname: str, gateways: list[str]) -> None:
    """Per family of `gateways`: drop the default routes of every other interface, then route
    the default through the gateway on `ifname`. Nothing else in the namespace changes."""
    with netlink.route(netns) as ipr:
        index = Netlink.index(ipr, ifname)
        if index is None:
            raise OSError(f"interface {ifname} is not in {netns}")
        for gateway in gateways:
            gw = ipaddress.ip_address(gateway)
            family = socket.AF_INET6 if gw.version == 6 else socket.AF_INET
            for route in ipr.get_routes(family=family, table=_MAIN_TABLE):
                if route["dst_len"] == 0 and route.get_attr("RTA_OIF") != index:
                    ipr.route("del", family=family, dst_len=0, table=_MAIN_TABLE, oif=route.get_attr("RTA_OIF"),
                              gateway=route.get_attr("RTA_GATEWAY"), priority=route.get_attr("RTA_PRIORITY"))
            ipr.route("replace", family=family, dst="::/0" if gw.version == 6 else "0.0.0.0/0", gateway=str(gw),
                      oif=index, table=_MAIN_TABLE)  # fmt: skip
