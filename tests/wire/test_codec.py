"""The codec, example by example: round trips, the pinned wire format, strict refusals."""

from __future__ import annotations

import typing
from typing import Any

import msgpack
import pytest

from paxoi.core.messages import (
    Accept,
    Accepted,
    CatchupReply,
    CatchupRequest,
    ClientReply,
    Decide,
    Heartbeat,
    LeaseGrant,
    PeerMessage,
    Preempted,
    Prepare,
    Promise,
    ReadMode,
    ReadReply,
    ReplyStatus,
    SnapshotChunk,
    SnapshotRequest,
)
from paxoi.core.types import BOTTOM, NOOP, Ballot, Command, PValue
from paxoi.wire import codec
from paxoi.wire.codec import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    ClientMessage,
    Message,
    decode,
    encode,
    from_wire,
    to_wire,
)
from paxoi.wire.messages import (
    ClientReplies,
    Control,
    ControlReply,
    ErrorReply,
    Hello,
    HelloAck,
    LogEntries,
    Read,
    StatusReply,
    StatusRequest,
    Submit,
    Submits,
    Subscribe,
)
from paxoi.wire.values import MAX_BIN, DecodeError

B = Ballot(4, 0)
HI = Command("alice", 7, b"hi")
UNICODE = Command("Zoë-客户端-🦊", 1, "héllo, мир".encode())
BIG = Command("bulk", 2**40, b"\x00\xff" * (1024 * 1024))  # a 2 MiB payload
BATCH = (HI, UNICODE, Command("bob", 1, b""))
WIDE = tuple(Command(f"c{i}", i + 1, bytes([i % 256]) * 16) for i in range(512))

EXAMPLES: list[Message] = [
    Prepare(0, B, 0),
    Prepare(2, Ballot(2**40, 2), 2**63),
    Promise(1, B, 12, ()),
    Promise(1, B, 12, (PValue(Ballot(3, 2), 12, BATCH), PValue(Ballot(1, 1), 13, NOOP))),
    Promise(1, B, 12, (PValue(Ballot(3, 2), 40, BATCH),), 40),
    Accept(0, B, 12, (HI,)),
    Accept(0, B, 13, NOOP),
    Accept(0, B, 14, WIDE),
    Accept(0, B, 15, (BIG,)),
    Accepted(2, B, 12),
    Preempted(1, B, Ballot(5, 1)),
    Preempted(1, BOTTOM, Ballot(0, 0)),
    Decide(0, 12, BATCH),
    Decide(0, 13, NOOP),
    Decide(0, 14, BATCH, B),
    Decide(0, 15, None, B),  # by reference to what ballot B proposed
    Heartbeat(0, B, 0),
    Heartbeat(0, B, 1_000_000),
    Heartbeat(0, B, 3, 77),
    LeaseGrant(1, B, 77),
    Read(1, b'{"op":"get","key":"k"}', ReadMode.LEASE),
    Read(2**40, b"", ReadMode.STALE),
    ReadReply("alice", 1, ReplyStatus.OK, b"{}", None, 12),
    ReadReply("bob", 2, ReplyStatus.NOT_LEADER, leader=1),
    ReadReply("bob", 3, ReplyStatus.UNSUPPORTED),
    CatchupRequest(1, 0, 256),
    CatchupRequest(1, 5, 5),
    CatchupReply(2, ()),
    CatchupReply(2, tuple((s, NOOP if s % 3 == 0 else BATCH) for s in range(256))),
    SnapshotChunk(2, 1000, 3, 0, b"abc"),
    SnapshotChunk(2, 1000, 2**33, 2**32, b"\x00" * 1024),
    SnapshotRequest(4, 1000, 0),
    SnapshotRequest(4, 1000, 2**32),
    ClientReply("alice", 7, ReplyStatus.OK, b"12"),
    ClientReply("Zoë-客户端-🦊", 1, ReplyStatus.NOT_LEADER, leader=2),
    ClientReply("bob", 3, ReplyStatus.NOT_LEADER),
    ClientReply("bob", 4, ReplyStatus.BUSY),
    Hello(PROTOCOL_VERSION, "prod-1", "server", node=3),
    Hello(PROTOCOL_VERSION, "prod-1", "server", node=3, incarnation=2**55 + 1),
    Hello(PROTOCOL_VERSION, "prod-1", "client", client="Zoë-客户端-🦊"),
    Hello(PROTOCOL_VERSION, "", "client", node=None, client=""),
    HelloAck(PROTOCOL_VERSION, "prod-1", 0, leader=None),
    HelloAck(PROTOCOL_VERSION, "prod-1", 1, leader=0),
    Submit(HI),
    Submit(UNICODE),
    Submit(BIG),
    Submits("alice", (Command("alice", 7, b"hi"), Command("alice", 9, b""))),
    Submits(UNICODE.client, (UNICODE, Command(UNICODE.client, 1, b"\x00" * 1024))),
    ClientReplies("alice", ((7, b"12"), (8, b""))),
    ClientReplies("Zoë-客户端-🦊", tuple((seq, b"%d" % seq) for seq in range(1, 200))),
    Subscribe(0),
    Subscribe(123_456),
    LogEntries(()),
    LogEntries(((12, HI, b"12"), (12, UNICODE, b"12"), (13, BIG, b""))),
    StatusRequest(),
    StatusReply(0, ("proposer", "acceptor", "learner"), 0, B, True, 12, 12, {}),
    StatusReply(
        4, ("learner",), None, None, False, 0, 0, {"pending": 0, "data": "/var/lib/paxoi/4"}
    ),
    ErrorReply("busy", "too many pending requests"),
    ErrorReply("wrong-cluster", "expected cluster 'prod-1', got 'test'"),
    ErrorReply("bad-request"),
    Control("partition", (0, 2)),
    Control("heal"),
    Control("time_bomb", (), 3),
    ControlReply(True),
    ControlReply(False, "control is off: set faults.control"),
]


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: Message) -> None:
    data = encode(msg)
    assert decode(data) == msg
    assert from_wire(to_wire(msg)) == msg
    assert type(decode(data)) is type(msg)


def test_every_message_type_has_an_example_and_a_codec() -> None:
    union = set(typing.get_args(PeerMessage)) | set(typing.get_args(ClientMessage))
    assert set(typing.get_args(Message)) == union
    assert set(MESSAGE_TYPES) == union
    assert {type(m) for m in EXAMPLES} == union


def test_tags_are_unique_and_stable() -> None:
    tags = {name: v for name, v in vars(codec).items() if name.startswith("TAG_")}
    assert len(set(tags.values())) == len(tags) == len(MESSAGE_TYPES)


# The wire format is a protocol: these bytes must not change by accident. The handshake
# (Hello, HelloAck, ErrorReply) must never change, so peers of any version can refuse
# each other in words.
GOLDEN: list[tuple[Message, str]] = [
    (Accepted(2, Ballot(4, 0), 12), "9404029204000c"),
    (Accept(0, Ballot(4, 0), 12, (Command("a", 1, b"x"),)), "950300920400 0c91 93a16101c40178"),
    (Hello(1, "c", "server", 3, None), "9610 01a163a673657276657203c0"),
    (HelloAck(1, "c", 0, None), "951101a16300c0"),
    (ErrorReply("busy", ""), "9312a462757379a0"),
]


@pytest.mark.parametrize("msg,hexdata", GOLDEN, ids=lambda x: type(x).__name__)
def test_golden_bytes(msg: Message, hexdata: str) -> None:
    data = bytes.fromhex(hexdata.replace(" ", ""))
    assert encode(msg) == data
    assert decode(data) == msg


def test_encode_refuses_what_is_not_a_message() -> None:
    with pytest.raises(TypeError):
        encode(B)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        to_wire("Accepted")  # type: ignore[arg-type]


def w(*obj: Any) -> bytes:
    return msgpack.packb(list(obj), use_bin_type=True)


CMD = ["alice", 7, b"hi"]
BAD: list[tuple[str, bytes]] = [
    ("empty input", b""),
    ("truncated", w(4, 2, [4, 0], 12)[:-1]),
    ("trailing bytes", w(4, 2, [4, 0], 12) + b"\x00"),
    ("not an array", msgpack.packb({"tag": 4})),
    ("a bare int", msgpack.packb(4)),
    ("empty array", w()),
    ("unknown tag", w(99, 2, [4, 0], 12)),
    ("negative tag", w(-4, 2, [4, 0], 12)),
    ("bool tag", w(True, 0, [4, 0], 0)),
    ("str tag", w("Accepted", 2, [4, 0], 12)),
    ("too few fields", w(4, 2, [4, 0])),
    ("too many fields", w(4, 2, [4, 0], 12, 0)),
    ("negative slot", w(4, 2, [4, 0], -1)),
    ("negative src", w(4, -1, [4, 0], 12)),
    ("bool src", w(4, True, [4, 0], 12)),
    ("float slot", w(4, 2, [4, 0], 12.0)),
    ("bool in ballot", w(4, 2, [4, False], 12)),
    ("short ballot", w(4, 2, [4], 12)),
    ("ballot as map", w(4, 2, {"round": 4, "node": 0}, 12)),
    ("batch not a list", w(3, 0, [4, 0], 12, b"")),
    ("command arity", w(3, 0, [4, 0], 12, [["a", 1]])),
    ("payload as str", w(3, 0, [4, 0], 12, [["a", 1, "x"]])),
    ("client as bytes", w(3, 0, [4, 0], 12, [[b"a", 1, b"x"]])),
    ("seq as bool", w(3, 0, [4, 0], 12, [["a", True, b"x"]])),
    ("a bad command after good ones", w(3, 0, [4, 0], 12, [["a", 1, b"x"], ["a", 2, "x"]])),
    ("pvalue negative slot", w(2, 1, [4, 0], 0, [[[3, 2], -5, []]], 0)),
    ("pvalue arity", w(2, 1, [4, 0], 0, [[[3, 2], 5]], 0)),
    ("accepted not a list", w(2, 1, [4, 0], 0, None, 0)),
    ("promise without compacted", w(2, 1, [4, 0], 0, [])),
    ("promise negative compacted", w(2, 1, [4, 0], 0, [], -1)),
    ("promise compacted as bool", w(2, 1, [4, 0], 0, [], True)),
    ("chunk past its size", w(11, 2, 10, 3, 1, b"abc")),
    ("empty chunk", w(11, 2, 10, 3, 0, b"")),
    ("chunk data as str", w(11, 2, 10, 3, 0, "abc")),
    ("chunk negative offset", w(11, 2, 10, 3, -1, b"a")),
    ("chunk arity", w(11, 2, 10, 3, 0)),
    ("snapshot request negative offset", w(12, 2, 10, -1)),
    ("snapshot request arity", w(12, 2, 10)),
    ("catch-up range reversed", w(8, 1, 10, 5)),
    ("decide with neither value nor ballot", w(6, 0, 12, None, None)),
    ("decide of the old layout", w(6, 0, 12, [])),
    ("decision arity", w(9, 2, [[1]])),
    ("decision negative slot", w(9, 2, [[-1, []]])),
    ("unknown status", w(20, "alice", 7, "maybe", b"", None)),
    ("status as int", w(20, "alice", 7, 0, b"", None)),
    ("result as str", w(20, "alice", 7, "ok", "", None)),
    ("leader as bool", w(20, "alice", 7, "ok", b"", False)),
    ("unknown kind", w(16, 1, "c", "admin", 3, None)),
    ("server hello without node", w(16, 1, "c", "server", None, "x")),
    ("client hello without client id", w(16, 1, "c", "client", 3, None)),
    ("negative version", w(16, -1, "c", "server", 3, None)),
    ("cluster as bytes", w(17, 1, b"c", 0, None)),
    ("empty error code", w(18, "", "")),
    ("submit seq 0", w(19, ["alice", 0, b"hi"])),
    ("submit negative seq", w(19, ["alice", -3, b"hi"])),
    ("submits of one", w(29, "alice", [7, b"hi"])),
    ("submits odd", w(29, "alice", [7, b"hi", 8])),
    ("submits seq 0", w(29, "alice", [7, b"hi", 0, b"x"])),
    ("submits seq as bool", w(29, "alice", [7, b"hi", True, b"x"])),
    ("submits payload as str", w(29, "alice", [7, b"hi", 8, "x"])),
    ("submits client as bytes", w(29, b"alice", [7, b"hi", 8, b"x"])),
    ("submits not a list", w(29, "alice", {7: b"hi", 8: b"x"})),
    ("replies of one", w(30, "alice", [7, b"1"])),
    ("replies odd", w(30, "alice", [7, b"1", 8])),
    ("replies negative seq", w(30, "alice", [7, b"1", -8, b""])),
    ("replies result as str", w(30, "alice", [7, b"1", 8, ""])),
    ("replies arity", w(30, "alice", [7, b"1", 8, b""], None)),
    ("subscribe negative", w(21, -1)),
    ("log entry arity", w(22, [[1, CMD]])),
    ("log entry result str", w(22, [[1, CMD, "r"]])),
    ("status request with a field", w(23, 0)),
    ("unknown role", w(24, 0, ["leader"], None, None, False, 0, 0, {})),
    ("roles not a list", w(24, 0, "acceptor", None, None, False, 0, 0, {})),
    ("is_leader as int", w(24, 0, [], None, None, 1, 0, 0, {})),
    ("extra not a map", w(24, 0, [], None, None, False, 0, 0, [])),
    ("extra bytes key", w(24, 0, [], None, None, False, 0, 0, {b"k": 1})),
    ("extra int key", w(24, 0, [], None, None, False, 0, 0, {1: 1})),
    ("extra bool value", w(24, 0, [], None, None, False, 0, 0, {"k": True})),
    ("extra float value", w(24, 0, [], None, None, False, 0, 0, {"k": 1.5})),
    ("ext type", msgpack.packb([4, msgpack.ExtType(1, b"x"), [4, 0], 12])),
    ("timestamp ext", bytes.fromhex("94 04 d6ff00000000 920400 0c".replace(" ", ""))),
    ("invalid utf-8", bytes.fromhex("9213 93 a2c328 07 c4026869")),
    ("huge bin length", b"\x94\x04\x02\x92\x04\x00\xc6\xff\xff\xff\xff"),
    ("huge array length", b"\xdd\xff\xff\xff\xff"),
]


@pytest.mark.parametrize("data", [d for _, d in BAD], ids=[n for n, _ in BAD])
def test_decode_refuses(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(data)


def test_bin_over_the_limit_is_refused() -> None:
    data = w(19, ["alice", 1, b"x" * (MAX_BIN + 1)])
    with pytest.raises(DecodeError):
        decode(data)


def test_error_messages_are_short_even_for_huge_input() -> None:
    # An error must not echo a 1 MiB field back into a log line.
    with pytest.raises(DecodeError) as e:
        decode(w(20, "alice", 7, "x" * (1024 * 1024 - 1), b"", None))
    assert len(str(e.value)) < 200


def test_decoded_values_are_immutable() -> None:
    msg = decode(encode(Promise(1, B, 12, (PValue(B, 12, BATCH),))))
    assert isinstance(msg, Promise)
    assert type(msg.accepted) is tuple
    assert type(msg.accepted[0].value) is tuple


def test_decoded_commands_are_commands() -> None:
    """The decoders build Commands with tuple.__new__ (values.new_command): still
    Commands, with their fields by name, equal and hashing as the ones encoded."""
    cmds = (Command("alice", 1, b"hi"), Command("alice", 2, b""))
    accept = decode(encode(Accept(0, B, 3, cmds)))
    submits = decode(encode(Submits("alice", cmds)))
    assert isinstance(accept, Accept) and isinstance(submits, Submits)
    for got in (accept.value, submits.commands):
        assert got == cmds and hash(got) == hash(cmds)
        assert all(type(c) is Command for c in got)
        assert [(c.client, c.seq, c.payload) for c in got] == [tuple(c) for c in cmds]
