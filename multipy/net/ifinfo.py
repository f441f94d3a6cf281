"""An interface's MTU, read in a pod namespace with two ioctls (no netlink library, no fork):
network-status reports it even when a delegate's result (before CNI 1.1) does not carry it."""

from __future__ import annotations

import fcntl
import socket
import struct

from .netns import run_in

_SIOCGIFMTU = 0x8921


def _mtu_here(ifname: str) -> int:
    # A socket opened on the namespace's thread belongs to that namespace.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        answer = fcntl.ioctl(sock, _SIOCGIFMTU, struct.pack("16si12x", ifname.encode(), 0))
    return struct.unpack("16si12x", answer)[1]


def mtu(netns: str, ifname: str) -> int | None:
    """None when the namespace or the interface is gone."""
    try:
        return run_in(netns, _mtu_here, ifname)
    except OSError:
        return None
