"""Running a function inside another network namespace without moving the process.

setns(CLONE_NEWNET) only changes the calling thread, so the function runs on a
short-lived thread of its own: the caller, and any other thread of a daemon,
stays where it was. /proc/sys/net follows the opening thread's namespace, which
is what makes per-namespace sysctls work this way.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_CLONE_NEWNET = 0x40000000
_libc = None


def _setns(fd: int) -> None:
    global _libc  # a handle to libc, not request state: safe to share across requests
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def run_in(netns: str | None, fn: Callable[..., T], *args, **kwargs) -> T:
    """fn(*args, **kwargs) inside the namespace at path `netns` (None: right here).

    A missing namespace raises FileNotFoundError before anything runs.
    """
    if not netns:
        return fn(*args, **kwargs)
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    outcome: dict = {}

    def target() -> None:
        try:
            _setns(fd)
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
            outcome["error"] = exc

    try:
        thread = threading.Thread(target=target, name="netns")
        thread.start()
        thread.join()
    finally:
        os.close(fd)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
