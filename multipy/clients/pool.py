"""Clients shared by key, for a process that serves many requests.

A long-lived process keeps one ClientPool and hands `pool.etcd` and `pool.kube` to every request's
Services; a one-shot CNI process gets a fresh pool with each Services, which makes a client on first
use only. Nothing here is process-global: a pool lives as long as whoever made it, and its close()
closes what it made.

One etcd client per distinct connect() arguments (endpoints, TLS files, timeouts); one Kubernetes
connection per (kubeconfig path, context), handed out as a view with the caller's timeouts and its
own total budget. The files behind a key are watched: when a TLS file or the kubeconfig is replaced
(a rotated Secret, `multipy install` refreshing the node's token), the next caller gets a new
client. The replaced one is closed with the pool, not at once: requests in flight may still use it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from .etcd import Etcd
    from .kube import Kube

Client = TypeVar("Client")  # Etcd or Kube: anything with close()


def _stamp(paths: Iterable[str]) -> tuple:
    """What changes when a file is replaced or rewritten (a missing file stamps as None)."""
    stamps = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            stamps.append(None)
        else:
            stamps.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(stamps)


class _Shelf(Generic[Client]):
    """One client per key, kept while the files it was made from are unchanged. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[Hashable, tuple[tuple, Client]] = {}
        self._replaced: list[Client] = []

    def get(self, key: Hashable, files: Iterable[str], make: Callable[[], Client]) -> Client:
        stamp = _stamp(files)
        # make() runs under the lock so that racing requests never make two clients for one key;
        # it only reads files (connections are opened on first use), so the wait is short.
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and kept[0] == stamp:
                return kept[1]
            client = make()
            if kept is not None:
                self._replaced.append(kept[1])
            self._kept[key] = (stamp, client)
            return client

    def close(self) -> None:
        with self._lock:
            clients = [client for _, client in self._kept.values()] + self._replaced
            self._kept, self._replaced = {}, []
        for client in clients:
            client.close()


class EtcdPool:
    """An etcd client factory (Services.etcd) taking etcd.connect()'s arguments and sharing one
    client per distinct arguments. Raises EtcdConfigError as connect() does."""

    def __init__(self) -> None:
        self._shelf: _Shelf[Etcd] = _Shelf()

    def __call__(
        self,
        endpoints: str | Iterable[str],
        *,
        cert_file: str | None = None,
        key_file: str | None = None,
        ca_file: str | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
    ) -> Etcd:
        from . import etcd

        timeout = etcd.DEFAULT_TIMEOUT if timeout is None else timeout
        connect_timeout = etcd.DEFAULT_CONNECT_TIMEOUT if connect_timeout is None else connect_timeout
        urls = tuple(e.url for e in etcd.parse_endpoints(endpoints))
        tls = (cert_file or None, key_file or None, ca_file or None)
        return self._shelf.get(
            (urls, tls, timeout, connect_timeout),
            [path for path in tls if path],
            lambda: etcd.connect(urls, cert_file=tls[0], key_file=tls[1], ca_file=tls[2],
                                 timeout=timeout, connect_timeout=connect_timeout),
        )  # fmt: skip

    def close(self) -> None:
        self._shelf.close()


class KubePool:
    """A Kubernetes client factory (Services.kube) taking kube.from_kubeconfig()'s arguments.

    Each call gets its own view of the shared connection, with its own `timeout` and
    `total_timeout` budget; closing a view leaves the connection to the pool."""

    def __init__(self) -> None:
        self._shelf: _Shelf[Kube] = _Shelf()

    def __call__(
        self,
        path: str | None = None,
        *,
        timeout: float | None = None,
        total_timeout: float | None = None,
        context: str | None = None,
    ) -> Kube:
        from . import kube

        path = path or None  # "" and None both mean the in-cluster service account
        timeout = kube.DEFAULT_TIMEOUT if timeout is None else timeout
        shared = self._shelf.get(
            (path, context),
            [path] if path else [],
            lambda: kube.from_kubeconfig(path, timeout=timeout, context=context),
        )
        return shared.bounded(timeout=timeout, total_timeout=total_timeout)

    def close(self) -> None:
        self._shelf.close()


class ClientPool:
    """The clients a long-lived process keeps: `Services(etcd=pool.etcd, kube=pool.kube)` per request."""

    def __init__(self) -> None:
        self.etcd = EtcdPool()
        self.kube = KubePool()

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.etcd.close()
        self.kube.close()
