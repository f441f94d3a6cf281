"""Delegate faults: a binary delegate on net1 that hangs, leaves an escaped grandchild holding its stdout,
prints garbage, prints a huge document, or exits without output. Each ADD ends within the bound with the
right code, the native master (bridge + host-local on eth0) is rolled back, and DEL leaves nothing."""

from __future__ import annotations

import os
import signal
import stat
import time

import pytest

from .conftest import TALLY, cni_error

TIMEOUT = 2  # the conf's delegateTimeout
BOUND = TIMEOUT + 8.0  # kill, reap, rollback of the master

SCRIPT = """#!/bin/sh
# A misbehaving CNI plugin: $MODE on ADD, a clean success on every other command.
[ "$CNI_COMMAND" = ADD ] || exit 0
cat >/dev/null
case "{mode}" in
hang) exec sleep 300 ;;
grandchild)
  setsid sh -c 'echo $$ > "{pids}"; exec sleep 300' &
  sleep 0.2
  printf '{{"cniVersion":"1.1.0","interfaces":[{{"name":"net1"}}],"ips":[]}}'
  exit 0 ;;
garbage) printf 'this is not JSON {{'; exit 0 ;;
huge) head -c 64000000 /dev/zero | tr '\\0' 'x'; exit 0 ;;
silent) exit 0 ;;
silentfail) exit 1 ;;
esac
"""

# mode -> the codes an ADD may fail with (101 timeout, 102 not CNI JSON, 999 a plain failure)
EXPECTED = {
    "hang": {101},
    "grandchild": {0, 101, 102},  # 0: it printed a valid result and exited; the grandchild must not stall us
    "garbage": {102},
    "huge": {102, 101},
    "silent": {102},
    "silentfail": {102, 999},
}


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_misbehaving_delegate(local_world, tmp_path, mode):
    figures = TALLY.of("delegate faults")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    pids = tmp_path / "grandchild.pid"
    plugin = bindir / "faulty"
    plugin.write_text(SCRIPT.format(mode=mode, pids=pids))
    plugin.chmod(plugin.stat().st_mode | stat.S_IEXEC)
    conf = local_world.conf(binDir=str(bindir), delegateTimeout=TIMEOUT)
    conf["delegates"][1] = {"name": "faulty-net", "type": "faulty", "cniVersion": "1.1.0"}
    try:
        started = time.monotonic()
        outcome = local_world.run("ADD", "d1", conf=conf, bound=BOUND + 60)
        took = time.monotonic() - started
        figures.runs += 1
        figures.faults += 1
        assert took <= BOUND, f"{mode}: ADD took {took:.1f} s with delegateTimeout {TIMEOUT}"
        problems = []
        if outcome.ok:
            assert 0 in EXPECTED[mode], outcome.stdout
        else:
            doc = cni_error(outcome)
            assert doc["code"] in EXPECTED[mode], doc
            problems += local_world.check(figures, what=f"{mode}: after the failed ADD")
        assert local_world.run("DEL", "d1", conf=conf).ok
        local_world.forget("d1")
        problems += local_world.check(figures, what=f"{mode}: after DEL")
        assert not problems, "\n".join(problems)
    finally:
        if pids.exists():  # the escaped grandchild is ours: end it by its pid
            try:
                os.kill(int(pids.read_text().strip()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
