"""kube-ipam's decisions, free of I/O: is a fixed address acceptable, may this pod have it,
where a dynamic search starts, and what a release writes.

The store (store.py) only reads and applies what these functions decide.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from multipy.cni.errors import INVALID_NETWORK_CONFIG, TRY_AGAIN_LATER, CNIError
from multipy.cni.version import at_least
from multipy.ipam.ranges import IPAddress, Range

from .annotations import FixedRequest, Wanted
from .config import KubeIpamConfig
from .records import Lease, Owner


@dataclass(frozen=True)
class Claimant:
    """Who asks: the attachment, and the pod behind it when the runtime named one."""

    network: str
    container_id: str
    ifname: str
    pod: str = ""  # namespace/name
    pod_uid: str = ""

    def lease(self, ip: IPAddress, kind: str) -> Lease:
        # A dynamic lease names its pod too, for operators; only a fixed one is bound to it.
        return Lease(ip, self.network, kind, self.pod, self.pod_uid, self.container_id, self.ifname)

    def owner(self, ips) -> Owner:
        return Owner(self.container_id, self.ifname, self.network, tuple(ips), self.pod)


def _refuse(w: Wanted, problem: str) -> CNIError:
    return CNIError(INVALID_NETWORK_CONFIG, f"{w.source}: {w.ip} {problem}")


def _check_one(cfg: KubeIpamConfig, w: Wanted, gateway: IPAddress) -> None:
    subnet, ip = cfg.subnet, w.ip
    if ip.version != subnet.version or ip not in subnet:
        raise _refuse(w, f"is not in subnet {subnet} of network {cfg.network}")
    if w.prefixlen is not None and w.prefixlen != subnet.prefixlen:
        raise CNIError(
            INVALID_NETWORK_CONFIG,
            f"{w.prefix_source}: gives /{w.prefixlen} but subnet {subnet} of network {cfg.network} "
            f"is /{subnet.prefixlen}",
        )
    if ip == subnet.network_address:
        raise _refuse(w, f"is the network address of {subnet}")
    if subnet.version == 4 and ip == subnet.broadcast_address:
        raise _refuse(w, f"is the broadcast address of {subnet}")
    if ip == gateway:
        raise _refuse(w, f"is the gateway of {subnet}")
    if cfg.fixed is not None and ip not in cfg.fixed:
        raise _refuse(w, f"is outside the fixed range fixedStart..fixedEnd ({cfg.fixed}) of network {cfg.network}")
    if ip in cfg.dynamic:
        raise _refuse(
            w, f"is inside the dynamic range rangeStart..rangeEnd ({cfg.dynamic}) of network {cfg.network}: "
            "fixed addresses must lie outside it" + (f", in fixedStart..fixedEnd ({cfg.fixed})" if cfg.fixed else ""),
        )


def check_fixed(cfg: KubeIpamConfig, request: FixedRequest) -> tuple[list[Wanted], IPAddress]:
    """The addresses of `request` if all may be handed out, and the gateway of the result."""
    gateway = cfg.range.gateway
    if request.gateway is not None and request.gateway != gateway:
        if cfg.gateway_given:
            raise CNIError(
                INVALID_NETWORK_CONFIG,
                f"{request.gateway_source}: {request.gateway} differs from ipam.gateway {gateway} of network "
                f"{cfg.network}: the network has one gateway (drop the annotation or make them equal)",
            )
        if request.gateway.version != cfg.subnet.version or request.gateway not in cfg.subnet:
            raise CNIError(
                INVALID_NETWORK_CONFIG,
                f"{request.gateway_source}: {request.gateway} is not in subnet {cfg.subnet} of network {cfg.network}",
            )
        gateway = request.gateway
    for w in request.wanted:
        _check_one(cfg, w, gateway)
    if len(request.wanted) > 1 and not at_least(cfg.cni_version, "0.3.0"):
        raise CNIError(
            INVALID_NETWORK_CONFIG,
            f"{request.wanted[0].source}: {len(request.wanted)} addresses asked for, but CNI version "
            f"{cfg.cni_version} returns one address per family (use cniVersion 0.3.0 or later)",
        )
    return list(request.wanted), gateway


class Decision(enum.Enum):
    CREATE = "create"  # nobody holds it
    REBIND = "rebind"  # this pod's name-bound reservation: bind it to this container
    MINE = "mine"  # this attachment already holds it


def _describe(lease: Lease) -> str:
    attached = f"container {lease.container_id} on {lease.ifname} of network {lease.network}"
    if not lease.pod:
        return attached
    if lease.container_id:
        return f"pod {lease.pod} ({attached})"
    return f"pod {lease.pod} (reserved by name in network {lease.network}; no container attached now)"


def decide_fixed(
    ip: IPAddress, seen: Lease | None, legacy_holder: str | None, me: Claimant, source: str = "requested address"
) -> Decision:
    """May `me` have fixed address `ip` (asked for by `source`), given who holds it now? Raises the conflict otherwise.

    A pod name is unique in its namespace at any time, so a reservation of the same
    namespace/name passes to the newer container: that is the recreated pod. The older
    container's late DEL cannot take it back (release_plan checks the container).
    """
    if seen is None:
        if legacy_holder is not None:
            raise CNIError(
                TRY_AGAIN_LATER,
                f"{source}: {ip} is in use by container {legacy_holder or '?'} in kube-ipam's own records "
                f"({me.network}); it is free again once that container's DEL runs",
            )
        return Decision.CREATE
    if seen.held_by(me.container_id, me.ifname):
        return Decision.MINE
    if me.pod and seen.name_bound and seen.pod == me.pod:
        return Decision.REBIND
    release = "" if seen.container_id else f"; if that pod is gone for good: multipy ipam release {ip}"
    raise CNIError(TRY_AGAIN_LATER, f"{source}: {ip} is reserved for {_describe(seen)}, not for "
                                    f"{('pod ' + me.pod) if me.pod else 'container ' + me.container_id}{release}")


def start_point(rng: Range, container_id: str, ifname: str) -> IPAddress:
    """Where the search for a dynamic address begins: a spot spread by the attachment's identity.

    Spreading (rather than host-local's shared last-reserved cursor) keeps no extra key
    in etcd, keeps concurrent ADDs from racing for the same address, and lets a recreated
    container (a new ID) land elsewhere than its predecessor, whose address may still be
    in ARP caches. The free addresses stay scattered, so a search reads about one
    256-address block whatever the fill; blocks hinted full are skipped without a read
    (see search_pieces), so a pool filled in one contiguous run costs the same.
    """
    size = int(rng.end) - int(rng.start) + 1
    digest = hashlib.blake2b(f"{container_id}/{ifname}".encode(), digest_size=8).digest()
    return rng.start + int.from_bytes(digest, "big") % size


def search_pieces(first: int, last: int, start: int) -> Iterator[tuple[int, int]]:
    """first..last (addresses as integers) from `start` on, wrapping around to end just before it,
    cut at 256-address block edges: (low, high) inclusive, one block per piece (the start's block
    may come twice, its upper part first and its lower part last)."""
    low = start
    while low <= last:
        high = min(low | 0xFF, last)
        yield low, high
        low = high + 1
    low = first
    while low < start:
        high = min(low | 0xFF, last, start - 1)
        yield low, high
        low = high + 1


def block_capacity(base: int, first: int, last: int, gateway: int) -> tuple[int, int, int]:
    """The part of the block at `base` inside first..last, (low, high, how many it can hand out)."""
    low, high = max(base, first), min(base | 0xFF, last)
    if low > high:
        return low, high, 0
    return low, high, high - low + 1 - (low <= gateway <= high)


@dataclass(frozen=True)
class ReleasePlan:
    unbind: tuple[Lease, ...]  # name-bound reservations that stay, without their container
    delete: tuple[Lease, ...]  # leases that go
    keep: tuple[Lease, ...]  # read and left alone: not (or no longer) this attachment's

    @property
    def touched(self) -> tuple[Lease, ...]:
        return self.unbind + self.delete


def release_plan(owner: Owner, leases: list[Lease | None]) -> ReleasePlan:
    """What releasing `owner` writes, given its leases as read now (None: already gone).

    A lease is only touched while it still names this container and ifname: when a
    recreated pod has taken its name-bound address over, the old container's DEL
    must leave it alone.
    """
    unbind, delete, keep = [], [], []
    for lease in leases:
        if lease is None:
            continue
        if not lease.held_by(owner.container_id, owner.ifname):
            keep.append(lease)
        elif lease.name_bound:
            unbind.append(lease)
        else:
            delete.append(lease)
    return ReleasePlan(tuple(unbind), tuple(delete), tuple(keep))

