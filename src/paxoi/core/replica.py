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
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from .bugs import Bug
from .config import ClusterConfig
from .log import DecisionLog
from .messages import (
    Applied,
    CatchupReply,
    CatchupRequest,
    ClientReply,
    Decide,
    Heartbeat,
    PeerMessage,
    ReplyStatus,
)
from .records import DecidedRecord, Record
from .statemachine import StateMachine
from .types import Batch, ClientId, Command, NodeId, Seq, Slot

Send = Callable[[NodeId, PeerMessage, bool], None]
Persist = Callable[[Record], None]
Reply = Callable[[ClientReply], None]
Emit = Callable[[Applied], None]


@dataclass
class ClientSession:
    """What the replica remembers of one client."""

    last_seq: Seq = 0
    results: OrderedDict[Seq, bytes] = field(default_factory=OrderedDict)


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
    ) -> None:
        self.id = node_id
        self._cfg = config
        self._rng = rng
        self.log = log
        self.machine = machine
        self._send = send
        self._persist = persist
        self._reply = reply
        self._emit = emit
        self._keep_table = Bug.REPLICA_FORGETS_CLIENT_TABLE not in bugs
        #: R4: the next slot to apply; every slot below it is applied.
        self.slot_out: Slot = 0
        self.clients: dict[ClientId, ClientSession] = {}
        #: Highest "everything below is decided" that anyone told us about.
        self.known_chosen: Slot = 0
        self.leader: NodeId | None = None
        self._now = 0
        self._last_progress = 0
        self._last_request = -(10**9)
        self._replaying = False

    def recover(self) -> None:
        """Apply what the durable log already holds (after a restart), without client replies."""
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

    def on_decide(self, m: Decide) -> None:
        self.learn(m.slot, m.value)

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
            for cmd in value:
                self._apply_one(slot, cmd)
            self.slot_out = slot + 1
        if self.slot_out != start:
            self._last_progress = self._now

    def _apply_one(self, slot: Slot, cmd: Command) -> None:
        client, seq = cmd.client, cmd.seq
        session = self.clients.get(client)
        if self._keep_table:
            if session is None:
                session = self.clients[client] = ClientSession()
            if seq <= session.last_seq:
                if not self._replaying:
                    self._reply(
                        ClientReply(client, seq, ReplyStatus.OK, session.results.get(seq, b""))
                    )
                return
            if seq != session.last_seq + 1:
                return  # decided ahead of the client's order; it will be retried
        result = self.machine.apply(slot, cmd)
        if self._keep_table and session is not None:
            session.last_seq = seq
            session.results[seq] = result
            while len(session.results) > self._cfg.limits.client_results:
                session.results.popitem(last=False)
        self._emit(Applied(slot, cmd, result))
        if not self._replaying:
            self._reply(ClientReply(client, seq, ReplyStatus.OK, result))

    # ------------------------------------------------------------------ catch-up
    def tick(self) -> None:
        self._now += 1
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
        return max(self.known_chosen, self.log.top) > self.log.floor

    def _request(self, target: NodeId) -> None:
        self._last_request = self._now
        start = self.log.floor
        stop = min(max(self.known_chosen, self.log.top), start + self._cfg.limits.max_catchup)
        self._send(target, CatchupRequest(self.id, start, stop), False)


def _serves_catchup(cfg: ClusterConfig, node: NodeId) -> bool:
    return node in cfg.learners or node in cfg.proposers


def serve_catchup(
    node_id: NodeId, log: DecisionLog, m: CatchupRequest, limit: int, budget: int | None = None
) -> CatchupReply | None:
    """What this node can tell a lagging learner; None if it knows nothing useful."""
    decisions = log.span(m.from_slot, m.to_slot, limit, budget)
    return CatchupReply(node_id, decisions) if decisions else None
