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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

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


def _spawn(binary: str, env: dict, stdin: bytes, timeout: float) -> subprocess.CompletedProcess:
    for attempt in range(_BUSY_RETRIES + 1):
        try:
            proc = subprocess.Popen(
                [binary],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                # Its own group, so a timeout also stops what it spawned (iptables, ...).
                start_new_session=True,
            )
            break
        except OSError as exc:
            if exc.errno != errno.ETXTBSY or attempt == _BUSY_RETRIES:
                raise CNIError(DELEGATE_NOT_FOUND, f"cannot execute {binary}: {exc.strerror}") from exc
            time.sleep(1)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise CNIError(
            DELEGATE_TIMEOUT, f"plugin {os.path.basename(binary)} did not finish within {timeout:g}s"
        ) from None
    return subprocess.CompletedProcess([binary], proc.returncode, out, err)


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
