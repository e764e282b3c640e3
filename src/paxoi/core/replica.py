"""The replica (learner): learns decisions, applies them in slot order, answers clients.

- R2/R3/R4: commands are applied strictly in slot order, each slot once; `slot_out`
  (the next slot to apply) only grows.
- E1 exactly-once: the client table keeps, per client, the highest applied sequence
  number and recent results. A decided command at or below it is a retry: it is not
  applied again, and the remembered result is returned.
- E2 per-client FIFO: a command whose sequence number skips ahead of the client's
  next one is not applied (it was decided out of order, e.g. reordered by a pipelined
  client's network); the client retries it after the earlier one, with the same seq.
  The rule depends only on the decided log, so every replica skips the same commands.
- Catch-up: a replica that knows (from heartbeats or later decisions) that slots
  it lacks are decided asks peers for them, bounded per request.
- Snapshots: every `Limits.snapshot_every` applied slots the replica snapshots the
  machine and the client table (`Snapshot`), persists it durably and compacts the log
  below it (keeping `Limits.log_keep` slots). A peer that asks for slots below the log's
  base gets the snapshot instead, in chunks; the replica installs one it receives
  the same way it restores its own after a restart.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from .bugs import Bug
from .config import ClusterConfig
from .log import DecisionLog
from .messages import (
    Applied,
    CatchupReply,
    CatchupRequest,
    ClientReply,
    Heartbeat,
    PeerMessage,
    ReplyStatus,
    SnapshotChunk,
    SnapshotRequest,
)
from .records import DecidedRecord, Record, SegmentRecord, SnapshotRecord
from .snapshot import ClientEntry, Snapshot, SnapshotError, decode_snapshot, encode_snapshot
from .statemachine import SegmentedStateMachine, StateMachine
from .types import Batch, ClientId, NodeId, Seq, Slot

Send = Callable[[NodeId, PeerMessage, bool], None]
Persist = Callable[[Record], None]
Reply = Callable[[ClientReply], None]
Emit = Callable[[Applied], None]
Snapshotted = Callable[[SnapshotRecord], None]

#: A snapshot image kept for transfers is dropped after this many catch-up periods unused.
OUTGOING_IDLE_PERIODS = 20
#: A stalled incoming transfer is asked again this many times before it is abandoned.
TRANSFER_RETRIES = 3


@dataclass
class ClientSession:
    """What the replica remembers of one client."""

    last_seq: Seq = 0
    #: Results of the latest `client_results` commands, by seq, oldest first.
    results: dict[Seq, bytes] = field(default_factory=dict)


@dataclass
class _Outgoing:
    """A snapshot image being served to lagging peers."""

    slot: Slot
    image: bytes
    used: int


@dataclass
class _Incoming:
    """A snapshot being received: the bytes so far, from one peer."""

    src: NodeId
    slot: Slot
    size: int
    data: bytearray
    heard: int
    retries: int = 0


class Replica:
    def __init__(
        self,
        node_id: NodeId,
        config: ClusterConfig,
        rng: random.Random,
        log: DecisionLog,
        machine: StateMachine,
        send: Send,
        persist: Persist,
        reply: Reply,
        emit: Emit,
        bugs: frozenset[Bug] = frozenset(),
        snapshotted: Snapshotted | None = None,
        audience: Collection[ClientId] | None = None,
    ) -> None:
        self.id = node_id
        #: The clients whose answers can reach them from here (see Node); None: all.
        self.audience = audience
        #: Whether each applied command goes into Ready.applied as an `Applied`. A shell
        #: with no use for them turns this off: they are an object per command.
        self.report_applied = True
        #: Commands applied here, replay included (what `report_applied` would count).
        self.applied_commands = 0
        self._cfg = config
        self._rng = rng
        self.log = log
        self.machine = machine
        self._send = send
        self._persist = persist
        self._reply = reply
        self._emit = emit
        #: Called with each snapshot taken or installed: the node persists it durably and
        #: compacts its acceptor.
        self._snapshotted = snapshotted
        self._keep_table = Bug.REPLICA_FORGETS_CLIENT_TABLE not in bugs
        #: R4: the next slot to apply; every slot below it is applied.
        self.slot_out: Slot = 0
        self.clients: dict[ClientId, ClientSession] = {}
        #: Highest "everything below is decided" that anyone told us about.
        self.known_chosen: Slot = 0
        #: One above the highest slot we heard is decided without getting its value.
        self._decided_top: Slot = 0
        self.leader: NodeId | None = None
        self._now = 0
        self._last_progress = 0
        self._last_request = -(10**9)
        self._replaying = False
        #: The slot of the latest snapshot taken or installed here (0: none).
        self.snapshot_slot: Slot = 0
        #: Commands (a no-op slot counts one) applied since the last snapshot.
        self._since_snapshot = 0
        self._outgoing: _Outgoing | None = None
        self._incoming: _Incoming | None = None
        #: The machine, if its snapshots come in segments, and how many of its sealed
        #: segments storage has been handed (`SegmentRecord`, lazily).
        self._segmented = machine if isinstance(machine, SegmentedStateMachine) else None
        self._sealed_out = 0

    @property
    def transferring(self) -> bool:
        """A snapshot is being received."""
        return self._incoming is not None

    def recover(self, snapshot: Snapshot | None = None) -> None:
        """After a restart: restore the durable snapshot, if any, then apply what the
        durable log holds above it, without client replies."""
        if snapshot is not None:
            try:
                self.machine.restore(snapshot.state)
            except ValueError as e:
                raise SnapshotError(
                    f"the stored snapshot at slot {snapshot.slot} does not restore: {e}"
                ) from e
            self._restore_table(snapshot.clients)
            self.slot_out = self.snapshot_slot = snapshot.slot
            self._since_snapshot = 0
            self._restored()
        self._replaying = True
        try:
            self._apply_ready()
        finally:
            self._replaying = False

    # ------------------------------------------------------------------ learning
    def learn(self, slot: Slot, value: Batch) -> None:
        if slot < self.slot_out:
            existing = self.log.get(slot)
            if existing is not None and existing != value:
                self.log.add(slot, value)  # raises: R1
            return
        if self.log.add(slot, value):
            self._persist(DecidedRecord(slot, value))  # lazily: see Ready.persist_lazy
        self._apply_ready()

    def heard_decided(self, slot: Slot) -> None:
        """`slot` is decided, but its value did not come with the news: catch up on it."""
        self._decided_top = max(self._decided_top, slot + 1)

    def on_heartbeat(self, m: Heartbeat) -> None:
        self.leader = m.src
        self.known_chosen = max(self.known_chosen, m.chosen)

    def on_catchup_reply(self, m: CatchupReply) -> None:
        before = self.log.floor
        for slot, value in m.decisions:
            self.learn(slot, value)
        if self.log.floor > before and self._behind():
            # Pipelined catch-up: a useful answer means the peer has more; ask for the
            # next chunk now rather than a timer later (a long gap would take minutes).
            self._request(m.src)

    def _apply_ready(self) -> None:
        start = self.slot_out
        while self.slot_out < self.log.floor:
            slot = self.slot_out
            value = self.log.get(slot)
            assert value is not None
            self._apply_batch(slot, value)
            self._since_snapshot += len(value) or 1
            self.slot_out = slot + 1
        if self.slot_out != start:
            self._last_progress = self._now
            if self._segmented is not None:
                self._hand_over_sealed(self._segmented)
            limits = self._cfg.limits
            if limits.snapshot_every and (
                self.slot_out - self.snapshot_slot >= limits.snapshot_every
                or self._since_snapshot >= limits.snapshot_commands
            ):
                self._take_snapshot()

    def _apply_batch(self, slot: Slot, value: Batch) -> None:
        """Apply one slot's commands, each once (R3), in each client's seq order.

        The per-command work of every busy replica, hence written for speed: names are
        looked up once per batch, and a client's oldest result is evicted by key (the
        results are for consecutive seqs, so it is `seq - limit`)."""
        apply, emit, reply = self.machine.apply, self._emit, self._reply
        clients = self.clients
        keep = self._keep_table
        everyone = self.audience is None
        audience: Collection[ClientId] = self.audience or ()
        # A node no client is connected to (a follower) builds no answers at all.
        answer = not self._replaying and (everyone or len(audience) > 0)
        limit = self._cfg.limits.client_results
        report = self.report_applied
        applied = 0
        for cmd in value:
            client, seq, _ = cmd
            if not keep:
                result = apply(slot, cmd)
            else:
                session = clients.get(client)
                if session is None:
                    session = clients[client] = ClientSession()
                last = session.last_seq
                if seq != last + 1:
                    if seq <= last and answer and (everyone or client in audience):
                        # a retry of one applied: answer it again
                        done = session.results.get(seq, b"")
                        reply(ClientReply(client, seq, ReplyStatus.OK, done))
                    continue  # else decided ahead of the client's order; it is retried
                result = apply(slot, cmd)
                session.last_seq = seq
                results = session.results
                results[seq] = result
                if len(results) > limit:
                    results.pop(seq - limit, None)
                    while len(results) > limit:  # a table restored under a larger limit
                        del results[next(iter(results))]
            applied += 1
            if report:
                emit(Applied(slot, cmd, result))
            if answer and (everyone or client in audience):
                reply(ClientReply(client, seq, ReplyStatus.OK, result))
        self.applied_commands += applied

    # ------------------------------------------------------------------ catch-up
    def tick(self) -> None:
        self._now += 1
        out = self._outgoing
        if (
            out is not None
            and self._now - out.used > OUTGOING_IDLE_PERIODS * self._cfg.timing.catchup
        ):
            self._outgoing = None  # no one fetched it for a while: free the memory
        if self._incoming is not None:
            self._resume_transfer()
            return
        if not self._behind():
            self._last_progress = self._now
            return
        wait = self._cfg.timing.catchup
        if self._now - self._last_progress < wait or self._now - self._last_request < wait:
            return
        peers = [n for n in self._cfg.nodes if n != self.id and _serves_catchup(self._cfg, n)]
        if not peers:
            return
        target = (
            self.leader
            if self.leader in peers and self._rng.random() < 0.5
            else self._rng.choice(peers)
        )
        assert target is not None
        self._request(target)

    def _behind(self) -> bool:
        return max(self.known_chosen, self.log.top, self._decided_top) > self.log.floor

    def _request(self, target: NodeId) -> None:
        self._last_request = self._now
        start = self.log.floor
        known = max(self.known_chosen, self.log.top, self._decided_top)
        stop = min(known, start + self._cfg.limits.max_catchup)
        self._send(target, CatchupRequest(self.id, start, stop), False)

    # ------------------------------------------------------------------ snapshots
    def _table(self) -> tuple[ClientEntry, ...]:
        return tuple(
            (client, session.last_seq, tuple(session.results.items()))
            for client, session in sorted(self.clients.items())
        )

    def _restore_table(self, table: tuple[ClientEntry, ...]) -> None:
        self.clients = {
            client: ClientSession(last_seq, dict(results)) for client, last_seq, results in table
        }

    def _hand_over_sealed(self, machine: SegmentedStateMachine) -> None:
        """Segments sealed since the last call go to storage now, in the writes of the
        next Readies, rather than all in the next snapshot's."""
        for data in machine.sealed_segments(self._sealed_out):
            self._persist(SegmentRecord(self._sealed_out, data))  # lazily
            self._sealed_out += 1

    def _restored(self) -> None:
        """The machine's state was replaced (restored or installed): its sealed segments
        are in the snapshot that replaced it, which storage holds or is about to."""
        if self._segmented is not None:
            self._sealed_out = len(self._segmented.sealed_segments(0))

    def _current(self) -> Snapshot:
        """The state now: every slot below `slot_out` applied."""
        machine = self.machine
        if self._segmented is not None:
            segments = tuple(self._segmented.snapshot_segments())
        else:
            segments = (machine.snapshot(),)
        return Snapshot(self.slot_out, segments, self._table())

    def _take_snapshot(self) -> None:
        snap = self._current()
        base = max(self.log.base, self._keep_from(snap.slot))
        self.snapshot_slot = snap.slot
        self._since_snapshot = 0
        # Durable before anything that reveals the compaction leaves (the node persists
        # it through Ready.persist, and promises and accepts are released after it).
        if self._snapshotted is not None:
            self._snapshotted(SnapshotRecord(snap, base))
        self.log.compact(base)

    def _keep_from(self, top: Slot) -> Slot:
        """The lowest slot kept below a snapshot at `top`: at most `log_keep` slots,
        holding at most `log_keep_commands` commands (a no-op counts one)."""
        limits = self._cfg.limits
        lowest = max(self.log.base, top - limits.log_keep)
        budget = limits.log_keep_commands
        slot = top
        while slot > lowest:
            value = self.log.get(slot - 1)
            budget -= max(1, len(value)) if value is not None else 1
            if budget < 0:
                break
            slot -= 1
        return slot

    def _install(self, snap: Snapshot) -> None:
        """A peer's snapshot: jump to it, as if every slot below it were applied here."""
        if snap.slot <= self.slot_out:
            return
        try:
            self.machine.restore(snap.state)  # must leave the state alone if it raises
        except ValueError:
            return  # a snapshot this machine cannot read: catch up another way
        self._restore_table(snap.clients)
        self.slot_out = self.snapshot_slot = snap.slot
        self._since_snapshot = 0
        self._restored()
        self.log.install(snap.slot)
        self._last_progress = self._now
        if self._snapshotted is not None:
            self._snapshotted(SnapshotRecord(snap, snap.slot))
        self._apply_ready()  # decisions above the snapshot that arrived meanwhile

    def serve_snapshot(self, dst: NodeId) -> None:
        """A peer asked for slots below the log's base: send it a snapshot, chunk 0."""
        out = self._outgoing
        if out is None or out.slot < self.log.base:
            out = self._outgoing = _Outgoing(
                self.slot_out, encode_snapshot(self._current()), self._now
            )
        self._send_chunk(dst, out, 0)

    def on_snapshot_request(self, m: SnapshotRequest) -> None:
        out = self._outgoing
        if out is None or out.slot != m.slot or m.offset >= len(out.image):
            # That image is gone (or the request is nonsense): start over with one of now.
            self.serve_snapshot(m.src)
            return
        self._send_chunk(m.src, out, m.offset)

    def _send_chunk(self, dst: NodeId, out: _Outgoing, offset: int) -> None:
        out.used = self._now
        data = out.image[offset : offset + self._cfg.limits.snapshot_chunk]
        self._send(dst, SnapshotChunk(self.id, out.slot, len(out.image), offset, data), False)

    def on_snapshot_chunk(self, m: SnapshotChunk) -> None:
        if m.slot <= self.slot_out:
            return  # nothing we need
        t = self._incoming
        if t is None or (t.src, t.slot) != (m.src, m.slot):
            if m.offset != 0 or not 0 < m.size <= self._cfg.limits.max_snapshot:
                return
            t = self._incoming = _Incoming(m.src, m.slot, m.size, bytearray(), self._now)
        if m.size != t.size or m.offset != len(t.data) or not m.data:
            return  # a duplicate or a stray chunk; the transfer resumes on its timer
        if len(t.data) + len(m.data) > t.size:
            self._incoming = None  # the peer broke its own word: drop the transfer
            return
        t.data += m.data
        t.heard = self._now
        t.retries = 0
        self._last_progress = self._now
        if len(t.data) < t.size:
            self._send(t.src, SnapshotRequest(self.id, t.slot, len(t.data)), False)
            return
        self._incoming = None
        try:
            snap = decode_snapshot(bytes(t.data))
        except SnapshotError:
            return
        if snap.slot == t.slot:
            self._install(snap)

    def _resume_transfer(self) -> None:
        """On a tick during a transfer: ask again for what a lost message held up."""
        t = self._incoming
        assert t is not None
        self._last_progress = self._now  # the ordinary catch-up waits for the transfer
        if self._now - t.heard < self._cfg.timing.catchup:
            return
        if t.retries >= TRANSFER_RETRIES:
            self._incoming = None  # that peer went away; the next catch-up asks another
            return
        t.retries += 1
        t.heard = self._now
        self._send(t.src, SnapshotRequest(self.id, t.slot, len(t.data)), False)


def _serves_catchup(cfg: ClusterConfig, node: NodeId) -> bool:
    return node in cfg.learners or node in cfg.proposers


def serve_catchup(
    node_id: NodeId, log: DecisionLog, m: CatchupRequest, limit: int, budget: int | None = None
) -> CatchupReply | None:
    """What this node can tell a lagging learner from its log; None if it knows nothing
    useful (in particular when the learner needs slots below the log's base)."""
    if m.from_slot < log.base:
        return None
    decisions = log.span(m.from_slot, m.to_slot, limit, budget)
    return CatchupReply(node_id, decisions) if decisions else None
