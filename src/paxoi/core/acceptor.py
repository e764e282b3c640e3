"""The acceptor: Paxos's memory. Rules A1-A5 of Paxos Made Moderately Complex.

Every reply that reveals a promise or an acceptance is released only after the state
behind it is durable (`send_after_persist`): an acceptor that crashed after answering
but before its disk caught up would come back having forgotten a promise it made,
and two leaders could both believe they own a slot.

Compaction (`compact`): an acceptor may drop what it accepted below a slot only when
its own node holds a durable snapshot covering that slot, which proves every slot below
it decided. It then says so in every promise (`Promise.compacted`), so that a new leader
proposes nothing there. Nothing weaker will do: a value dropped on any other grounds may
be the chosen one, and a leader that cannot see it may choose another (C2). So an
acceptor on a node without a learner never compacts.
"""

from __future__ import annotations

from collections.abc import Callable

from .bugs import Bug
from .messages import (
    Accept,
    Accepted,
    Heartbeat,
    LeaseGrant,
    PeerMessage,
    Preempted,
    Prepare,
    Promise,
)
from .records import AcceptedRecord, PromisedRecord, Record
from .types import BOTTOM, Ballot, NodeId, PValue, Slot

#: (destination, message, after_persist)
Send = Callable[[NodeId, PeerMessage, bool], None]
Persist = Callable[[Record], None]


class Acceptor:
    def __init__(
        self,
        node_id: NodeId,
        send: Send,
        persist: Persist,
        promised: Ballot = BOTTOM,
        accepted: dict[Slot, PValue] | None = None,
        bugs: frozenset[Bug] = frozenset(),
        lease: int = 0,
        compacted: Slot = 0,
    ) -> None:
        self.id = node_id
        self.promised = promised
        #: Slots below this are decided and covered by this node's durable snapshot:
        #: what was accepted there is dropped, and promises say so.
        self.compacted = compacted
        self.accepted: dict[Slot, PValue] = {
            s: pv for s, pv in (accepted or {}).items() if s >= compacted
        }
        self._send = send
        self._persist = persist
        self._replies_wait = Bug.ACCEPTOR_REPLIES_BEFORE_PERSIST not in bugs
        # Leases (volatile, on purpose: granting one must not cost an fsync). A grant made
        # before a crash is forgotten, so a starting acceptor treats every node as if an
        # unknown holder's lease were running: it promises no one for `lease` ticks.
        self._lease = lease
        self._now = 0
        self.lease_holder: NodeId | None = None
        self.lease_until = lease

    def tick(self) -> None:
        self._now += 1

    def on_heartbeat(self, m: Heartbeat) -> None:
        """With leases on: grant the sender a lease if it leads a ballot we may follow."""
        if not self._lease or m.ballot < self.promised:
            return
        if self.lease_holder not in (None, m.ballot.node) and self._now < self.lease_until:
            return  # someone else's lease is running (cannot happen in a correct run)
        self.lease_holder = m.ballot.node
        self.lease_until = self._now + self._lease
        self._send(m.src, LeaseGrant(self.id, m.ballot, m.stamp), False)

    def _leased_to_other(self, ballot: Ballot) -> bool:
        return self._lease > 0 and self._now < self.lease_until and ballot.node != self.lease_holder

    def on_prepare(self, m: Prepare) -> None:
        if m.ballot < self.promised:
            # A refusal reveals only a ballot we already promised: it may go at once.
            self._send(m.src, Preempted(self.id, m.ballot, self.promised), False)
            return
        if self._leased_to_other(m.ballot):
            # Another leader may be answering reads on the strength of our grant: stay
            # silent until it lapses (the candidate retransmits its prepare).
            return
        if m.ballot > self.promised:  # A1: the promised ballot only increases
            self.promised = m.ballot
            self._persist(PromisedRecord(m.ballot))
        start = max(m.from_slot, self.compacted)
        accepted = tuple(
            sorted((pv for pv in self.accepted.values() if pv.slot >= start), key=_by_slot)
        )
        self._send(
            m.src,
            Promise(self.id, m.ballot, m.from_slot, accepted, self.compacted),
            self._replies_wait,
        )

    def on_accept(self, m: Accept) -> None:
        if m.ballot < self.promised:  # A2: accept only in the current ballot
            self._send(m.src, Preempted(self.id, m.ballot, self.promised), False)
            return
        if m.slot < self.compacted:
            # The slot is decided and our snapshot covers it: nothing to store. Say yes,
            # so a proposal of it does not wait for ever. This cannot help choose another
            # value: any ballot a quorum can still accept here is above the one the slot
            # was chosen in, and so carries its value (C2).
            if m.ballot > self.promised:
                self.promised = m.ballot
                self._persist(PromisedRecord(m.ballot))
            self._send(m.src, Accepted(self.id, m.ballot, m.slot), self._replies_wait)
            return
        self.promised = m.ballot
        old = self.accepted.get(m.slot)
        if old is None or old.ballot != m.ballot or old.value != m.value:
            # A3: replaced only by a higher ballot (m.ballot >= promised >= old.ballot).
            pv = PValue(m.ballot, m.slot, m.value)
            self.accepted[m.slot] = pv
            self._persist(AcceptedRecord(pv))
        self._send(m.src, Accepted(self.id, m.ballot, m.slot), self._replies_wait)

    def compact(self, below: Slot) -> None:
        """Drop accepted values below `below`. Only for an acceptor whose own node has
        just persisted a snapshot covering `below` (see the module docstring): replies
        that reveal the compaction are released after that snapshot is durable."""
        if below <= self.compacted:
            return
        self.compacted = below
        for slot in [s for s in self.accepted if s < below]:
            del self.accepted[slot]


def _by_slot(pv: PValue) -> Slot:
    return pv.slot
