"""pytest fixtures for the services kube-ipam and the Kubernetes integration talk to.

- `etcd_server`: a real one-member etcd on loopback (plain HTTP).
- `etcd_tls_server`: the same over TLS, requiring client certificates (`ca_file`, `cert_file`, `key_file`).
- `etcd_cluster`: three members; `stop_member(i)` / `start_member(i)` inject faults.
- `kube_api`: the local Kubernetes API server, with `kube_api.kubeconfig` for the real client.

Each test gets its own fresh instance (an etcd member starts in ~0.1-0.3 s), removed at teardown
even when the test fails. Loaded by multipy.testing.fixtures, or with
`pytest_plugins = ["multipy.testing.service_fixtures"]`. None of them needs root.
"""

from __future__ import annotations

import pytest

from .etcd import EtcdCluster
from .kube_api import KubeAPIServer


@pytest.fixture
def etcd_server():
    with EtcdCluster() as cluster:
        yield cluster


@pytest.fixture
def etcd_tls_server():
    with EtcdCluster(tls=True) as cluster:
        yield cluster


@pytest.fixture
def etcd_cluster():
    with EtcdCluster(members=3) as cluster:
        yield cluster


@pytest.fixture
def kube_api():
    with KubeAPIServer() as api:
        yield api
