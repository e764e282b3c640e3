"""Transport-level messages: what the TCP shell says besides the core's Paxos messages.

The core (`paxoi.core.messages`) knows nothing of connections, handshakes, clients that
subscribe to the log, or status queries; these belong to the networked shell, so they
live here, next to the codec that puts them on the wire. Like the core's messages they
are frozen slotted dataclasses: cheap to build, hashable, and impossible to mutate after
a decode has validated them.

Validation happens in the decoder (`paxoi.wire.codec`), not in `__post_init__`: locally
built messages are trusted and should cost nothing extra on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from ..core.messages import ReadMode
from ..core.types import Ballot, ClientId, Command, NodeId, Seq, Slot

#: The two kinds of peer a connection can come from (`Hello.kind`).
KIND_SERVER = "server"
KIND_CLIENT = "client"
HELLO_KINDS: frozenset[str] = frozenset({KIND_SERVER, KIND_CLIENT})


@dataclass(frozen=True, slots=True)
class Hello:
    """The first frame on every connection, in both directions.

    It says which protocol version and cluster the sender speaks and who it is: a server
    (`node` set) or a client (`client` set). The receiver rejects a wrong cluster, an
    unknown node or a version it does not speak *before* any Paxos message is trusted.
    """

    version: int
    cluster: str
    kind: str
    node: NodeId | None = None
    client: ClientId | None = None
    #: A server process's random number, fixed for its lifetime: when it changes, the
    #: peer restarted, and links to it must be remade at once (see PeerLink.reconnect).
    #: Sent only when non-zero, so the handshake's encoding is otherwise unchanged.
    incarnation: int = 0
    #: A client's token, when the cluster authenticates clients by token (auth.clients:
    #: token; over TLS only). Sent only when set, after the incarnation (then always
    #: present, zero or not), so Hellos without one are encoded as before.
    token: str | None = None


@dataclass(frozen=True, slots=True)
class HelloAck:
    """A server's answer to a client's Hello: who it is and whom it believes leads.

    `leader` lets a client go straight to the leader instead of learning it by redirect.
    """

    version: int
    cluster: str
    node: NodeId
    leader: NodeId | None = None


class Submit(NamedTuple):
    """A client asks the cluster to order and apply `command` (answered by ClientReply).

    A NamedTuple: one per command (see `Command`)."""

    command: Command


#: Payload bytes one Submits or ClientReplies frame carries at most (the rest go in the
#: next): far inside the servers' and clients' frame limits (`limits.max_frame`, 32 MiB
#: by default), so a batch never makes a frame that one command alone would not.
BATCH_FRAME_BYTES = 32 * 1024


class Submits(NamedTuple):
    """Two or more of one client's commands in one frame: what a pipelining client
    sends in one event-loop iteration. The server takes each as a `Submit`; one frame
    instead of one per command saves a decode and a dispatch per command on both sides.
    Every command's `client` is `client` (the wire carries the id once)."""

    client: ClientId
    commands: tuple[Command, ...]


class ClientReplies(NamedTuple):
    """OK answers to two or more of one client's commands, in one frame: what one
    Ready of the server applied for it. `answers` holds (seq, result) pairs; any other
    status travels alone in a `ClientReply`."""

    client: ClientId
    answers: tuple[tuple[Seq, bytes], ...]


@dataclass(frozen=True, slots=True)
class Read:
    """A client's read-only query, answered from state without going through the log
    (`paxoi.core.messages.ReadMode`), by a `ReadReply` with the same `id`."""

    id: int
    query: bytes
    mode: ReadMode


@dataclass(frozen=True, slots=True)
class Subscribe:
    """A client asks for the committed log from `from_slot` on, then for every new entry.

    This is the chat subscription: an interactive client shows messages as they commit.
    """

    from_slot: Slot


@dataclass(frozen=True, slots=True)
class LogEntries:
    """Server to a subscribed client: applied entries as (slot, command, result), in order.

    A slot holds a batch, so consecutive entries may share a slot.
    """

    entries: tuple[tuple[Slot, Command, bytes], ...]


@dataclass(frozen=True, slots=True)
class StatusRequest:
    """Ask a server for its StatusReply (used by `paxoi status`)."""


@dataclass(frozen=True, slots=True)
class StatusReply:
    """One server's view of itself: roles, leader, ballot, and how far its log got.

    `extra` carries counters and labels that do not deserve a field of their own (queue
    lengths, uptime, storage path), so `paxoi status` can grow without a protocol change.
    """

    node: NodeId
    roles: tuple[str, ...]
    leader: NodeId | None
    ballot: Ballot | None
    is_leader: bool
    chosen: Slot
    applied: Slot
    extra: dict[str, int | str] = field(default_factory=dict)


#: Codes an ErrorReply may carry. Strings, not an enum, so an old client shows a new
#: code it does not know rather than failing to decode the reply.
ERROR_BUSY = "busy"
ERROR_BAD_REQUEST = "bad-request"
ERROR_WRONG_CLUSTER = "wrong-cluster"
ERROR_WRONG_VERSION = "wrong-version"
ERROR_UNAUTHORIZED = "unauthorized"


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """The server refuses something (before closing the connection, or to one request).

    `code` is machine-readable ("busy", "bad-request", "wrong-cluster", ...), `message`
    is for humans and logs.
    """

    code: str
    message: str = ""


__all__ = [
    "BATCH_FRAME_BYTES",
    "ERROR_BAD_REQUEST",
    "ERROR_BUSY",
    "ERROR_UNAUTHORIZED",
    "ERROR_WRONG_CLUSTER",
    "ERROR_WRONG_VERSION",
    "HELLO_KINDS",
    "KIND_CLIENT",
    "KIND_SERVER",
    "ClientReplies",
    "ErrorReply",
    "Hello",
    "HelloAck",
    "LogEntries",
    "Read",
    "StatusReply",
    "StatusRequest",
    "Submit",
    "Submits",
    "Subscribe",
]


#: Run-time fault injection actions (`Control.action`).
CONTROL_ACTIONS: frozenset[str] = frozenset({"partition", "heal", "time_bomb", "clock"})


@dataclass(frozen=True, slots=True)
class Control:
    """Test-only fault injection at run time, refused unless `faults.control` is on.

    "partition": drop all traffic to and from the servers in `nodes`; "heal": stop
    dropping; "time_bomb": crash after `value` more Paxos messages sent as leader (0:
    at once, if leading); "clock": run the protocol clock at `value` percent of real
    speed (clock drift, for leases; 100 restores it). Used by the scenario runner, the
    nemesis and the CS 380D master program.
    """

    action: str
    nodes: tuple[NodeId, ...] = ()
    value: int = 0


@dataclass(frozen=True, slots=True)
class ControlReply:
    """The answer to a Control: done, or why not."""

    ok: bool
    message: str = ""
