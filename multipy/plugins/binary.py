"""Running a CNI plugin binary exactly as a runtime does (libcni pkg/invoke).

`Exec` is the seam libcni calls invoke.Exec: how a plugin binary is found and run.
`RawExec` execs real files; the test kit's FakeDelegates (multipy.testing.fake_delegates)
scripts them, so the orchestrator's paths run with no binary, no root and no namespace.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from multipy import files
from multipy.cni.errors import (
    DELEGATE_BAD_OUTPUT,
    DELEGATE_NOT_FOUND,
    DELEGATE_TIMEOUT,
    INVALID_NETWORK_CONFIG,
    CNIError,
)

from .contract import Invocation

if TYPE_CHECKING:
    from multipy.log import Log

_BUSY_RETRIES = 5  # libcni retries "text file busy" this often, a second apart


def find_binary(plugin_type: str, dirs: tuple[str, ...]) -> str:
    # `type` becomes a file name: never let it walk out of the plugin dirs.
    if not plugin_type or "/" in plugin_type or plugin_type in (".", ".."):
        raise CNIError(INVALID_NETWORK_CONFIG, f"invalid plugin type {plugin_type!r}")
    for directory in dirs:
        candidate = os.path.join(directory, plugin_type)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CNIError(DELEGATE_NOT_FOUND, f'failed to find plugin "{plugin_type}" in path [{" ".join(dirs)}]')


def _error_from_output(binary: str, stdout: bytes, stderr: bytes, returncode: int) -> CNIError:
    # Errors are JSON on stdout; libcni falls back to stderr only when stdout is empty.
    text = stdout.strip() or stderr.strip()
    try:
        doc = json.loads(text)
        return CNIError(int(doc["code"]), str(doc.get("msg", "")), str(doc.get("details", "")))
    except (ValueError, KeyError, TypeError, AttributeError):
        tail = text.decode("utf-8", "replace")[-500:]
        return CNIError(
            DELEGATE_BAD_OUTPUT,
            f"plugin {os.path.basename(binary)} exited with status {returncode} without a CNI error: {tail!r}",
        )


# A delegate dies with multipy (PR_SET_PDEATHSIG): when the runtime kills multus-cni, a slow delegate
# must not finish its ADD after the runtime's DEL. prctl in a preexec_fn is not safe in a threaded
# process (a daemon), so the binary is started through util-linux's setpriv, which sets the signal
# and execs it: the same process, no fork. Without setpriv, delegates run as before (see reliability.md).
_SETPRIV_CANDIDATES = ("/usr/bin/setpriv", "/bin/setpriv")
_SETPRIV_EXEC_FAILED = b"setpriv: failed to execute "
_setpriv: list[str | None] = []
# After the delegate exits, how long its pipes may stay open (a grandchild that escaped its process
# group holding stdout): then what was read is its output. After the timeout kill, how long to wait
# for the killed group to be reaped; the pipes are closed, never waited for.
PIPE_GRACE = 1.0
KILL_GRACE = 2.0
FIRST_STEP = 0.05  # the first wait returns as soon as a quick delegate is done; later ones double


def _pdeathsig_wrapper() -> list[str]:
    if not _setpriv:
        _setpriv.append(next((p for p in _SETPRIV_CANDIDATES if os.access(p, os.X_OK)), None))
    return [_setpriv[0], "--pdeathsig", "KILL", "--"] if _setpriv[0] else []


def _close_pipes(proc: subprocess.Popen) -> None:
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                pass


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own group (start_new_session): what it spawned too
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()  # in case it left its group
    except OSError:
        pass


@contextmanager
def _input_file(data: bytes) -> Iterator[int]:
    """The delegate's stdin, all written before it starts: an anonymous in-memory file (closed on exit).
    Not a pipe fed by communicate(): when its first timed wait expires before it wrote the input (its
    thread descheduled under load) or all of it (past the pipe's 64 KiB), CPython never writes the rest
    nor closes stdin (cpython#141473, fixed after 3.11), and the delegate reads until the deadline.
    Seen as 90 s macvlan timeouts in a 100-pod burst of Go delegates."""
    fd = os.memfd_create("cni-stdin", os.MFD_CLOEXEC)
    try:
        files.write_all(fd, data)
        yield fd
    finally:
        os.close(fd)


def _wait(proc: subprocess.Popen, deadline: float) -> tuple[bytes, bytes] | None:
    """Its (stdout, stderr) once it exited and its pipes closed, or PIPE_GRACE after it exited; None
    at `deadline` (absolute, time.monotonic()). Never waits past the deadline, whatever holds a pipe."""
    step = FIRST_STEP
    exited_at: float | None = None
    while True:
        now = time.monotonic()
        limit = deadline
        if exited_at is not None:
            limit = min(limit, exited_at + PIPE_GRACE)
        if now >= limit:
            if exited_at is None:
                return None
            partial = getattr(proc, "_multipy_partial", (b"", b""))
            _close_pipes(proc)
            return partial
        try:
            out, err = proc.communicate(timeout=min(step, limit - now))
            return out or b"", err or b""
        except subprocess.TimeoutExpired as exc:  # what was read so far is kept: the next call goes on
            proc._multipy_partial = (exc.stdout or b"", exc.stderr or b"")  # type: ignore[attr-defined]
            if exited_at is None and proc.poll() is not None:
                exited_at = time.monotonic()
            step = min(step * 2, 0.5)


def _spawn(binary: str, env: dict, stdin: bytes, timeout: float) -> subprocess.CompletedProcess:
    deadline = time.monotonic() + timeout
    wrapper = _pdeathsig_wrapper()
    with _input_file(stdin) as input_fd:
        for attempt in range(_BUSY_RETRIES + 1):
            os.lseek(input_fd, 0, os.SEEK_SET)  # a retry's binary reads it all again
            try:
                proc = subprocess.Popen(
                    [*wrapper, binary],
                    stdin=input_fd,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=env,
                    # Its own group, so a timeout also stops what it spawned (iptables, ...).
                    start_new_session=True,
                )
            except OSError as exc:
                if exc.errno != errno.ETXTBSY or attempt == _BUSY_RETRIES:
                    raise CNIError(DELEGATE_NOT_FOUND, f"cannot execute {binary}: {exc.strerror}") from exc
                time.sleep(1)
                continue
            out_err = _wait(proc, deadline)
            if out_err is None:
                _kill_group(proc)
                _close_pipes(proc)  # a grandchild that left the group may hold them open: never wait for EOF
                try:
                    proc.wait(KILL_GRACE)
                except subprocess.TimeoutExpired:
                    pass
                raise CNIError(
                    DELEGATE_TIMEOUT, f"plugin {os.path.basename(binary)} did not finish within {timeout:g}s"
                ) from None
            out, err = out_err
            if wrapper and proc.returncode != 0 and not out and err.startswith(_SETPRIV_EXEC_FAILED):
                # The wrapper could not exec the binary: what Popen would have raised without it.
                busy = b"Text file busy" in err
                if busy and attempt < _BUSY_RETRIES:
                    time.sleep(1)
                    continue
                reason = err.decode("utf-8", "replace").rpartition(": ")[2].strip()
                raise CNIError(DELEGATE_NOT_FOUND, f"cannot execute {binary}: {reason}")
            return subprocess.CompletedProcess([binary], proc.returncode, out, err)
        raise AssertionError("unreachable")  # pragma: no cover


def run(binary: str, inv: Invocation, stdin: bytes, timeout: float, log: Log, base_env=None) -> bytes:
    """Exec `binary` for `inv`; returns its stdout, raises its CNI error on failure."""
    env = dict(os.environ if base_env is None else base_env)
    env.update(inv.environ())
    started = time.monotonic()
    proc = _spawn(binary, env, stdin, timeout)
    log.debug(
        "%s %s ifname=%s: exit %d in %.1f ms",
        os.path.basename(binary), inv.command, inv.ifname, proc.returncode, (time.monotonic() - started) * 1000,
    )
    if proc.stderr:
        log.debug("%s stderr: %s", os.path.basename(binary), proc.stderr.decode("utf-8", "replace").strip())
    if proc.returncode != 0:
        raise _error_from_output(binary, proc.stdout, proc.stderr, proc.returncode)
    return proc.stdout


class Exec(Protocol):
    """Finds and runs plugin binaries; errors are CNIErrors, as `find_binary` and `run` raise them."""

    def find(self, plugin_type: str, dirs: tuple[str, ...]) -> str:
        """The path of `plugin_type`'s binary in `dirs`."""
        ...

    def run(self, path: str, inv: Invocation, stdin: bytes, timeout: float) -> bytes:
        """Its stdout for a successful run."""
        ...


@dataclass(frozen=True)
class RawExec:
    """The real Exec: files on disk, executed as a runtime executes them."""

    log: Log
    base_env: Mapping[str, str] | None = None  # the environment delegates inherit; None: this process's

    def find(self, plugin_type: str, dirs: tuple[str, ...]) -> str:
        return find_binary(plugin_type, dirs)

    def run(self, path: str, inv: Invocation, stdin: bytes, timeout: float) -> bytes:
        return run(path, inv, stdin, timeout, self.log, self.base_env)
