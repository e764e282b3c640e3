"""A node: the roles one process plays, behind one entry point.

Drive it with `step(message)`, `submit(command)` and `tick()`, then collect the
output with `take_ready()` and honour the `Ready` contract (persist, then release).
Messages a node sends itself that may go at once are delivered internally within
the same call; those that must wait for the disk come back through `step` like
any peer's.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Collection, Iterable

from .acceptor import Acceptor
from .bugs import Bug
from .config import ClusterConfig
from .errors import UsageError
from .log import DecisionLog
from .messages import (
    Accept,
    Accepted,
    Applied,
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
    ReadRequest,
    ReplyStatus,
    SnapshotChunk,
    SnapshotRequest,
)
from .proposer import Proposer
from .reads import Reads
from .ready import Ready
from .records import DurableState, Record, SnapshotRecord
from .replica import Replica, serve_catchup
from .statemachine import StateMachine
from .types import Ballot, Batch, ClientId, Command, NodeId, Role, Slot

#: Election timeouts a leader's learner may stay stuck below `Proposer.decided_below`
#: before the leader runs phase 1 again to recover those slots (see `_watch_gap`).
GAP_PATIENCE = 3


class Node:
    def __init__(
        self,
        node_id: NodeId,
        config: ClusterConfig,
        rng: random.Random,
        machine: StateMachine | None = None,
        durable: DurableState | None = None,
        bugs: frozenset[Bug] = frozenset(),
        skip_slot: Slot | None = None,
        audience: Collection[ClientId] | None = None,
    ) -> None:
        """`audience`: the clients whose answers can reach them from this node, read
        whenever a command is applied (the server passes its live table of connected
        clients); the learner builds no answer for any other. None: every client.
        Answers to no one were a tenth of a follower's CPU under load, and a client
        that was not there when its command applied gets the answer when it retries
        (from the client table, as any retry of an applied command)."""
        if node_id not in config.roles:
            raise UsageError(f"node {node_id} is not in the cluster configuration")
        roles = config.roles[node_id]
        state = durable or DurableState()
        self.id = node_id
        self.config = config
        self.roles = roles
        self._ready = Ready()
        # A leader's learner stuck below `decided_below`: where, and for how long.
        self._gap_floor: Slot = -1
        self._gap_ticks = 0
        self._local: deque[PeerMessage] = deque()
        self._draining = False
        # A snapshot is a learner's; the decided log is rebuilt above it. (Other roles
        # never write either: a proposer's log is volatile, an acceptor has none.)
        snapshot = state.snapshot if Role.LEARNER in roles else None
        if Role.LEARNER in roles:
            known = snapshot.slot if snapshot is not None else 0
            self.log = DecisionLog(state.decided, state.base, known)
        else:
            self.log = DecisionLog()

        self.acceptor: Acceptor | None = None
        if Role.ACCEPTOR in roles:
            self.acceptor = Acceptor(
                node_id,
                self._send,
                self._persist,
                state.promised,
                state.accepted,
                bugs,
                config.timing.lease,
                # Compacted only under the cover of this node's own durable snapshot.
                state.base if snapshot is not None else 0,
            )
        self.replica: Replica | None = None
        if Role.LEARNER in roles:
            if machine is None:
                raise UsageError(f"node {node_id} is a learner and needs a state machine")
            self.replica = Replica(
                node_id,
                config,
                rng,
                self.log,
                machine,
                self._send,
                self._persist_lazy,
                self._reply,
                self._emit,
                bugs,
                self._snapshotted,
                audience,
            )
            self.replica.recover(snapshot)
        self.proposer: Proposer | None = None
        if Role.PROPOSER in roles:
            self.proposer = Proposer(
                node_id,
                config,
                rng,
                self.log,
                self._send,
                self._persist,
                self._reply,
                self._decided,
                state.round_used,
                bugs,
                skip_slot,
                self._already_applied if self.replica is not None else None,
                self._skip,
            )
        query = getattr(machine, "query", None)
        self._reads = Reads(query, self._read_reply, config.limits.max_pending, bugs)

    # ------------------------------------------------------------------ inputs
    def step(self, msg: PeerMessage) -> None:
        """Handle one message from a peer (or from this node, released after persist)."""
        self._local.append(msg)
        self._drain()

    def _already_applied(self, command: Command) -> bool:
        assert self.replica is not None
        session = self.replica.clients.get(command.client)
        return session is not None and command.seq <= session.last_seq

    def submit(self, command: Command) -> None:
        """A client's command arrived at this node."""
        self._submit(command)
        self._drain()

    def submit_many(self, commands: Iterable[Command]) -> None:
        """`submit` each of `commands`, in order (what one frame from a client holds)."""
        for command in commands:
            self._submit(command)
        self._drain()

    def _submit(self, command: Command) -> None:
        if self.replica is not None:
            session = self.replica.clients.get(command.client)
            if session is not None and command.seq <= session.last_seq:
                # Already applied: a late retry. Answer it from the client table rather
                # than order it again (it would take a slot and be skipped).
                result = session.results.get(command.seq, b"")
                self._reply(ClientReply(command.client, command.seq, ReplyStatus.OK, result))
                return
        if self.proposer is None:
            self._reply(
                ClientReply(command.client, command.seq, ReplyStatus.NOT_LEADER, leader=self.leader)
            )
        else:
            self.proposer.submit(command)

    def read(self, req: ReadRequest) -> None:
        """A client's read-only query (see `reads.py`; reads through the log are commands)."""
        p, r = self.proposer, self.replica
        if req.mode is ReadMode.LEASE and not self.config.timing.lease:
            status = ReplyStatus.UNSUPPORTED  # leases are off in this cluster
            self._read_reply(ReadReply(req.client, req.id, status, leader=self.leader))
            return
        self._reads.read(
            req,
            applied=r.slot_out if r is not None else None,
            leading=p is not None and p.is_leader,
            lease=p is not None and p.has_lease,
            read_index=p.next_slot if p is not None else 0,
            leader=self.leader,
        )
        self._drain()

    def tick(self, catching_up: bool = False) -> None:
        """One unit of time passed.

        `catching_up`: a tick the shell makes up after this node stalled, with its
        input unread meanwhile. The tick counts behind leases advance, since the time
        did pass; failure detection and timers that only send do not: silence heard
        through our own stall says nothing about the leader, whose heartbeats or
        accepts may be waiting, unread, among our inputs."""
        if self.acceptor is not None:
            self.acceptor.tick()
        if self.proposer is not None:
            self.proposer.tick(catching_up)
        if self.replica is not None and not catching_up:
            self.replica.tick()
            self._watch_gap()
        self._drain()

    def take_ready(self) -> Ready:
        """Everything produced since the last call; the caller must honour the contract.

        Commands submitted since the last call are proposed here, together: the shell
        calls this once per round of input, which makes the batches."""
        if self.proposer is not None:
            self.proposer.flush()
            self._drain()
        ready, self._ready = self._ready, Ready()
        return ready

    # ------------------------------------------------------------------ queries
    @property
    def is_leader(self) -> bool:
        return self.proposer is not None and self.proposer.is_leader

    @property
    def leader(self) -> NodeId | None:
        """Best knowledge of who leads, for redirecting clients."""
        if self.proposer is not None:
            return self.proposer.leader_hint
        if self.replica is not None:
            return self.replica.leader
        return None

    # ------------------------------------------------------------------ routing
    def _dispatch(self, msg: PeerMessage) -> None:
        a, p, r = self.acceptor, self.proposer, self.replica
        if isinstance(msg, Accept):
            if a is not None:
                if p is not None:
                    p.on_accept(msg.ballot)
                a.on_accept(msg)
        elif isinstance(msg, Accepted):
            if p is not None:
                p.on_accepted(msg)
        elif isinstance(msg, Decide):
            if r is not None:
                value = msg.value
                if value is None:
                    # By reference: the value our acceptor accepted in msg.ballot, or in
                    # a later ballot (which, the slot being chosen, proposed the same).
                    pv = a.accepted.get(msg.slot) if a is not None else None
                    if pv is None or msg.ballot is None or pv.ballot < msg.ballot:
                        r.heard_decided(msg.slot)  # not here: learn it by catch-up
                        return
                    value = pv.value
                r.learn(msg.slot, value)
        elif isinstance(msg, Heartbeat):
            if a is not None:
                a.on_heartbeat(msg)
            if msg.src == self.id:
                return  # our own, sent only to our acceptor for a lease grant
            if p is not None:
                p.on_heartbeat(msg)
            if r is not None:
                r.on_heartbeat(msg)
        elif isinstance(msg, LeaseGrant):
            if p is not None:
                p.on_lease_grant(msg)
        elif isinstance(msg, Prepare):
            if a is not None:
                if p is not None:
                    p.observe(msg.ballot)
                a.on_prepare(msg)
        elif isinstance(msg, Promise):
            if p is not None:
                p.on_promise(msg)
        elif isinstance(msg, Preempted):
            if p is not None:
                p.on_preempted(msg)
        elif isinstance(msg, CatchupRequest):
            if r is not None and msg.from_slot < self.log.base:
                r.serve_snapshot(msg.src)  # what it needs is compacted away
            elif p is not None or r is not None:
                limits = self.config.limits
                reply = serve_catchup(
                    self.id, self.log, msg, limits.max_catchup, limits.catchup_commands
                )
                if reply is not None:
                    self._send(msg.src, reply, False)
        elif isinstance(msg, CatchupReply):
            if r is not None:
                r.on_catchup_reply(msg)
        elif isinstance(msg, SnapshotChunk):
            if r is not None:
                r.on_snapshot_chunk(msg)
        elif isinstance(msg, SnapshotRequest):
            if r is not None:
                r.on_snapshot_request(msg)
        else:
            raise UsageError(f"not a peer message: {type(msg).__name__}")

    def _drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            while self._local:
                self._dispatch(self._local.popleft())
            if self._reads.waiting:
                p, r = self.proposer, self.replica
                assert r is not None
                self._reads.advance(r.slot_out, p is not None and p.is_leader, self.leader)
        finally:
            self._draining = False

    # ------------------------------------------------------------------ outputs
    def _send(self, dst: NodeId, msg: PeerMessage, after_persist: bool, lazy: bool = False) -> None:
        if lazy and dst != self.id:
            self._ready.send_lazy.append((dst, msg))
        elif after_persist:
            self._ready.send_after_persist.append((dst, msg))
        elif dst == self.id:
            self._local.append(msg)
        else:
            self._ready.send.append((dst, msg))

    def _persist(self, record: Record) -> None:
        self._ready.persist.append(record)

    def _persist_lazy(self, record: Record) -> None:
        self._ready.persist_lazy.append(record)

    def _reply(self, reply: ClientReply) -> None:
        self._ready.replies.append(reply)

    def _read_reply(self, reply: ReadReply) -> None:
        self._ready.read_replies.append(reply)

    def _emit(self, applied: Applied) -> None:
        self._ready.applied.append(applied)

    def _decided(self, slot: Slot, value: Batch, ballot: Ballot) -> None:
        """The local proposer saw a quorum: tell the learners (and learn, if one is here).

        Learners that are acceptors get the decision by reference (see Decide)."""
        full = by_ref = None
        acceptors = self.config.acceptors
        for n in self.config.learners:
            if n == self.id:
                continue
            if n in acceptors:
                by_ref = by_ref or Decide(self.id, slot, None, ballot)
                self._send(n, by_ref, False, lazy=True)
            else:
                full = full or Decide(self.id, slot, value, ballot)
                self._send(n, full, False, lazy=True)
        if self.replica is not None:
            self.replica.learn(slot, value)
        else:
            # Never compacted: a proposer-only node has no snapshot to offer, and its log
            # may be the only live copy of a decision that every learner lost in a crash
            # (learners persist decisions lazily) while the acceptors still hold it.
            self.log.add(slot, value)

    # ------------------------------------------------------------------ snapshots
    def _snapshotted(self, record: SnapshotRecord) -> None:
        """The replica took or installed a snapshot: persist it durably (not lazily, since
        it is what allows deleting what lies below it), and compact the acceptor, whose
        node now covers those slots. A promise or accepted that reveals the compaction
        is released after this record is durable (`send_after_persist`)."""
        self._persist(record)
        if self.acceptor is not None:
            self.acceptor.compact(record.base)

    def _watch_gap(self) -> None:
        """A leader whose learner stays stuck below the slots promises proved decided
        (compacted away at some acceptor) may be waiting for peers that are all down:
        the values then survive only in the live acceptors' accepted sets, and only a
        new phase 1 gets them out. So after `GAP_PATIENCE` election timeouts without
        progress (a snapshot being received counts as progress) it runs one."""
        p, r = self.proposer, self.replica
        assert r is not None
        if p is None or not p.is_leader or p.decided_below <= self.log.floor:
            self._gap_ticks = 0
            return
        if self.log.floor != self._gap_floor or r.transferring:
            self._gap_floor = self.log.floor
            self._gap_ticks = 0
            return
        self._gap_ticks += 1
        if self._gap_ticks >= GAP_PATIENCE * self.config.timing.election:
            self._gap_ticks = 0
            p.recover_gap()

    def _skip(self, slot: Slot) -> None:
        """Promises proved every slot below `slot` decided, though the log lacks some."""
        if self.replica is not None:
            self.replica.known_chosen = max(self.replica.known_chosen, slot)
        else:
            self.log.install(slot)
