"""The one way into another network namespace: a worker thread that setns()es, never a fork.

setns(CLONE_NEWNET) only changes the calling thread, so `run_in` runs the function on a
short-lived thread of its own: the caller, and any other thread of a daemon, stays where
it was, and no child process is made (a fork in a threaded process that has used grpc
can deadlock). What that thread opens belongs to the namespace for good: a netlink
socket made there talks to that namespace's kernel from any thread afterwards (this is
how `netlink.Netlink.open` reaches a pod), and /proc/sys/net opened there is the
namespace's (how `sysctl` works).

A namespace that is not there (any more) is `NetnsGone`, whatever the step that noticed.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from multipy.cni.errors import INVALID_NETNS, CNIError

T = TypeVar("T")

_CLONE_NEWNET = 0x40000000
# By its soname: ctypes.util.find_library would run /sbin/ldconfig -p to find what we already know.
LIBC_NAME = "libc.so.6"
_libc = None


class NetnsGone(OSError):
    """The namespace at `filename` does not exist (any more), or that path is not a network namespace."""

    def __init__(self, path: str) -> None:
        super().__init__(errno.ENOENT, "no such network namespace", path)

    def cni_error(self) -> CNIError:
        return CNIError(INVALID_NETNS, f'failed to open netns "{self.filename}": no such namespace')


def libc() -> ctypes.CDLL:
    global _libc  # a handle to libc, not request state: safe to share across requests and threads
    if _libc is None:
        _libc = ctypes.CDLL(LIBC_NAME, use_errno=True)
    return _libc


@contextmanager
def fd(netns: str) -> Iterator[int]:
    """An open descriptor of the namespace at path `netns`, for requests that name a namespace by fd."""
    try:
        handle = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetnsGone(netns) from None
    except OSError as exc:
        raise CNIError(INVALID_NETNS, f'failed to open netns "{netns}": {exc.strerror}') from None
    try:
        yield handle
    finally:
        os.close(handle)


def _setns(handle: int, netns: str) -> None:
    if libc().setns(handle, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        if err == errno.EINVAL:  # a path that exists but is no namespace: e.g. unmounted, not yet removed
            raise NetnsGone(netns)
        raise CNIError(INVALID_NETNS, f'failed to enter netns "{netns}": {os.strerror(err)}')


def run_in(netns: str | None, fn: Callable[..., T], *args, **kwargs) -> T:
    """fn(*args, **kwargs) inside the namespace at path `netns` (None or "": right here).

    A missing namespace raises NetnsGone before `fn` runs; what `fn` raises is raised here.
    """
    if not netns:
        return fn(*args, **kwargs)
    outcome: dict = {}
    with fd(netns) as handle:

        def target() -> None:
            try:
                _setns(handle, netns)
                outcome["value"] = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
                outcome["error"] = exc

        thread = threading.Thread(target=target, name="netns")
        thread.start()
        thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
