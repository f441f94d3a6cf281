"""The bridge plugin's kernel work, in the reference's order and with its messages.

Host-side functions take an IPRoute open in the node's namespace (where multipy
runs). Container-side ones run inside the pod's namespace (`netns.run_in`) and
open their own IPRoute there: cheaper than a socket made for another namespace.
"""

from __future__ import annotations

import errno
import os
import time

from multipy.cni.errors import INTERNAL, INVALID_NETNS, INVALID_NETWORK_CONFIG, CNIError
from multipy.net import ifconfig, sysctl
from multipy.net.netlink import LinkError, Netlink

_IFF_PROMISC = 0x100
_NO_MAC = "00:00:00:00:00:00"
_VETH_ATTEMPTS = 10
_PORT_UP_WAITS = (0, 0.05, 0.5, 1, 1)  # seconds; the reference's bridge port check


def _quiet_sysctls(values: dict[str, str]) -> None:
    # The reference ignores these failures too (e.g. IPv6 disabled: no /proc/sys/net/ipv6).
    for key, value in values.items():
        try:
            sysctl.write(None, {key: value})
        except OSError:
            pass


def get(ipr, name: str):
    """The link called `name` here, or None (one request, where lookup-then-get takes two)."""
    try:
        return ipr.link("get", ifname=name)[0]
    except LinkError as exc:
        if exc.errno == errno.ENODEV:
            return None
        raise


def kind(link) -> str:
    info = link.get_attr("IFLA_LINKINFO")
    return (info.get_attr("IFLA_INFO_KIND") if info is not None else None) or ""


# ---------------------------------------------------------------- host side


def ensure_bridge(ipr, name: str, mtu: int, promisc: bool):
    """Create the bridge or take the existing one if it really is a bridge; accept_ra off, up. Returns its link."""
    spec: dict = {"ifname": name, "kind": "bridge"}
    if mtu:
        spec["mtu"] = mtu
    try:
        ipr.link("add", **spec)
    except LinkError as exc:
        # EEXIST also when a parallel ADD made it first: what exists is checked below either way.
        if exc.errno != errno.EEXIST:
            raise CNIError(INTERNAL, f'failed to create bridge "{name}": could not add "{name}": {exc.strerror}') from None
    link = get(ipr, name)
    if link is None:
        raise CNIError(INTERNAL, f'failed to create bridge "{name}": could not lookup "{name}": Link not found')
    if kind(link) != "bridge":
        raise CNIError(
            INVALID_NETWORK_CONFIG, f'failed to create bridge "{name}": "{name}" already exists but is not a bridge'
        )
    if promisc:
        ipr.link("set", index=link["index"], flags=_IFF_PROMISC, change=_IFF_PROMISC)
    _quiet_sysctls({f"net/ipv6/conf/{name}/accept_ra": "0"})  # routes on the bridge are ours, not RA's
    ipr.link("set", index=link["index"], state="up")
    return link


def open_netns(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise CNIError(INVALID_NETNS, f'failed to open netns "{path}": {exc.strerror}') from None


def create_veth(ipr, netns_fd: int, ifname: str, mtu: int, mac: str) -> str:
    """A veth pair: `veth<8 hex>` here, `ifname` in the pod namespace; returns the host end's name."""
    peer: dict = {"ifname": ifname, "net_ns_fd": netns_fd}
    spec: dict = {"kind": "veth", "peer": peer}
    if mtu:
        spec["mtu"] = peer["mtu"] = mtu
    if mac:
        peer["address"] = mac
    for _ in range(_VETH_ATTEMPTS):
        host_name = "veth" + os.urandom(4).hex()
        try:
            ipr.link("add", ifname=host_name, **spec)
            return host_name
        except LinkError as exc:
            if exc.errno != errno.EEXIST:
                raise CNIError(INTERNAL, f"failed to make veth pair: {exc.strerror}") from None
            if Netlink.index(ipr, host_name) is None:
                raise CNIError(INTERNAL, f"container veth name provided ({ifname}) already exists") from None
    raise CNIError(INTERNAL, "failed to find a unique veth name")


def delete(ipr, name: str) -> None:
    """Delete a link here if it still exists (the host end takes its peer along)."""
    try:
        ipr.link("del", ifname=name)
    except LinkError as exc:
        if exc.errno != errno.ENODEV:
            raise


def attach_port(ipr, host_name: str, bridge, hairpin: bool) -> None:
    _quiet_sysctls({f"net/ipv6/conf/{host_name}/accept_ra": "0"})
    bridge_name = bridge.get_attr("IFLA_IFNAME")
    try:
        ipr.link("set", ifname=host_name, state="up", master=bridge["index"])
    except LinkError as exc:
        raise CNIError(INTERNAL, f'failed to connect "{host_name}" to bridge {bridge_name}: {exc.strerror}') from None
    index = get(ipr, host_name)["index"]
    try:
        ipr.brport("set", index=index, mode=int(hairpin))  # set either way, as the reference does
    except LinkError as exc:
        raise CNIError(INTERNAL, f"failed to setup hairpin mode for {host_name}: {exc.strerror}") from None


def ensure_gateway(ipr, bridge, gateway, force: bool) -> None:
    """Put gateway/prefix on the bridge (reference ensureAddr) and pin the bridge's MAC."""
    name = bridge.get_attr("IFLA_IFNAME")
    for present in Netlink.addresses(ipr, name):
        if present.version != gateway.version:
            continue
        if present == gateway:
            return
        # Several IPv6 subnets may share the bridge; an IPv4 address, or an overlapping IPv6 one, is replaced or refused.
        if gateway.version == 4 or gateway.ip in present.network or present.ip in gateway.network:
            if not force:
                raise CNIError(
                    INVALID_NETWORK_CONFIG,
                    f'failed to set bridge addr: "{name}" already has an IP address different from {gateway}',
                )
            try:
                ipr.addr("del", index=bridge["index"], address=str(present.ip), prefixlen=present.network.prefixlen)
            except LinkError as exc:
                raise CNIError(INTERNAL, f'failed to set bridge addr: could not remove IP address from "{name}": '
                               f"{exc.strerror}") from None
    spec: dict = {"index": bridge["index"], "address": str(gateway.ip), "prefixlen": gateway.network.prefixlen}
    if gateway.version == 4 and gateway.network.prefixlen < 31:
        spec["broadcast"] = str(gateway.network.broadcast_address)  # as the reference's netlink library adds it
    try:
        ipr.addr("add", **spec)
    except LinkError as exc:
        if exc.errno != errno.EEXIST:
            raise CNIError(INTERNAL, f'failed to set bridge addr: could not add IP address to "{name}": '
                           f"{exc.strerror}") from None
    # Otherwise the bridge takes the lowest MAC of its ports, and changes as pods come and go. Like the
    # reference, pin the MAC the bridge had before this pod's port joined (its own, for the first pod);
    # a bridge whose last port left may have none (all zeros), then the current one is pinned.
    mac = bridge.get_attr("IFLA_ADDRESS")
    if not mac or mac == _NO_MAC:
        mac = get(ipr, name).get_attr("IFLA_ADDRESS")
    try:
        ipr.link("set", index=bridge["index"], address=mac)
    except LinkError as exc:
        raise CNIError(INTERNAL, f"failed to set bridge addr: could not set bridge's mac: {exc.strerror}") from None


def enable_forwarding(version: int) -> None:
    key = "net/ipv4/ip_forward" if version == 4 else "net/ipv6/conf/all/forwarding"
    try:
        if sysctl.read(None, key) != "1":
            sysctl.write(None, {key: "1"})
    except OSError as exc:
        raise CNIError(INTERNAL, f"failed to enable forwarding: {exc}") from None


def wait_port_up(ipr, host_name: str):
    """The host end once it is oper up (a port that never comes up is an error). Returns its link."""
    state = "unknown"
    for pause in _PORT_UP_WAITS:
        time.sleep(pause)
        link = get(ipr, host_name)
        if link is None:
            raise CNIError(INTERNAL, f'failed to lookup "{host_name}": Link not found')
        state = link.get_attr("IFLA_OPERSTATE")
        if state == "UP":
            return link
    raise CNIError(INTERNAL, f"bridge port in error state: {state}")


# ---------------------------------------------------------------- container side (run inside the pod namespace)


def configure_container(netlink: Netlink, ifname: str, result, enable_dad: bool) -> str:
    """Sysctls, addresses, up, routes for the container end; returns its MAC."""
    dad = ({f"net/ipv6/conf/{ifname}/enhanced_dad": "1", f"net/ipv6/conf/{ifname}/accept_dad": "1"} if enable_dad
           else {f"net/ipv6/conf/{ifname}/accept_dad": "0"})
    _quiet_sysctls({**dad, f"net/ipv4/conf/{ifname}/arp_notify": "1"})
    with netlink.route(None) as ipr:
        try:
            ifconfig.configure(ipr, None, ifname, result)
        except ifconfig.ConfigureError as exc:
            raise CNIError(INTERNAL, str(exc)) from None
        return get(ipr, ifname).get_attr("IFLA_ADDRESS")


def container_up(netlink: Netlink, ifname: str) -> str:
    """Layer 2 only: just bring the container end up; returns its MAC."""
    with netlink.route(None) as ipr:
        link = get(ipr, ifname)
        if link is None:
            raise CNIError(INTERNAL, f"failed to retrieve link: {ifname}: Link not found")
        ipr.link("set", index=link["index"], state="up")
        return link.get_attr("IFLA_ADDRESS")


def delete_container_link(netlink: Netlink, ifname: str) -> None:
    with netlink.route(None) as ipr:
        delete(ipr, ifname)
