"""The daemon's Prometheus metrics; the only prometheus_client user.

A registry of the daemon's own (not the library's global one), so what /metrics shows is exactly
this list. Label values are bounded: commands, plugin types of the installed confs, CNI codes,
client method names; nothing per pod or per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from multipy.cni.errors import INTERNAL, CNIError

CONTENT_TYPE = CONTENT_TYPE_LATEST
# From a no-op round trip (~1 ms) to kubelet's sandbox timeout (4 min).
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 240)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Histogram("multipy_request_duration_seconds", "Requests served, by endpoint and CNI command",
                                  ["endpoint", "command"], buckets=_BUCKETS, registry=r)  # fmt: skip
        self.delegates = Histogram("multipy_delegate_duration_seconds",
                                   "Delegate plugin calls (native or binary), by plugin type and CNI command",
                                   ["type", "command"], buckets=_BUCKETS, registry=r)  # fmt: skip
        self.delegate_errors = Counter("multipy_delegate_errors_total", "Delegate plugin calls that failed, by CNI code",
                                       ["type", "command", "code"], registry=r)  # fmt: skip
        self.errors = Counter("multipy_request_errors_total", "Requests answered with a CNI error, by CNI code",
                              ["endpoint", "command", "code"], registry=r)  # fmt: skip
        self.rejected = Counter("multipy_requests_rejected_total", "Connections refused with 503 (queue full or draining)",
                                registry=r)  # fmt: skip
        self.in_flight = Gauge("multipy_requests_in_flight", "Requests being served now", registry=r)
        self.queue_length = Gauge("multipy_queue_length", "Accepted connections waiting for a worker", registry=r)
        self.add_waiting = Gauge("multipy_add_waiting", "ADD and CHECK requests waiting for an ADD slot (addWorkers)",
                                 registry=r)  # fmt: skip
        self.cache_age = Gauge("multipy_cache_sync_age_seconds",
                               "Seconds since each API cache last listed its objects (-1: never)", ["cache"], registry=r)  # fmt: skip
        self.cache_objects = Gauge("multipy_cache_objects", "Objects held by each API cache", ["cache"], registry=r)
        self.client_calls = Histogram("multipy_client_call_duration_seconds", "etcd and Kubernetes API calls, by method",
                                      ["client", "method", "outcome"], buckets=_BUCKETS, registry=r)  # fmt: skip

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def watch_queue(self, length: Callable[[], int]) -> None:
        self.queue_length.set_function(length)

    def watch_cache(self, name: str, age: Callable[[], float | None], size: Callable[[], int]) -> None:
        self.cache_age.labels(name).set_function(lambda: -1.0 if (a := age()) is None else a)
        self.cache_objects.labels(name).set_function(size)

    def request_done(self, endpoint: str, command: str, seconds: float, code: int | None) -> None:
        self.requests.labels(endpoint, command).observe(seconds)
        if code is not None:
            self.errors.labels(endpoint, command, str(code)).inc()

    def delegate_call(self, plugin_type: str, command: str, seconds: float, error: BaseException | None) -> None:
        """The chain's CallObserver (multipy.plugins.chain)."""
        self.delegates.labels(plugin_type, command).observe(seconds)
        if error is not None:
            code = error.code if isinstance(error, CNIError) else INTERNAL
            self.delegate_errors.labels(plugin_type, command, str(code)).inc()

    def timed(self, client: str, factory):
        """A client factory (Services.etcd or .kube) whose clients time each public call."""

        def make(*args, **kwargs):
            return Timed(factory(*args, **kwargs), client, self.client_calls)

        return make


class Timed:
    """A client whose public method calls are timed; everything else passes through."""

    _UNTIMED = frozenset({"close", "bounded"})

    def __init__(self, client, name: str, histogram: Histogram) -> None:
        self._client, self._name, self._histogram = client, name, histogram

    def __getattr__(self, attr: str):
        value = getattr(self._client, attr)
        if attr.startswith("_") or attr in self._UNTIMED or not callable(value):
            return value

        def timed(*args, **kwargs):
            started, outcome = time.monotonic(), "error"
            try:
                answer = value(*args, **kwargs)
                outcome = "ok"
                return answer
            finally:
                self._histogram.labels(self._name, attr, outcome).observe(time.monotonic() - started)

        return timed
