"""CHECK: the bridge, the veth pair and the container's addressing still match the ADD result.

What the reference's cmdCheck looks at: the bridge (type, MAC, promiscuity), the
container end (a veth, its MAC), a host veth of the result that is the container
end's peer and a port of the bridge, then the container's addresses and routes.
"""

from __future__ import annotations

from multipy.cni.errors import INTERNAL, CNIError
from multipy.cni.result import Interface, Result
from multipy.net import verify
from multipy.net.netlink import Netlink
from multipy.net.netns import run_in
from multipy.plugins.contract import Invocation

from .config import BridgeConf
from .link import kind

_IFF_PROMISC = 0x100


def _fail(message: str) -> CNIError:
    return CNIError(INTERNAL, message)


def _link_facts(ipr, name: str) -> dict | None:
    link = Netlink.link(ipr, name)
    if link is None:
        return None
    return {
        "index": link["index"],
        "kind": kind(link),
        "mac": link.get_attr("IFLA_ADDRESS"),
        "peer": link.get_attr("IFLA_LINK"),
        "master": link.get_attr("IFLA_MASTER"),
        "promisc": bool(link["flags"] & _IFF_PROMISC),
    }


def _container_side(netlink: Netlink, ifname: str) -> dict | None:
    with netlink.route(None) as ipr:
        return _link_facts(ipr, ifname)


def _addressing(netlink: Netlink, ifname: str, result: Result) -> None:
    with netlink.route(None) as ipr:
        verify.interface_ips(ipr, ifname, result.ips)
        verify.routes(ipr, result.routes)


def _bridge(host, iface: Interface, conf: BridgeConf) -> dict:
    if iface.sandbox:
        raise _fail(f"Interface {iface.name} should not be in sandbox")
    facts = _link_facts(host, iface.name)
    if facts is None:
        raise _fail(f"Interface name {iface.name} not found")
    if facts["kind"] != "bridge":
        raise _fail(f"Interface {iface.name} does not have link type of bridge")
    if iface.mac and iface.mac != facts["mac"]:
        raise _fail(f"Bridge interface {iface.name} Mac doesn't match: {iface.mac}")
    if facts["promisc"] != conf.promisc:
        raise _fail(f"Bridge interface {iface.name} configured Promisc Mode {str(conf.promisc).lower()} "
                    f"doesn't match current state: {str(facts['promisc']).lower()}")
    return facts


def _host_veth_found(host, result: Result, skip: set[str], bridge: dict, container: dict) -> bool:
    for iface in result.interfaces:
        if iface.name in skip or iface.sandbox:
            continue
        facts = _link_facts(host, iface.name)
        if facts is None:
            raise _fail(f"Interface name {iface.name} not found")
        if facts["kind"] != "veth":
            continue  # not what this plugin created
        if facts["index"] == container["peer"] and facts["peer"] == container["index"] and \
                facts["master"] == bridge["index"]:
            if iface.mac and iface.mac != facts["mac"]:
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
    container = run_in(inv.netns, _container_side, netlink, inv.ifname)
    if container is None:
        raise _fail(f"CNI created interface in container {inv.ifname} not found")
    if container["kind"] != "veth":
        raise _fail(f"Error: Container interface {inv.ifname} not of type veth")
    if container_if.mac and container_if.mac != container["mac"]:
        raise _fail(f"Interface {inv.ifname} Mac {container_if.mac} doesn't match container Mac: {container['mac']}")
    with netlink.route(None) as host:
        bridge = _bridge(host, bridge_if, conf)
        if not _host_veth_found(host, result, {conf.bridge, inv.ifname}, bridge, container):
            raise _fail(f"CNI veth created for bridge {conf.bridge} was not found")
    try:
        run_in(inv.netns, _addressing, netlink, inv.ifname, result)
    except verify.CheckError as exc:
        raise _fail(str(exc)) from None
