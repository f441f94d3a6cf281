"""`make demo` (demo/seed.py) runs the seed end to end, reports the fixed addresses, and leaves nothing
behind: not when it passes, not when a step fails, not when it is interrupted.

The demo runs as `make demo` runs it, in its own session (as a terminal's foreground job gets Ctrl-C),
with TMPDIR pointing into the test's tmp dir and a marker in its environment, which every process it
starts inherits: a process still carrying the marker afterwards is one the demo left running.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns  # `make demo` creates its own namespaces, without the netns fixture

DEMO = Path(__file__).resolve().parents[2] / "demo" / "seed.py"
MARKER = "MULTIPY_DEMO_TEST_RUN"


class Run:
    def __init__(self, tmp_path: Path, env: dict | None = None, interrupt_after: str | None = None):
        self.tmpdir = tmp_path / "tmp"
        self.tmpdir.mkdir()
        self.marker = f"{MARKER}={uuid.uuid4().hex}"
        environ = {**os.environ, **(env or {}), "TMPDIR": str(self.tmpdir), "PYTHONUNBUFFERED": "1"}
        environ[MARKER] = self.marker.split("=", 1)[1]
        proc = subprocess.Popen([sys.executable, str(DEMO)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=environ, start_new_session=True)  # fmt: skip
        self.pid = proc.pid
        lines = []
        try:
            if interrupt_after:
                for line in proc.stdout:
                    lines.append(line)
                    if line.startswith(interrupt_after):
                        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground job
                        break
            rest, _ = proc.communicate(timeout=120)
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        self.output = "".join(lines) + rest
        self.returncode = proc.returncode

    def leftovers(self) -> list[str]:
        """Namespaces, processes and directories of this run that still exist."""
        found = []
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        found += [f"netns {line.split()[0]}" for line in netns.splitlines() if line.startswith(f"mpdemo{self.pid}-")]
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and self.marker.encode() in (entry / "environ").read_bytes().split(b"\0"):
                    argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    found.append(f"process {entry.name}: {argv[:120]}")
            except OSError:
                continue  # gone meanwhile, or a kernel thread
        found += [f"file {p}" for p in self.tmpdir.iterdir()]
        match = re.search(r"^state directories: (.*)$", self.output, re.M)
        found += [f"directory {d}" for d in (match.group(1).split(", ") if match else []) if os.path.exists(d)]
        return found

    def tail(self) -> str:
        return self.output[-4000:]


def net1_lines(text: str, address: str) -> list[str]:
    """`ip address` lines showing `address` on net1, as the seed's `kubectl exec ... ip address` shows it."""
    return re.findall(rf"^\s+inet {re.escape(address)}/16 brd 10\.188\.255\.255 scope global net1$", text, re.M)


def test_demo_passes_and_reports_the_fixed_addresses(tmp_path):
    run = Run(tmp_path)
    assert run.returncode == 0, run.tail()
    assert "seed verification passed" in run.output
    assert net1_lines(run.output, "10.188.0.218")
    assert net1_lines(run.output, "10.188.0.219")
    # database-2-0 deleted and recreated: its new sandbox shows the same address on net1.
    recreated = run.output.split("--- 5.2 ", 1)[1].split("--- 5.3 ", 1)[0]
    assert net1_lines(recreated, "10.188.0.219"), recreated
    assert "net1 before: 10.188.0.219, after: 10.188.0.219" in recreated
    # 4.2 (both web pods), 4.3 (both ways) and 5.3 (three sources): every ping answered.
    assert run.output.count(" 0% packet loss") == 7, run.tail()
    assert "(not written)" not in run.output
    assert run.leftovers() == []


def test_a_failed_step_is_named_and_cleaned_up(tmp_path):
    run = Run(tmp_path, env={"ETCD_BIN": str(tmp_path / "no-etcd-here")})
    assert run.returncode == 1, run.tail()
    assert "demo FAILED at step '2 Install CNI plugin and flannel" in run.output
    assert "no-etcd-here" in run.output
    assert "Traceback" not in run.output
    assert run.leftovers() == []


def test_ctrl_c_with_pods_running_cleans_up(tmp_path):
    run = Run(tmp_path, interrupt_after="--- 4.1 ")
    assert run.returncode == 130, run.tail()
    assert "demo FAILED at step '4.1 " in run.output and "interrupted" in run.output
    assert run.leftovers() == []
