"""The test kit's side of multipy.failpoints: which failpoints exist, how to turn them on, what was hit.

    names()                                   # every failpoint called in multipy/ and delegates/
    env({"record.save.before_write": "kill"}, trace=path)   # for a CNI process (read once at its import)
    with active({"orchestrator.add.before_delegate": "1*panic"}): ...   # in this process
    hits(path)                                # the failpoints a traced process went through, in order

`Tally` counts what a fault suite injected, for its closing summary (see tests/faults/conftest.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import multipy
from multipy import failpoints

_CALL = re.compile(r"""\bfailpoint\(\s*["']([A-Za-z0-9_.\-]+)["']\s*\)""")
_ROOTS = ("multipy", "delegates")


def names() -> list[str]:
    """Every failpoint name called in the source of multipy and the built-in delegates."""
    base = os.path.dirname(os.path.dirname(os.path.abspath(multipy.__file__)))
    found: set[str] = set()
    for root in _ROOTS:
        for directory, _dirs, files in os.walk(os.path.join(base, root)):
            if "testing" in directory.split(os.sep):
                continue
            for file in files:
                if file.endswith(".py") and file != "failpoints.py":
                    with open(os.path.join(directory, file), encoding="utf-8") as f:
                        found.update(_CALL.findall(f.read()))
    return sorted(found)


def spec(points: dict[str, str] | str) -> str:
    text = points if isinstance(points, str) else ";".join(f"{k}={v}" for k, v in points.items())
    failpoints.parse(text)  # a typo fails the test here, not silently in the CNI process
    return text


def env(points: dict[str, str] | str = "", trace: str | None = None) -> dict[str, str]:
    """Environment variables that arm `points` (and tracing into `trace`) in a CNI process."""
    out = {failpoints.ENV: spec(points)}
    if trace:
        out[failpoints.TRACE_ENV] = trace
    return out


@contextlib.contextmanager
def active(points: dict[str, str] | str, trace: str | None = None) -> Iterator[None]:
    """Arm `points` in this process (in-process requests: skel.run, the orchestrator); disarmed after."""
    failpoints._configure(spec(points), trace)
    try:
        yield
    finally:
        failpoints._configure("")


def hits(trace: str) -> list[str]:
    """The failpoints a traced process reached, in order (empty when it reached none)."""
    try:
        with open(trace, encoding="utf-8") as f:
            return [line for line in f.read().splitlines() if line]
    except FileNotFoundError:
        return []


@dataclass
class Figures:
    runs: int = 0
    faults: int = 0  # faults injected (a failpoint action fired, a process killed, a service frozen...)
    kill_points: set[str] = field(default_factory=set)  # distinct windows a SIGKILL landed in
    kills: int = 0
    leaks: int = 0
    duplicates: int = 0


class Tally:
    """Per fault class: runs, faults injected, kill points hit, leaks and duplicate IPs found."""

    def __init__(self) -> None:
        self.classes: dict[str, Figures] = {}

    def of(self, fault_class: str) -> Figures:
        return self.classes.setdefault(fault_class, Figures())

    def as_dict(self) -> dict:
        return {name: {**asdict(f), "kill_points": len(f.kill_points)} for name, f in sorted(self.classes.items())}

    def lines(self) -> list[str]:
        head = f"{'fault class':<28}{'runs':>6}{'faults':>8}{'kills':>7}{'kill pts':>10}{'leaks':>7}{'dup IPs':>9}"
        rows = [head]
        total = Figures()
        for name, f in sorted(self.classes.items()):
            rows.append(f"{name:<28}{f.runs:>6}{f.faults:>8}{f.kills:>7}{len(f.kill_points):>10}{f.leaks:>7}{f.duplicates:>9}")
            total.runs += f.runs
            total.faults += f.faults
            total.kills += f.kills
            total.kill_points |= f.kill_points
            total.leaks += f.leaks
            total.duplicates += f.duplicates
        rows.append(f"{'total':<28}{total.runs:>6}{total.faults:>8}{total.kills:>7}{len(total.kill_points):>10}"
                    f"{total.leaks:>7}{total.duplicates:>9}")
        return rows

    def dump(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.as_dict(), f, indent=1)
