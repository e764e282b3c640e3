"""Every message the core exchanges, as frozen slotted dataclasses (the per-command
ones as NamedTuples, which are as immutable and faster to build).

Peer messages carry `src`, the sending node, so a receiver never has to trust the
transport for it (the transport authenticates links; the core only needs the id).
Names follow Paxos Made Moderately Complex where it has one (phase 1a/1b/2a/2b).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple, TypeAlias, TypeGuard

from .types import Ballot, Batch, ClientId, Command, NodeId, PValue, Seq, Slot


@dataclass(frozen=True, slots=True)
class Prepare:
    """Phase 1a for *every* slot from `from_slot` on: Multi-Paxos runs phase 1 once per leadership."""

    src: NodeId
    ballot: Ballot
    from_slot: Slot


@dataclass(frozen=True, slots=True)
class Promise:
    """Phase 1b: the acceptor promised `ballot` and reports what it accepted at or above
    `from_slot` and at or above `compacted`.

    `compacted`: slots below it are decided, and this acceptor dropped what it accepted
    there because its own node holds a durable snapshot covering them. A leader must
    not propose anything (not even a no-op) below the highest `compacted` of its quorum.
    """

    src: NodeId
    ballot: Ballot
    from_slot: Slot
    accepted: tuple[PValue, ...]
    compacted: Slot = 0


@dataclass(frozen=True, slots=True)
class Accept:
    """Phase 2a: accept `value` for `slot` in `ballot`."""

    src: NodeId
    ballot: Ballot
    slot: Slot
    value: Batch


@dataclass(frozen=True, slots=True)
class Accepted:
    """Phase 2b: the acceptor durably accepted the pvalue (ballot, slot, value it was sent)."""

    src: NodeId
    ballot: Ballot
    slot: Slot


@dataclass(frozen=True, slots=True)
class Preempted:
    """The acceptor refused a prepare or accept because it promised a higher ballot.

    Not in the paper as a message (there the acceptor echoes its ballot in 1b/2b);
    a separate type makes "you lost" impossible to mistake for "yes".
    """

    src: NodeId
    ballot: Ballot
    promised: Ballot


@dataclass(frozen=True, slots=True)
class Decide:
    """`value` is chosen for `slot`: from the proposer that saw a quorum, to the learners.

    To a learner that is also an acceptor the value is left out (None): it is the value
    proposed in `ballot`, which that node's acceptor has (the Accept went first, down the
    same link). Every command then crosses the wire and the codec once per follower, not
    twice. A node whose acceptor did not accept in `ballot` (or later) learns the slot
    by catch-up instead."""

    src: NodeId
    slot: Slot
    value: Batch | None
    ballot: Ballot | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The leader is alive in `ballot`; every slot below `chosen` is decided.

    Followers reset their election timers on it; learners use `chosen` to notice they lag.
    """

    src: NodeId
    ballot: Ballot
    chosen: Slot
    #: The leader's tick when it sent this; echoed in `LeaseGrant` (leases only).
    stamp: int = 0


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    """The acceptor will promise no other proposer for `Timing.lease` ticks from now.

    The answer to heartbeat `stamp` of `ballot`'s leader, when leases are on; a quorum
    of grants for one stamp lets the leader answer reads locally until its lease ends.
    """

    src: NodeId
    ballot: Ballot
    stamp: int


@dataclass(frozen=True, slots=True)
class CatchupRequest:
    """A learner asks for the decisions of slots [from_slot, to_slot)."""

    src: NodeId
    from_slot: Slot
    to_slot: Slot


@dataclass(frozen=True, slots=True)
class CatchupReply:
    """Decisions the sender knows, in slot order; possibly fewer than asked (bounded size)."""

    src: NodeId
    decisions: tuple[tuple[Slot, Batch], ...]


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    """Bytes [offset, offset + len(data)) of the encoded snapshot (`encode_snapshot`) of
    `slot`, `size` bytes in all: the answer to a CatchupRequest from below the sender's
    log base (offset 0), or to a SnapshotRequest."""

    src: NodeId
    slot: Slot
    size: int
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class SnapshotRequest:
    """A learner receiving snapshot `slot` asks for its next bytes, from `offset` on."""

    src: NodeId
    slot: Slot
    offset: int


PeerMessage: TypeAlias = (
    Prepare
    | Promise
    | Accept
    | Accepted
    | Preempted
    | Decide
    | Heartbeat
    | LeaseGrant
    | CatchupRequest
    | CatchupReply
    | SnapshotChunk
    | SnapshotRequest
)

PEER_MESSAGE_TYPES: tuple[type, ...] = (
    Prepare,
    Promise,
    Accept,
    Accepted,
    Preempted,
    Decide,
    Heartbeat,
    LeaseGrant,
    CatchupRequest,
    CatchupReply,
    SnapshotChunk,
    SnapshotRequest,
)


def is_peer_message(msg: object) -> TypeGuard[PeerMessage]:
    """True for the messages servers exchange (what a peer connection may carry)."""
    return isinstance(msg, PEER_MESSAGE_TYPES)


#: Messages that count as "server-side Paxos messages" for a leader time bomb.
PROTOCOL_MESSAGES: tuple[type, ...] = (Prepare, Promise, Accept, Accepted, Preempted, Decide)


class ReplyStatus(str, Enum):
    OK = "ok"
    #: This node cannot order commands now; `leader` says where to go if known.
    NOT_LEADER = "not_leader"
    #: Back-pressure: the leader's queue is full; retry later, the command was not taken.
    BUSY = "busy"
    #: The request cannot be served here at all (a read of a machine without `query`).
    UNSUPPORTED = "unsupported"


class ReadMode(str, Enum):
    """How a read may be answered without going through the log."""

    #: By the leader, from local state, while it holds a lease from a quorum of
    #: acceptors and has applied every slot it proposed before the read arrived.
    #: Linearizable under the clock assumption of `Timing.lease_drift_percent`.
    LEASE = "lease"
    #: By any learner, from its local state at once: may miss recent writes.
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """A read-only query (`StateMachine.query`) from `client`, answered by `ReadReply`.

    Reads through the log (the default linearizable read) are ordinary commands."""

    client: ClientId
    id: int
    query: bytes
    mode: ReadMode


@dataclass(frozen=True, slots=True)
class ReadReply:
    """The answer to read `id`: OK with the query's result, or where to go instead."""

    client: ClientId
    id: int
    status: ReplyStatus
    result: bytes = b""
    leader: NodeId | None = None
    #: The applied slot the answer reflects (every slot below it is in the result).
    slot: Slot = 0


class ClientReply(NamedTuple):
    """The answer to (client, seq). OK carries the state machine's result.

    A NamedTuple, like `Command` and `Applied`: one is built per command (see Command)."""

    client: ClientId
    seq: Seq
    status: ReplyStatus
    result: bytes = b""
    leader: NodeId | None = None


class Applied(NamedTuple):
    """A command the local replica applied at `slot`, with its result.

    The shell routes the reply to a waiting client, writes the chat log, feeds subscribers.
    """

    slot: Slot
    command: Command
    result: bytes


__all__ = [
    "PEER_MESSAGE_TYPES",
    "PROTOCOL_MESSAGES",
    "Accept",
    "Accepted",
    "Applied",
    "CatchupReply",
    "CatchupRequest",
    "ClientReply",
    "Decide",
    "Heartbeat",
    "LeaseGrant",
    "PeerMessage",
    "Preempted",
    "Prepare",
    "Promise",
    "ReadMode",
    "ReadReply",
    "ReadRequest",
    "ReplyStatus",
    "SnapshotChunk",
    "SnapshotRequest",
    "is_peer_message",
]
