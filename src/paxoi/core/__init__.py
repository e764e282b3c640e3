"""paxoi.core: the Multi-Paxos protocol, sans-IO.

Pure and deterministic: given the same inputs (messages, ticks, commands) and the same
seeded `random.Random`, a node produces the same outputs. No clocks, sockets, threads
or global randomness; the shells around it (runtime, simulator) provide all of those.
"""

from .acceptor import Acceptor
from .bugs import Bug, parse_bugs
from .config import ClusterConfig, ElectionPolicy, Limits, Timing
from .election import Election
from .errors import ConfigError, InvariantViolation, PaxoiError, UsageError
from .log import DecisionLog
from .messages import (
    PROTOCOL_MESSAGES,
    Accept,
    Accepted,
    Applied,
    CatchupReply,
    CatchupRequest,
    ClientReply,
    Decide,
    Heartbeat,
    PeerMessage,
    Preempted,
    Prepare,
    Promise,
    ReplyStatus,
    SnapshotChunk,
    SnapshotRequest,
)
from .node import Node
from .proposer import Phase, Proposer
from .ready import Ready
from .records import (
    AcceptedRecord,
    BallotRecord,
    DecidedRecord,
    DurableState,
    PromisedRecord,
    Record,
    SegmentRecord,
    SnapshotRecord,
)
from .replica import ClientSession, Replica
from .snapshot import Snapshot, SnapshotError, decode_snapshot, encode_snapshot
from .statemachine import SegmentedStateMachine, StateMachine
from .types import (
    ALL_ROLES,
    BOTTOM,
    NOOP,
    Ballot,
    Batch,
    ClientId,
    Command,
    NodeId,
    PValue,
    Role,
    Seq,
    Slot,
)

__all__ = [
    "ALL_ROLES",
    "BOTTOM",
    "NOOP",
    "PROTOCOL_MESSAGES",
    "Accept",
    "Accepted",
    "AcceptedRecord",
    "Acceptor",
    "Applied",
    "Ballot",
    "BallotRecord",
    "Batch",
    "Bug",
    "CatchupReply",
    "CatchupRequest",
    "ClientId",
    "ClientReply",
    "ClientSession",
    "ClusterConfig",
    "Command",
    "ConfigError",
    "Decide",
    "DecidedRecord",
    "DecisionLog",
    "DurableState",
    "Election",
    "ElectionPolicy",
    "Heartbeat",
    "InvariantViolation",
    "Limits",
    "Node",
    "NodeId",
    "PValue",
    "PaxoiError",
    "PeerMessage",
    "Phase",
    "Preempted",
    "Prepare",
    "Promise",
    "PromisedRecord",
    "Proposer",
    "Ready",
    "Record",
    "Replica",
    "ReplyStatus",
    "Role",
    "SegmentRecord",
    "SegmentedStateMachine",
    "Seq",
    "Slot",
    "Snapshot",
    "SnapshotChunk",
    "SnapshotError",
    "SnapshotRecord",
    "SnapshotRequest",
    "StateMachine",
    "Timing",
    "UsageError",
    "decode_snapshot",
    "encode_snapshot",
    "parse_bugs",
]
