"""Hot-plug: one network added to, or removed from, a pod that is already running.

What a dynamic-networks controller asks of the daemon (POST /delegate). The network becomes one
more attachment of the pod's existing record (the record of its master ifname), written before
its delegate runs as every ADD's is, so the pod's DEL removes hot-plugged interfaces too, and a
crash in the middle leaves the DEL everything it needs. It runs under the container's lock, as
the pod's own ADD and DEL do, so a hot-plug never races the pod's DEL.

These are the Orchestrator's own steps (one ADD, one DEL, the undo stack), used from beside it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from multipy.cni.env import validate_ifname
from multipy.cni.errors import INVALID_NETWORK_CONFIG, UNKNOWN_CONTAINER, UNSUPPORTED_FIELD, CNIError
from multipy.cni.result import Result
from multipy.cni.undo import Undo

from .record import Attachment, Record

if TYPE_CHECKING:
    from .commands import Orchestrator
    from .plan import Wanted


def pod_record(orchestrator: Orchestrator, container_id: str) -> Record:
    """The record the pod's ADD wrote (one per container and meta network: its master's ifname)."""
    name = orchestrator.conf.name
    prefix = f"{name}:{container_id}:"
    try:
        names = sorted(n for n in os.listdir(orchestrator.store.directory) if n.startswith(prefix))
    except FileNotFoundError:
        names = []
    for entry in names:
        record = orchestrator.store.load(name, container_id, entry[len(prefix):])
        if record is not None and any(a.master for a in record.attachments):
            return record
    raise CNIError(UNKNOWN_CONTAINER, f"container {container_id} has no attachment record of network {name!r}: "
                   "a network is hot-plugged only into a pod this node's multipy added")  # fmt: skip


def _free_name(record: Record) -> str:
    # Multus numbers by position (net<N>); after removals the next free one.
    used = {a.ifname for a in record.attachments}
    position = len(record.attachments)
    while f"net{position}" in used:
        position += 1
    return f"net{position}"


def plug(orchestrator: Orchestrator, container_id: str, netns: str, wanted: Wanted, cni_version: str) -> Result:
    """ADD `wanted` into the running pod; its result in `cni_version`. On failure nothing of it stays."""
    orchestrator._require_conf()
    if wanted.default_route:
        raise CNIError(UNSUPPORTED_FIELD, f"network {wanted.source or wanted.network.name!r}: default-route "
                       "cannot be hot-plugged (it would move the running pod's default route)")  # fmt: skip
    with orchestrator.locked(container_id):
        record = pod_record(orchestrator, container_id)
        ifname = wanted.interface or _free_name(record)
        validate_ifname(ifname, "interface")
        taken = next((a for a in record.attachments if a.ifname == ifname), None)
        if taken is not None:
            raise CNIError(INVALID_NETWORK_CONFIG, f"interface {ifname!r} of the pod is already used by network "
                           f"{taken.status_name!r}: give the hot-plugged network another interface name")  # fmt: skip
        attachment = Attachment(dict(wanted.network.source), ifname, False, source=wanted.source,
                                runtime_config=dict(wanted.runtime_config), cni_args=dict(wanted.cni_args))  # fmt: skip
        record.attachments.append(attachment)
        orchestrator.store.save(record)  # write-ahead, as ADD: a crash from here on leaves the pod's DEL a record
        chain = orchestrator._chain(record)
        undo = Undo()
        try:
            orchestrator._push_delete(undo, chain, record, attachment, netns)
            attachment.result = orchestrator._add_one(chain, record, attachment, netns)
            answer = Result.from_json(attachment.result).convert(cni_version)
            orchestrator.store.save(record)
        except Exception as exc:
            if not undo.unwind(exc):
                record.attachments.remove(attachment)
                orchestrator.store.save(record)
            raise
    orchestrator.log.info("hot-plugged %s on %s", attachment.status_name, ifname)
    return answer


def unplug(orchestrator: Orchestrator, container_id: str, netns: str, source: str, interface: str | None) -> None:
    """DEL the hot-plugged network `source` (namespace/name; on `interface` when given) from the pod.

    Nothing of that network attached is success, as a DEL of nothing is."""
    with orchestrator.locked(container_id):
        record = pod_record(orchestrator, container_id)
        chosen = [a for a in record.attachments
                  if a.source == source and (not interface or a.ifname == interface)]  # fmt: skip
        if any(a.master for a in chosen):
            raise CNIError(INVALID_NETWORK_CONFIG, f"network {source!r} is the pod's master network: "
                           "it goes with the pod, not by hot-unplug")  # fmt: skip
        if not chosen:
            orchestrator.log.info("hot-unplug: network %s is not attached: nothing to delete", source)
            return
        chain = orchestrator._chain(record)
        for attachment in chosen:
            orchestrator._delete_one(chain, record, attachment, netns)  # a failure keeps it in the record
            record.attachments.remove(attachment)
            orchestrator.store.save(record)
    orchestrator.log.info("hot-unplugged %s", source)
