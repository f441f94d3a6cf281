"""The one way into another network namespace: a worker thread that setns()es, never a fork.

setns(CLONE_NEWNET) only changes the calling thread, so `run_in` runs the function on a
short-lived thread of its own: the caller, and any other thread of a daemon, stays where
it was, and no child process is made (a fork in a threaded process that has used grpc
can deadlock). What that thread opens belongs to the namespace for good: a netlink
socket made there talks to that namespace's kernel from any thread afterwards (this is
how `netlink.Netlink.open` reaches a pod), and /proc/sys/net opened there is the
namespace's (how `sysctl` works).

A namespace that is not there (any more) is `NetnsGone`, whatever the step that noticed.

A daemon serving a thick-mode shim gets the pod's namespace as an open fd (SCM_RIGHTS), not as a
path it can open: CNI_NETNS names a file in the runtime's mount namespace, which the daemon (no
hostPID, no mount propagation) may not see. `passed_fds({CNI_NETNS: fd})` around the request makes
`fd`, `run_in` and `exists` use that fd for that path; the request keeps the runtime's path in its
records and results. The mapping is a ContextVar, so concurrent requests on other threads each see
their own; run_in's worker thread needs none, as its fd is opened in the caller.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import TypeVar

from multipy.cni.errors import INVALID_NETNS, CNIError

T = TypeVar("T")

_CLONE_NEWNET = 0x40000000
# By its soname: ctypes.util.find_library would run /sbin/ldconfig -p to find what we already know.
LIBC_NAME = "libc.so.6"
_libc = None
# CNI_NETNS path -> an fd of that namespace, handed over by the caller (the shim, through the daemon).
# The fds are the caller's: never closed here.
_passed: ContextVar[Mapping[str, int]] = ContextVar("multipy_passed_netns_fds", default=MappingProxyType({}))


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
def passed_fds(mapping: Mapping[str, int]) -> Iterator[None]:
    """Within this block (this thread or task), the path `p` of `mapping` means the namespace of fd
    mapping[p]: fd, run_in and exists use it instead of opening `p`. The fds stay the caller's."""
    token = _passed.set(dict(mapping))
    try:
        yield
    finally:
        _passed.reset(token)


def exists(netns: str) -> bool:
    """Whether the namespace `netns` is there: a passed fd, or a file at that path."""
    if not netns:
        return False
    return netns in _passed.get() or os.path.exists(netns)


@contextmanager
def fd(netns: str) -> Iterator[int]:
    """An open descriptor of the namespace at path `netns` (a dup of a passed one), closed on exit."""
    passed = _passed.get().get(netns)
    try:
        # A dup, so the caller's fd is never closed under it, whoever closes this one.
        handle = os.dup(passed) if passed is not None else os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
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
