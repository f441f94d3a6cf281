"""What CHECK compares: the addresses and routes a result promised, against the kernel.

The reference's pkg/ip ValidateExpectedInterfaceIPs and ValidateExpectedRoute, with
upstream's v1.3.0 fix: a route without a gateway matches on its destination alone
(1.1.1 also demanded a nil gateway, so flannel's gateway-less routes always failed).
Both take a Namespace already open on the namespace to look at.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .netlink import MAIN_TABLE, Namespace

if TYPE_CHECKING:
    from multipy.cni.result import IPConfig, Route


class CheckError(Exception):
    """The kernel does not hold what the result says; the message names the difference."""


def interface_ips(ns: Namespace, ifname: str, ips: list[IPConfig]) -> None:
    """Every address is on `ifname` with its prefix, and its subnet is routed."""
    link = ns.link(ifname)
    if link is None:
        raise CheckError(f"Cannot find container link {ifname}")
    present = set(ns.addresses(link.index))
    for ipc in ips:
        if ipc.address not in present:
            raise CheckError(f"Failed to match addr {ipc.address} on interface {ifname}")
        if not _found(ns, ipc.address.network, None, MAIN_TABLE):
            raise CheckError(f"no route to {ipc.address.network} for address {ipc.address} on interface {ifname}")


def routes(ns: Namespace, expected: list[Route]) -> None:
    """Every route is in its table (main unless it names one), via its gateway when it has one."""
    for route in expected:
        table = route.table if route.table else MAIN_TABLE
        if not _found(ns, route.dst, route.gw, table):
            via = f" via {route.gw}" if route.gw is not None else ""
            raise CheckError(f"Expected Route {{Dst: {route.dst}{via}}} not found in routing table")


def _found(ns: Namespace, dst, gw, table: int) -> bool:
    return any(r.dst == dst and (gw is None or r.gateway == gw) for r in ns.routes(dst.version, table))
