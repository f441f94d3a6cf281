"""Named failpoints, in the style of etcd's gofail: `failpoint("orchestrator.add.after_record_write")`.

A failpoint does nothing unless the test kit (multipy/testing/failpoints.py) activated it. The
activation is read once, at import, from the environment:

    MULTIPY_FAILPOINTS="orchestrator.add.after_record_write=kill;record.save.before_rename=1*panic"

Each name gets a term list `term{->term}`; a term is `[N*]action[(argument)]`, used for its next N
hits (for good without N), then the next term takes over, then nothing (as gofail's terms):

    off             nothing (with a count: skip that many hits, `2*off->kill` kills on the third)
    panic[(text)]   raise FailpointPanic (an unexpected exception: the runtime sees code 999)
    error(code)     raise the protocol's CNIError(code) (a plain FailpointError if it is not loaded)
    sleep(ms)       sleep that long
    kill            SIGKILL this process, as an OOM kill or a runtime's timeout would

`MULTIPY_FAILPOINTS_TRACE=/path` appends the name of every failpoint reached (active or not) to
that file, one per line: how the test kit learns which windows a request went through.

Inactive, `failpoint` is a global lookup and a return. This module is the lowest layer: it imports
nothing of multipy, so every layer and every delegate may call it.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time

ENV = "MULTIPY_FAILPOINTS"
TRACE_ENV = "MULTIPY_FAILPOINTS_TRACE"
ACTIONS = ("off", "panic", "error", "sleep", "kill")

_TERM = re.compile(r"^\s*(?:(?P<count>\d+)\*)?(?P<action>[a-z]+)(?:\((?P<arg>[^()]*)\))?\s*$")


class FailpointPanic(RuntimeError):
    """What `panic` raises: an exception no layer expects."""


class FailpointError(Exception):
    """What `error(code)` raises when multipy.cni.errors is not loaded (it always is in a CNI request)."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, ""


class _Term:
    __slots__ = ("action", "arg", "left")

    def __init__(self, action: str, arg: str, left: int | None) -> None:
        self.action, self.arg, self.left = action, arg, left


def parse(spec: str) -> dict[str, list[_Term]]:
    """`name=terms;name=terms` -> {name: [term, ...]}; ValueError naming what is wrong."""
    active: dict[str, list[_Term]] = {}
    for item in filter(None, (part.strip() for part in spec.split(";"))):
        name, sep, terms = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"failpoint {item!r}: expected name=action")
        parsed = []
        for text in terms.split("->"):
            match = _TERM.match(text)
            if match is None or match["action"] not in ACTIONS:
                raise ValueError(f"failpoint {name}: {text.strip()!r} is not [N*]action[(arg)] with action in {ACTIONS}")
            action, arg = match["action"], match["arg"] or ""
            if action in ("error", "sleep") and not arg.strip().isdigit():
                raise ValueError(f"failpoint {name}: {action} needs a number, as {action}(11)")
            parsed.append(_Term(action, arg, int(match["count"]) if match["count"] else None))
        active[name] = parsed
    return active


_lock = threading.Lock()
_active: dict[str, list[_Term]] = {}
_trace: str | None = None
_armed = False


def _configure(spec: str, trace: str | None = None) -> None:
    """Replace the activation (the test kit's in-process switch; a CNI process reads the env once)."""
    global _active, _trace, _armed
    active = parse(spec)
    with _lock:
        _active, _trace = active, trace or None
        _armed = bool(_active) or _trace is not None


def failpoint(name: str) -> None:
    """The window `name` is reached: do what the test kit asked, if anything."""
    if _armed:
        _fire(name)


def _fire(name: str) -> None:
    if _trace is not None:
        try:
            fd = os.open(_trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, f"{name}\n".encode())
            finally:
                os.close(fd)
        except OSError:
            pass
    with _lock:
        terms = _active.get(name)
        if not terms:
            return
        term = terms[0]
        if term.left is not None:
            term.left -= 1
            if term.left <= 0:
                terms.pop(0)
        action, arg = term.action, term.arg
    if action == "off":
        return
    if action == "sleep":
        time.sleep(int(arg) / 1000)
    elif action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # never reached: SIGKILL cannot be caught
    elif action == "panic":
        raise FailpointPanic(f"failpoint {name}: panic{f' ({arg})' if arg else ''}")
    elif action == "error":
        errors = sys.modules.get("multipy.cni.errors")  # looked up, never imported: this layer imports nothing
        msg = f"failpoint {name}: injected error"
        raise errors.CNIError(int(arg), msg) if errors is not None else FailpointError(int(arg), msg)


def _from_environment() -> None:
    spec, trace = os.environ.get(ENV, ""), os.environ.get(TRACE_ENV, "")
    if not spec and not trace:
        return
    try:
        _configure(spec, trace)
    except ValueError as error:  # a test kit's typo must not pass silently as "no fault"
        sys.stderr.write(f"multipy: {ENV}: {error}\n")
        raise


_from_environment()
