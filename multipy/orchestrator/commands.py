"""ADD, DEL, CHECK, GC and STATUS over a pod's delegates.

Everything the orchestrator touches comes in through its constructor (the conf,
the chain runner with its clients, the record store, a logger), so one process
can serve many requests: nothing here is global.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from multipy.cni.env import cni_arg
from multipy.cni.errors import (
    INTERNAL,
    NO_ATTACHMENT_RECORD,
    STATUS_UNAVAILABLE,
    STATUS_UNAVAILABLE_EXISTING_AFFECTED,
    TRY_AGAIN_LATER,
    CNIError,
)
from multipy.cni.result import Result
from multipy.config import network
from multipy.config.multus import MultusConf
from multipy.k8s.pod import identify
from multipy.log import Log
from multipy.plugins.chain import Chain
from multipy.plugins.contract import Invocation

from . import plan
from .record import Attachment, CorruptRecord, Record, RecordStore

if TYPE_CHECKING:
    from multipy.k8s.report import Reporter
    from multipy.k8s.resolve import PodNetworks

_READINESS_POLL = 0.25  # seconds


@dataclass(frozen=True)
class Failure:
    attachment: Attachment
    error: CNIError


@dataclass(frozen=True)
class Request:
    """The runtime's view of one pod attachment, as the orchestrator needs it."""

    container_id: str
    ifname: str
    netns: str = ""
    cni_args: str = ""
    capability_args: dict | None = None
    cni_version: str | None = None  # the runtime's, for ADD's result; None keeps the master's

    def arg(self, key: str) -> str:
        return cni_arg(self.cni_args, key)


def _without_runtime_addresses(cni_args: str) -> str:
    # The runtime's IP=/MAC= ask for its own interface, which the master wires;
    # handing them to every delegate would request one address on every network.
    kept = [item for item in cni_args.split(";") if item and item.partition("=")[0] not in ("IP", "MAC")]
    return ";".join(kept)


def _context(err: CNIError, attachment: Attachment, verb: str) -> CNIError:
    network_type = attachment.network.get("type") or "conflist"
    return CNIError(
        err.code, f'delegate "{attachment.name}" ({network_type} on {attachment.ifname}) {verb}: {err.msg}', err.details
    )


def _summary(errors: list[CNIError], what: str) -> CNIError:
    first = errors[0]
    rest = "; ".join(e.msg for e in errors[1:])
    return CNIError(first.code, f"{what}: {first.msg}" + (f" (and {len(errors) - 1} more)" if rest else ""), rest)


class Orchestrator:
    def __init__(
        self,
        conf: MultusConf,
        chain: Chain,
        store: RecordStore,
        log: Log,
        conf_error: CNIError | None = None,
        pods: PodNetworks | None = None,
        reporter: Reporter | None = None,
    ) -> None:
        # conf_error: the conf on disk is broken; DEL may still work from a record.
        # pods/reporter: the Kubernetes API, when the conf has one; used by ADD only.
        self.conf = conf
        self.chain = chain
        self.store = store
        self.log = log
        self.conf_error = conf_error
        self.pods = pods
        self.reporter = reporter

    # -- helpers -------------------------------------------------------------

    def _planned(self, req: Request, wanted: list[plan.Wanted] | None = None) -> Record:
        if self.conf_error is not None:
            raise self.conf_error
        return Record(
            network_name=self.conf.name,
            container_id=req.container_id,
            ifname=req.ifname,
            netns=req.netns,
            cni_args=req.cni_args,
            capability_args=dict(req.capability_args or {}),
            attachments=plan.attachments(self.conf if wanted is None else wanted, req.ifname),
            binary_types=sorted(self.conf.binary_types),
        )

    def _invocation(self, command: str, record: Record, attachment: Attachment, netns: str) -> Invocation:
        args = record.cni_args if attachment.master else _without_runtime_addresses(record.cni_args)
        return Invocation(command, record.container_id, netns, attachment.ifname, args)

    @staticmethod
    def _capabilities(record: Record, attachment: Attachment) -> dict:
        # The pod's per-network requests (ips, mac, ...) win over the runtime's for that network.
        return {**record.capability_args, **attachment.runtime_config}

    def _load(self, req: Request) -> Record | None:
        try:
            return self.store.load(self.conf.name, req.container_id, req.ifname)
        except CorruptRecord as exc:
            self.log.warning("ignoring unreadable attachment record, using the current config: %s", exc)
            return None

    def _teardown(self, record: Record, attachments: list[Attachment], netns: str) -> list[Failure]:
        """DEL each attachment in reverse, past failures; the failures are returned."""
        failures: list[Failure] = []
        for attachment in reversed(attachments):
            try:
                prev = Result.from_json(attachment.result) if attachment.result else None
            except CNIError:
                prev = None  # a damaged result must not cost the delegate its DEL
            try:
                net = network.from_dict(attachment.network)
                inv = self._invocation("DEL", record, attachment, netns)
                with self.chain.binaries(record.binary_types):
                    self.chain.delete(net, inv, self._capabilities(record, attachment), prev, attachment.cni_args)
                self.log.info("DEL %s on %s done", attachment.name, attachment.ifname)
                continue
            except CNIError as err:
                error = err
            except Exception as exc:  # noqa: BLE001 - keep deleting the others
                self.log.exception("DEL %s on %s crashed", attachment.name, attachment.ifname)
                error = CNIError(INTERNAL, f"{type(exc).__name__}: {exc}")
            failure = Failure(attachment, _context(error, attachment, "DEL failed"))
            self.log.error("%s", failure.error.msg)
            failures.append(failure)
        return failures

    def _wait_ready(self) -> None:
        path = self.conf.readiness_file
        if not path:
            return
        deadline = time.monotonic() + self.conf.readiness_timeout
        while not os.path.exists(path):
            if time.monotonic() >= deadline:
                raise CNIError(
                    TRY_AGAIN_LATER,
                    f"readiness indicator file {path} did not appear within {self.conf.readiness_timeout:g}s: "
                    "the default network is not ready yet",
                )
            time.sleep(_READINESS_POLL)

    # -- commands --------------------------------------------------------------

    def add(self, req: Request) -> Result:
        """The master's result in the runtime's version; on any failure, nothing stays attached."""
        self._wait_ready()
        pod, pod_uid, wanted = self._pod_networks(req)
        record = self._planned(req, wanted)
        self._clear_leftovers(req, record)
        self.store.save(record)  # write-ahead: a crash from here on still leaves DEL a record
        started: list[Attachment] = []
        try:
            for attachment in record.attachments:
                started.append(attachment)
                net = network.from_dict(attachment.network)
                inv = self._invocation("ADD", record, attachment, req.netns)
                try:
                    result = self.chain.add(net, inv, self._capabilities(record, attachment), attachment.cni_args)
                except CNIError as err:
                    raise _context(err, attachment, "ADD failed") from err
                attachment.result = result.to_json(result.cni_version)
                self.log.info("ADD %s on %s done", attachment.name, attachment.ifname)
            if any(a.default_route for a in record.attachments):
                from . import default_route  # netlink and socket: only for pods that ask

                default_route.apply(record.attachments, self.chain.services.netlink, req.netns)
            master = next(a for a in record.attachments if a.master)
            # Converting may fail (an L2-only result has no 0.2.0 form): that too must roll back.
            answer = Result.from_json(master.result)
            answer = answer.convert(req.cni_version or answer.cni_version)
            if pod is not None and self.reporter is not None:
                # A pod whose status cannot say what it got is rolled back: kubelet retries the
                # ADD, and an operator never sees a running pod without its network-status.
                self.reporter.network_status(pod, pod_uid, record, req.netns)
            self.store.save(record)
        except Exception as exc:
            self._roll_back(record, started, req.netns, exc)
            raise
        if pod is not None and self.reporter is not None:
            self.reporter.added_interfaces(pod, pod_uid, record)
        return answer

    def _pod_networks(self, req: Request):
        """(pod, its UID in the API, the networks it gets); the pod is None without the API."""
        pod = identify(req.arg)
        if pod is None or self.pods is None:
            return None, "", None
        obj = self.pods.read_pod(pod)
        wanted = self.pods.wanted(pod, obj)
        return pod, (obj.get("metadata") or {}).get("uid") or "", wanted

    def _roll_back(self, record: Record, started: list[Attachment], netns: str, cause: Exception) -> None:
        self.log.warning("ADD failed (%s); rolling back %d delegate(s)", cause, len(started))
        failures = self._teardown(record, started, netns)
        if isinstance(cause, CNIError) and failures:
            rollback = "; ".join(f.error.msg for f in failures)
            cause.details = "; ".join(filter(None, [cause.details, f"rollback incomplete: {rollback}"]))
        # Only delegates that finished ADD are known to hold resources. The one whose ADD
        # failed had to undo its own work (SPEC), and its DEL failing as well (Go macvlan < 1.4
        # fails DEL whenever its master is gone) must not pin the record: the runtime's DEL
        # still reaches it through the current config.
        holding = [f.attachment for f in failures if f.attachment.result is not None]
        if holding:
            record.attachments = holding[::-1]
            self.store.save(record)  # kept for the runtime's DEL, with what is left to undo
        else:
            self.store.remove(record.network_name, record.container_id, record.ifname)

    def _clear_leftovers(self, req: Request, planned: Record) -> None:
        """A retried ADD after a crash must not trip over the first try's interfaces."""
        if not self.store.exists(planned.network_name, req.container_id, req.ifname):
            return
        leftover = self._load(req) or planned
        self.log.warning("found the record of an unfinished ADD; removing its attachments first")
        failures = self._teardown(leftover, leftover.attachments, req.netns)
        if failures:
            raise CNIError(
                TRY_AGAIN_LATER,
                f"attachments of an earlier ADD for this container could not be removed: {failures[0].error.msg}",
            )

    def delete(self, req: Request) -> None:
        record = self._load(req)
        if record is None:
            # No record (or a damaged one): DEL the delegates the current config names,
            # never "nothing to do" (Multus #1087 leaked addresses that way). The networks of
            # the pod's annotations are not among them: DEL never waits for the API.
            try:
                record = self._planned(req)
            except CNIError as err:
                if err is self.conf_error:
                    raise
                self.log.warning("no attachment record, and the conf names no network usable without the API "
                                 "(%s): nothing is known to delete", err.msg)  # fmt: skip
                return
            self.log.info("no attachment record; deleting by the current config")
        failures = self._teardown(record, record.attachments, req.netns)
        if failures:
            errors = [f.error for f in failures]
            raise _summary(errors, f"DEL of {len(errors)} delegate(s) failed; the record is kept for a retry")
        self.store.remove(self.conf.name, req.container_id, req.ifname)

    def check(self, req: Request) -> None:
        try:
            record = self.store.load(self.conf.name, req.container_id, req.ifname)
        except CorruptRecord as exc:
            raise CNIError(NO_ATTACHMENT_RECORD, f"attachment record unreadable: {exc}") from None
        if record is None:
            raise CNIError(
                NO_ATTACHMENT_RECORD,
                f"no attachment record for container {req.container_id} on {req.ifname}: nothing was added",
            )
        for attachment in record.attachments:
            if attachment.result is None:
                raise CNIError(NO_ATTACHMENT_RECORD, f'delegate "{attachment.name}" has no ADD result to check')
            net = network.from_dict(attachment.network)
            try:
                with self.chain.binaries(record.binary_types):
                    self.chain.check(
                        net,
                        self._invocation("CHECK", record, attachment, req.netns),
                        self._capabilities(record, attachment),
                        Result.from_json(attachment.result),
                        attachment.cni_args,
                    )
            except CNIError as err:
                raise _context(err, attachment, "CHECK failed") from err

    def gc(self, valid: set[tuple[str, str]]) -> None:
        """DEL the records of attachments not in `valid` (containerID, ifname), then GC each delegate."""
        errors: list[CNIError] = []
        live: list[Record] = []
        for record in self.store.all(self.conf.name):
            if (record.container_id, record.ifname) in valid:
                live.append(record)
                continue
            self.log.info("GC: removing stale attachment %s/%s", record.container_id, record.ifname)
            # The namespace recorded at ADD, as libcni GC does; delegates tolerate it being gone.
            failed = self._teardown(record, record.attachments, record.netns)
            if failed:
                errors += [f.error for f in failed]
                live.append(record)
            else:
                self.store.remove(record.network_name, record.container_id, record.ifname)
        for delegate in self.conf.resolved:
            net = delegate.network
            still_valid = [
                {"containerID": r.container_id, "ifname": a.ifname}
                for r in live
                for a in r.attachments
                if a.name == net.name
            ]
            try:
                self.chain.gc(net, Invocation("GC"), still_valid)
            except CNIError as err:
                errors.append(CNIError(err.code, f'delegate "{net.name}" GC failed: {err.msg}', err.details))
        if errors:
            raise _summary(errors, f"GC finished with {len(errors)} error(s)")

    def status(self) -> None:
        path = self.conf.readiness_file
        if path and not os.path.exists(path):
            raise CNIError(STATUS_UNAVAILABLE, f"readiness indicator file {path} does not exist")
        for delegate in self.conf.resolved:
            net = delegate.network
            try:
                self.chain.status(net, Invocation("STATUS"))
            except CNIError as err:
                code = err.code if err.code in (STATUS_UNAVAILABLE, STATUS_UNAVAILABLE_EXISTING_AFFECTED) else STATUS_UNAVAILABLE
                raise CNIError(code, f'delegate "{net.name}" is not ready: {err.msg}', err.details) from err
