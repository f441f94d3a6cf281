"""The CNI executable (`multus-cni`, and `multipy` when CNI_COMMAND is set): wiring only.

Builds the orchestrator for one request from the conf on stdin and hands it to
the skeleton, which prints the outcome. Heavy clients are not made here.
"""

from __future__ import annotations

import os
import sys
import time

from multipy import __version__
from multipy.cni import skel
from multipy.cni.errors import CNIError
from multipy.cni.gc import valid_attachments
from multipy.cni.result import Result
from multipy.config import multus
from multipy.log import Log
from multipy.orchestrator.commands import Orchestrator, Request
from multipy.orchestrator.record import RecordStore
from multipy.plugins.chain import CallObserver, Chain
from multipy.plugins.contract import Services
from multipy.plugins.registry import Registry

ABOUT = f"multipy v{__version__}: Multus-style meta CNI plugin (CNI spec 0.1.0-1.1.0)"


def _text(doc: dict, key: str, default: str) -> str:
    value = doc.get(key)
    return value if isinstance(value, str) and value else default


class Handler:
    """skel.Handler over an Orchestrator."""

    def __init__(self, orchestrator: Orchestrator) -> None:
        self.orchestrator = orchestrator

    @staticmethod
    def _request(request: skel.Request) -> Request:
        env = request.env
        return Request(
            env.container_id,
            env.ifname,
            env.netns,
            env.args,
            request.config.get("runtimeConfig") or {},
            request.cni_version,
        )

    def add(self, request: skel.Request) -> Result:
        return self.orchestrator.add(self._request(request))

    def delete(self, request: skel.Request) -> None:
        self.orchestrator.delete(self._request(request))

    def check(self, request: skel.Request) -> None:
        self.orchestrator.check(self._request(request))

    def gc(self, request: skel.Request) -> None:
        self.orchestrator.gc(valid_attachments(request.config))

    def status(self, request: skel.Request) -> None:
        self.orchestrator.status()


def build(
    request: skel.Request,
    log: Log,
    registry: Registry | None = None,
    services: Services | None = None,
    deadline: float | None = None,
    observer: CallObserver | None = None,
) -> Handler:
    """The handler for one request; a daemon passes the registry and clients it keeps, the request's
    deadline (time.monotonic(), shared by every delegate and API call) and an observer of plugin calls."""
    doc = request.config
    env = request.env
    log.settings.configure(_text(doc, "logFile", "") or None, _text(doc, "logLevel", "panic"),
                           doc.get("logToStderr") is True, multus.log_rotation(doc))
    for warning in multus.warnings(doc):  # once per request: keys of a Go Multus conf that do nothing here
        log.warning("%s", warning)
    cni_dir = _text(doc, "cniDir", multus.DEFAULT_CNI_DIR)
    conf_error: CNIError | None = None
    # The loader checks each delegate's conf against the schema its native plugin declares.
    registry = registry or Registry(index_path=f"{cni_dir}/internal/entry-points.json")
    try:
        conf = multus.load(doc, stamp_dir=f"{cni_dir}/internal/validated", schema_for=registry.schema_for)
    except CNIError as err:
        if env.command != "DEL":
            raise
        # A broken conf must not strand the pod: DEL still runs from its record, and with no
        # record (the ADD was refused, or never ran) there is nothing to delete.
        conf_error = err
        conf = multus.MultusConf(cni_version=request.cni_version, name=_text(doc, "name", ""), delegates=(),
                                 cni_dir=cni_dir, bin_dir=_text(doc, "binDir", multus.DEFAULT_BIN_DIR))
    # No Netlink here: a plugin that needs one makes it (services.netlink or Netlink()), so a request
    # with no netlink plugin never imports multipy.net.
    services = services or Services()
    chain = Chain(
        registry,
        services,
        search_path=(conf.bin_dir, *env.path),
        timeout=conf.delegate_timeout,
        log=log,
        binary_types=conf.binary_types,
        deadline=deadline,
        observer=observer,
    )
    log.debug("%s with %d delegate(s)", env.command, len(conf.delegates))
    pods = reporter = None
    # DEL, CHECK, GC and STATUS never need the API. multipy.k8s implements the orchestrator's
    # ports (orchestrator/ports.py): wired here, never imported by the orchestrator.
    if env.command == "ADD":
        kube = _kube(conf, services, deadline)
        if kube is not None:
            from multipy.k8s.report import Reporter
            from multipy.k8s.resolve import PodNetworks

            pods, reporter = PodNetworks(conf, kube), Reporter(kube, log)
    orchestrator = Orchestrator(conf, chain, RecordStore(conf.cni_dir), log, conf_error, pods, reporter)
    if deadline is not None:  # waiting for another request of the container counts against it too
        orchestrator.lock_deadline = deadline
    return Handler(orchestrator)


def _kube(conf: multus.MultusConf, services: Services, deadline: float | None = None):
    """The request's API client, got from Services.kube on first use (shared with other requests
    by a daemon's pool; the time budget is this request's), or None when the conf has no API (as
    Multus: its kubeconfig, else the in-cluster service account when KUBERNETES_SERVICE_HOST is set)."""
    if not conf.kubeconfig and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None
    made: list = []

    def kube():
        if not made:
            from multipy.clients.kube import KubeError
            from multipy.k8s.errors import cni_error

            total = conf.kube_total_timeout
            if deadline is not None:  # the request's deadline bounds its API calls too
                total = max(min(total, deadline - time.monotonic()), 0.001)
            try:
                made.append(services.kube(conf.kubeconfig, timeout=conf.kube_timeout, total_timeout=total))
            except KubeError as error:
                raise cni_error(error, "cannot use the Kubernetes API") from None
        return made[0]

    return kube


def main() -> None:
    sys.exit(skel.run(build, about=ABOUT))


if __name__ == "__main__":
    main()
