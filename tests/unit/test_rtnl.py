"""multipy.net.rtnl over a scripted socket: where a conversation ends (the ACK, NLMSG_DONE), the kernel's
errno as LinkError, replies of another conversation skipped, an interrupted dump asked again, a silent
kernel or a stream of other replies bounded by the deadline, and trimmed() keeping exactly the attributes asked for."""

from __future__ import annotations

import errno
import struct

import pytest

from multipy.net import rtnl
from multipy.net.rtnl import NLM_F_DUMP_INTR, NLM_F_MULTI, NLMSG_DONE, NLMSG_ERROR, Conversation, LinkError

HEADER = struct.Struct("=IHHII")


def message(kind: int, seq: int, payload: bytes = b"", flags: int = 0) -> bytes:
    body = payload + bytes(-len(payload) % 4)
    return HEADER.pack(HEADER.size + len(payload), kind, flags, seq, 0) + body


def ack(seq: int, code: int = 0) -> bytes:
    return message(NLMSG_ERROR, seq, struct.pack("=i", -code) + bytes(16))


def done(seq: int) -> bytes:
    return message(NLMSG_DONE, seq, struct.pack("=i", 0))


class Script:
    """A socket whose every recv() is the next datagram of a list (per send, for a retried dump)."""

    def __init__(self, *rounds: list[bytes]) -> None:
        self.rounds = list(rounds)
        self.sent: list[bytes] = []
        self.datagrams: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        self.datagrams = list(self.rounds.pop(0))
        return len(data)

    def settimeout(self, seconds: float) -> None:
        assert 0 < seconds <= rtnl.TIMEOUT

    def recv(self, size: int) -> bytes:
        if not self.datagrams:
            raise TimeoutError
        return self.datagrams.pop(0)


class Chatty(Script):
    """Replies for ever, none of them to the request asked."""

    def recv(self, size: int) -> bytes:
        return message(16, 99, b"other")


def kinds(replies) -> list[int]:
    return [kind for kind, _, _ in replies]


def test_a_request_ends_with_its_ack_after_its_reply():
    sock = Script([message(16, 1, b"link") + ack(1)])
    assert kinds(Conversation(sock).exchange(b"req", 1, dump=False)) == [16]


def test_the_kernels_refusal_is_its_errno():
    with pytest.raises(LinkError) as caught:
        Conversation(Script([ack(1, errno.EEXIST)])).exchange(b"req", 1, dump=False)
    assert caught.value.errno == errno.EEXIST and caught.value.strerror == "File exists"


def test_replies_of_an_earlier_conversation_are_skipped():
    sock = Script([message(16, 7, b"old") + ack(7), message(16, 8, b"new"), ack(8)])
    replies = Conversation(sock).exchange(b"req", 8, dump=False)
    assert [data[offset + 16:offset + 19] for _, data, offset in replies] == [b"new"]


def test_a_dump_spans_datagrams_until_done():
    first = message(16, 3, b"a", NLM_F_MULTI) + message(16, 3, b"b", NLM_F_MULTI)
    sock = Script([first, message(16, 3, b"c", NLM_F_MULTI) + done(3)])
    assert len(Conversation(sock).exchange(b"dump", 3, dump=True)) == 3


def test_an_interrupted_dump_is_asked_again():
    interrupted = message(16, 4, b"a", NLM_F_MULTI | NLM_F_DUMP_INTR) + done(4)
    sock = Script([interrupted], [message(16, 4, b"a", NLM_F_MULTI) + message(16, 4, b"b", NLM_F_MULTI) + done(4)])
    assert len(Conversation(sock).exchange(b"dump", 4, dump=True)) == 2
    assert len(sock.sent) == 2


def test_a_silent_kernel_is_a_timeout_not_a_hang():
    with pytest.raises(LinkError) as caught:
        Conversation(Script([message(16, 5, b"x")])).exchange(b"req", 5, dump=False)
    assert caught.value.errno == errno.ETIMEDOUT


def test_a_stream_of_other_replies_ends_at_the_conversations_deadline(monkeypatch):
    monkeypatch.setattr(rtnl, "TIMEOUT", 0.2)
    with pytest.raises(LinkError) as caught:
        Conversation(Chatty([])).exchange(b"req", 5, dump=False)
    assert caught.value.errno == errno.ETIMEDOUT


def test_sequence_numbers_stay_positive_and_wrap():
    conversation = Conversation(Script())
    conversation._seq = 0x7FFFFFFF
    assert conversation.next_seq() == 1


def attribute(kind: int, value: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(value), kind) + value + bytes(-len(value) % 4)


def test_trimmed_keeps_the_header_and_only_the_attributes_asked_for():
    fixed = bytes(range(16))
    attrs = attribute(3, b"eth0\0") + attribute(7, b"x" * 100) + attribute(18 | 0x8000, attribute(1, b"veth"))
    data = b"junk" + HEADER.pack(16 + 16 + len(attrs), 16, 0, 9, 0) + fixed + attrs
    out = rtnl.trimmed(data, 4, 16, frozenset({3, 18}))
    assert HEADER.unpack_from(out)[0] == len(out)
    assert out[16:32] == fixed
    assert out[32:] == attribute(3, b"eth0\0") + attribute(18 | 0x8000, attribute(1, b"veth"))
