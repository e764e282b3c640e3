"""The output of driving a node: what to persist, send, and hand to clients.

The contract a shell (server runtime, simulator) must honour, as in etcd's Ready:
1. `persist` records are made durable in the order given, after those of earlier Readies.
2. `send` messages may leave at once: they depend on no undurable state.
3. `send_after_persist` messages leave only once this Ready's records, *and every
   earlier Ready's*, are durable. Messages addressed to the node itself are delivered
   back to it with `Node.step` at that point, like any other.
4. `replies`, `read_replies` and `applied` are for clients and the application; they never wait for
   this node's disk (what they report is already durable at a quorum of acceptors).
   A learner answers only the clients of its `audience` (Node), and lists applied
   commands only while `Replica.report_applied` is on (the default).
5. `persist_lazy` records may be written whenever suits the shell (with the next write
   of `persist` records, or on a timer when the node is idle) and may be lost in a
   crash: nothing waits for them. They are a learner's decisions, which its peers and
   the acceptors still hold: a restarted learner that lost some catches up. Not forcing
   a sync of their own keeps one fsync per command at low load instead of two.
6. `send_lazy` messages may wait for the next message to the same peer, or for the
   next tick, and then leave in order with it. They are the leader's decisions for the
   other learners: nothing waits on them (the client's answer comes from the leader's
   own learner), so at low load they need not cost a write and a wake-up of their own
   (two of a command's eight messages), and under load another message always comes.
   And, when a slot is alone in flight, its Accepts to the acceptors outside the
   quorum that chose the previous slot (Proposer._propose): the quorum needs only the
   others, and an acceptor that got none of them would still get them on the tick.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .messages import Applied, ClientReply, PeerMessage, ReadReply
from .records import Record
from .types import NodeId


@dataclass
class Ready:
    persist: list[Record] = field(default_factory=list)
    send: list[tuple[NodeId, PeerMessage]] = field(default_factory=list)
    send_after_persist: list[tuple[NodeId, PeerMessage]] = field(default_factory=list)
    replies: list[ClientReply] = field(default_factory=list)
    applied: list[Applied] = field(default_factory=list)
    read_replies: list[ReadReply] = field(default_factory=list)
    persist_lazy: list[Record] = field(default_factory=list)
    send_lazy: list[tuple[NodeId, PeerMessage]] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (
            self.persist
            or self.send
            or self.send_after_persist
            or self.replies
            or self.applied
            or self.read_replies
            or self.persist_lazy
            or self.send_lazy
        )
