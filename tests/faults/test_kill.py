"""Real SIGKILL in every window of ADD, rollback and DEL (each named failpoint, each of its hits), and at
random moments; then the runtime's DEL, or GC, must leave a clean node: no link in the pod or the
host namespace, no record, no host-local lease, no kube-ipam owner or dynamic lease, no temp file."""

from __future__ import annotations

import os
import time

import pytest

from multipy.testing import failpoints as fp

from .conftest import TALLY, cni_error, kill_after, scaled

FAIL_AT_END = {"orchestrator.add.before_final_write": "error(11)"}  # a late failure: everything rolls back


def _trace(world, command, cid, points="", conf=None) -> tuple[list[str], object]:
    path = os.path.join(world.tmp, f"trace-{command}-{cid}")
    outcome = world.run(command, cid, conf=conf, env=fp.env(points, trace=path))
    hits = fp.hits(path)
    os.unlink(path) if os.path.exists(path) else None
    return hits, outcome


def _windows(hits: list[str]) -> list[tuple[str, int]]:
    """(name, n): the n-th hit (0-based) of each failpoint a request went through."""
    seen: dict[str, int] = {}
    out = []
    for name in hits:
        out.append((name, seen.get(name, 0)))
        seen[name] = seen.get(name, 0) + 1
    return out


def _kill_spec(name: str, nth: int) -> dict:
    return {name: f"{nth}*off->kill" if nth else "kill"}


def _assert_clean(world, figures, live=(), what=""):
    problems = world.check(figures, live, what)
    assert not problems, "\n".join(problems)


def test_every_failpoint_is_reached_by_add_rollback_del_or_gc(world):
    """The windows are real: each failpoint in the source lies on a path this suite drives."""
    reached: set[str] = set()
    add, outcome = _trace(world, "ADD", "trace1")
    assert outcome.ok, outcome.stdout
    dele, outcome = _trace(world, "DEL", "trace1")
    assert outcome.ok, outcome.stdout
    failed, outcome = _trace(world, "ADD", "trace2", FAIL_AT_END)
    assert cni_error(outcome)["code"] == 11
    assert world.run("DEL", "trace2").ok
    assert world.run("ADD", "trace3").ok
    path = os.path.join(world.tmp, "trace-gc")
    assert world.gc([], env=fp.env("", trace=path)).ok
    reached = set(add) | set(dele) | set(failed) | set(fp.hits(path))
    for cid in ("trace1", "trace2", "trace3"):
        world.forget(cid)
    assert sorted(set(fp.names()) - reached) == [], "failpoints no test path reaches"
    _assert_clean(world, TALLY.of("failpoint coverage"))


@pytest.mark.parametrize("phase", ["ADD", "rollback", "DEL"])
def test_sigkill_in_every_window(world, rng, phase):
    """For each window of the phase (every hit of every failpoint on its path), a fresh pod is
    killed there, then DELed (or GCed) by the runtime: the node is clean every time."""
    figures = TALLY.of(f"SIGKILL at failpoints ({phase})")
    probe = f"probe-{phase.lower()}"
    if phase == "DEL":
        assert world.run("ADD", probe).ok
        hits, outcome = _trace(world, "DEL", probe)
        assert outcome.ok
    else:
        hits, outcome = _trace(world, "ADD", probe, FAIL_AT_END if phase == "rollback" else "")
        if phase == "rollback":
            cut = hits.index("orchestrator.add.before_final_write") + 1
            hits = [h for h in hits[cut:]]
        assert world.run("DEL", probe).ok
    world.forget(probe)
    windows = _windows(hits)
    assert windows, "the phase went through no failpoint"
    problems: list[str] = []
    missed: list[str] = []
    killed_names: set[str] = set()
    for i, (name, nth) in enumerate(windows):
        cid = f"k{phase[0].lower()}{i}"
        points = _kill_spec(name, nth)
        if phase == "rollback":
            points = {**FAIL_AT_END, **points}
        if phase == "DEL":
            assert world.run("ADD", cid).ok
            killed = world.run("DEL", cid, env=fp.env(points))
        else:
            killed = world.run("ADD", cid, env=fp.env(points))
        figures.runs += 1
        if killed.returncode != -9:
            # The n-th hit may not come on this pod (host-local's round-robin file is rewritten
            # only on some paths): the request must then simply have worked.
            assert killed.ok, f"{name} #{nth}: neither killed nor done: {killed.returncode} {killed.stdout}"
            missed.append(f"{name}#{nth}")
        else:
            figures.faults += 1
            killed_names.add(name)
            figures.kills += 1
            figures.kill_points.add(f"{phase}:{name}#{nth}")
        # The runtime's answer to a killed plugin: DEL (always, before the sandbox goes), or GC later.
        if phase != "DEL" and rng.random() < 0.3:
            after = world.gc([])
        else:
            after = world.run("DEL", cid)
        assert after.ok, f"after a kill at {name} #{nth}: {after.stdout}"
        world.forget(cid)
        problems += world.check(figures, what=f"kill at {phase} {name} #{nth}")
    assert not problems, "\n".join(problems)
    assert killed_names == {name for name, _ in windows}, f"failpoints never killed at: {missed}"
    assert len(missed) <= len(windows) // 4, f"too many windows not reached again: {missed}"


@pytest.mark.parametrize("command", ["ADD", "DEL"])
def test_sigkill_at_random_moments_with_live_neighbours(world, rng, command):
    """Seeded random delays: pods are killed mid-request while neighbours stay attached; the killed
    ones are cleaned by DEL (sometimes after a retried ADD, as kubelet does), neighbours keep their
    addresses and no address is ever handed out twice."""
    figures = TALLY.of(f"SIGKILL at random ({command})")
    runs = scaled(8, 120)
    started = time.monotonic()
    assert world.run("ADD", "timing").ok
    typical = max(0.2, time.monotonic() - started)
    assert world.run("DEL", "timing").ok
    world.forget("timing")
    live: list[str] = []
    problems: list[str] = []
    for i in range(runs):
        cid = f"r{command[0].lower()}{i}"
        if command == "DEL":
            assert world.run("ADD", cid).ok
        proc = world.start(command, cid)
        delay = rng.uniform(0.0, typical * 1.1)
        landed = kill_after(proc, delay)
        figures.runs += 1
        figures.faults += 1
        if landed:
            figures.kills += 1
            figures.kill_points.add(f"{command}+{round(delay, 2)}s")
        if command == "ADD" and rng.random() < 0.4:
            retried = world.run("ADD", cid)  # kubelet retries a failed sandbox ADD
            assert retried.ok, retried.stdout
            live.append(cid)
        else:
            gone = world.run("DEL", cid)
            assert gone.ok, gone.stdout
            world.forget(cid)
        problems += world.check(figures, live, what=f"run {i}: {command} killed after {delay:.3f}s")
        if problems:
            break  # with live neighbours a leak cannot be scrubbed alone: stop here, report it
    for cid in live:
        assert world.run("DEL", cid).ok
        world.forget(cid)
    problems += world.check(figures, what="after deleting the survivors")
    assert not problems, "\n".join(problems)
