"""CHECK: the bridge, the veth pair and the container's addressing still match the ADD result.

What the reference's cmdCheck looks at: the bridge (type, MAC, promiscuity), the
container end (a veth, its MAC), a host veth of the result that is the container
end's peer and a port of the bridge, then the container's addresses and routes.
"""

from __future__ import annotations

from multipy.cni.errors import INTERNAL, CNIError
from multipy.cni.result import Interface, Result
from multipy.net import verify
from multipy.net.netlink import Link, Namespace, Netlink
from multipy.plugins.contract import Invocation

from .config import BridgeConf


def _fail(message: str) -> CNIError:
    return CNIError(INTERNAL, message)


def _bridge(host: Namespace, iface: Interface, conf: BridgeConf) -> Link:
    if iface.sandbox:
        raise _fail(f"Interface {iface.name} should not be in sandbox")
    bridge = host.link(iface.name)
    if bridge is None:
        raise _fail(f"Interface name {iface.name} not found")
    if bridge.kind != "bridge":
        raise _fail(f"Interface {iface.name} does not have link type of bridge")
    if iface.mac and iface.mac != bridge.mac:
        raise _fail(f"Bridge interface {iface.name} Mac doesn't match: {iface.mac}")
    if bridge.promisc != conf.promisc:
        raise _fail(f"Bridge interface {iface.name} configured Promisc Mode {str(conf.promisc).lower()} "
                    f"doesn't match current state: {str(bridge.promisc).lower()}")
    return bridge


def _host_veth_found(host: Namespace, result: Result, skip: set[str], bridge: Link, container: Link) -> bool:
    for iface in result.interfaces:
        if iface.name in skip or iface.sandbox:
            continue
        veth = host.link(iface.name)
        if veth is None:
            raise _fail(f"Interface name {iface.name} not found")
        if veth.kind != "veth":
            continue  # not what this plugin created
        if veth.index == container.link_index and veth.link_index == container.index and veth.master == bridge.index:
            if iface.mac and iface.mac != veth.mac:
                raise _fail(f"Interface {iface.name} Mac doesn't match: {iface.mac} not found")
            return True
    return False


def verify_attachment(netlink: Netlink, inv: Invocation, conf: BridgeConf, result: Result) -> None:
    bridge_if = next((i for i in result.interfaces if i.name == conf.bridge), None)
    container_if = next((i for i in result.interfaces if i.name == inv.ifname and i.sandbox == inv.netns), None)
    if bridge_if is None:
        raise _fail(f"CNI created bridge {conf.bridge} in host namespace was not found in prevResult")
    if container_if is None:
        raise _fail(f"prevResult has no interface {inv.ifname} in sandbox {inv.netns}")
    with netlink.open(inv.netns) as pod, netlink.open() as host:
        container = pod.link(inv.ifname)
        if container is None:
            raise _fail(f"CNI created interface in container {inv.ifname} not found")
        if container.kind != "veth":
            raise _fail(f"Error: Container interface {inv.ifname} not of type veth")
        if container_if.mac and container_if.mac != container.mac:
            raise _fail(f"Interface {inv.ifname} Mac {container_if.mac} doesn't match container Mac: {container.mac}")
        bridge = _bridge(host, bridge_if, conf)
        if not _host_veth_found(host, result, {conf.bridge, inv.ifname}, bridge, container):
            raise _fail(f"CNI veth created for bridge {conf.bridge} was not found")
        try:
            verify.interface_ips(pod, inv.ifname, result.ips)
            verify.routes(pod, result.routes)
        except verify.CheckError as exc:
            raise _fail(str(exc)) from None
