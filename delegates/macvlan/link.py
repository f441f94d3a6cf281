"""The macvlan link itself: its master, its creation straight into the pod, its removal.

Every function takes a Namespace already open on the right namespace (from
multipy.net.netlink), so a request opens each namespace once.
"""

from __future__ import annotations

import errno
import hashlib
from dataclasses import replace

from multipy.cni.errors import INTERNAL, INVALID_ENVIRONMENT, INVALID_NETWORK_CONFIG, CNIError
from multipy.net.netlink import Link, LinkError, Namespace


def default_route_interface(host: Namespace) -> str:
    """The interface of the host's first default route (IPv4 first), as the reference picks it."""
    for version in (4, 6):
        for route in host.default_routes(version):
            found = host.link(index=route.device) if route.device else None
            if found is not None:
                return found.name
    raise CNIError(
        INVALID_NETWORK_CONFIG,
        "master is not set and the host network namespace has no default route to take it from",
    )


def master(host: Namespace, name: str) -> Link:
    found = host.link(name)
    if found is None:
        raise CNIError(
            INVALID_NETWORK_CONFIG,
            f'failed to lookup master "{name}": Link not found (the master must be a link of the host network namespace)',
        )
    return found


TEMP_PREFIX = "mvtmp"


def temporary_name(container_id: str, ifname: str) -> str:
    """The temporary name of (container, ifname)'s macvlan until its rename: derived, not random, so
    that the DEL of an ADD killed before the rename finds it and knows it is its own (15 bytes)."""
    return TEMP_PREFIX + hashlib.sha256(f"{container_id}/{ifname}".encode("utf-8", "surrogatepass")).hexdigest()[:10]


def create(host: Namespace, netns: str, parent: Link, mode: str, mtu: int, mac: str, temporary: str) -> str:
    """Create the macvlan directly inside the pod namespace under `temporary` (temporary_name); returns it.

    A temporary name, as the reference does: kernels once checked the name against the
    creating namespace too, and a clash in the pod is then a clean rename failure.
    """
    try:
        host.create_macvlan(temporary, parent.index, mode, netns, mtu=mtu, mac=mac)
    except LinkError as exc:
        raise _create_error(exc, parent, mode) from None
    return temporary


def _create_error(exc: LinkError, parent: Link, mode: str) -> CNIError:
    if exc.errno == errno.EINVAL and mode == "passthru":
        return CNIError(
            INVALID_NETWORK_CONFIG,
            f'failed to create macvlan: master "{parent.name}" already carries macvlans, so it cannot take a passthru one',
        )
    # A master that carries a passthru macvlan refuses every other one with EINVAL too.
    hint = " (does the master already carry a passthru macvlan?)" if exc.errno == errno.EINVAL else ""
    return CNIError(INTERNAL, f"failed to create macvlan on master {parent.name!r}: {exc.strerror}{hint}")


def set_up(pod: Namespace, ifname: str) -> None:
    found = pod.link(ifname)
    if found is None:
        raise CNIError(INTERNAL, f'failed to set "{ifname}" UP: link not found')
    try:
        pod.set_up(found.index)
    except LinkError as exc:
        # EADDRINUSE here: the kernel checks a macvlan's MAC against its siblings only when it comes up.
        raise CNIError(INTERNAL, f'failed to set "{ifname}" UP: {exc.strerror}') from None


def rename(pod: Namespace, temporary: str, ifname: str) -> Link:
    """Give the new link its CNI_IFNAME; returns it (index and MAC stay what they were). On failure the link is deleted."""
    new = pod.link(temporary)
    if new is None:
        raise CNIError(INTERNAL, f'failed to rename macvlan to "{ifname}": {temporary} not found in the pod')
    try:
        pod.rename(new.index, ifname)
    except LinkError as exc:
        try:
            pod.delete_link(new.index)
        except LinkError:
            pass  # the rename's error is the one to report; the namespace's teardown takes the link
        code = INVALID_ENVIRONMENT if exc.errno == errno.EEXIST else INTERNAL
        reason = exc.strerror.lower()
        hint = f" (CNI_IFNAME {ifname!r} is already in use in the pod)" if exc.errno == errno.EEXIST else ""
        raise CNIError(code, f'failed to rename macvlan to "{ifname}": {reason}{hint}') from None
    return replace(new, name=ifname)


def remove(pod: Namespace, ifname: str) -> bool:
    """Delete the pod's macvlan `ifname`; False when there is none.

    Only a macvlan is removed: a link of another kind under that name is not ours
    (a DEL after an ADD that failed on a name clash must not take the other link).
    """
    current = pod.link(ifname)
    if current is None or current.kind != "macvlan":
        return False
    try:
        pod.delete_link(current.index)
    except LinkError as exc:
        raise CNIError(INTERNAL, f"failed to delete macvlan {ifname!r}: {exc.strerror}") from None
    return True
