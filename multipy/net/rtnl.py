"""One rtnetlink conversation at a time on a socket: send a request, collect its replies, as bytes.

Why not pyroute2's own IPRoute: its 0.9 synchronous API runs every request through an asyncio
event loop (a task, a queue, a transport callback) and through its request filters, ~150-250 µs of
Python per request where the kernel takes ~10, and an IPRoute costs ~250 µs to make. That was most of
a native ADD (20-odd requests, 4 sockets). rtnetlink itself is synchronous: the kernel handles a
request inside send() and queues every reply before it returns (a dump is continued by recv()), so
a blocking send and a recv loop are the whole protocol. pyroute2 still encodes and decodes every
message (multipy.net.netlink); this module only moves bytes and reads the 16-byte headers.

A conversation ends with NLMSG_ERROR for a request sent with NLM_F_ACK (errno 0: the ACK, after any
reply such as a link's RTM_NEWLINK), or NLMSG_DONE for a dump. Replies of an earlier conversation cut
short (an exception while reading) carry another sequence number and are skipped. A conversation has
an absolute deadline, TIMEOUT after its send: each recv waits at most what is left of it, so neither a
silent kernel nor a stream of someone else's replies holds it longer.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time

NETLINK_ROUTE = 0
_SOL_NETLINK, _NETLINK_GET_STRICT_CHK = 270, 12
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP_INTR = 0x1, 0x2, 0x4, 0x10
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE, NLM_F_APPEND = 0x100, 0x200, 0x400, 0x800

_HEADER = struct.Struct("=IHHII")  # length, type, flags, sequence number, port id
_ERRNO = struct.Struct("=i")  # the negative errno after an NLMSG_ERROR's or NLMSG_DONE's header
_RECV = 1 << 16  # a dump datagram is at most 32 KiB (the kernel's largest dump skb); a reply is smaller
_BUFFER = 1 << 20  # SO_SNDBUF/SO_RCVBUF, as pyroute2 sets them
_DUMP_ATTEMPTS = 5  # a dump the kernel flags as interrupted (the table changed under it) is asked again
TIMEOUT = 30.0  # seconds a conversation may last: the kernel has answered long before, this bounds a bug


_ATTR = struct.Struct("=HH")  # an attribute's length and type
_LENGTH = struct.Struct("=I")  # a message's length, its header's first field
_NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER


def trimmed(data: bytes, offset: int, fixed: int, keep: frozenset[int]) -> bytes:
    """The message at `offset`, with only the top-level attributes whose type is in `keep`: its header,
    the `fixed` bytes of its family header (16 for a link), then those attributes as they were.

    Decoding a message costs per attribute; a link carries ~40 (statistics, IPv6 settings, ...) where a
    lookup reads 7, so they are dropped unread, before pyroute2 decodes the rest.
    """
    length = _HEADER.unpack_from(data, offset)[0]
    end, position = offset + length, offset + _HEADER.size + fixed
    parts = [data[offset:position]]
    while position + _ATTR.size <= end:
        size, kind = _ATTR.unpack_from(data, position)
        if size < _ATTR.size:
            break
        step = (size + 3) & ~3
        if kind & _NLA_TYPE_MASK in keep:
            parts.append(data[position:position + step])
        position += step
    message = bytearray(b"".join(parts))
    _LENGTH.pack_into(message, 0, len(message))
    return bytes(message)


class LinkError(OSError):
    """A netlink request the kernel refused; `errno` is the kernel's code, `strerror` its text."""


def socket_here() -> socket.socket:
    """An rtnetlink socket of the calling thread's namespace (netns.run_in's thread, for a pod)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
        sock.settimeout(TIMEOUT)
        # Strict checking: the kernel filters a dump by the fields a request sets (an address dump by link
        # index, a route dump by table) instead of returning every entry for us to sort out (a node's host
        # namespace holds an IPv6 link-local address per pod). Linux 4.20+; callers filter again anyway.
        try:
            sock.setsockopt(_SOL_NETLINK, _NETLINK_GET_STRICT_CHK, 1)
        except OSError:
            pass
    except BaseException:
        sock.close()
        raise
    return sock


class Conversation:
    """Requests on one socket, one at a time (one thread uses it)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._seq = 0

    def next_seq(self) -> int:
        self._seq = self._seq % 0x7FFFFFFF + 1
        return self._seq

    def exchange(self, request: bytes, seq: int, dump: bool) -> list[tuple[int, bytes, int]]:
        """Send `request` (its header holds `seq`); its replies as (type, datagram, offset), the kernel's
        refusal as LinkError. A dump interrupted by a change is sent again, a few times."""
        for _ in range(_DUMP_ATTEMPTS):
            replies, interrupted = self._once(request, seq)
            if not (dump and interrupted):
                return replies
        raise LinkError(errno.EINTR, "dump interrupted by changes, every time it was asked")

    def _once(self, request: bytes, seq: int) -> tuple[list[tuple[int, bytes, int]], bool]:
        try:
            self._sock.send(request)
        except OSError as exc:
            raise LinkError(exc.errno or errno.EIO, exc.strerror or str(exc)) from None
        deadline = time.monotonic() + TIMEOUT
        replies: list[tuple[int, bytes, int]] = []
        interrupted = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LinkError(errno.ETIMEDOUT, f"no netlink answer within {TIMEOUT:g} s")
            self._sock.settimeout(left)
            try:
                data = self._sock.recv(_RECV)
            except TimeoutError:
                raise LinkError(errno.ETIMEDOUT, f"no netlink answer within {TIMEOUT:g} s") from None
            except OSError as exc:  # ENOBUFS: the socket overran; its answers are lost
                raise LinkError(exc.errno or errno.EIO, exc.strerror or str(exc)) from None
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind, flags, reply_seq, _ = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size or offset + length > len(data):
                    break  # malformed: nothing further in this datagram can be read
                if reply_seq == seq:
                    if kind in (NLMSG_ERROR, NLMSG_DONE):
                        code = -_ERRNO.unpack_from(data, offset + _HEADER.size)[0] if length >= 20 else 0
                        if code > 0:
                            raise LinkError(code, os.strerror(code))
                        return replies, interrupted
                    interrupted |= bool(flags & NLM_F_DUMP_INTR)
                    replies.append((kind, data, offset))
                offset += (length + 3) & ~3
