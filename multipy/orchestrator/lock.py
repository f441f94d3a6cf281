"""One container's attachments, changed by one request at a time, across processes.

ADD, DEL and CHECK of the orchestrator (and the daemon's hot-plug, `Orchestrator.plug`/`unplug`)
run under `held(cni_dir, container_id)`: an exclusive flock(2) on `<cniDir>/internal/locks/<key>`, where
`<key>` is the container ID when it is short and plain, else a hash of it. The runtime never runs
two commands for one container at once, but hot-plug and the pod's DEL race in a daemon, and
thin (one process per request) and thick (one daemon) modes share a node's cniDir: flock is
per open file, so it serializes threads of one process and separate processes alike, and the
kernel drops it when its holder dies (a SIGKILLed ADD never leaves the container locked).

The wait is bounded by an absolute deadline: past it the request fails with code 11 (try again
later), which the runtime retries. GC never waits: it skips a container whose lock is taken (a
request for it is in flight) and leaves it to the next GC.

A lock file is removed by the holder that knows the container is gone (a DEL that removed every
record), while it still holds the lock. A waiter that then gets the lock on the removed file sees
that the name no longer leads to its file (st_ino), and opens the lock again, so two holders can
never hold two different files of one container.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

from multipy.cni.errors import IO_FAILURE, TRY_AGAIN_LATER, CNIError
from multipy.files import flock_until

LOCK_DIR = "internal/locks"  # beside the validated-conf stamps; never a record name (no ":")
WAIT = 60.0  # seconds a request waits for another request of the same container
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}\Z")


class Busy(Exception):
    """`held(..., wait=0)` found the lock taken."""


def path_for(cni_dir: str, container_id: str) -> str:
    key = container_id if _PLAIN.match(container_id) else "sha256-" + hashlib.sha256(
        container_id.encode("utf-8", "surrogatepass")).hexdigest()
    return os.path.join(cni_dir, LOCK_DIR, key)


class Held:
    """The lock of one container, held; `remove()` drops its file (the container is gone)."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.removed = False

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            return
        self.removed = True


def _open(path: str) -> int:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)


def _still_named(fd: int, path: str) -> bool:
    try:
        named = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (mine.st_dev, mine.st_ino)


@contextmanager
def held(cni_dir: str, container_id: str, wait: float = WAIT, deadline: float | None = None) -> Iterator[Held]:
    """Hold `container_id`'s lock for the block. Waits until `deadline` (time.monotonic()) or
    `wait` seconds from now, whichever comes first; then CNIError 11 (or Busy when `wait` is 0)."""
    path = path_for(cni_dir, container_id)
    until = time.monotonic() + wait
    if deadline is not None:
        until = min(until, deadline)
    while True:
        try:
            fd = _open(path)
        except OSError as exc:
            raise CNIError(IO_FAILURE, f"cannot open the lock of container {container_id}: {path}: "
                           f"{exc.strerror}") from None  # fmt: skip
        try:
            if not flock_until(fd, until):
                if wait <= 0:
                    raise Busy(container_id)
                raise CNIError(TRY_AGAIN_LATER, f"another request for container {container_id} is still "
                               f"running (its lock {path} stayed taken for {wait:g}s)")  # fmt: skip
        except BaseException:
            os.close(fd)
            raise
        if _still_named(fd, path):
            break
        os.close(fd)  # the holder before us removed it: the next open makes, or finds, the live one
    lock = Held(path, fd)
    try:
        yield lock
    finally:
        os.close(fd)  # drops the flock (after remove(), so a waiter on the old file sees it gone)
