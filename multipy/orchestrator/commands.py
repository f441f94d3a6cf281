"""ADD, DEL, CHECK, GC and STATUS over a pod's delegates.

Everything the orchestrator touches comes in through its constructor (the conf,
the chain runner with its clients, the record store, a logger, and the cluster's
ports), so one process can serve many requests: nothing here is global, and nothing
shared (conf, chain, store) is changed by a request.

A rollback and a DEL are the same act: an undo stack (multipy.cni.undo) of delegate
DELs, run newest first past failures. ADD pushes each delegate's DEL before running
its ADD, so a failed delegate is DELed too.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass

from multipy.cni.errors import (
    DELEGATE_TIMEOUT,
    INTERNAL,
    NO_ATTACHMENT_RECORD,
    STATUS_UNAVAILABLE,
    STATUS_UNAVAILABLE_EXISTING_AFFECTED,
    TRY_AGAIN_LATER,
    CNIError,
)
from multipy.cni.result import Result
from multipy.cni.undo import Undo, UndoFailure, add_details, describe
from multipy.config import network
from multipy.config.multus import MultusConf
from multipy.failpoints import failpoint
from multipy.files import unlink_quietly
from multipy.log import Log
from multipy.plugins.chain import Chain
from multipy.plugins.contract import Invocation

from . import lock, plan
from .ports import PodNetworks, Reporter
from .record import Attachment, CorruptRecord, Record, RecordStore

_READINESS_POLL = 0.25  # seconds
ROLLBACK_AFTER_TIMEOUT = 5.0  # at most (and a tenth of delegateTimeout) for the DEL of a timed-out ADD
STALE_TEMP_AGE = 600.0  # seconds: GC removes record temp files older than this (no write takes that long)


@dataclass(frozen=True)
class Request:
    """The runtime's view of one pod attachment, as the orchestrator needs it."""

    container_id: str
    ifname: str
    netns: str = ""
    cni_args: str = ""
    capability_args: dict | None = None
    cni_version: str | None = None  # the runtime's, for ADD's result; None keeps the master's


def _without_runtime_addresses(cni_args: str) -> str:
    # The runtime's IP=/MAC= ask for its own interface, which the master wires;
    # handing them to every delegate would request one address on every network.
    kept = [item for item in cni_args.split(";") if item and item.partition("=")[0] not in ("IP", "MAC")]
    return ";".join(kept)


def _label(attachment: Attachment, verb: str) -> str:
    network_type = attachment.network.get("type") or "conflist"
    return f'delegate "{attachment.name}" ({network_type} on {attachment.ifname}) {verb}'


def _context(err: CNIError, attachment: Attachment, verb: str) -> CNIError:
    return CNIError(err.code, f"{_label(attachment, verb)}: {err.msg}", err.details)


def _as_error(failure: UndoFailure) -> CNIError:
    """A delegate DEL that failed, as the runtime sees it: its own code, 999 for a crash."""
    err = failure.error
    code, details = (err.code, err.details) if isinstance(err, CNIError) else (INTERNAL, "")
    return CNIError(code, f"{failure.what}: {describe(err)}", details)


def _shorter(chain: Chain, timeout: float) -> Chain:
    """A view of `chain` whose binaries get at most `timeout` seconds."""
    view = copy.copy(chain)
    view.timeout = min(chain.timeout, timeout)
    return view


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
        # conf_error: the conf is unusable (`conf` is a stand-in holding its name and cniDir).
        # Every command fails with it but DEL, which works from a record or finds nothing to do.
        # pods/reporter: the cluster (multipy.k8s through the ports), when the conf has one; ADD only.
        self.conf = conf
        self.chain = chain
        self.store = store
        self.log = log
        self.conf_error = conf_error
        self.pods = pods
        self.reporter = reporter
        # How long ADD, DEL and CHECK wait for another request of the same container (lock.py);
        # a daemon may set a per-request absolute deadline (time.monotonic()) instead or as well.
        self.lock_wait = lock.WAIT
        self.lock_deadline: float | None = None

    # -- helpers -------------------------------------------------------------

    def locked(self, container_id: str):
        """The container's lock (multipy.orchestrator.lock), as every command of one container takes it;
        the daemon's hot-plug goes through this too."""
        return lock.held(self.store.directory, container_id, self.lock_wait, self.lock_deadline)

    def _require_nameable(self, name: str, req: Request) -> None:
        err = self.store.unnameable_error(name, req.container_id, req.ifname)
        if err is not None:
            raise err

    def _sweep_temps(self, name: str, req: Request) -> None:
        # Under the container's lock no writer of this record is live: its temp files are a
        # killed request's leftovers.
        for path in self.store.remove_temps(name, req.container_id, req.ifname):
            self.log.warning("removed a killed request's temporary record file %s", path)

    def _require_conf(self) -> None:
        if self.conf_error is not None:
            raise self.conf_error

    def _planned(self, req: Request, wanted: list[plan.Wanted] | None = None) -> Record:
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

    def _chain(self, record: Record) -> Chain:
        # DEL and CHECK must reach the implementation the ADD used, whatever binaryDelegates says now.
        return self.chain.using_binaries(record.binary_types)

    def _add_one(self, chain: Chain, record: Record, attachment: Attachment, netns: str) -> dict:
        """One delegate's ADD; its result on the wire, in its own version."""
        try:
            net = network.from_dict(attachment.network)
            inv = self._invocation("ADD", record, attachment, netns)
            result = chain.add(net, inv, self._capabilities(record, attachment), attachment.cni_args)
        except CNIError as err:
            raise _context(err, attachment, "ADD failed") from err
        self.log.info("ADD %s on %s done", attachment.name, attachment.ifname)
        return result.to_json(result.cni_version)

    def _delete_one(self, chain: Chain, record: Record, attachment: Attachment, netns: str) -> None:
        """One delegate's DEL with its ADD-time config and result; raises what the delegate raised."""
        try:
            prev = Result.from_json(attachment.result) if attachment.result else None
        except CNIError:
            prev = None  # a damaged result must not cost the delegate its DEL
        try:
            failpoint("orchestrator.del.before_delegate")
            net = network.from_dict(attachment.network)
            inv = self._invocation("DEL", record, attachment, netns)
            chain.delete(net, inv, self._capabilities(record, attachment), prev, attachment.cni_args)
        except CNIError as err:
            self.log.error("%s: %s", _label(attachment, "DEL failed"), err.msg)
            raise
        except Exception:
            self.log.exception("%s", _label(attachment, "DEL crashed"))
            raise
        failpoint("orchestrator.del.after_delegate")
        self.log.info("DEL %s on %s done", attachment.name, attachment.ifname)

    def _push_delete(self, undo: Undo, chain: Chain, record: Record, attachment: Attachment, netns: str) -> None:
        undo.push(self._delete_one, chain, record, attachment, netns, what=_label(attachment, "DEL failed"),
                  tag=attachment)  # fmt: skip

    def _teardown(self, record: Record, attachments: list[Attachment], netns: str) -> list[UndoFailure]:
        """DEL each attachment in reverse, past failures; the failures (tagged with their attachment)."""
        chain = self._chain(record)
        undo = Undo()
        for attachment in attachments:
            self._push_delete(undo, chain, record, attachment, netns)
        return undo.run()

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

    def _retry_delete_on_error(self) -> bool:
        # Go Multus removes its cache after a failed delegate DEL unless retryDeleteOnError is
        # set. multipy keeps the record by default (stricter: a DEL that failed is retried with
        # the exact config, Multus R1); an explicit false asks for Multus's default.
        return self.conf.retry_delete_on_error is not False

    # -- commands --------------------------------------------------------------

    def add(self, req: Request) -> Result:
        """The master's result in the runtime's version; on any failure, nothing stays attached."""
        self._require_conf()
        # An ID no record can be named after fails here, before anything exists; its DELs find
        # nothing to delete (_record_to_delete), so the sandbox is never stranded.
        self._require_nameable(self.conf.name, req)
        self._wait_ready()
        selection = self.pods.select(req.cni_args) if self.pods is not None else None
        record = self._planned(req, selection.wanted if selection is not None else None)
        with self.locked(req.container_id) as held:
            self._sweep_temps(record.network_name, req)
            try:
                return self._add_locked(req, record, selection)
            except BaseException:
                if not self.store.networks_of_container(req.container_id):
                    held.remove()  # rolled back completely: nothing of the container, no lock file
                raise

    def _add_locked(self, req: Request, record: Record, selection) -> Result:
        self._clear_leftovers(req, record)
        failpoint("orchestrator.add.before_record_write")
        self.store.save(record)  # write-ahead: a crash from here on still leaves DEL a record
        chain = self._chain(record)
        undo = Undo()
        try:
            failpoint("orchestrator.add.after_record_write")
            for attachment in record.attachments:
                # Pushed before the ADD: a delegate whose ADD fails is DELed too, as libcni and Multus do.
                self._push_delete(undo, chain, record, attachment, req.netns)
                failpoint("orchestrator.add.before_delegate")
                try:
                    attachment.result = self._add_one(chain, record, attachment, req.netns)
                except CNIError as err:
                    if err.code == DELEGATE_TIMEOUT:
                        # A delegate that hung on ADD likely hangs on DEL: its rollback DEL gets a short
                        # timeout, so the ADD costs about delegateTimeout, not twice it. If that DEL is
                        # cut short too, the runtime's DEL (which follows a failed ADD) reaches it.
                        undo.steps.pop()
                        self._push_delete(undo, _shorter(chain, min(ROLLBACK_AFTER_TIMEOUT, chain.timeout / 10)), record, attachment,
                                          req.netns)  # fmt: skip
                    raise
                failpoint("orchestrator.add.after_delegate")
            if any(a.default_route for a in record.attachments):
                from . import default_route  # netlink and socket: only for pods that ask

                default_route.apply(record.attachments, self.chain.services.netlink, req.netns)
            master = next(a for a in record.attachments if a.master)
            # Converting may fail (an L2-only result has no 0.2.0 form): that too must roll back.
            answer = Result.from_json(master.result)
            answer = answer.convert(req.cni_version or answer.cni_version)
            if selection is not None and self.reporter is not None:
                # A pod whose status cannot say what it got is rolled back: kubelet retries the
                # ADD, and an operator never sees a running pod without its network-status.
                self.reporter.network_status(selection.pod, record, req.netns)
            failpoint("orchestrator.add.before_final_write")
            self.store.save(record)
            failpoint("orchestrator.add.after_final_write")
        except Exception as exc:
            self.log.warning("ADD failed (%s); rolling back %d delegate(s)", exc, len(undo.steps))
            failpoint("orchestrator.rollback.start")
            self._keep_what_holds(record, undo.unwind(exc), exc)
            raise
        if selection is not None and self.reporter is not None:
            self.reporter.added_interfaces(selection.pod, record)
        return answer

    def _keep_what_holds(self, record: Record, failures: list[UndoFailure], cause: Exception) -> None:
        """After a rollback: the record keeps the attachments still holding resources, else it goes.

        Only delegates that finished ADD are known to hold resources. The one whose ADD
        failed had to undo its own work (SPEC), and its DEL failing as well (Go macvlan < 1.4
        fails DEL whenever its master is gone) must not pin the record: the runtime's DEL
        still reaches it through the current config.
        """
        holding = [f.tag for f in reversed(failures) if f.tag.result is not None]
        failpoint("orchestrator.rollback.before_record_update")
        try:
            if holding:
                record.attachments = holding
                self.store.save(record)  # kept for the runtime's DEL, with what is left to undo
            else:
                self.store.remove(record.network_name, record.container_id, record.ifname)
        except CNIError as err:  # the ADD's own error is what the runtime must see
            self.log.error("after the rollback: %s", err.msg)
            add_details(cause, f"attachment record not updated: {err.msg}")

    def _clear_leftovers(self, req: Request, planned: Record) -> None:
        """A retried ADD after a crash must not trip over the first try's interfaces."""
        if not self.store.exists(planned.network_name, req.container_id, req.ifname):
            return
        self.log.warning("found the record of an unfinished ADD; removing its attachments first")
        try:
            leftover = self.store.load(planned.network_name, req.container_id, req.ifname) or planned
        except CorruptRecord as exc:
            self.log.warning("ignoring unreadable attachment record, using the current config: %s", exc)
            leftover = planned
        failures = self._teardown(leftover, leftover.attachments, req.netns)
        if failures:
            raise CNIError(
                TRY_AGAIN_LATER,
                f"attachments of an earlier ADD for this container could not be removed: {_as_error(failures[0]).msg}",
            )

    def delete(self, req: Request) -> None:
        with self.locked(req.container_id) as held:
            self._delete_locked(req)
            if not self.store.networks_of_container(req.container_id):
                held.remove()  # nothing of this container is left: neither is its lock file

    def _delete_locked(self, req: Request) -> None:
        if self.store.nameable(self.conf.name, req.container_id, req.ifname):
            self._sweep_temps(self.conf.name, req)
        record = self._record_to_delete(req)
        if record is None:
            return
        self._sweep_temps(record.network_name, req)
        failpoint("orchestrator.del.after_record_read")
        failures = self._teardown(record, record.attachments, req.netns)
        if not failures:
            failpoint("orchestrator.del.before_record_remove")
            self.store.remove(record.network_name, record.container_id, record.ifname)
            return
        errors = [_as_error(f) for f in failures]
        if self._retry_delete_on_error():
            raise _summary(errors, f"DEL of {len(errors)} delegate(s) failed; the record is kept for a retry")
        self.store.remove(record.network_name, record.container_id, record.ifname)
        raise _summary(errors, f"DEL of {len(errors)} delegate(s) failed; the record is removed "
                       "(retryDeleteOnError is false)")  # fmt: skip

    def _record_to_delete(self, req: Request) -> Record | None:
        """What DEL undoes: the record, else the current conf's delegates; None when nothing is known.

        A missing record means nothing was added (it is written before any delegate runs), so a
        DEL then succeeds whatever the conf says: a conf refused at ADD must not strand the pod
        in every later DEL. A damaged record never means "nothing to do" (Multus #1087): the
        current conf's delegates are DELed instead, and with no usable conf either, DEL fails.
        """
        name = self.conf.name
        if not self.store.nameable(name, req.container_id, req.ifname):
            # No record can exist under this name. A conf too broken to name its network may
            # still have been fine at ADD: its record is found by the attachment alone.
            found = self.store.networks_of(req.container_id, req.ifname) if self.conf_error is not None else []
            if not found:
                self.log.warning("no attachment record can exist for network %r, container %r, ifname %r: "
                                 "nothing was added, nothing to delete", name, req.container_id, req.ifname)
                return None
            if len(found) > 1:
                raise CNIError(self.conf_error.code, f"{self.conf_error.msg} (and the records of networks "
                               f"{', '.join(found)} match this attachment: which one is meant is unknown)")
            name = found[0]
        try:
            record = self.store.load(name, req.container_id, req.ifname)
        except CorruptRecord as exc:
            if self.conf_error is not None:
                raise CNIError(self.conf_error.code, f"attachment record unreadable ({exc}), and the conf cannot "
                               f"say what to delete instead: {self.conf_error.msg}", self.conf_error.details) from None
            self.log.warning("ignoring unreadable attachment record, using the current config: %s", exc)
        else:
            if record is not None:
                return record
            if self.conf_error is not None:
                self.log.warning("no attachment record, so nothing was added; the conf is unusable (%s) but "
                                 "there is nothing to delete", self.conf_error.msg)  # fmt: skip
                return None
        # The networks of the pod's annotations are not among the conf's: DEL never waits for the API.
        try:
            record = self._planned(req)
        except CNIError as err:
            self.log.warning("no attachment record, and the conf names no network usable without the API "
                             "(%s): nothing is known to delete", err.msg)  # fmt: skip
            return None
        self.log.info("no attachment record; deleting by the current config")
        return record

    def check(self, req: Request) -> None:
        self._require_conf()
        with self.locked(req.container_id):
            self._check_locked(req)

    def _check_locked(self, req: Request) -> None:
        try:
            record = self.store.load(self.conf.name, req.container_id, req.ifname)
        except CorruptRecord as exc:
            raise CNIError(NO_ATTACHMENT_RECORD, f"attachment record unreadable: {exc}") from None
        if record is None:
            raise CNIError(
                NO_ATTACHMENT_RECORD,
                f"no attachment record for container {req.container_id} on {req.ifname}: nothing was added",
            )
        chain = self._chain(record)
        for attachment in record.attachments:
            if attachment.result is None:
                raise CNIError(NO_ATTACHMENT_RECORD, f'delegate "{attachment.name}" has no ADD result to check')
            try:
                chain.check(
                    network.from_dict(attachment.network),
                    self._invocation("CHECK", record, attachment, req.netns),
                    self._capabilities(record, attachment),
                    Result.from_json(attachment.result),
                    attachment.cni_args,
                )
            except CNIError as err:
                raise _context(err, attachment, "CHECK failed") from err

    def gc(self, valid: set[tuple[str, str]]) -> None:
        """DEL the records of attachments not in `valid` (containerID, ifname), then GC each delegate.

        Nothing of an attachment the runtime lists as valid is ever released. Each delegate's own
        valid list comes from the records, the only map from the runtime's (container, ifname) to
        the delegates' (container, ifname) pairs; when a valid attachment has no readable record
        (missing, truncated, refused), that map is lost for it, and a delegate GC could release its
        addresses: delegate GC is then skipped altogether, and the log says for which attachments.
        """
        self._require_conf()
        errors: list[CNIError] = []
        live: list[Record] = []
        readable = self.store.all(self.conf.name)
        for record in readable:
            if (record.container_id, record.ifname) in valid:
                live.append(record)
                continue
            try:
                with lock.held(self.store.directory, record.container_id, wait=0):
                    self._gc_one(record, live, errors)
            except lock.Busy:
                # A request for it is in flight: what it holds is not for GC to judge now.
                self.log.info("GC: attachment %s/%s is busy; left for the next GC", record.container_id, record.ifname)
                live.append(record)
        self._gc_temps()
        for path in self.store.stale_temps(STALE_TEMP_AGE):
            self.log.warning("GC: removing a killed request's temporary record file %s", path)
            unlink_quietly(path)
        unmapped = sorted(valid - {(r.container_id, r.ifname) for r in readable})
        if unmapped:
            unreadable = self.store.on_disk(self.conf.name)
            listed = ", ".join(f"{cid}/{ifname} ({'unreadable record' if (cid, ifname) in unreadable else 'no record'})"
                               for cid, ifname in unmapped)  # fmt: skip
            self.log.warning("GC: the runtime lists %d valid attachment(s) whose delegates are unknown: %s; "
                             "skipping every delegate's GC so that nothing of theirs is released",
                             len(unmapped), listed)  # fmt: skip
        else:
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

    def _gc_temps(self) -> None:
        """Temp files of this network whose container lock is free have no live writer: a killed
        request's, however young (one killed before its first record was renamed has no record for
        GC to find). A busy container's are left to its request."""
        for container_id, paths in self.store.temps_by_container(self.conf.name).items():
            try:
                with lock.held(self.store.directory, container_id, wait=0) as held:
                    for path in paths:
                        self.log.warning("GC: removing a killed request's temporary record file %s", path)
                        unlink_quietly(path)
                    if not self.store.networks_of_container(container_id):
                        held.remove()
            except lock.Busy:
                continue

    def _gc_one(self, record: Record, live: list[Record], errors: list[CNIError]) -> None:
        self.log.info("GC: removing stale attachment %s/%s", record.container_id, record.ifname)
        # The namespace recorded at ADD, as libcni GC does; delegates tolerate it being gone.
        failed = self._teardown(record, record.attachments, record.netns)
        if failed:
            errors += [_as_error(f) for f in failed]
            live.append(record)
        else:
            self.store.remove(record.network_name, record.container_id, record.ifname)
            # Under the container's lock, as DEL: a young temp file of this record is a killed
            # writer's too (the age rule below is for attachments whose lock GC does not hold).
            for path in self.store.remove_temps(record.network_name, record.container_id, record.ifname):
                self.log.warning("GC: removed a killed request's temporary record file %s", path)

    def status(self) -> None:
        self._require_conf()
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
