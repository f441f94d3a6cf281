"""kube-ipam at cluster scale, small: bench/scale.py with 2 simulated nodes on a 3-member etcd cluster,
with an etcd member killed and restarted and the leader moved while pods are added.

The bench runs as its own process (it enters a network namespace of its own making); its JSON is checked
here: no pod lost, no duplicate address, StatefulSet pods keep theirs across recreation, nothing left
in etcd but the name-bound reservations, nothing in the nodes' multus state, and an ADD into a full
range fails with code 11 naming the range and leaves neither a link nor a key. About 30 s on a quiet
machine (minutes when it is loaded). Then kube-ipam's full-block index in process, on one etcd member:
hints written and dropped, a stale hint that costs a read but never an address, and the exhaustion error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from multipy.testing.etcd import ETCD_BIN, ETCDCTL_BIN

BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "scale.py")

pytestmark = pytest.mark.skipif(not (os.access(ETCD_BIN, os.X_OK) and os.access(ETCDCTL_BIN, os.X_OK)),
                                reason="needs etcd and etcdctl (Debian's etcd-server, etcd-client)")  # fmt: skip
bench = pytest.mark.netns  # the bench makes its own namespaces: root only


@pytest.fixture(scope="module")
def run():
    proc = subprocess.run(
        [sys.executable, BENCH, "--nodes", "2", "--pods", "16", "--inflight", "3", "--faults", "--exhaust", "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.stdout.strip(), f"bench/scale.py exited {proc.returncode} without results: {proc.stderr[-3000:]}"
    return json.loads(proc.stdout), proc


@bench
def test_no_pod_lost_and_no_duplicate(run):
    out, proc = run
    assert out["lost_pods"] == []
    for check in ("after_create", "after_churn"):
        assert out[check]["duplicates"] == {}, out[check]
        assert out[check]["problems"] == [], out[check]
    assert out["after_create"]["running"] == 16
    assert out["sts"] == 2 and out["sts_address_changed"] == {}
    assert proc.returncode == 0, proc.stderr[-3000:]


@bench
def test_faults_were_injected(run):
    out, _ = run
    events = " | ".join(out["events"])
    assert "killed" in events and "restarted" in events and "leader moved" in events, events
    assert "FAULT INJECTION FAILED" not in events


@bench
def test_nothing_leaks(run):
    out, _ = run
    assert out["left_in_etcd"] == {"fixed_reservations": 2, "other": {}}
    assert out["left_on_nodes"] == []
    assert out["after_create"]["owners"] == 16


@bench
def test_full_range_fails_with_a_clear_error_and_leaves_nothing(run):
    out, _ = run
    ex = out["exhaustion"]
    assert ex["ok"] is False and ex["code"] == 11, ex
    assert "no IP addresses available in range set: 10.188.250.1-10.188.250.2" in ex["msg"], ex
    assert "all 2 addresses of rangeStart..rangeEnd are reserved" in ex["msg"], ex
    assert ex["links_left"] == [] and ex["keys_left"] == [], ex


@bench
def test_the_store_was_counted(run):
    out, _ = run
    adds = out["store_stats"]["ADD"]
    assert adds["calls"] >= 16 + 2 + 3  # create, STS recreation + replacements, exhaustion
    assert adds["txns"] >= 16
    assert out["etcd_grpc"].get("Txn", 0) > 0 and out["etcd_grpc"].get("Range", 0) > 0


# ---------------------------------------------------------------- the full-block index, in process (no root)

SMALL = {"rangeStart": "10.188.1.0", "rangeEnd": "10.188.1.9"}  # 10 addresses: block 10.188.1.x, region 10.188.0-15.x
BLOCK_HINT = "/multipy/ipam/pools/10.188.0.0-16/full/b/0abc01"
REGION_HINT = "/multipy/ipam/pools/10.188.0.0-16/full/r/0abc0"


@pytest.fixture
def ipam(etcd_server):
    from delegates.kube_ipam import KubeIpam
    from multipy.cni.env import Environment
    from multipy.plugins.contract import Services
    from multipy.testing.topology import SEED_KUBE_IPAM

    plugin = KubeIpam(Services())
    conf = {"cniVersion": "1.0.0", "name": "k8snet2", "type": "macvlan",
            "ipam": {**SEED_KUBE_IPAM, **SMALL, "etcdConfig": etcd_server.etcd_config()}}  # fmt: skip

    def call(command, cid):
        inv = Environment(command, cid, "/run/netns/x", "net1", "IgnoreUnknown=1")
        if command == "ADD":
            return str(plugin.add(inv, conf).ips[0].address.ip)
        return plugin.delete(inv, conf)

    return call, etcd_server


def test_a_filled_block_is_hinted_and_a_freed_address_unhints_it(ipam):
    call, etcd = ipam
    got = {f"c{n}": call("ADD", f"c{n}") for n in range(10)}
    assert set(got.values()) == {f"10.188.1.{n}" for n in range(10)}
    keys = etcd.keys("/multipy/ipam/pools/10.188.0.0-16/full/")
    assert keys[BLOCK_HINT] == '{"range":"10.188.1.0-10.188.1.9"}'
    assert keys[REGION_HINT] == '{"range":"10.188.1.0-10.188.1.9"}'  # the region's only block in the range
    call("DEL", "c3")
    assert etcd.keys("/multipy/ipam/pools/10.188.0.0-16/full/") == {}
    assert call("ADD", "c10") == got["c3"]


def test_a_stale_hint_costs_a_read_never_an_address(ipam):
    call, etcd = ipam
    got = {f"c{n}": call("ADD", f"c{n}") for n in range(10)}
    call("DEL", "c4")
    call("DEL", "c7")
    free = (got["c4"], got["c7"])
    # As if a racing ADD had hinted the block full after those DELs: both hints say full, two addresses are free.
    etcd.etcdctl("put", BLOCK_HINT, '{"range":"10.188.1.0-10.188.1.9"}')
    etcd.etcdctl("put", REGION_HINT, '{"range":"10.188.1.0-10.188.1.9"}')
    assert call("ADD", "c10") in free
    assert etcd.keys("/multipy/ipam/pools/10.188.0.0-16/full/") == {}  # one free address left: the hints go
    assert call("ADD", "c11") in free
    assert BLOCK_HINT in etcd.keys("/multipy/ipam/pools/10.188.0.0-16/full/")  # full again


def test_an_add_into_a_full_range_fails_with_code_11_and_writes_nothing(ipam):
    from multipy.cni.errors import CNIError

    call, etcd = ipam
    for n in range(10):
        call("ADD", f"c{n}")
    before = etcd.keys("/multipy/")
    with pytest.raises(CNIError) as refused:
        call("ADD", "one-too-many")
    assert refused.value.code == 11
    assert refused.value.msg.startswith("no IP addresses available in range set: 10.188.1.0-10.188.1.9 (kube-ipam "
                                        "network k8snet2, pool 10.188.0.0/16: all 10 addresses")  # fmt: skip
    assert etcd.keys("/multipy/") == before
    call("DEL", "one-too-many")  # the runtime's DEL after the failed ADD: nothing to release, no error
    for n in range(10):
        call("DEL", f"c{n}")
    assert etcd.keys("/multipy/") == {}
