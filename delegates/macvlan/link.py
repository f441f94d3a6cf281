"""The macvlan link itself: its master, its creation straight into the pod, its removal and state.

Every function takes an IPRoute already open in the right namespace (from
multipy.net.netlink), so a request opens each namespace once.
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
from dataclasses import dataclass

from multipy.cni.errors import INTERNAL, INVALID_ENVIRONMENT, INVALID_NETNS, INVALID_NETWORK_CONFIG, CNIError
from multipy.net.netlink import LinkError, Netlink


@dataclass(frozen=True)
class Master:
    name: str
    index: int
    mtu: int
    mac: str


@dataclass(frozen=True)
class LinkState:
    index: int
    kind: str
    mode: str
    mac: str
    parent_index: int  # IFLA_LINK: the master's index in the namespace the link was made from


def default_route_interface(ipr) -> str:
    """The interface of the host's first default route (IPv4 first), as the reference picks it."""
    for family in (socket.AF_INET, socket.AF_INET6):
        for route in ipr.get_default_routes(family=family, table=254):
            oif = route.get_attr("RTA_OIF")
            if oif is None:  # multipath: the first hop's device
                hops = route.get_attr("RTA_MULTIPATH") or []
                oif = hops[0]["oif"] if hops else None
            if oif:
                found = ipr.get_links(oif)
                if found:
                    return found[0].get_attr("IFLA_IFNAME")
    raise CNIError(
        INVALID_NETWORK_CONFIG,
        "master is not set and the host network namespace has no default route to take it from",
    )


def master(ipr, name: str) -> Master:
    found = Netlink.link(ipr, name)
    if found is None:
        raise CNIError(
            INVALID_NETWORK_CONFIG,
            f'failed to lookup master "{name}": Link not found (the master must be a link of the host network namespace)',
        )
    return Master(name, found["index"], found.get_attr("IFLA_MTU"), found.get_attr("IFLA_ADDRESS") or "")


def create(host, netns_path: str, parent: Master, mode: str, mtu: int, mac: str) -> str:
    """Create the macvlan directly inside the pod namespace under a temporary name; returns that name.

    A temporary name, as the reference does: kernels once checked the name against the
    creating namespace too, and a clash in the pod is then a clean rename failure.
    """
    try:
        netns_fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CNIError(INVALID_NETNS, f"failed to open netns {netns_path!r}: no such namespace") from None
    except OSError as exc:
        raise CNIError(INVALID_NETNS, f"failed to open netns {netns_path!r}: {exc.strerror}") from None
    temporary = "veth" + secrets.token_hex(4)
    spec: dict = {"ifname": temporary, "kind": "macvlan", "link": parent.index, "macvlan_mode": mode}
    if mtu:
        spec["mtu"] = mtu
    if mac:
        spec["address"] = mac
    try:
        host.link("add", net_ns_fd=netns_fd, **spec)
    except LinkError as exc:
        raise _create_error(exc, parent, mode) from None
    finally:
        os.close(netns_fd)
    return temporary


def _create_error(exc: LinkError, parent: Master, mode: str) -> CNIError:
    if exc.errno == errno.EINVAL and mode == "passthru":
        return CNIError(
            INVALID_NETWORK_CONFIG,
            f'failed to create macvlan: master "{parent.name}" already carries macvlans, so it cannot take a passthru one',
        )
    # A master that carries a passthru macvlan refuses every other one with EINVAL too.
    hint = " (does the master already carry a passthru macvlan?)" if exc.errno == errno.EINVAL else ""
    return CNIError(INTERNAL, f"failed to create macvlan on master {parent.name!r}: {exc.strerror}{hint}")


def set_up(pod, ifname: str) -> None:
    try:
        Netlink.set_up(pod, ifname)
    except LinkError as exc:
        # EADDRINUSE here: the kernel checks a macvlan's MAC against its siblings only when it comes up.
        raise CNIError(INTERNAL, f'failed to set "{ifname}" UP: {exc.strerror}') from None


def rename(pod, temporary: str, ifname: str) -> str:
    """Give the new link its CNI_IFNAME; returns its MAC. On failure the link is deleted."""
    index = Netlink.index(pod, temporary)
    try:
        pod.link("set", index=index, ifname=ifname)
    except LinkError as exc:
        try:
            _delete_index(pod, index)
        except LinkError:
            pass  # the rename's error is the one to report; the namespace's teardown takes the link
        code = INVALID_ENVIRONMENT if exc.errno == errno.EEXIST else INTERNAL
        reason = exc.strerror.lower()
        hint = f" (CNI_IFNAME {ifname!r} is already in use in the pod)" if exc.errno == errno.EEXIST else ""
        raise CNIError(code, f'failed to rename macvlan to "{ifname}": {reason}{hint}') from None
    return pod.link("get", index=index)[0].get_attr("IFLA_ADDRESS")


def _delete_index(ipr, index: int) -> None:
    try:
        ipr.link("del", index=index)
    except LinkError as exc:
        if exc.errno != errno.ENODEV:
            raise


def state(ipr, ifname: str) -> LinkState | None:
    found = Netlink.link(ipr, ifname)
    if found is None:
        return None
    info = found.get_attr("IFLA_LINKINFO")
    kind = (info.get_attr("IFLA_INFO_KIND") if info else None) or ""
    data = info.get_attr("IFLA_INFO_DATA") if info else None
    mode = (data.get_attr("IFLA_MACVLAN_MODE") if data is not None and kind == "macvlan" else None) or ""
    return LinkState(found["index"], kind, mode, found.get_attr("IFLA_ADDRESS") or "", found.get_attr("IFLA_LINK") or 0)


def remove(pod, ifname: str) -> bool:
    """Delete the pod's macvlan `ifname`; False when there is none.

    Only a macvlan is removed: a link of another kind under that name is not ours
    (a DEL after an ADD that failed on a name clash must not take the other link).
    """
    current = state(pod, ifname)
    if current is None or current.kind != "macvlan":
        return False
    try:
        _delete_index(pod, current.index)
    except LinkError as exc:
        raise CNIError(INTERNAL, f"failed to delete macvlan {ifname!r}: {exc.strerror}") from None
    return True
