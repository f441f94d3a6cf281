"""etcd faults under kube-ipam (net1), on a real three-member cluster inside the node: a member killed in
the middle of an ADD burst, the whole cluster frozen with SIGSTOP, the leader moved during a burst.
No address is ever handed out twice, and once the cluster serves again DEL leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from multipy.net.netns import run_in
from multipy.testing.etcd import EtcdCluster

from .conftest import TALLY, World, cni_error, scaled

FROZEN_BOUND = 30.0  # an ADD against a frozen cluster must fail within this (etcd calls are bounded at 5 s)


@pytest.fixture
def world3(node, netns, tmp_path):
    etcd = EtcdCluster(members=3)
    try:
        run_in(f"/run/netns/{node.name}", etcd.start)
        yield World(node, netns, str(tmp_path), etcd)
    finally:
        for member in etcd.members:  # never leave a member stopped: close() must be able to kill it
            if member.running:
                os.kill(member.pid, signal.SIGCONT)
        etcd.close()


def _burst(world, cids, during=None, at=3, parallel=4):
    """ADD `cids`, `parallel` at a time; `during()` runs once `at` of them have started. Outcomes by cid."""
    outcomes, running, pending = {}, [], list(cids)
    started = 0
    while pending or running:
        while pending and len(running) < parallel:
            cid = pending.pop(0)
            running.append((cid, world.start("ADD", cid)))
            started += 1
            if during is not None and started == at:
                during()
        cid, proc = running.pop(0)
        outcomes[cid] = world.finish(proc)[0]
    return outcomes


def _settle(world, figures, outcomes) -> list[str]:
    """Failed ADDs are DELed; duplicates checked with the survivors live; then everything DELed."""
    problems = []
    for cid, outcome in outcomes.items():
        if not outcome.ok:
            doc = cni_error(outcome)
            if doc["code"] == 999:
                problems.append(f"{cid}: internal error under an etcd fault: {doc['msg']}")
            deleted = world.run("DEL", cid)
            assert deleted.ok, deleted.stdout
            world.forget(cid)
    live = tuple(c for c, o in outcomes.items() if o.ok)
    problems += world.check(figures, live, what="with the survivors attached")
    for cid in live:
        assert world.run("DEL", cid).ok
        world.forget(cid)
    problems += world.check(figures, what="after deleting every pod")
    return problems


def _leader(etcd) -> int:
    statuses = json.loads(etcd.etcdctl("endpoint", "status", "-w", "json"))
    leader = statuses[0]["Status"]["leader"]
    for i, status in enumerate(statuses):
        if status["Status"]["header"]["member_id"] == leader:
            return i
    raise AssertionError("no leader")


def test_member_killed_mid_burst(world3):
    figures = TALLY.of("etcd member killed")
    etcd = world3.etcd
    leader = run_in(world3.where, _leader, etcd)
    n = scaled(16, 60)
    outcomes = _burst(world3, [f"m{i}" for i in range(n)], during=lambda: etcd.stop_member(leader, kill=True))
    figures.runs += n
    figures.faults += 1
    ok = sum(o.ok for o in outcomes.values())
    assert ok >= n // 2, f"only {ok}/{n} ADDs with two of three members up"
    problems = _settle(world3, figures, outcomes)
    run_in(world3.where, etcd.start_member, leader)
    assert not problems, "\n".join(problems)


def test_whole_cluster_frozen_then_thawed(world3):
    figures = TALLY.of("etcd cluster frozen")
    etcd = world3.etcd
    for member in etcd.members:
        os.kill(member.pid, signal.SIGSTOP)
    figures.faults += 1
    try:
        started = time.monotonic()
        frozen = world3.run("ADD", "f1", bound=FROZEN_BOUND + 5)
        took = time.monotonic() - started
        figures.runs += 1
    finally:
        for member in etcd.members:
            os.kill(member.pid, signal.SIGCONT)
    doc = cni_error(frozen)
    assert doc["code"] == 11, doc
    assert took < FROZEN_BOUND, f"ADD against a frozen cluster took {took:.1f} s"
    # The rollback could not reach etcd either: the record may be kept for the runtime's DEL, which now works.
    assert world3.run("DEL", "f1").ok
    world3.forget("f1")
    problems = world3.check(figures, what="after the thaw and DEL")
    thawed = world3.run("ADD", "f2")
    figures.runs += 1
    assert thawed.ok, thawed.stdout
    assert world3.run("DEL", "f2").ok
    world3.forget("f2")
    problems += world3.check(figures, what="ADD and DEL after the thaw")
    assert not problems, "\n".join(problems)


def test_leader_moved_mid_burst(world3):
    figures = TALLY.of("etcd leader moved")
    etcd = world3.etcd

    def move():
        statuses = json.loads(etcd.etcdctl("endpoint", "status", "-w", "json"))
        leader_id = statuses[0]["Status"]["leader"]
        leader = next(s for s in statuses if s["Status"]["header"]["member_id"] == leader_id)
        target = next(s for s in statuses if s["Status"]["header"]["member_id"] != leader_id)
        etcd.etcdctl("move-leader", format(target["Status"]["header"]["member_id"], "x"), endpoints=[leader["Endpoint"]])

    n = scaled(16, 60)
    outcomes = _burst(world3, [f"l{i}" for i in range(n)], during=lambda: run_in(world3.where, move))
    figures.runs += n
    figures.faults += 1
    failed = {c: o.stdout for c, o in outcomes.items() if not o.ok}
    problems = _settle(world3, figures, outcomes)
    assert len(failed) <= n // 4, f"a leader change failed {len(failed)}/{n} ADDs: {failed}"
    assert not problems, "\n".join(problems)
