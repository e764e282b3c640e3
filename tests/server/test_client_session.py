"""A server's client session: the OK answers of one Ready leave in ClientReplies frames
of at most BATCH_FRAME_BYTES of results, after whatever was queued before them, and a
lone answer keeps its ClientReply frame."""

from __future__ import annotations

from typing import Any, cast

from paxoi.core.messages import ClientReply, ReplyStatus
from paxoi.server.runtime import ClientSession
from paxoi.wire.codec import Message, decode
from paxoi.wire.framing import FrameDecoder
from paxoi.wire.messages import BATCH_FRAME_BYTES, ClientReplies, ErrorReply


class Transport:
    closing = False

    def is_closing(self) -> bool:
        return self.closing


class Writer:
    def __init__(self) -> None:
        self.data = b""
        self.transport = Transport()

    def write(self, data: bytes) -> None:
        self.data += data

    def messages(self) -> list[Message]:
        return [decode(p) for p in FrameDecoder(1 << 26).feed(self.data)]


def session() -> tuple[ClientSession, Writer]:
    writer = Writer()
    return ClientSession("alice", cast(Any, writer), dirty=set()), writer


def ok(seq: int, result: bytes = b"") -> ClientReply:
    return ClientReply("alice", seq, ReplyStatus.OK, result)


def test_answers_of_one_ready_share_a_frame_and_keep_their_place() -> None:
    s, w = session()
    s.send(ok(1))
    s.send(ok(2))
    s.send(ClientReply("alice", 3, ReplyStatus.BUSY, leader=0))
    s.send(ok(4))
    s.flush()
    assert w.messages() == [
        ClientReplies("alice", ((1, b""), (2, b""))),
        ClientReply("alice", 3, ReplyStatus.BUSY, leader=0),
        ok(4),  # alone: no batch frame for one
    ]


def test_answers_beyond_the_byte_budget_go_in_the_next_frame() -> None:
    s, w = session()
    big = b"r" * (BATCH_FRAME_BYTES // 3 + 1)
    for seq in range(1, 6):
        s.send(ok(seq, big))
    s.send(ErrorReply("busy", "x"))
    s.flush()
    got = w.messages()
    assert [len(m.answers) if isinstance(m, ClientReplies) else type(m) for m in got] == [
        2,
        2,
        ClientReply,
        ErrorReply,
    ]
    seqs = [seq for m in got if isinstance(m, ClientReplies) for seq, _ in m.answers]
    assert seqs + [m.seq for m in got if isinstance(m, ClientReply)] == [1, 2, 3, 4, 5]


def test_nothing_is_written_to_a_connection_already_lost() -> None:
    """Lost a moment ago, before the session's task has heard (uvloop would raise)."""
    s, w = session()
    w.transport.closing = True
    s.send(ok(1))
    s.flush()
    assert w.data == b""
