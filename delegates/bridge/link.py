"""The bridge plugin's kernel work, in the reference's order and with its messages.

Host-side functions take the node's Namespace (where multipy runs), container-side ones
the pod's, both opened by the plugin through multipy.net.netlink.
"""

from __future__ import annotations

import errno
import os
import time

from multipy.cni.errors import INTERNAL, INVALID_NETWORK_CONFIG, CNIError
from multipy.net import ifconfig, sysctl
from multipy.net.netlink import Link, LinkError, Namespace

_NO_MAC = "00:00:00:00:00:00"
_VETH_ATTEMPTS = 10
_PORT_UP_WAITS = (0, 0.05, 0.5, 1, 1)  # seconds; the reference's bridge port check


def _quiet_sysctls(netns: str | None, values: dict[str, str]) -> None:
    # The reference ignores these failures too (e.g. IPv6 disabled: no /proc/sys/net/ipv6).
    sysctl.write_each(netns, values)


# ---------------------------------------------------------------- host side


def ensure_bridge(host: Namespace, name: str, mtu: int, promisc: bool) -> Link:
    """Create the bridge or take the existing one if it really is a bridge; accept_ra off, up."""
    # Looked up first: on a node every pod but the first finds it, and a refused create costs more than a lookup.
    bridge = host.link(name)
    if bridge is None:
        try:
            host.create_link(name, "bridge", mtu)
        except LinkError as exc:
            # EEXIST also when a parallel ADD made it first: what exists is checked below either way.
            if exc.errno != errno.EEXIST:
                raise CNIError(INTERNAL, f'failed to create bridge "{name}": could not add "{name}": {exc.strerror}') from None
        bridge = host.link(name)
    if bridge is None:
        raise CNIError(INTERNAL, f'failed to create bridge "{name}": could not lookup "{name}": Link not found')
    if bridge.kind != "bridge":
        raise CNIError(
            INVALID_NETWORK_CONFIG, f'failed to create bridge "{name}": "{name}" already exists but is not a bridge'
        )
    if promisc:
        host.set_promisc(bridge.index)
    _quiet_sysctls(None, {f"net/ipv6/conf/{name}/accept_ra": "0"})  # routes on the bridge are ours, not RA's
    if not bridge.up:
        host.set_up(bridge.index)
    return bridge


def create_veth(host: Namespace, netns: str, ifname: str, mtu: int, mac: str) -> str:
    """A veth pair: `veth<8 hex>` here, `ifname` in the pod namespace; returns the host end's name."""
    for _ in range(_VETH_ATTEMPTS):
        host_name = "veth" + os.urandom(4).hex()
        try:
            host.create_veth(host_name, ifname, netns, mtu=mtu, peer_mac=mac)
            return host_name
        except LinkError as exc:
            if exc.errno != errno.EEXIST:
                raise CNIError(INTERNAL, f"failed to make veth pair: {exc.strerror}") from None
            if host.link(host_name) is None:
                raise CNIError(INTERNAL, f"container veth name provided ({ifname}) already exists") from None
    raise CNIError(INTERNAL, "failed to find a unique veth name")


def delete(ns: Namespace, name: str) -> None:
    """Delete a link if it still exists (the host end takes its peer along)."""
    found = ns.link(name)
    if found is not None:
        ns.delete_link(found.index)


def attach_port(host: Namespace, host_name: str, bridge: Link, hairpin: bool) -> None:
    _quiet_sysctls(None, {f"net/ipv6/conf/{host_name}/accept_ra": "0"})
    port = host.link(host_name)
    if port is None:
        raise CNIError(INTERNAL, f'failed to lookup "{host_name}": Link not found')
    try:
        host.set_master(port.index, bridge.index, up=True)
    except LinkError as exc:
        raise CNIError(INTERNAL, f'failed to connect "{host_name}" to bridge {bridge.name}: {exc.strerror}') from None
    try:
        host.set_hairpin(port.index, hairpin)  # set either way, as the reference does
    except LinkError as exc:
        raise CNIError(INTERNAL, f"failed to setup hairpin mode for {host_name}: {exc.strerror}") from None


def ensure_gateway(host: Namespace, bridge: Link, gateway, force: bool) -> None:
    """Put gateway/prefix on the bridge (reference ensureAddr) and pin the bridge's MAC."""
    name = bridge.name
    for present in host.addresses(bridge.index):
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
                host.del_address(bridge.index, present)
            except LinkError as exc:
                raise CNIError(INTERNAL, f'failed to set bridge addr: could not remove IP address from "{name}": '
                               f"{exc.strerror}") from None
    try:
        host.add_address(bridge.index, gateway)  # with its broadcast, as the reference's netlink library adds it
    except LinkError as exc:
        if exc.errno != errno.EEXIST:
            raise CNIError(INTERNAL, f'failed to set bridge addr: could not add IP address to "{name}": '
                           f"{exc.strerror}") from None
    # Otherwise the bridge takes the lowest MAC of its ports, and changes as pods come and go. Like the
    # reference, pin the MAC the bridge had before this pod's port joined (its own, for the first pod);
    # a bridge whose last port left may have none (all zeros), then the current one is pinned.
    mac = bridge.mac
    if not mac or mac == _NO_MAC:
        mac = host.link(name).mac
    try:
        host.set_mac(bridge.index, mac)
    except LinkError as exc:
        raise CNIError(INTERNAL, f"failed to set bridge addr: could not set bridge's mac: {exc.strerror}") from None


def enable_forwarding(version: int) -> None:
    key = "net/ipv4/ip_forward" if version == 4 else "net/ipv6/conf/all/forwarding"
    try:
        if sysctl.read(None, key) != "1":
            sysctl.write(None, {key: "1"})
    except OSError as exc:
        raise CNIError(INTERNAL, f"failed to enable forwarding: {exc}") from None


def wait_port_up(host: Namespace, host_name: str) -> Link:
    """The host end once it is oper up (a port that never comes up is an error)."""
    state = "unknown"
    for pause in _PORT_UP_WAITS:
        time.sleep(pause)
        port = host.link(host_name)
        if port is None:
            raise CNIError(INTERNAL, f'failed to lookup "{host_name}": Link not found')
        state = port.operstate
        if state == "UP":
            return port
    raise CNIError(INTERNAL, f"bridge port in error state: {state}")


# ---------------------------------------------------------------- container side


def configure_container(pod: Namespace, netns: str, ifname: str, result, enable_dad: bool) -> str:
    """Sysctls, addresses, up, routes for the container end; returns its MAC."""
    dad = ({f"net/ipv6/conf/{ifname}/enhanced_dad": "1", f"net/ipv6/conf/{ifname}/accept_dad": "1"} if enable_dad
           else {f"net/ipv6/conf/{ifname}/accept_dad": "0"})
    _quiet_sysctls(netns, {**dad, f"net/ipv4/conf/{ifname}/arp_notify": "1"})
    try:
        return ifconfig.configure(pod, netns, ifname, result).mac  # the MAC a veth end is made with stays
    except ifconfig.ConfigureError as exc:
        raise CNIError(INTERNAL, str(exc)) from None


def container_up(pod: Namespace, ifname: str) -> str:
    """Layer 2 only: just bring the container end up; returns its MAC."""
    found = pod.link(ifname)
    if found is None:
        raise CNIError(INTERNAL, f"failed to retrieve link: {ifname}: Link not found")
    pod.set_up(found.index)
    return found.mac
