"""Each named failpoint with the panic and error actions: the request fails with a CNI error (999 for
an unexpected exception, the injected code for an error), the rollback leaves nothing, and the
runtime's DEL afterwards succeeds and leaves a clean node."""

from __future__ import annotations

import os

import pytest

from multipy.testing import failpoints as fp

from .conftest import TALLY, cni_error
from .test_kill import FAIL_AT_END, _trace, _windows

ACTIONS = {"panic": ("1*panic", 999), "error": ("1*error(11)", 11)}


def _paths(world) -> dict[str, list[tuple[str, int]]]:
    add, outcome = _trace(world, "ADD", "probe")
    assert outcome.ok
    dele, outcome = _trace(world, "DEL", "probe")
    assert outcome.ok
    failed, outcome = _trace(world, "ADD", "probe2", FAIL_AT_END)
    assert world.run("DEL", "probe2").ok
    cut = failed.index("orchestrator.add.before_final_write") + 1
    for cid in ("probe", "probe2"):
        world.forget(cid)
    first = lambda hits: sorted({(n, 0) for n, _ in _windows(hits)})  # noqa: E731 - the first hit of each
    return {"ADD": first(add), "DEL": first(dele), "rollback": first(failed[cut:])}


@pytest.mark.parametrize("action", ["panic", "error"])
def test_every_failpoint_fails_cleanly(world, action):
    spec, code = ACTIONS[action]
    figures = TALLY.of(f"failpoint {action}")
    problems: list[str] = []
    paths = _paths(world)
    phases = ("ADD", "rollback", "DEL") if action == "panic" else ("ADD", "DEL")
    n = 0
    for phase in phases:
        for name, _ in paths[phase]:
            n += 1
            cid = f"{action[0]}{n}"
            what = f"{action} at {phase} {name}"
            points = {name: spec}
            figures.runs += 1
            if phase == "DEL":
                assert world.run("ADD", cid).ok
                failed = world.run("DEL", cid, env=fp.env(points))
                if failed.ok:
                    problems.append(f"{what}: DEL succeeded through the fault")
                else:
                    figures.faults += 1
                    doc = cni_error(failed)
                    if doc["code"] != code:
                        problems.append(f"{what}: code {doc['code']}, expected {code}: {doc['msg']}")
            else:
                if phase == "rollback":
                    points = {**FAIL_AT_END, **points}
                failed = world.run("ADD", cid, env=fp.env(points))
                figures.faults += 1
                doc = cni_error(failed)
                # In a rollback the ADD's own error wins, unless the rollback's bookkeeping itself crashed.
                expected = {code} if phase == "ADD" else {11, code}
                if doc["code"] not in expected:
                    problems.append(f"{what}: code {doc['code']}, expected {expected}: {doc['msg']}")
                if phase == "ADD":
                    # The rollback itself met no fault: nothing may be left, before any DEL.
                    leaks = world.leaks(live=(cid,)) and world.leaks()
                    if leaks:
                        figures.leaks += len(leaks)
                        problems += [f"{what}: the rollback left {leak}" for leak in leaks]
            again = world.run("DEL", cid)
            if not again.ok:
                problems.append(f"{what}: the runtime's DEL afterwards failed: {again.stdout}")
            world.forget(cid)
            problems += world.check(figures, what=what)
    assert n >= 20, f"only {n} windows"
    assert not problems, "\n".join(problems)


def test_failpoints_are_inert_unless_armed(tmp_path):
    """Without MULTIPY_FAILPOINTS a failpoint is a no-op; a malformed spec is refused, not ignored."""
    from multipy import failpoints

    for name in fp.names():
        failpoints.failpoint(name)
    with pytest.raises(ValueError):
        failpoints.parse("x=explode")
    with pytest.raises(ValueError):
        failpoints.parse("x=sleep")
    terms = failpoints.parse("a=2*off->1*error(7)->panic;b=sleep(1)")
    assert [t.action for t in terms["a"]] == ["off", "error", "panic"]
    trace = str(tmp_path / "trace")
    with fp.active("a=1*off->1*error(7)", trace=trace):
        failpoints.failpoint("a")
        from multipy.cni.errors import CNIError

        with pytest.raises(CNIError) as raised:
            failpoints.failpoint("a")
        assert raised.value.code == 7
        failpoints.failpoint("a")  # its terms are spent
    assert fp.hits(trace) == ["a", "a", "a"]
    failpoints.failpoint("a")
    assert fp.hits(trace) == ["a", "a", "a"] and not os.path.exists(trace + ".x")

