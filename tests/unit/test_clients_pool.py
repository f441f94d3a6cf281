"""The client pool: one client per key, shared across threads, renewed when its files are replaced,
per-caller Kubernetes budgets, and Services that get a pool of their own unless handed one.
No client here connects: etcd and the API are only reached on a client's first call."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from multipy.clients.etcd import EtcdConfigError
from multipy.clients.kube import KubeConfigError
from multipy.clients.pool import ClientPool, EtcdPool, KubePool
from multipy.plugins.contract import Services

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://192.0.2.1:6443", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: %s}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""
PEM = "-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n"


def replace(path, text: str) -> None:
    """As a Secret volume or an atomic writer does: a new file renamed over the old one."""
    tmp = f"{path}.new"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


@pytest.fixture
def kubeconfig(tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG % "token-1")
    return str(path)


def test_one_etcd_client_per_distinct_arguments():
    pool = EtcdPool()
    first = pool("http://127.0.0.1:2379,http://127.0.0.2:2379")
    assert pool(["http://127.0.0.1:2379", " http://127.0.0.2:2379"]) is first  # the same endpoint list, spelt otherwise
    assert pool("http://127.0.0.1:2379") is not first
    assert pool("http://127.0.0.2:2379,http://127.0.0.1:2379") is not first  # the order is the failover order
    assert pool("http://127.0.0.1:2379,http://127.0.0.2:2379", timeout=1.0) is not first
    pool.close()


def test_bad_etcd_arguments_raise_as_connect_does_and_are_not_kept(tmp_path):
    pool = EtcdPool()
    with pytest.raises(EtcdConfigError) as caught:
        pool("https://127.0.0.1:2379")
    assert caught.value.field == "ca_file"
    ca = tmp_path / "ca.pem"
    ca.write_text(PEM % "one")
    assert pool("https://127.0.0.1:2379", ca_file=str(ca)) is not None


def test_a_replaced_tls_file_gets_a_new_client_and_the_old_one_is_closed_with_the_pool(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text(PEM % "one")
    pool = EtcdPool()
    old = pool("https://127.0.0.1:2379", ca_file=str(ca))
    assert pool("https://127.0.0.1:2379", ca_file=str(ca)) is old
    replace(ca, PEM % "two")
    new = pool("https://127.0.0.1:2379", ca_file=str(ca))
    assert new is not old
    assert pool("https://127.0.0.1:2379", ca_file=str(ca)) is new
    closed = []
    for client in (old, new):
        client.close = lambda client=client: closed.append(client)
    pool.close()
    assert closed == [new, old]


def test_racing_threads_share_one_client():
    pool = EtcdPool()
    start = threading.Barrier(16)
    got = []

    def take():
        start.wait()
        got.append(pool("http://127.0.0.1:2379"))

    threads = [threading.Thread(target=take) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 16 and len({id(client) for client in got}) == 1
    pool.close()


def test_kube_views_share_a_connection_with_budgets_of_their_own(kubeconfig):
    pool = KubePool()
    a = pool(kubeconfig, timeout=3.0, total_timeout=30.0)
    time.sleep(0.01)
    b = pool(kubeconfig, timeout=7.0)
    assert a is not b and a._api is b._api  # one connection, one token
    assert (a.timeout, a.total_timeout, b.timeout, b.total_timeout) == (3.0, 30.0, 7.0, None)
    assert b._deadline is None and a._deadline is not None
    a.close()  # a caller closing its view leaves the connection to the pool
    assert pool(kubeconfig)._api is b._api
    with pytest.raises(KubeConfigError):
        pool(kubeconfig, timeout=0)


def test_a_refreshed_kubeconfig_gets_a_new_connection(kubeconfig):
    pool = KubePool()
    old = pool(kubeconfig)
    replace(kubeconfig, KUBECONFIG % "token-2")  # what `multipy install` does when it refreshes the token
    new = pool(kubeconfig)
    assert new._api is not old._api
    assert new._api.configuration.api_key["BearerToken"] == "Bearer token-2"
    os.unlink(kubeconfig)
    with pytest.raises(KubeConfigError, match="does not exist"):
        pool(kubeconfig)
    pool.close()


def test_every_services_has_pools_of_its_own_unless_handed_some():
    one, two = Services(), Services()
    assert isinstance(one.etcd, EtcdPool) and isinstance(one.kube, KubePool)
    assert one.etcd is not two.etcd and one.kube is not two.kube
    with ClientPool() as kept:
        first = Services(etcd=kept.etcd, kube=kept.kube)
        second = Services(etcd=kept.etcd, kube=kept.kube)
        assert first.etcd("http://127.0.0.1:2379") is second.etcd("http://127.0.0.1:2379")


def test_services_import_no_client_library():
    code = (
        "import sys; from multipy.plugins.contract import Services; Services(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'grpc', 'pyetcd', 'kubernetes', 'urllib3', 'pyroute2'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
