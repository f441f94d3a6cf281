"""What CHECK compares: the addresses and routes a result promised, against the kernel.

The reference's pkg/ip ValidateExpectedInterfaceIPs and ValidateExpectedRoute, with
upstream's v1.3.0 fix: a route without a gateway matches on its destination alone
(1.1.1 also demanded a nil gateway, so flannel's gateway-less routes always failed).
Both take an IPRoute already open in the namespace to look at.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING

from .netlink import Netlink

if TYPE_CHECKING:
    from multipy.cni.result import IPConfig, Route

_MAIN_TABLE = 254
_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}


class CheckError(Exception):
    """The kernel does not hold what the result says; the message names the difference."""


def interface_ips(ipr, ifname: str, ips: list[IPConfig]) -> None:
    """Every address is on `ifname` with its prefix, and its subnet is routed."""
    if Netlink.index(ipr, ifname) is None:
        raise CheckError(f"Cannot find container link {ifname}")
    present = set(Netlink.addresses(ipr, ifname))
    for ipc in ips:
        if ipc.address not in present:
            raise CheckError(f"Failed to match addr {ipc.address} on interface {ifname}")
        if not _found(ipr, ipc.address.network, None, _MAIN_TABLE):
            raise CheckError(f"no route to {ipc.address.network} for address {ipc.address} on interface {ifname}")


def routes(ipr, expected: list[Route]) -> None:
    """Every route is in its table (main unless it names one), via its gateway when it has one."""
    for route in expected:
        table = route.table if route.table else _MAIN_TABLE
        if not _found(ipr, route.dst, route.gw, table):
            via = f" via {route.gw}" if route.gw is not None else ""
            raise CheckError(f"Expected Route {{Dst: {route.dst}{via}}} not found in routing table")


def _found(ipr, dst, gw, table: int) -> bool:
    for msg in ipr.get_routes(family=_FAMILY[dst.version]):
        if (msg.get_attr("RTA_TABLE") or msg["table"]) != table or msg["dst_len"] != dst.prefixlen:
            continue
        address = msg.get_attr("RTA_DST") or ("0.0.0.0" if dst.version == 4 else "::")
        if ipaddress.ip_network(f"{address}/{msg['dst_len']}", strict=False) != dst:
            continue
        via = msg.get_attr("RTA_GATEWAY")
        if gw is None or (via is not None and ipaddress.ip_address(via) == gw):
            return True
    return False
