"""`multipy ipam gc` (cli.py): which kube-ipam reservations belong to pods the Kubernetes API no longer has.

Reservations are read before the pods are listed. A pod exists in the API before kubelet
asks for its network, so a reservation read earlier whose pod is missing from the later
listing belongs to a pod deleted in between, never to one too new to be listed. Every
write compares the revision it read, so a reservation that changed since (a DEL ran, a
recreated pod took its fixed address back) is left alone and reported as changed.

A pod counts as gone when its namespace/name is not listed, or, for an attachment that
recorded the pod's UID, when the pod of that name is another incarnation (a static pod's
mirror carries the UID kubelet used in `kubernetes.io/config.mirror`, and counts as the
same). Fixed addresses are bound to the pod's name, so only a name that is gone can free
them, and only with --include-fixed; the attachment of a gone container is still
released (as its DEL would have), which keeps the name's reservation. Reservations
without a pod (a runtime that passed no K8S_POD_* arguments) are never released here.

Owner indexes (one per attachment) are what a DEL releases; gc releases through them too,
so the index and its leases go in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from .records import DYNAMIC, FIXED, Lease, Owner
from .rules import ReleasePlan, release_plan
from .store import Store

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"

LIVE, GONE, REPLACED = "live", "gone", "replaced"


class Pods:
    """The pods of one listing: namespace/name -> the UIDs that count as that pod."""

    def __init__(self, items: list[dict]) -> None:
        self.uids: dict[str, set[str]] = {}
        for item in items:
            metadata = item.get("metadata") if isinstance(item, dict) else None
            if not isinstance(metadata, dict) or not metadata.get("name"):
                continue
            ref = f"{metadata.get('namespace') or 'default'}/{metadata['name']}"
            annotations = metadata.get("annotations") if isinstance(metadata.get("annotations"), dict) else {}
            uids = {u for u in (metadata.get("uid"), annotations.get(MIRROR_ANNOTATION)) if isinstance(u, str) and u}
            self.uids.setdefault(ref, set()).update(uids)

    def __len__(self) -> int:
        return len(self.uids)

    def state(self, pod: str, uid: str = "") -> str:
        if pod not in self.uids:
            return GONE
        if uid and self.uids[pod] and uid not in self.uids[pod]:
            return REPLACED
        return LIVE


@dataclass(frozen=True)
class Decision:
    """`verb`: release (the lease goes), detach (a fixed lease loses its gone container and stays
    bound to the pod's name), keep (left alone; `reason` says why it is reported)."""

    verb: str
    lease: Lease
    reason: str


@dataclass(frozen=True)
class OwnerRelease:
    owner: Owner
    drop_fixed: bool  # the pod's name is gone and --include-fixed: its fixed leases go too
    reason: str


@dataclass
class Plan:
    owners: list[OwnerRelease]
    removals: list[Decision]  # leases no attachment holds, released one by one
    decisions: list[Decision]  # everything reported, as read


def _why(state: str, pod: str) -> str:
    return f"pod {pod} is gone" if state == GONE else f"pod {pod} is another incarnation now (UID changed)"


def _owner_plan(owner: Owner, leases: list[Lease | None], drop_fixed: bool) -> ReleasePlan:
    plan = release_plan(owner, leases)
    if drop_fixed:
        plan = ReleasePlan((), plan.delete + plan.unbind, plan.keep)
    return plan


def plan(leases: list[Lease], owners: list[Owner], pods: Pods, include_fixed: bool) -> Plan:
    by_ip = {lease.ip: lease for lease in leases}
    out = Plan([], [], [])
    covered: set = set()
    for owner in owners:
        held = [by_ip.get(ip) for ip in owner.ips]
        if not owner.pod:
            continue  # its leases name no pod either: reported as such below
        mine = [lease for lease in held if lease is not None and lease.held_by(owner.container_id, owner.ifname)]
        covered.update(lease.ip for lease in mine)
        uid = next((lease.pod_uid for lease in mine if lease.pod_uid), "")
        state = pods.state(owner.pod, uid)
        if state == LIVE:
            continue
        drop_fixed = include_fixed and state == GONE
        reason = f"{_why(state, owner.pod)}, container {owner.container_id} on {owner.ifname}"
        out.owners.append(OwnerRelease(owner, drop_fixed, reason))
        done = _owner_plan(owner, held, drop_fixed)
        out.decisions += [Decision("release", lease, reason) for lease in done.delete]
        out.decisions += [Decision("detach", lease, f"{reason}; the address stays reserved for the pod's name"
                                   + ("" if include_fixed else " (--include-fixed releases it once the name is gone)"))
                          for lease in done.unbind]  # fmt: skip
    for lease in leases:
        if lease.ip in covered:
            continue
        if lease.kind not in (FIXED, DYNAMIC):
            out.decisions.append(Decision("keep", lease, "not a record multipy can read"))
            continue
        if not lease.pod:
            out.decisions.append(Decision("keep", lease, "no pod recorded: whether it is in use cannot be told"))
            continue
        state = pods.state(lease.pod, lease.pod_uid if lease.kind == DYNAMIC else "")
        if state == LIVE:
            continue
        if lease.kind == DYNAMIC or (include_fixed and state == GONE):
            decision = Decision("release", lease, _why(state, lease.pod))
            out.removals.append(decision)
            out.decisions.append(decision)
        elif state == GONE:
            out.decisions.append(
                Decision("keep", lease, f"{_why(state, lease.pod)}; fixed reservations stay without --include-fixed")
            )
    return out


def apply(store: Store, todo: Plan) -> tuple[list[Decision], list[Decision]]:
    """Carries out `todo`: (what was done, what changed since it was read and was left alone)."""
    done: list[Decision] = []
    changed: list[Decision] = []
    for item in todo.owners:
        owner = item.owner
        current = [store.lease(ip) for ip in owner.ips]
        step = _owner_plan(owner, current, item.drop_fixed)
        outcome = done if store.release(owner, step) else changed
        outcome += [Decision("release", lease, item.reason) for lease in step.delete]
        outcome += [Decision("detach", lease, item.reason) for lease in step.unbind]
    for decision in todo.removals:
        (done if store.remove(decision.lease) else changed).append(decision)
    return done, changed
