"""The daemon's copy of what ADD reads from the API: this node's pods and the NADs.

Two informers (multipy.clients.kube: list, then watch) on the daemon's own kubeconfig. A request
whose conf uses that same kubeconfig gets a client that answers get_pod and
get_network_attachment_definition from them, with a live GET on a miss or when the cached pod is
another incarnation (its UID is not the sandbox's K8S_POD_UID), so the cache never decides alone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from multipy.clients import kube as kube_client
from multipy.log import Log

_INFORMER_TIMEOUT = 30.0  # per list call of an informer


class Cluster:
    def __init__(self, kubeconfig: str, node_name: str, log: Log) -> None:
        self.kubeconfig = os.path.realpath(kubeconfig)
        self.node_name = node_name
        self.log = log
        self.started = time.monotonic()
        self._client = kube_client.from_kubeconfig(kubeconfig, timeout=_INFORMER_TIMEOUT)
        self.pods = kube_client.pod_informer(self._client, node_name)
        self.nads = kube_client.nad_informer(self._client)

    def start(self) -> Cluster:
        self.pods.start()
        self.nads.start()
        return self

    def stop(self) -> None:
        self.pods.stop()
        self.nads.stop()
        self._client.close()

    def synced(self) -> bool:
        return self.pods.synced.is_set() and self.nads.synced.is_set()

    def serves(self, kubeconfig: str | None) -> bool:
        """Whether a conf's kubeconfig is the daemon's, so the caches describe its cluster."""
        return bool(kubeconfig) and os.path.realpath(kubeconfig) == self.kubeconfig

    def kube_factory(self, factory: Callable, pod_uid: str) -> Callable:
        """Services.kube for one request: `factory`'s client, behind the caches when the conf's cluster is ours."""

        def make(path: str | None = None, **kwargs):
            live = factory(path, **kwargs)
            return Cached(live, self.pods, self.nads, pod_uid) if self.serves(path) else live

        return make


def age(informer: kube_client.Informer) -> float | None:
    return None if informer.synced_at is None else time.monotonic() - informer.synced_at


class Cached:
    """A Kube client reading pods and NADs from the informers first; every other call is the live client's."""

    def __init__(self, live, pods: kube_client.Informer, nads: kube_client.Informer, pod_uid: str) -> None:
        self._live, self._pods, self._nads, self._pod_uid = live, pods, nads, pod_uid

    def __getattr__(self, attr: str):
        return getattr(self._live, attr)

    def get_pod(self, namespace: str, name: str) -> dict:
        cached = self._pods.get(namespace, name)
        uid = ((cached or {}).get("metadata") or {}).get("uid")
        # A pod recreated under the same name may not have reached the cache yet: ask the API.
        if cached is None or (self._pod_uid and uid != self._pod_uid):
            return self._live.get_pod(namespace, name)
        return cached

    def get_network_attachment_definition(self, namespace: str, name: str) -> dict:
        cached = self._nads.get(namespace, name)
        return cached if cached is not None else self._live.get_network_attachment_definition(namespace, name)
