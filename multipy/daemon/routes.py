"""The daemon's endpoints, and CNI error codes as HTTP statuses (as kuryr maps them).

    POST /cni       {"env": {CNI_*}, "config": "<stdin>"}: 200 + the ADD result, 204 for the other
                    commands' success, a CNI error object otherwise
    POST /delegate  {"env": {...}, "config": "<conf>", "network": {a networks-annotation element}}
    GET  /healthz   alive, and netlink answers;  GET /readyz: caches synced and not draining
    GET  /metrics   Prometheus text
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

from multipy import entry
from multipy.cni import skel
from multipy.cni.env import cni_arg
from multipy.cni.errors import DECODE_FAILURE, INVALID_ENVIRONMENT, TRY_AGAIN_LATER, CNIError
from multipy.log import Log
from multipy.log import Settings as LogSettings
from multipy.net import netns
from multipy.plugins.contract import Services

from . import hotplug

CNI_KEYS = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")
_COMMANDS = frozenset({"ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"})
_SLOTTED = frozenset({"ADD", "CHECK"})  # CPU work: at most settings.add_workers at once (see there)
_BAD_REQUEST = frozenset({1, 2, 4, 6, 7})


def http_status(code: int) -> int:
    if code in _BAD_REQUEST:
        return 400
    return {3: 410, 11: 504}.get(code, 500)


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"

    @classmethod
    def json(cls, status: int, doc) -> Reply:
        return cls(status, json.dumps(doc).encode())

    @classmethod
    def error(cls, doc: dict) -> Reply:
        return cls.json(http_status(int(doc.get("code", 999))), doc)


UNAVAILABLE = Reply.json(503, {"code": 11, "msg": "multipy daemon is draining or its queue is full: run the request in thin mode"})


class BadRequest(CNIError):
    pass


def _body(raw: bytes) -> tuple[dict, bytes, dict]:
    """env (only the CNI_* keys), the conf's bytes, and the whole document."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(DECODE_FAILURE, f"request body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest(DECODE_FAILURE, "request body: expected a JSON object with env and config")
    env = doc.get("env")
    if not isinstance(env, dict):
        raise BadRequest(INVALID_ENVIRONMENT, f"request body: env {env!r} is not an object of CNI_* strings")
    for key, value in env.items():
        if not isinstance(value, str):
            raise BadRequest(INVALID_ENVIRONMENT, f"request body: env.{key} {value!r} is not a string")
    config = doc.get("config", "")
    if not isinstance(config, str):
        raise BadRequest(DECODE_FAILURE, f"request body: config {config!r} is not a string (the runtime's stdin, as text)")
    return {k: env[k] for k in CNI_KEYS if k in env}, config.encode(), doc


class FixedLogSettings(LogSettings):
    """The daemon's one log (stderr, its --log-level): a request's conf does not repoint it (logFile is
    the thin path's), as rebuilding the process-wide logger per request would race other requests."""

    def configure(self, *args, **kwargs) -> None:
        pass


class Routes:
    def __init__(self, daemon) -> None:
        self.daemon = daemon  # main.Daemon: settings, registry, pool, cluster, metrics, draining
        metrics = daemon.metrics
        self._etcd = metrics.timed("etcd", daemon.pool.etcd)
        self._kube = metrics.timed("kube", daemon.pool.kube)
        self._add_slots = threading.BoundedSemaphore(daemon.settings.add_workers)

    def handle(self, method: str, path: str, body: bytes, fds: list[int]) -> Reply:
        route = (method, path.split("?", 1)[0])
        if route == ("POST", "/cni"):
            return self._timed("cni", body, fds, self.cni)
        if route == ("POST", "/delegate"):
            return self._timed("delegate", body, fds, self.delegate)
        return self.probe(method, path)

    def probe(self, method: str, path: str) -> Reply:
        """The GET endpoints, also served on the loopback TCP address."""
        route = (method, path.split("?", 1)[0])
        if route == ("GET", "/healthz"):
            return self.healthz()
        if route == ("GET", "/readyz"):
            return self.readyz()
        if route == ("GET", "/metrics"):
            return Reply(200, self.daemon.metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
        return Reply.json(404, {"code": 4, "msg": f"no endpoint {method} {path}: POST /cni, POST /delegate, "
                                "GET /healthz, /readyz, /metrics"})  # fmt: skip

    # -- CNI

    def _timed(self, endpoint: str, body: bytes, fds: list[int], serve) -> Reply:
        started = time.monotonic()
        command = "?"
        try:
            environ, raw, doc = _body(body)
            command = environ.get("CNI_COMMAND", "?")
            command = command if command in _COMMANDS else "other"
            deadline = started + self.daemon.settings.request_timeout  # the wait for a slot counts too
            if command in _SLOTTED:
                reply = self._in_add_slot(deadline, lambda: serve(environ, raw, doc, fds, deadline))
            else:
                reply = serve(environ, raw, doc, fds, deadline)
        except BadRequest as err:
            reply = Reply.error(err.to_json())
        code = json.loads(reply.body).get("code") if reply.status >= 400 else None
        self.daemon.metrics.request_done(endpoint, command, time.monotonic() - started, code)
        return reply

    def _in_add_slot(self, deadline: float, serve) -> Reply:
        """serve() once one of the addWorkers slots is free; code 11 (HTTP 504: the shim does not fall back,
        the runtime retries) when none frees up before the request's deadline."""
        metrics = self.daemon.metrics
        metrics.add_waiting.inc()
        try:
            got = self._add_slots.acquire(timeout=max(0.0, deadline - time.monotonic()))
        finally:
            metrics.add_waiting.dec()
        if not got:
            return Reply.error({"code": TRY_AGAIN_LATER, "msg": "multipy daemon: no ADD slot came free within the "
                                f"request timeout ({self.daemon.settings.add_workers} at once, addWorkers)"})  # fmt: skip
        try:
            return serve()
        finally:
            self._add_slots.release()

    def _services(self, environ: dict) -> Services:
        cluster = self.daemon.cluster
        kube = self._kube
        if cluster is not None:
            kube = cluster.kube_factory(kube, cni_arg(environ.get("CNI_ARGS", ""), "K8S_POD_UID"))
        return Services(etcd=self._etcd, kube=kube)

    def _wiring(self, environ: dict, deadline: float) -> dict:
        return {
            "registry": self.daemon.registry,
            "services": self._services(environ),
            "deadline": deadline,
            "observer": self.daemon.metrics.delegate_call,
        }

    def _fds(self, environ: dict, fds: list[int]):
        # The shim's fd is the pod's namespace; records and results keep the runtime's path.
        path = environ.get("CNI_NETNS", "")
        return netns.passed_fds({path: fds[0]} if path and fds else {})

    def cni(self, environ: dict, raw: bytes, doc: dict, fds: list[int], deadline: float) -> Reply:
        wiring = self._wiring(environ, deadline)

        def make_handler(request, log):
            return entry.build(request, log, **wiring)

        with self._fds(environ, fds):
            code, document = skel.serve(make_handler, environ, raw, self.daemon.log_settings)
        if code != 0:
            return Reply.error(document)
        return Reply.json(200, document) if document is not None else Reply(204)

    def delegate(self, environ: dict, raw: bytes, doc: dict, fds: list[int], deadline: float) -> Reply:
        args = environ.get("CNI_ARGS", "")
        log = Log(self.daemon.log_settings, environ.get("CNI_CONTAINERID", ""),
                  cni_arg(args, "K8S_POD_NAMESPACE"), cni_arg(args, "K8S_POD_NAME"))  # fmt: skip
        try:
            with self._fds(environ, fds):
                result = hotplug.run(environ, raw, doc.get("network"), log, **self._wiring(environ, deadline))
        except Exception as exc:  # noqa: BLE001 - skel.failure is the one mapping to CNI codes
            return Reply.error(skel.failure(exc, log, f"hot-plug {environ.get('CNI_COMMAND', '?')}"))
        return Reply.json(200, result.to_json(result.cni_version)) if result is not None else Reply(204)

    # -- probes

    def healthz(self) -> Reply:
        try:
            from multipy.net.netlink import Netlink

            with Netlink().open() as host:
                if host.link("lo") is None:
                    raise OSError("no loopback link")
        except Exception as exc:  # noqa: BLE001 - any failure means not healthy
            return Reply.json(500, {"ok": False, "netlink": f"{type(exc).__name__}: {exc}"})
        return Reply.json(200, {"ok": True})

    def readyz(self) -> Reply:
        daemon = self.daemon
        cluster = daemon.cluster
        synced = cluster is None or cluster.synced()
        waited_enough = cluster is not None and time.monotonic() - cluster.started >= daemon.settings.sync_timeout
        state = {"draining": daemon.draining.is_set(), "cachesSynced": synced, "fallback": daemon.settings.fallback}
        ready = not state["draining"] and (synced or waited_enough)
        return Reply.json(200 if ready else 503, {"ready": ready, **state})
