"""The daemon's life: start warm, serve, re-read its config file, drain on SIGTERM, exit 0.

SIGTERM (or SIGINT): the listener is closed and the socket removed first, so a shim that connects
from then on runs its request in thin mode; /readyz turns 503; requests already accepted finish
within drainTimeout. No CNI conf is ever deleted (Multus #1527), the one autoConf writes included:
pods created while the daemon restarts still find multipy, through the shim's fallback. A SIGKILL
at any moment leaves only what the thin path cleans up: records are written before any delegate runs.
"""

from __future__ import annotations

import signal
import threading

from multipy.cni.errors import CNIError
from multipy.log import Log

from . import settings as daemon_settings
from .autoconf import AutoConf, Writer
from .metrics import Metrics
from .routes import FixedLogSettings, Routes
from .server import UnixServer, probe_server


class Daemon:
    def __init__(self, source: daemon_settings.Source, write: Writer) -> None:
        from multipy.clients.pool import ClientPool
        from multipy.plugins.registry import Registry

        self.source = source
        self.settings = source.current
        self.log_settings = FixedLogSettings()
        _configure_log(self.log_settings, self.settings.log_level)
        self.log = Log(self.log_settings)
        self.metrics = Metrics()
        self.registry = Registry()  # one entry-point scan for the daemon's life
        self.pool = ClientPool()
        self.draining = threading.Event()
        self.cluster = None
        if self.settings.kubeconfig:
            from .cluster import Cluster, age

            self.cluster = Cluster(self.settings.kubeconfig, self.settings.node_name, self.log)
            for name, informer in (("pods", self.cluster.pods), ("nads", self.cluster.nads)):
                self.metrics.watch_cache(name, lambda i=informer: age(i), informer.__len__)
        self.auto_conf = AutoConf(write, self.log, self.registry.schema_for)
        self.routes = Routes(self)
        self.server = UnixServer(self.settings.socket_path, self.routes, self.metrics,
                                 self.settings.workers, self.settings.queue, self.log)  # fmt: skip
        self.probes = None
        self._stop = threading.Event()

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self._stop.set())
        if self.cluster is not None:
            self.cluster.start()
        self.server.start()
        if self.settings.metrics_address:
            self.probes = probe_server(daemon_settings.loopback_address(self.settings.metrics_address), self.routes)
        self.log.info("serving on %s", self.settings.socket_path)
        self.auto_conf.refresh(self.settings)  # once serving, as Multus: the conf sends the runtime here
        while not self._stop.wait(1.0):
            self._reload()
            self.auto_conf.refresh(self.settings)
        return self.shutdown()

    def _reload(self) -> None:
        try:
            changed = self.source.reload()
        except CNIError as err:
            self.log.error("config file not reloaded, keeping the running settings: %s", err.msg)
            return
        if changed is None:
            return
        self.settings, pending = changed
        _configure_log(self.log_settings, self.settings.log_level)
        self.log.info("config file reloaded")
        if pending:
            self.log.warning("config file changes that take a restart: %s", ", ".join(pending))

    def shutdown(self) -> int:
        self.draining.set()
        self.server.stop_accepting()
        drained = self.server.drain(self.settings.drain_timeout)
        if not drained:
            self.log.error("requests still running after drainTimeout %gs: exiting anyway", self.settings.drain_timeout)
        if self.probes is not None:
            self.probes.shutdown()
            self.probes.server_close()
        if self.cluster is not None:
            self.cluster.stop()
        self.pool.close()
        return 0


def _configure_log(settings: FixedLogSettings, level: str) -> None:
    # FixedLogSettings ignores configure(): requests cannot repoint it; the daemon sets it here.
    super(FixedLogSettings, settings).configure(None, level, True)
    settings.logger()  # built now, once, not lazily by racing request threads


def main(source: daemon_settings.Source, write: Writer) -> int:
    """`write` puts a file in place atomically, only when changed (the install's writer, for autoConf)."""
    return Daemon(source, write).run()
