"""Shared by the integration tests: the seed's conf shape with the Debian Go plugins as external
delegates, state readers, and `cluster` (a real etcd and the local Kubernetes API in the node)."""

from __future__ import annotations

import json
import os

import pytest

from multipy.net.netns import run_in
from multipy.testing.etcd import EtcdCluster
from multipy.testing.kube_api import KubeAPIServer
from multipy.testing.topology import seed_delegates

GO_PLUGINS = "/usr/lib/cni"
PREFIX = "/multipy/ipam/"  # kube-ipam's etcd keys
POOL = f"{PREFIX}pools/10.188.0.0-16/"  # the seed's net1 pool


def multus_conf(tmp_path, version: str, delegates: list[dict], binary: list[str] = ()) -> dict:
    """The seed's multus-cni conf around `delegates`, its state and log under tmp_path; `binary`: its
    binaryDelegates, the types that run as the Go plugins in GO_PLUGINS."""
    return {
        "cniVersion": version,
        "name": "multus-demo",
        "type": "multus-cni",
        "cniDir": str(tmp_path / "cache"),
        "binDir": GO_PLUGINS,
        "logFile": str(tmp_path / "multipy.log"),
        "logLevel": "debug",
        "delegates": delegates,
        "binaryDelegates": list(binary),
    }


@pytest.fixture
def seed_conf(tmp_path, node):
    """Factory for the seed topology: bridge + host-local on eth0, macvlan + host-local on net1."""

    def make(version: str = "0.3.1", delegate_version: str | None = None, **overrides) -> dict:
        bridge, macvlan = seed_delegates(
            str(tmp_path / "ipam"), overrides.pop("macvlan_master", node.uplink), overrides.pop("range_end", "10.188.1.250")
        )
        if delegate_version:
            bridge["cniVersion"] = macvlan["cniVersion"] = delegate_version
        # The Go reference plugins stand in here, not multipy's native plugins of the same names.
        conf = multus_conf(tmp_path, version, [bridge, macvlan], binary=["bridge", "host-local", "macvlan"])
        conf.update(overrides)
        return conf

    return make


def reservations(tmp_path, network: str) -> list[str]:
    """host-local's reservation files (one per IP) for one network."""
    directory = tmp_path / "ipam" / network
    if not directory.exists():
        return []
    return sorted(n for n in os.listdir(directory) if n[0].isdigit())


def records(tmp_path) -> list[str]:
    directory = tmp_path / "cache"
    return sorted(p.name for p in directory.iterdir() if p.is_file()) if directory.exists() else []


@pytest.fixture
def cluster(node, tmp_path):
    """etcd and the Kubernetes API, started from inside the node's namespace (so they listen there)."""
    where = f"/run/netns/{node.name}"
    etcd = EtcdCluster()
    api = KubeAPIServer(directory=str(tmp_path / "kube"))
    (tmp_path / "kube").mkdir()
    try:
        run_in(where, etcd.start)
        run_in(where, api.start)
        yield Cluster(where, etcd, api)
    finally:
        api.close()
        etcd.close()


class Cluster:
    def __init__(self, where, etcd, api):
        self.where, self.etcd, self.api = where, etcd, api

    def keys(self) -> dict[str, dict]:
        return {k: json.loads(v) for k, v in run_in(self.where, self.etcd.keys, PREFIX).items()}
