"""The etcd client against real etcd servers: atomic create, transactions, TLS, and a cluster losing members.

etcdctl, an independent client, checks what ours wrote.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from multipy.clients.etcd import Absent, EtcdConfigError, EtcdUnavailable, ModRevisionIs, ValueIs, connect
from multipy.testing.etcd import ELECTION_MS, EtcdCluster, EtcdStartError


@pytest.fixture
def etcd(etcd_server):
    with connect(**etcd_server.client_args()) as client:
        yield client


def test_put_get_prefix_delete(etcd, etcd_server):
    revision = etcd.put("/mp/a", "1")
    etcd.put("/mp/b", "2")
    etcd.put("/mq", "other")
    got = etcd.get("/mp/a")
    assert (got.key, got.value, got.mod_revision, got.version) == ("/mp/a", "1", revision, 1)
    assert etcd.get("/mp/none") is None
    assert [(kv.key, kv.value) for kv in etcd.get_prefix("/mp/")] == [("/mp/a", "1"), ("/mp/b", "2")]
    assert [kv.value for kv in etcd.get_prefix("/mp/", keys_only=True)] == ["", ""]
    assert etcd.delete("/mp/a") is True
    assert etcd.delete("/mp/a") is False
    assert etcd.delete_prefix("/mp/") == 1
    assert etcd_server.keys() == {"/mq": "other"}


def test_values_round_trip_bytes_and_unicode(etcd):
    etcd.put("/mp/u", "pod → 10.188.0.218")
    etcd.put("/mp/b", b"\xff\x00raw")
    assert etcd.get("/mp/u").value == "pod → 10.188.0.218"
    assert etcd.get("/mp/b").value.encode("utf-8", "surrogateescape") == b"\xff\x00raw"


def test_create_only_if_absent(etcd, etcd_server):
    assert etcd.create("/mp/ip/10.188.0.218", "owner-1") is True
    assert etcd.create("/mp/ip/10.188.0.218", "owner-2") is False
    assert etcd_server.keys("/mp/") == {"/mp/ip/10.188.0.218": "owner-1"}


def test_txn_applies_all_writes_or_none(etcd, etcd_server):
    etcd.put("/mp/owner", "c1")
    current = etcd.get("/mp/owner")

    # One compare fails: nothing of the success branch happens.
    assert not etcd.txn([ValueIs("/mp/owner", "c1"), Absent("/mp/owner")], puts={"/mp/x": "1"}, deletes=["/mp/owner"])
    assert etcd_server.keys("/mp/") == {"/mp/owner": "c1"}

    assert etcd.txn([ValueIs("/mp/owner", "c1"), Absent("/mp/ip"), ModRevisionIs("/mp/owner", current.mod_revision)],
                    puts=[("/mp/ip", "c1"), ("/mp/index", "ip")], deletes=["/mp/owner"])  # fmt: skip
    assert etcd_server.keys("/mp/") == {"/mp/ip": "c1", "/mp/index": "ip"}

    assert not etcd.txn([ModRevisionIs("/mp/ip", current.mod_revision)], deletes=["/mp/ip"])
    assert not etcd.txn([ValueIs("/mp/missing", "")], puts={"/mp/y": "1"})
    assert etcd.txn([ModRevisionIs("/mp/missing", 0)], puts={"/mp/y": "1"})  # a missing key's revision is 0


_RACER = """
import json, sys, time
from multipy.clients.etcd import connect
endpoints, me, start, keys = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
client = connect(endpoints)
client.get("/warm-up")
time.sleep(max(0.0, start - time.time()))
print(json.dumps([k for k in range(keys) if client.create(f"/race/{k}", me)]))
"""


@pytest.mark.parametrize("server, racers", [("etcd_server", 2), ("etcd_server", 8), ("etcd_cluster", 8)])
def test_racing_processes_create_each_key_exactly_once(request, server, racers):
    etcd = request.getfixturevalue(server)
    keys = 50
    start = time.time() + 1.5  # every process connected before the first create
    # On the cluster each process starts with a different member: raft still lets one create win.
    urls = [",".join(etcd.endpoints[i % len(etcd.endpoints):] + etcd.endpoints[: i % len(etcd.endpoints)]) for i in range(racers)]
    procs = [
        subprocess.Popen([sys.executable, "-c", _RACER, urls[i], f"p{i}", str(start), str(keys)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        for i in range(racers)
    ]
    won = {}
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert err == ""  # no grpc noise
        won[f"p{i}"] = json.loads(out)
    winners = [k for keys_won in won.values() for k in keys_won]
    assert sorted(winners) == list(range(keys))  # every key won once, by one process
    stored = etcd.keys("/race/")
    assert {f"/race/{k}": owner for owner, ks in won.items() for k in ks} == stored


def test_status_proves_the_cluster_serves(etcd, etcd_server):
    status = etcd.status()
    assert status.version.startswith("3.")
    assert status.leader_id == status.member_id != 0
    assert status.endpoint == etcd_server.endpoints[0]


# -- TLS


def test_tls_with_client_certificate(etcd_tls_server):
    with connect(**etcd_tls_server.client_args()) as client:
        assert client.create("/mp/tls", "ok")
        assert client.get("/mp/tls").value == "ok"
    assert etcd_tls_server.keys("/mp/") == {"/mp/tls": "ok"}


def test_tls_with_ca_only_is_refused_by_a_server_requiring_client_certs(etcd_tls_server):
    with connect(etcd_tls_server.url, ca_file=etcd_tls_server.ca_file, timeout=2) as client:
        with pytest.raises(EtcdUnavailable, match="require a client certificate"):
            client.get("/mp/x")


def test_tls_with_another_ca_does_not_trust_the_server(etcd_tls_server, tmp_path):
    from multipy.testing import certs

    other = certs.authority(str(tmp_path / "other"))
    client_pair = other.client()
    with connect(etcd_tls_server.url, ca_file=other.cert, cert_file=client_pair.cert, key_file=client_pair.key) as client:
        with pytest.raises(EtcdUnavailable, match="not signed by ca_file"):
            client.get("/mp/x")


def test_tls_certificate_without_ca_is_a_config_error(etcd_tls_server):
    with pytest.raises(EtcdConfigError) as caught:
        connect(etcd_tls_server.url, cert_file=etcd_tls_server.cert_file, key_file=etcd_tls_server.key_file)
    assert caught.value.field == "ca_file"


def test_plain_http_to_a_tls_server_says_to_use_https(etcd_tls_server):
    with connect(etcd_tls_server.url.replace("https://", "http://"), timeout=2) as client:
        with pytest.raises(EtcdUnavailable, match="https://"):
            client.get("/mp/x")


def test_tls_to_a_plain_server_fails_clearly(etcd_server, etcd_tls_server):
    args = etcd_tls_server.client_args()
    args["endpoints"] = [etcd_server.endpoints[0].replace("http://", "https://")]
    with connect(**args, timeout=2) as client:
        with pytest.raises(EtcdUnavailable, match="TLS"):
            client.get("/mp/x")


_TLS_FAILURE = """
import sys
from multipy.clients.etcd import EtcdUnavailable, connect
client = connect(sys.argv[1], ca_file=sys.argv[2], timeout=2)
try:
    client.get("/x")
except EtcdUnavailable as error:
    print(error)
"""


def test_a_tls_failure_writes_nothing_to_stderr(etcd_tls_server):
    proc = subprocess.run([sys.executable, "-c", _TLS_FAILURE, etcd_tls_server.url, etcd_tls_server.ca_file],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert "client certificate" in proc.stdout
    assert proc.stderr == ""


# -- failover


def test_cluster_serves_with_one_member_down_and_fails_fast_when_all_are(etcd_cluster):
    with connect(etcd_cluster.endpoints, timeout=3) as client:
        assert client.create("/mp/before", "1")
        etcd_cluster.stop_member(0)  # the member the client was using
        start = time.monotonic()
        # A read moves on by itself. (A write sent over the dead member's connection before grpc
        # noticed the close would be reported with outcome_unknown: it may have reached etcd.)
        assert client.get("/mp/before").value == "1"
        assert client.create("/mp/during", "1")
        assert time.monotonic() - start < 1.0
        assert client.status().endpoint != etcd_cluster.endpoints[0]

    # A fresh client whose first endpoint is down.
    with connect(etcd_cluster.url, timeout=3) as client:
        assert client.get("/mp/during").value == "1"

    for i in (1, 2):
        etcd_cluster.stop_member(i)
    with connect(etcd_cluster.url, timeout=3) as client:
        start = time.monotonic()
        with pytest.raises(EtcdUnavailable) as caught:
            client.create("/mp/after", "1")
        elapsed = time.monotonic() - start
    assert elapsed < 0.5, elapsed  # refused connections: no waiting out the timeout
    assert caught.value.outcome_unknown is False
    message = str(caught.value)
    assert all(url in message for url in etcd_cluster.endpoints)
    assert "connection refused" in message


def test_a_member_without_quorum_refuses_at_once(etcd_cluster):
    etcd_cluster.stop_member(1)
    etcd_cluster.stop_member(2)
    time.sleep(2 * ELECTION_MS / 1000 + 0.3)  # past the election timeout: the survivor has stepped down
    with connect(etcd_cluster.endpoints[0], timeout=3) as client:
        start = time.monotonic()
        with pytest.raises(EtcdUnavailable, match="no leader") as caught:
            client.put("/mp/x", "1")
        assert time.monotonic() - start < 0.5
    assert caught.value.outcome_unknown is False


def test_a_restarted_member_serves_again(etcd_cluster):
    with connect(etcd_cluster.endpoints[0], timeout=3) as client:
        client.put("/mp/k", "v")
        etcd_cluster.stop_member(0, kill=True)
        with pytest.raises(EtcdUnavailable):
            client.get("/mp/k")
        etcd_cluster.start_member(0)
        assert client.get("/mp/k").value == "v"


@pytest.fixture
def silent_endpoint():
    """A port that accepts TCP connections and never says a word (an etcd that hangs)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_silent_endpoint_costs_connect_timeout_then_the_next_answers(etcd_server, silent_endpoint):
    with connect([silent_endpoint, *etcd_server.endpoints], timeout=3, connect_timeout=0.3) as client:
        start = time.monotonic()
        assert client.create("/mp/k", "v")
        assert 0.25 < time.monotonic() - start < 1.0
        start = time.monotonic()
        assert client.get("/mp/k").value == "v"  # the answering endpoint is now tried first
        assert time.monotonic() - start < 0.1


def test_the_timeout_bounds_the_whole_call(silent_endpoint):
    with connect([silent_endpoint, silent_endpoint.replace("127.0.0.1", "localhost")], timeout=1.0, connect_timeout=5) as client:
        start = time.monotonic()
        with pytest.raises(EtcdUnavailable, match="no connection within|timeout was spent"):
            client.get("/mp/k")
        assert time.monotonic() - start < 1.3


def test_a_failed_start_leaves_nothing_behind(tmp_path):
    cluster = EtcdCluster(binary=str(tmp_path / "no-etcd"))
    with pytest.raises(EtcdStartError, match="cannot run"):
        cluster.start()
    assert not os.path.exists(cluster.directory)

    cluster = EtcdCluster()
    cluster.binary = "/bin/false"  # starts, then exits at once
    with pytest.raises(EtcdStartError, match="exited"):
        cluster.start()
    assert not os.path.exists(cluster.directory)
