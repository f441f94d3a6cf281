"""Issue 13 defect 2: a delegate binary never holds a request past its timeout (binary.run's waits all
have an absolute deadline), and dies with multipy (PR_SET_PDEATHSIG through setpriv). Real scripts, no root."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from multipy.cni.errors import DELEGATE_NOT_FOUND, DELEGATE_TIMEOUT, CNIError
from multipy.plugins import binary
from multipy.plugins.contract import Invocation

RESULT = '{"cniVersion": "1.0.0", "interfaces": [], "ips": []}'


class _Log:
    def debug(self, *a):
        pass

    info = warning = error = exception = debug


def _script(tmp_path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


def _run(path: str, timeout: float) -> bytes:
    return binary.run(path, Invocation("ADD", "c1", "/run/netns/x", "eth0"), b"{}", timeout, _Log())


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1].startswith("Z")


def _kill_pidfile(path) -> None:
    try:
        pid = int(path.read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError, IndexError):
        pass


def test_a_hung_delegate_costs_its_timeout_not_more(tmp_path):
    hung = _script(tmp_path, "hung", "sleep 60\n")
    started = time.monotonic()
    with pytest.raises(CNIError) as info:
        _run(hung, 1.0)
    assert info.value.code == DELEGATE_TIMEOUT
    assert time.monotonic() - started < 2.5


def test_a_setsid_grandchild_holding_stdout_does_not_extend_the_timeout(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    escaped = _script(tmp_path, "escaped", f"""
        setsid sh -c 'echo $$ > {pidfile}; exec sleep 60' &
        sleep 60
    """)
    try:
        started = time.monotonic()
        with pytest.raises(CNIError) as info:
            _run(escaped, 1.0)
        assert info.value.code == DELEGATE_TIMEOUT
        assert time.monotonic() - started < 1.0 + binary.KILL_GRACE + 1
    finally:
        _kill_pidfile(pidfile)


def test_a_delegate_that_finished_is_not_held_up_by_a_grandchild_keeping_its_pipes(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    done = _script(tmp_path, "done", f"""
        setsid sh -c 'echo $$ > {pidfile}; exec sleep 60' &
        echo '{RESULT}'
        exit 0
    """)
    try:
        started = time.monotonic()
        assert b'"interfaces"' in _run(done, 10.0)
        assert time.monotonic() - started < binary.PIPE_GRACE + 1.5
    finally:
        _kill_pidfile(pidfile)


def test_a_quick_delegate_is_not_slowed_down(tmp_path):
    quick = _script(tmp_path, "quick", f"cat >/dev/null; echo '{RESULT}'\n")
    started = time.monotonic()
    for _ in range(5):
        _run(quick, 5.0)
    assert (time.monotonic() - started) / 5 < 0.2


def test_a_missing_or_non_executable_binary_is_still_code_100(tmp_path):
    broken = tmp_path / "broken"
    broken.write_text("#!/nonexistent/interpreter\n")
    broken.chmod(0o755)
    with pytest.raises(CNIError) as info:
        _run(str(broken), 5.0)
    assert info.value.code == DELEGATE_NOT_FOUND


def _run_counting_stdin(tmp_path, stdin: bytes) -> int:
    # The delegate reads its stdin only after a while, as a loaded node schedules it: how many bytes it got.
    late = _script(tmp_path, "late", "sleep 0.3\nwc -c\n")
    return int(binary.run(late, Invocation("ADD", "c1", "/run/netns/x", "eth0"), stdin, 5.0, _Log()))


def test_a_wait_that_times_out_before_the_input_is_written_still_hands_it_all_over(tmp_path, monkeypatch):
    """Seen in a 100-pod burst of Go delegates: the first wait expired before communicate() wrote the
    config (its thread was descheduled longer than the step); CPython's later calls wrote nothing and
    never closed stdin, and the delegate read its stdin until the 90 s delegateTimeout. A 1 µs first
    step is that, every time."""
    monkeypatch.setattr(binary, "FIRST_STEP", 1e-6)
    started = time.monotonic()
    assert _run_counting_stdin(tmp_path, b'{"cniVersion": "1.0.0"}') == len(b'{"cniVersion": "1.0.0"}')
    assert time.monotonic() - started < 2.0


def test_an_input_larger_than_a_pipe_reaches_a_delegate_that_reads_late(tmp_path):
    """A conf (prevResult, a big NAD) past a pipe's 64 KiB, read after the first wait expired: all of it,
    then end of file."""
    big = b"x" * (300 * 1024 + 7)
    assert _run_counting_stdin(tmp_path, big) == len(big)


def test_a_delegate_that_never_reads_its_input_still_answers(tmp_path):
    deaf = _script(tmp_path, "deaf", f"exec 0<&-\nsleep 0.2\necho '{RESULT}'\n")
    assert b'"interfaces"' in binary.run(deaf, Invocation("ADD", "c1", "/x", "eth0"), b"y" * 200_000, 5.0, _Log())


@pytest.mark.skipif(not binary._pdeathsig_wrapper(), reason="no setpriv: delegates cannot die with their parent")
def test_a_delegate_dies_with_the_process_that_ran_it(tmp_path):
    pidfile = tmp_path / "delegate.pid"
    slow = _script(tmp_path, "slow", f"echo $$ > {pidfile}\nexec sleep 60\n")
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from multipy.plugins import binary
        from multipy.plugins.contract import Invocation
        class L:
            def debug(self, *a): pass
        binary.run({slow!r}, Invocation("ADD", "c1", "/x", "eth0"), b"{{}}", 60, L())
    """)])
    try:
        deadline = time.monotonic() + 10
        while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        pid = int(pidfile.read_text())
        parent.kill()  # the runtime kills multus-cni
        parent.wait(10)
        deadline = time.monotonic() + 5
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(pid), "the delegate outlived the multipy that ran it"
    finally:
        parent.kill()
        parent.wait(10)
        _kill_pidfile(pidfile)


def test_an_add_whose_delegate_hangs_on_every_command_costs_about_one_timeout(tmp_path):
    """ADD times out, then its rollback DEL: together about delegateTimeout, not twice it."""
    from multipy.config import multus
    from multipy.orchestrator.commands import Orchestrator, Request
    from multipy.orchestrator.record import RecordStore
    from multipy.plugins.chain import Chain
    from multipy.plugins.contract import Services
    from multipy.testing.fake_delegates import NoNatives

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir, "hung", "exec sleep 60\n")
    conf = multus.load({"cniVersion": "1.0.0", "name": "meta", "type": "multus-cni", "cniDir": str(tmp_path / "c"),
                        "delegates": [{"cniVersion": "1.0.0", "name": "h", "type": "hung"}]})
    log = _Log()
    chain = Chain(NoNatives(), Services(), (str(bin_dir),), 2.0, log, runner=binary.RawExec(log))
    orch = Orchestrator(conf, chain, RecordStore(conf.cni_dir), log)
    started = time.monotonic()
    with pytest.raises(CNIError) as info:
        orch.add(Request("c1", "eth0", "/run/netns/x", "", None, "1.0.0"))
    assert info.value.code == DELEGATE_TIMEOUT
    assert time.monotonic() - started < 2.0 * 1.5

