"""A namespace handed over as an fd (thick mode's SCM_RIGHTS): within netns.passed_fds, a CNI_NETNS path
that does not exist in this mount namespace reaches the pod through the fd, for run_in, fd, exists and
netlink alike; outside the block, and on other threads, the path means only itself."""

from __future__ import annotations

import os
import threading

import pytest

from multipy.net import netns
from multipy.net.netlink import Netlink
from multipy.net.netns import NetnsGone
from multipy.testing import kernel

# As a runtime names a pod's namespace in its own mount namespace, invisible to the daemon.
ELSEWHERE = "/var/run/containerd/state/netns/cni-not-in-this-mount-namespace"


def _inode_here() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


@pytest.fixture
def passed(netns):
    """(pod name, its inode, an O_RDONLY fd of it), the fd closed at teardown as the daemon would."""
    pod = netns("pod")
    handle = os.open(f"/run/netns/{pod}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield pod, os.fstat(handle).st_ino, handle
    finally:
        os.close(handle)


def test_the_passed_fd_is_used_for_a_path_that_is_not_there(passed):
    pod, inode, handle = passed
    assert not os.path.exists(ELSEWHERE)
    with netns.passed_fds({ELSEWHERE: handle}):
        assert netns.exists(ELSEWHERE)
        assert netns.run_in(ELSEWHERE, _inode_here) == inode
        with netns.fd(ELSEWHERE) as dup:
            assert dup != handle and os.fstat(dup).st_ino == inode
        with Netlink().open(ELSEWHERE) as ns:
            ns.create_link("mpfd0", "bridge")
    assert "mpfd0" in kernel.links(pod) and "mpfd0" not in kernel.links(None)
    # The caller's fd is still open: fd() closed its dup only.
    assert os.fstat(handle).st_ino == inode
    # Outside the block the path means only itself.
    assert not netns.exists(ELSEWHERE)
    with pytest.raises(NetnsGone):
        netns.run_in(ELSEWHERE, _inode_here)


def test_the_mapping_is_per_request_not_per_process(passed):
    _, inode, handle = passed
    seen: dict[str, object] = {}

    def other_request() -> None:
        seen["exists"] = netns.exists(ELSEWHERE)
        try:
            netns.run_in(ELSEWHERE, _inode_here)
        except NetnsGone:
            seen["gone"] = True

    with netns.passed_fds({ELSEWHERE: handle}):
        thread = threading.Thread(target=other_request)
        thread.start()
        thread.join()
        assert netns.run_in(ELSEWHERE, _inode_here) == inode
    assert seen == {"exists": False, "gone": True}


def test_nested_blocks_restore_the_outer_mapping(passed):
    _, inode, handle = passed
    with netns.passed_fds({ELSEWHERE: handle}):
        with netns.passed_fds({}):
            assert not netns.exists(ELSEWHERE)
        assert netns.exists(ELSEWHERE)
    assert not netns.exists("") and netns.exists(f"/proc/{os.getpid()}/ns/net")
