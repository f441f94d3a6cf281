"""Gateways from an IPAM result, as the reference's calcGateways works them out.

Pure: it edits the result (every address belongs to the container veth, index 2;
a missing gateway becomes network+1 with isGateway; isDefaultGateway adds one
default route per family unless IPAM gave one) and returns the addresses the
bridge must carry (gateway/prefix), in result order.
"""

from __future__ import annotations

import ipaddress

from multipy.cni.result import Result, Route

CONTAINER_INTERFACE = 2  # interfaces are [bridge, host veth, container veth]

_DEFAULT = {4: ipaddress.ip_network("0.0.0.0/0"), 6: ipaddress.ip_network("::/0")}


def apply(result: Result, is_gateway: bool, is_default_gateway: bool) -> list:
    bridge_addresses = []
    has_default = {
        version: any(r.gw is not None and r.dst == dst for r in result.routes) for version, dst in _DEFAULT.items()
    }
    for ipc in result.ips:
        ipc.interface = CONTAINER_INTERFACE
        version = ipc.address.version
        if ipc.gateway is None and is_gateway:
            ipc.gateway = ipc.address.network.network_address + 1
        if is_default_gateway and not has_default[version]:
            result.routes.append(Route(dst=_DEFAULT[version], gw=ipc.gateway))
            has_default[version] = True
        if is_gateway:
            bridge_addresses.append(ipaddress.ip_interface(f"{ipc.gateway}/{ipc.address.network.prefixlen}"))
    return bridge_addresses
