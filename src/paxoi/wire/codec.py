"""The message codec: every message paxoi sends over TCP, to msgpack bytes and back.

A message is a msgpack array `[tag, field, ...]`: the tag says which type, the fields
follow in dataclass order. Ballots, commands, batches and pvalues use the forms of
`paxoi.wire.values`, which the storage shares, so a value has one encoding everywhere.

This is the hot path (every Accept and Accepted passes through it), so each type has a
hand-written encoder and decoder in a dispatch table: no `dataclasses.fields()`, no
`asdict`, no reflection at run time.

Decoding is strict because the bytes come from the network: a wrong tag or arity, a
field of the wrong type (bools are not ints: `type(x) is int`), a negative slot or node
id, or an unknown enum value raises `DecodeError` with a short reason. Nothing else
ever escapes `decode`, whatever the bytes: the transport closes that one connection and
the server keeps running.

Tags are part of the protocol and never reused. Hello, HelloAck and ErrorReply keep
their tags and layouts in every future version, so that two peers of different versions
can still tell each other so (the handshake must be decodable to be refused politely).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain
from typing import Any, Final, TypeAlias

from ..core.messages import (
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
from ..core.types import Command, Role
from .messages import (
    CONTROL_ACTIONS,
    HELLO_KINDS,
    KIND_CLIENT,
    KIND_SERVER,
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
from .values import (
    DecodeError,
    ballot_from_wire,
    ballot_to_wire,
    batch_from_wire,
    batch_to_wire,
    command_from_wire,
    command_to_wire,
    new_command,
    pack,
    pvalue_from_wire,
    pvalue_to_wire,
    short,
    unpack,
)

#: Bumped on any incompatible change to a tag or layout (except the frozen handshake).
#: 2: Heartbeat.stamp, LeaseGrant, Read, ReadReply.
#: 3: Promise.compacted, SnapshotChunk, SnapshotRequest.
#: 4: Decide.ballot; Decide.value may be left out (by reference).
#: 5: Submits, ClientReplies (a client's commands and answers, many to a frame).
PROTOCOL_VERSION: Final = 5

ClientMessage: TypeAlias = (
    Hello
    | HelloAck
    | Submit
    | Submits
    | Subscribe
    | LogEntries
    | StatusRequest
    | StatusReply
    | ErrorReply
    | ClientReply
    | ClientReplies
    | Control
    | ControlReply
    | Read
    | ReadReply
)
#: Everything that can travel in a frame.
Message: TypeAlias = PeerMessage | ClientMessage

# Tags. Peer messages 1-15, client/transport messages from 16 on.
TAG_PREPARE: Final = 1
TAG_PROMISE: Final = 2
TAG_ACCEPT: Final = 3
TAG_ACCEPTED: Final = 4
TAG_PREEMPTED: Final = 5
TAG_DECIDE: Final = 6
TAG_HEARTBEAT: Final = 7
TAG_CATCHUP_REQUEST: Final = 8
TAG_CATCHUP_REPLY: Final = 9
TAG_HELLO: Final = 16
TAG_HELLO_ACK: Final = 17
TAG_ERROR_REPLY: Final = 18
TAG_SUBMIT: Final = 19
TAG_CLIENT_REPLY: Final = 20
TAG_SUBSCRIBE: Final = 21
TAG_LOG_ENTRIES: Final = 22
TAG_STATUS_REQUEST: Final = 23
TAG_STATUS_REPLY: Final = 24
TAG_CONTROL: Final = 25
TAG_CONTROL_REPLY: Final = 26
TAG_READ: Final = 27
TAG_READ_REPLY: Final = 28
TAG_SUBMITS: Final = 29
TAG_CLIENT_REPLIES: Final = 30
TAG_LEASE_GRANT: Final = 10
TAG_SNAPSHOT_CHUNK: Final = 11
TAG_SNAPSHOT_REQUEST: Final = 12

_STATUSES: Final[dict[str, ReplyStatus]] = {s.value: s for s in ReplyStatus}
_READ_MODES: Final[dict[str, ReadMode]] = {m.value: m for m in ReadMode}
_ROLES: Final[frozenset[str]] = frozenset(r.value for r in Role)


# ---------------------------------------------------------------- field checks
# Each returns the value when valid so decoders read as one expression per field.


def _fail(what: str, x: Any) -> DecodeError:
    return DecodeError(f"bad {what}: {short(x)}")


def _nat(x: Any, what: str) -> int:
    """A non-negative int (slot, node id, version, counter); bools are refused."""
    if type(x) is not int or x < 0:
        raise _fail(what, x)
    return x


def _opt_nat(x: Any, what: str) -> int | None:
    if x is None:
        return None
    if type(x) is not int or x < 0:
        raise _fail(what, x)
    return x


def _str(x: Any, what: str) -> str:
    if type(x) is not str:
        raise _fail(what, x)
    return x


def _bytes(x: Any, what: str) -> bytes:
    if type(x) is not bytes:
        raise _fail(what, x)
    return x


def _arity(o: list[Any], n: int, name: str) -> None:
    if len(o) != n:
        raise DecodeError(f"{name}: expected {n - 1} fields, got {len(o) - 1}")


# ---------------------------------------------------------------- peer messages


def _enc_prepare(m: Prepare) -> list[Any]:
    return [TAG_PREPARE, m.src, ballot_to_wire(m.ballot), m.from_slot]


def _dec_prepare(o: list[Any]) -> Prepare:
    _arity(o, 4, "Prepare")
    return Prepare(_nat(o[1], "src"), ballot_from_wire(o[2]), _nat(o[3], "from_slot"))


def _enc_promise(m: Promise) -> list[Any]:
    return [
        TAG_PROMISE,
        m.src,
        ballot_to_wire(m.ballot),
        m.from_slot,
        [pvalue_to_wire(p) for p in m.accepted],
        m.compacted,
    ]


def _dec_promise(o: list[Any]) -> Promise:
    _arity(o, 6, "Promise")
    acc = o[4]
    if type(acc) is not list:
        raise _fail("accepted", acc)
    return Promise(
        _nat(o[1], "src"),
        ballot_from_wire(o[2]),
        _nat(o[3], "from_slot"),
        tuple([pvalue_from_wire(p) for p in acc]),
        _nat(o[5], "compacted"),
    )


def _enc_accept(m: Accept) -> list[Any]:
    return [TAG_ACCEPT, m.src, ballot_to_wire(m.ballot), m.slot, batch_to_wire(m.value)]


def _dec_accept(o: list[Any]) -> Accept:
    _arity(o, 5, "Accept")
    return Accept(
        _nat(o[1], "src"), ballot_from_wire(o[2]), _nat(o[3], "slot"), batch_from_wire(o[4])
    )


def _enc_accepted(m: Accepted) -> list[Any]:
    return [TAG_ACCEPTED, m.src, ballot_to_wire(m.ballot), m.slot]


def _dec_accepted(o: list[Any]) -> Accepted:
    _arity(o, 4, "Accepted")
    return Accepted(_nat(o[1], "src"), ballot_from_wire(o[2]), _nat(o[3], "slot"))


def _enc_preempted(m: Preempted) -> list[Any]:
    return [TAG_PREEMPTED, m.src, ballot_to_wire(m.ballot), ballot_to_wire(m.promised)]


def _dec_preempted(o: list[Any]) -> Preempted:
    _arity(o, 4, "Preempted")
    return Preempted(_nat(o[1], "src"), ballot_from_wire(o[2]), ballot_from_wire(o[3]))


def _enc_decide(m: Decide) -> list[Any]:
    value = None if m.value is None else batch_to_wire(m.value)
    ballot = None if m.ballot is None else ballot_to_wire(m.ballot)
    return [TAG_DECIDE, m.src, m.slot, value, ballot]


def _dec_decide(o: list[Any]) -> Decide:
    _arity(o, 5, "Decide")
    value = None if o[3] is None else batch_from_wire(o[3])
    ballot = None if o[4] is None else ballot_from_wire(o[4])
    if value is None and ballot is None:
        raise DecodeError("Decide: neither a value nor the ballot that proposed it")
    return Decide(_nat(o[1], "src"), _nat(o[2], "slot"), value, ballot)


def _enc_heartbeat(m: Heartbeat) -> list[Any]:
    return [TAG_HEARTBEAT, m.src, ballot_to_wire(m.ballot), m.chosen, m.stamp]


def _dec_heartbeat(o: list[Any]) -> Heartbeat:
    _arity(o, 5, "Heartbeat")
    return Heartbeat(
        _nat(o[1], "src"), ballot_from_wire(o[2]), _nat(o[3], "chosen"), _nat(o[4], "stamp")
    )


def _enc_lease_grant(m: LeaseGrant) -> list[Any]:
    return [TAG_LEASE_GRANT, m.src, ballot_to_wire(m.ballot), m.stamp]


def _dec_lease_grant(o: list[Any]) -> LeaseGrant:
    _arity(o, 4, "LeaseGrant")
    return LeaseGrant(_nat(o[1], "src"), ballot_from_wire(o[2]), _nat(o[3], "stamp"))


def _enc_read(m: Read) -> list[Any]:
    return [TAG_READ, m.id, m.query, m.mode.value]


def _dec_read(o: list[Any]) -> Read:
    _arity(o, 4, "Read")
    mode = _READ_MODES.get(o[3]) if type(o[3]) is str else None
    if mode is None:
        raise _fail("read mode", o[3])
    return Read(_nat(o[1], "id"), _bytes(o[2], "query"), mode)


def _enc_read_reply(m: ReadReply) -> list[Any]:
    return [TAG_READ_REPLY, m.client, m.id, m.status.value, m.result, m.leader, m.slot]


def _dec_read_reply(o: list[Any]) -> ReadReply:
    _arity(o, 7, "ReadReply")
    status = _STATUSES.get(o[3]) if type(o[3]) is str else None
    if status is None:
        raise _fail("status", o[3])
    return ReadReply(
        _str(o[1], "client"),
        _nat(o[2], "id"),
        status,
        _bytes(o[4], "result"),
        _opt_nat(o[5], "leader"),
        _nat(o[6], "slot"),
    )


def _enc_catchup_request(m: CatchupRequest) -> list[Any]:
    return [TAG_CATCHUP_REQUEST, m.src, m.from_slot, m.to_slot]


def _dec_catchup_request(o: list[Any]) -> CatchupRequest:
    _arity(o, 4, "CatchupRequest")
    lo, hi = _nat(o[2], "from_slot"), _nat(o[3], "to_slot")
    if hi < lo:
        raise DecodeError(f"bad CatchupRequest range: [{lo}, {hi})")
    return CatchupRequest(_nat(o[1], "src"), lo, hi)


def _enc_catchup_reply(m: CatchupReply) -> list[Any]:
    return [TAG_CATCHUP_REPLY, m.src, [[s, batch_to_wire(b)] for s, b in m.decisions]]


def _dec_catchup_reply(o: list[Any]) -> CatchupReply:
    _arity(o, 3, "CatchupReply")
    ds = o[2]
    if type(ds) is not list:
        raise _fail("decisions", ds)
    out = []
    for d in ds:
        if type(d) is not list or len(d) != 2:
            raise _fail("decision", d)
        out.append((_nat(d[0], "slot"), batch_from_wire(d[1])))
    return CatchupReply(_nat(o[1], "src"), tuple(out))


def _enc_snapshot_chunk(m: SnapshotChunk) -> list[Any]:
    return [TAG_SNAPSHOT_CHUNK, m.src, m.slot, m.size, m.offset, m.data]


def _dec_snapshot_chunk(o: list[Any]) -> SnapshotChunk:
    _arity(o, 6, "SnapshotChunk")
    size, offset, data = _nat(o[3], "size"), _nat(o[4], "offset"), _bytes(o[5], "data")
    if not data or offset + len(data) > size:
        raise DecodeError(f"bad SnapshotChunk: {len(data)} bytes at {offset} of {size}")
    return SnapshotChunk(_nat(o[1], "src"), _nat(o[2], "slot"), size, offset, data)


def _enc_snapshot_request(m: SnapshotRequest) -> list[Any]:
    return [TAG_SNAPSHOT_REQUEST, m.src, m.slot, m.offset]


def _dec_snapshot_request(o: list[Any]) -> SnapshotRequest:
    _arity(o, 4, "SnapshotRequest")
    return SnapshotRequest(_nat(o[1], "src"), _nat(o[2], "slot"), _nat(o[3], "offset"))


# ---------------------------------------------------------------- client and transport


def _enc_client_reply(m: ClientReply) -> list[Any]:
    # A ReplyStatus is a str: msgpack packs it as its value, without Enum.value's cost.
    return [TAG_CLIENT_REPLY, m.client, m.seq, m.status, m.result, m.leader]


def _dec_client_reply(o: list[Any]) -> ClientReply:
    _arity(o, 6, "ClientReply")
    status = _STATUSES.get(o[3]) if isinstance(o[3], str) else None
    if status is None:
        raise _fail("status", o[3])
    return ClientReply(
        _str(o[1], "client"),
        _nat(o[2], "seq"),
        status,
        _bytes(o[4], "result"),
        _opt_nat(o[5], "leader"),
    )


def _enc_hello(m: Hello) -> list[Any]:
    out = [TAG_HELLO, m.version, m.cluster, m.kind, m.node, m.client]
    if m.token is not None:
        out.append(m.incarnation)
        out.append(m.token)
    elif m.incarnation:
        out.append(m.incarnation)
    return out


def _dec_hello(o: list[Any]) -> Hello:
    incarnation = 0
    token = None
    if len(o) == 8:
        token = _str(o.pop(), "token")
        incarnation = _nat(o.pop(), "incarnation")
    elif len(o) == 7:
        incarnation = _nat(o.pop(), "incarnation")
        if not incarnation:
            raise DecodeError("Hello with an explicit zero incarnation")
    _arity(o, 6, "Hello")
    kind = o[3]
    if type(kind) is not str or kind not in HELLO_KINDS:
        raise _fail("kind", kind)
    node = _opt_nat(o[4], "node")
    client = o[5]
    if client is not None and type(client) is not str:
        raise _fail("client", client)
    # A hello must say who is speaking: a server by node id, a client by client id.
    if kind == KIND_SERVER and node is None:
        raise DecodeError("server Hello without a node id")
    if kind == KIND_CLIENT and client is None:
        raise DecodeError("client Hello without a client id")
    return Hello(
        _nat(o[1], "version"), _str(o[2], "cluster"), kind, node, client, incarnation, token
    )


def _enc_hello_ack(m: HelloAck) -> list[Any]:
    return [TAG_HELLO_ACK, m.version, m.cluster, m.node, m.leader]


def _dec_hello_ack(o: list[Any]) -> HelloAck:
    _arity(o, 5, "HelloAck")
    return HelloAck(
        _nat(o[1], "version"),
        _str(o[2], "cluster"),
        _nat(o[3], "node"),
        _opt_nat(o[4], "leader"),
    )


def _enc_error_reply(m: ErrorReply) -> list[Any]:
    return [TAG_ERROR_REPLY, m.code, m.message]


def _dec_error_reply(o: list[Any]) -> ErrorReply:
    _arity(o, 3, "ErrorReply")
    code = _str(o[1], "code")
    if not code:
        raise DecodeError("ErrorReply with an empty code")
    return ErrorReply(code, _str(o[2], "message"))


def _enc_control(m: Control) -> list[Any]:
    return [TAG_CONTROL, m.action, list(m.nodes), m.value]


def _dec_control(o: list[Any]) -> Control:
    _arity(o, 4, "Control")
    action = _str(o[1], "action")
    if action not in CONTROL_ACTIONS:
        raise _fail("control action", action)
    nodes = o[2]
    if type(nodes) is not list:
        raise _fail("nodes", nodes)
    return Control(action, tuple(_nat(n, "node") for n in nodes), _nat(o[3], "value"))


def _enc_control_reply(m: ControlReply) -> list[Any]:
    return [TAG_CONTROL_REPLY, m.ok, m.message]


def _dec_control_reply(o: list[Any]) -> ControlReply:
    _arity(o, 3, "ControlReply")
    if type(o[1]) is not bool:
        raise _fail("ok", o[1])
    return ControlReply(o[1], _str(o[2], "message"))


def _enc_submit(m: Submit) -> list[Any]:
    return [TAG_SUBMIT, command_to_wire(m.command)]


def _dec_submit(o: list[Any]) -> Submit:
    _arity(o, 2, "Submit")
    cmd = command_from_wire(o[1])
    # Sequence numbers start at 1 (design.md); a client cannot submit seq 0 or below.
    if cmd.seq < 1:
        raise _fail("seq", cmd.seq)
    return Submit(cmd)


def _enc_submits(m: Submits) -> list[Any]:
    flat: list[Any] = []
    for c in m.commands:
        flat += (c.seq, c.payload)
    return [TAG_SUBMITS, m.client, flat]


def _dec_submits(o: list[Any]) -> Submits:
    _arity(o, 3, "Submits")
    client, flat = _str(o[1], "client"), o[2]
    if type(flat) is not list or len(flat) < 4 or len(flat) % 2:
        raise _fail("Submits commands", flat)
    commands = []
    for i in range(0, len(flat), 2):
        seq, payload = flat[i], flat[i + 1]
        # Sequence numbers start at 1 (design.md), as in Submit.
        if type(seq) is not int or seq < 1 or type(payload) is not bytes:
            raise _fail("Submits command", [seq, payload])
        commands.append(new_command(Command, (client, seq, payload)))
    return Submits(client, tuple(commands))


def _enc_client_replies(m: ClientReplies) -> list[Any]:
    return [TAG_CLIENT_REPLIES, m.client, list(chain.from_iterable(m.answers))]


def _dec_client_replies(o: list[Any]) -> ClientReplies:
    _arity(o, 3, "ClientReplies")
    client, flat = _str(o[1], "client"), o[2]
    if type(flat) is not list or len(flat) < 4 or len(flat) % 2:
        raise _fail("ClientReplies answers", flat)
    answers = tuple(zip(flat[::2], flat[1::2], strict=True))
    for seq, result in answers:
        if type(seq) is not int or seq < 0 or type(result) is not bytes:
            raise _fail("ClientReplies answer", [seq, result])
    return ClientReplies(client, answers)


def _enc_subscribe(m: Subscribe) -> list[Any]:
    return [TAG_SUBSCRIBE, m.from_slot]


def _dec_subscribe(o: list[Any]) -> Subscribe:
    _arity(o, 2, "Subscribe")
    return Subscribe(_nat(o[1], "from_slot"))


def _enc_log_entries(m: LogEntries) -> list[Any]:
    return [TAG_LOG_ENTRIES, [[s, command_to_wire(c), r] for s, c, r in m.entries]]


def _dec_log_entries(o: list[Any]) -> LogEntries:
    _arity(o, 2, "LogEntries")
    es = o[1]
    if type(es) is not list:
        raise _fail("entries", es)
    out = []
    for e in es:
        if type(e) is not list or len(e) != 3:
            raise _fail("entry", e)
        out.append((_nat(e[0], "slot"), command_from_wire(e[1]), _bytes(e[2], "result")))
    return LogEntries(tuple(out))


def _enc_status_request(m: StatusRequest) -> list[Any]:
    return [TAG_STATUS_REQUEST]


def _dec_status_request(o: list[Any]) -> StatusRequest:
    _arity(o, 1, "StatusRequest")
    return StatusRequest()


def _enc_status_reply(m: StatusReply) -> list[Any]:
    return [
        TAG_STATUS_REPLY,
        m.node,
        list(m.roles),
        m.leader,
        None if m.ballot is None else ballot_to_wire(m.ballot),
        m.is_leader,
        m.chosen,
        m.applied,
        m.extra,
    ]


def _dec_status_reply(o: list[Any]) -> StatusReply:
    _arity(o, 9, "StatusReply")
    roles = o[2]
    if type(roles) is not list or not all(type(r) is str and r in _ROLES for r in roles):
        raise _fail("roles", roles)
    is_leader = o[5]
    if type(is_leader) is not bool:
        raise _fail("is_leader", is_leader)
    extra = o[8]
    if type(extra) is not dict:
        raise _fail("extra", extra)
    for k, v in extra.items():
        if type(k) is not str or (type(v) is not int and type(v) is not str):
            raise _fail("extra item", (k, v))
    return StatusReply(
        _nat(o[1], "node"),
        tuple(roles),
        _opt_nat(o[3], "leader"),
        None if o[4] is None else ballot_from_wire(o[4]),
        is_leader,
        _nat(o[6], "chosen"),
        _nat(o[7], "applied"),
        extra,
    )


# ---------------------------------------------------------------- dispatch

_ENCODERS: Final[dict[type, Callable[[Any], list[Any]]]] = {
    Prepare: _enc_prepare,
    Promise: _enc_promise,
    Accept: _enc_accept,
    Accepted: _enc_accepted,
    Preempted: _enc_preempted,
    Decide: _enc_decide,
    Heartbeat: _enc_heartbeat,
    LeaseGrant: _enc_lease_grant,
    Read: _enc_read,
    ReadReply: _enc_read_reply,
    CatchupRequest: _enc_catchup_request,
    CatchupReply: _enc_catchup_reply,
    SnapshotChunk: _enc_snapshot_chunk,
    SnapshotRequest: _enc_snapshot_request,
    ClientReply: _enc_client_reply,
    Hello: _enc_hello,
    HelloAck: _enc_hello_ack,
    ErrorReply: _enc_error_reply,
    Submit: _enc_submit,
    Submits: _enc_submits,
    ClientReplies: _enc_client_replies,
    Subscribe: _enc_subscribe,
    LogEntries: _enc_log_entries,
    StatusRequest: _enc_status_request,
    StatusReply: _enc_status_reply,
    Control: _enc_control,
    ControlReply: _enc_control_reply,
}

_DECODERS: Final[dict[int, Callable[[list[Any]], Message]]] = {
    TAG_PREPARE: _dec_prepare,
    TAG_PROMISE: _dec_promise,
    TAG_ACCEPT: _dec_accept,
    TAG_ACCEPTED: _dec_accepted,
    TAG_PREEMPTED: _dec_preempted,
    TAG_DECIDE: _dec_decide,
    TAG_HEARTBEAT: _dec_heartbeat,
    TAG_LEASE_GRANT: _dec_lease_grant,
    TAG_READ: _dec_read,
    TAG_READ_REPLY: _dec_read_reply,
    TAG_CATCHUP_REQUEST: _dec_catchup_request,
    TAG_CATCHUP_REPLY: _dec_catchup_reply,
    TAG_SNAPSHOT_CHUNK: _dec_snapshot_chunk,
    TAG_SNAPSHOT_REQUEST: _dec_snapshot_request,
    TAG_CLIENT_REPLY: _dec_client_reply,
    TAG_HELLO: _dec_hello,
    TAG_HELLO_ACK: _dec_hello_ack,
    TAG_ERROR_REPLY: _dec_error_reply,
    TAG_SUBMIT: _dec_submit,
    TAG_SUBMITS: _dec_submits,
    TAG_CLIENT_REPLIES: _dec_client_replies,
    TAG_SUBSCRIBE: _dec_subscribe,
    TAG_LOG_ENTRIES: _dec_log_entries,
    TAG_STATUS_REQUEST: _dec_status_request,
    TAG_STATUS_REPLY: _dec_status_reply,
    TAG_CONTROL: _dec_control,
    TAG_CONTROL_REPLY: _dec_control_reply,
}

#: Every message type the codec handles (tests check this against the unions).
MESSAGE_TYPES: Final[tuple[type, ...]] = tuple(_ENCODERS)


def to_wire(msg: Message) -> list[Any]:
    """The msgpack-ready array form of `msg` (for callers that pack several together)."""
    enc = _ENCODERS.get(type(msg))
    if enc is None:
        raise TypeError(f"not a paxoi wire message: {type(msg).__name__}")
    return enc(msg)


def from_wire(obj: Any) -> Message:
    """The message an unpacked msgpack object denotes; DecodeError if it denotes none."""
    if type(obj) is not list or not obj:
        raise DecodeError(f"not a message array: {short(obj)}")
    tag = obj[0]
    dec = _DECODERS.get(tag) if type(tag) is int else None
    if dec is None:
        raise DecodeError(f"unknown message tag: {short(tag)}")
    return dec(obj)


def encode(msg: Message) -> bytes:
    """`msg` as one msgpack payload (frame it with `paxoi.wire.framing.frame`).

    Locally built messages are trusted: encoding does not re-validate them. A message
    of a type the codec does not know is a bug here, so it raises TypeError.
    """
    enc = _ENCODERS.get(type(msg))
    if enc is None:
        raise TypeError(f"not a paxoi wire message: {type(msg).__name__}")
    return pack(enc(msg))


def decode(data: bytes) -> Message:
    """The message in one payload. Raises DecodeError, and nothing else, on any bad input."""
    obj = unpack(data)
    if type(obj) is not list or not obj:
        raise DecodeError(f"not a message array: {short(obj)}")
    tag = obj[0]
    dec = _DECODERS.get(tag) if type(tag) is int else None
    if dec is None:
        raise DecodeError(f"unknown message tag: {short(tag)}")
    return dec(obj)


__all__ = [
    "MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "ClientMessage",
    "DecodeError",
    "Message",
    "decode",
    "encode",
    "from_wire",
    "to_wire",
]
