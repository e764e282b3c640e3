"""The proposer (leader): phase 1 once per leadership, then phase 2 per slot, pipelined.

In the paper's terms this is a leader with its scout (phase 1, `_campaign`) and its
commanders (phase 2, one `_Proposal` per slot in the window). The rules that keep
safety:

- A ballot is used only after it is durable (`BallotRecord`, prepares sent after
  persist), so a restarted proposer never proposes two values in one ballot (C1).
- Phase 1 covers every slot from the first one this node does not know decided.
  On winning, every slot a promise reported gets the value accepted with the
  highest ballot (C2, hence A5); a slot below the highest reported slot that no
  promise mentions gets a no-op. Slots above it stay free: a leader change without
  holes consumes no slot numbers.
- A proposal is decided on Accepted from a quorum of acceptors in its own ballot.
- Compaction: a promise's `compacted` says the slots below it are decided and that
  acceptor no longer reports them. The leader proposes nothing below the highest
  `compacted` of its quorum (a no-op there could replace a chosen value the promises
  no longer show); phase 2 starts above it, and the learner catches up on the rest.
Everything else here (batching, the window, retransmission, back-pressure) is speed
and liveness.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from .bugs import Bug
from .config import ClusterConfig
from .election import Election
from .log import DecisionLog
from .messages import (
    Accept,
    Accepted,
    ClientReply,
    Heartbeat,
    LeaseGrant,
    PeerMessage,
    Preempted,
    Prepare,
    Promise,
    ReplyStatus,
)
from .records import BallotRecord, Record
from .types import NOOP, Ballot, Batch, ClientId, Command, NodeId, PValue, Seq, Slot


class Send(Protocol):
    """How the proposer hands a message to its node (Node._send): `after_persist` holds
    it until this Ready's records are durable, `lazy` lets it wait for a ride
    (Ready.send_after_persist, Ready.send_lazy)."""

    def __call__(
        self, dst: NodeId, msg: PeerMessage, after_persist: bool, lazy: bool = False
    ) -> None: ...


Persist = Callable[[Record], None]
Reply = Callable[[ClientReply], None]
#: (slot, chosen value, the ballot it was chosen in)
Learn = Callable[[Slot, Batch, Ballot], None]
Skip = Callable[[Slot], None]


class Phase(str, Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass
class _Proposal:
    value: Batch
    sent_at: int
    acks: set[NodeId] = field(default_factory=set)


class Proposer:
    def __init__(
        self,
        node_id: NodeId,
        config: ClusterConfig,
        rng: random.Random,
        log: DecisionLog,
        send: Send,
        persist: Persist,
        reply: Reply,
        learn: Learn,
        round_used: int = -1,
        bugs: frozenset[Bug] = frozenset(),
        skip_slot: Slot | None = None,
        applied: Callable[[Command], bool] | None = None,
        skip: Skip | None = None,
    ) -> None:
        self.id = node_id
        #: Told when promises prove slots decided that the log lacks (compacted away by
        #: the acceptors): the node's learner catches up on them, or a proposer-only
        #: node moves its log past them.
        self._skip = skip
        #: Every slot below this is decided (from promises' `compacted`), whether or not
        #: the log holds it yet.
        self.decided_below: Slot = 0
        #: Whether the local replica (if any) already applied a command: such a command
        #: waiting here is a retry that must not be ordered again (it would spend a slot).
        self._applied = applied
        #: Fault injection (UMich test 4): as leader, never propose a command at this slot,
        #: leaving a hole that a successor must find and fill with a no-op.
        self.skip_slot = skip_slot
        #: True once this proposer actually left the hole (not merely passed the slot).
        self.skipped = False
        self._cfg = config
        self._log = log
        self._send = send
        self._persist = persist
        self._reply = reply
        self._learn = learn
        self._bugs = bugs
        self.quorum = (
            max(1, len(config.acceptors) // 2) if Bug.QUORUM_OF_F in bugs else config.quorum
        )
        self.election = Election(
            node_id, config.proposers, config.timing, config.policy, rng, round_used
        )
        self.phase = Phase.FOLLOWER
        self.ballot: Ballot | None = None
        self._now = 0
        # phase 1
        self._p1_from: Slot = 0
        self._p1_sent_at = 0
        self._promised_by: set[NodeId] = set()
        self._adopted: dict[Slot, PValue] = {}
        #: The highest `compacted` in this campaign's promises.
        self._compacted: Slot = 0
        # phase 2
        self.next_slot: Slot = 0
        #: Slots [_recover_next, _recover_top) still to re-propose after winning phase 1.
        self._recover_next: Slot = 0
        self._recover_top: Slot = 0
        self._inflight: dict[Slot, _Proposal] = {}
        self._pending: deque[Command] = deque()
        self._queued: set[tuple[ClientId, Seq]] = set()
        self._last_heartbeat = 0
        # leases: heartbeat stamp -> acceptors that granted it, in this ballot
        self._grants: dict[int, set[NodeId]] = {}
        self._lease_until = 0
        self._recovering = False
        #: The acceptors whose votes chose the last slot: the quickest quorum lately.
        self._quick: frozenset[NodeId] | None = None

    # ------------------------------------------------------------------ queries
    @property
    def is_leader(self) -> bool:
        return self.phase is Phase.LEADER

    @property
    def leader_hint(self) -> NodeId | None:
        return self.id if self.phase is Phase.LEADER else self.election.leader

    @property
    def has_lease(self) -> bool:
        """Leading, with a quorum's lease running: no other proposer can win phase 1 yet."""
        return self.phase is Phase.LEADER and self._now < self._lease_until

    @property
    def chosen(self) -> Slot:
        """Every slot below this is known decided (held in the log, or proven by promises)."""
        return max(self._log.floor, self.decided_below)

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def pending(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------------ clients
    def submit(self, cmd: Command) -> None:
        if self.phase is Phase.FOLLOWER:
            self._reply(
                ClientReply(
                    cmd.client, cmd.seq, ReplyStatus.NOT_LEADER, leader=self.election.leader
                )
            )
            return
        key = (cmd.client, cmd.seq)
        if key in self._queued:
            return  # a retry of a command already on its way; its reply comes when it applies
        if len(self._pending) >= self._cfg.limits.max_pending:
            self._reply(ClientReply(cmd.client, cmd.seq, ReplyStatus.BUSY, leader=self.id))
            return
        self._queued.add(key)
        self._pending.append(cmd)
        # No proposal here: `flush` (from Node.take_ready) proposes everything that
        # arrived since the last Ready as one batch, so a burst of submits read in one
        # go shares a slot, an fsync and a round trip.

    def flush(self) -> None:
        """Propose what is queued, as far as the window allows."""
        if self.phase is Phase.LEADER and self._pending:
            self._fill_window()

    # ------------------------------------------------------------------ time
    def tick(self, catching_up: bool = False) -> None:
        self._now += 1
        if catching_up:
            return  # see Node.tick: only the lease tick count moves
        if self.phase is Phase.LEADER:
            if self._now - self._last_heartbeat >= self._cfg.timing.heartbeat:
                self._heartbeat()
            self._retransmit_accepts()
            self._fill_window()  # the prefix may have moved (catch-up filled a hole)
            return
        if (
            self.phase is Phase.CANDIDATE
            and self._now - self._p1_sent_at >= self._cfg.timing.retransmit
        ):
            self._send_prepares()
        ballot = self.election.tick()
        if ballot is not None:
            self._campaign(ballot)

    # ------------------------------------------------------------------ phase 1
    def _campaign(self, ballot: Ballot) -> None:
        if self.phase is not Phase.FOLLOWER:
            self._abandon()
        self.phase = Phase.CANDIDATE
        self.ballot = ballot
        self._grants = {}
        self._lease_until = 0
        self._p1_from = self.chosen
        self._promised_by = set()
        self._adopted = {}
        self._compacted = 0
        self._persist(BallotRecord(ballot.round))
        self._send_prepares()

    def recover_gap(self) -> None:
        """As leader: the slots below `decided_below` that the log lacks could not be
        caught up from any peer (those that hold them may all be down). Run phase 1
        again, from the log's floor, in a new ballot of ours: if no acceptor of the new
        quorum compacted them, the promises report their accepted values and they are
        re-proposed like any recovered slot (C2 as ever); if one did, its node is up to
        serve them, and they are skipped again."""
        if self.phase is not Phase.LEADER:
            return
        self.decided_below = 0
        self._campaign(self.election.claim_next())

    def _send_prepares(self) -> None:
        assert self.ballot is not None
        self._p1_sent_at = self._now
        msg = Prepare(self.id, self.ballot, self._p1_from)
        for a in self._cfg.acceptors:
            if a not in self._promised_by:
                # After persist: the BallotRecord must be durable before the ballot is used.
                self._send(a, msg, True)

    def on_promise(self, m: Promise) -> None:
        if (
            self.phase is not Phase.CANDIDATE
            or m.ballot != self.ballot
            or m.src in self._promised_by
        ):
            return
        self._promised_by.add(m.src)
        if Bug.LEADER_IGNORES_COMPACTED not in self._bugs:
            self._compacted = max(self._compacted, m.compacted)
        if Bug.LEADER_IGNORES_ACCEPTED not in self._bugs:
            for pv in m.accepted:
                old = self._adopted.get(pv.slot)
                if old is None or pv.ballot > old.ballot:
                    self._adopted[pv.slot] = pv
        if len(self._promised_by) >= self.quorum:
            self._become_leader()

    def _become_leader(self) -> None:
        assert self.ballot is not None
        self.phase = Phase.LEADER
        self.election.leader = self.id
        self._quick = None  # until this ballot's first slot is chosen: everyone at once
        start = self._p1_from
        if self._compacted > start:
            # Slots below `_compacted` are decided, and some acceptor of the quorum no
            # longer reports what it accepted there: proposing anything there (a no-op
            # for a "hole", or a stale value another acceptor reports) could overwrite
            # the chosen value (C2). Start above them; the learner catches up.
            start = self._compacted
            self._adopted = {s: pv for s, pv in self._adopted.items() if s >= start}
            self.decided_below = max(self.decided_below, start)
            if self._skip is not None:
                self._skip(start)
        top = max(self._adopted, default=start - 1) + 1
        self.next_slot = max(top, self._log.top, start)
        # Slots [start, next_slot) are re-proposed (adopted value, or a no-op for a hole)
        # through the window, ahead of new commands.
        self._recover_next, self._recover_top = start, self.next_slot
        self._recovering = True
        # A command adopted from a promise is re-proposed in its old slot: a retry of it
        # queued here (or arriving later) must not take a second slot.
        adopted = {
            (c.client, c.seq)
            for slot, pv in self._adopted.items()
            if slot not in self._log
            for c in pv.value
        }
        if adopted:
            self._queued |= adopted
            self._pending = deque(c for c in self._pending if (c.client, c.seq) not in adopted)
        self._heartbeat()
        self._fill_window()

    # ------------------------------------------------------------------ phase 2
    def _fill_window(self) -> None:
        limits = self._cfg.limits
        while self._recover_next < self._recover_top and len(self._inflight) < limits.window:
            slot = self._recover_next
            self._recover_next += 1
            if slot not in self._log and slot not in self._inflight:
                pv = self._adopted.pop(slot, None)
                self._propose(slot, pv.value if pv is not None else NOOP)
        if self._recover_next < self._recover_top:
            return
        if self._recovering:
            self._end_recovery()
        # R5: never more than `window` slots beyond the decided prefix, so one stuck slot
        # cannot make replicas buffer an unbounded run of decisions they cannot apply.
        horizon = self.chosen + limits.window
        while self._pending and len(self._inflight) < limits.window and self.next_slot < horizon:
            if self.next_slot == self.skip_slot:
                self.next_slot += 1
                self.skipped = True
                continue
            n = min(limits.max_batch, len(self._pending))
            batch = tuple(self._pending.popleft() for _ in range(n))
            if self._applied is not None:
                batch = self._drop_applied(batch)
                if not batch:
                    continue
            slot = self.next_slot
            self.next_slot += 1
            self._propose(slot, batch)

    def _end_recovery(self) -> None:
        """Every recovered slot is proposed or was learned meanwhile. Commands adopted
        for slots that were learned before we re-proposed them are no longer on their
        way through us: forget them, so a retry is ordered again (the replicas' client
        table drops it if it was applied), rather than ignored as in flight forever."""
        self._recovering = False
        self._adopted = {}
        self._queued = {(c.client, c.seq) for c in self._pending}
        self._queued.update((c.client, c.seq) for p in self._inflight.values() for c in p.value)

    def _drop_applied(self, batch: Batch) -> Batch:
        assert self._applied is not None
        kept = tuple(c for c in batch if not self._applied(c))
        if len(kept) != len(batch):
            for c in batch:
                if c not in kept:
                    self._queued.discard((c.client, c.seq))
        return kept

    def _propose(self, slot: Slot, value: Batch) -> None:
        """Send the Accept to every acceptor, but when it is the only slot in flight,
        to those outside the quickest recent quorum only lazily (Ready.send_lazy).

        At low load every Accept costs each acceptor a wake-up, a write and a sync, and
        on a machine with fewer cores than servers the one not needed for the quorum
        competes for the CPU with the two that are: sending it the Accept with the next
        message, or on the next tick, took a tenth off the latency of one command at a
        time. It still gets every Accept, so any quorum still decides (a slow or crashed
        quick acceptor delays a slot by at most a tick, and the next quorum is the one
        that answered). With more slots in flight every acceptor gets them at once: the
        pipeline then always has the fastest quorum, and messages leave anyway."""
        assert self.ballot is not None
        quick = None if self._inflight else self._quick
        self._inflight[slot] = _Proposal(value, self._now)
        msg = Accept(self.id, self.ballot, slot, value)
        for a in self._cfg.acceptors:
            self._send(a, msg, False, quick is not None and a not in quick)

    def on_accepted(self, m: Accepted) -> None:
        if self.phase is not Phase.LEADER or m.ballot != self.ballot:
            return
        p = self._inflight.get(m.slot)
        if p is None:
            return
        p.acks.add(m.src)
        if len(p.acks) < self.quorum:
            return
        del self._inflight[m.slot]
        self._quick = frozenset(p.acks)
        for cmd in p.value:
            self._queued.discard((cmd.client, cmd.seq))
        self._learn(m.slot, p.value, m.ballot)
        self._fill_window()

    def _retransmit_accepts(self) -> None:
        assert self.ballot is not None
        horizon = self._now - self._cfg.timing.retransmit
        for slot, p in self._inflight.items():
            if p.sent_at <= horizon:
                p.sent_at = self._now
                msg = Accept(self.id, self.ballot, slot, p.value)
                for a in self._cfg.acceptors:
                    if a not in p.acks:
                        self._send(a, msg, False)

    def _heartbeat(self) -> None:
        assert self.ballot is not None
        self._last_heartbeat = self._now
        msg = Heartbeat(self.id, self.ballot, self.chosen, self._now)
        leases = self._cfg.timing.lease > 0
        for n in self._cfg.nodes:
            # With leases on, our own acceptor is asked too (it grants like any other).
            if n != self.id or (leases and n in self._cfg.acceptors):
                self._send(n, msg, False)
        if leases:
            # Grants older than a lease can no longer extend it.
            stale = self._now - self._cfg.timing.lease
            for stamp in [t for t in self._grants if t < stale]:
                del self._grants[stamp]

    def on_lease_grant(self, m: LeaseGrant) -> None:
        if self.phase is not Phase.LEADER or m.ballot != self.ballot:
            return
        acks = self._grants.setdefault(m.stamp, set())
        acks.add(m.src)
        if len(acks) >= self.quorum:
            held = m.stamp + self._cfg.timing.lease_ticks_held
            self._lease_until = max(self._lease_until, held)
            for stamp in [t for t in self._grants if t <= m.stamp]:
                del self._grants[stamp]

    # ------------------------------------------------------------------ losing
    def on_preempted(self, m: Preempted) -> None:
        self.election.observe(m.promised)
        if self.phase is not Phase.FOLLOWER and m.ballot == self.ballot and m.promised > m.ballot:
            self._abandon()
            self.election.restart_timer()

    def on_heartbeat(self, m: Heartbeat) -> None:
        if m.src == self.id:
            return
        if self.election.heard_leader(m.ballot) and self.phase is not Phase.FOLLOWER:
            assert self.ballot is not None
            if m.ballot > self.ballot:
                self._abandon()

    def observe(self, ballot: Ballot) -> None:
        """A ballot seen in a prepare handled by this node's acceptor."""
        self.election.observe(ballot)
        if ballot.node != self.id and self.ballot is not None and ballot > self.ballot:
            if self.phase is not Phase.FOLLOWER:
                self._abandon()
            self.election.restart_timer()

    def on_accept(self, ballot: Ballot) -> None:
        """An Accept reached this node's acceptor: its sender leads, in phase 2.

        It counts as a heartbeat. Under load a follower reads a stream of accepts, and a
        heartbeat queued behind them (or a leader's tick delayed by a busy loop) must not
        make it campaign against a leader that is plainly at work."""
        self.observe(ballot)
        if ballot.node != self.id:
            self.election.heard_leader(ballot)

    def _abandon(self) -> None:
        """Step down. Queued clients are told to look elsewhere; proposals in flight may
        still be chosen (a later leader adopts them), and a retry is deduplicated by the
        replicas' client table, so nothing is lost or applied twice."""
        self.phase = Phase.FOLLOWER
        self._grants = {}
        self._lease_until = 0
        hint = self.election.leader if self.election.leader != self.id else None
        if self.election.leader == self.id:
            self.election.leader = None
        for p in self._inflight.values():
            for cmd in p.value:
                self._reply(ClientReply(cmd.client, cmd.seq, ReplyStatus.NOT_LEADER, leader=hint))
        for cmd in self._pending:
            self._reply(ClientReply(cmd.client, cmd.seq, ReplyStatus.NOT_LEADER, leader=hint))
        self._inflight.clear()
        self._quick = None
        self._pending.clear()
        self._queued.clear()
        self._promised_by = set()
        self._adopted = {}
        self._compacted = 0
        self._recover_next = self._recover_top = self.next_slot
