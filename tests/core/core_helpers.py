"""Shared test helpers for the sans-IO core.

- `ListMachine`: a deterministic state machine that records what it applied, in order.
- `Capture`: send/persist callbacks for driving one role (e.g. an `Acceptor`) directly.
- `Cluster`: a tiny message pump over real `Node` objects on a perfect (or lossy, seeded)
  network. It honours the `Ready` contract: records are made durable (folded into the
  node's simulated disk) first, then `send`, `send_lazy` and `send_after_persist`
  messages leave; on a perfect network "after persist" is immediately after.
- Oracles (`check_safety`, `expected_entries`) written from the paper's rules, used by
  the scenario tests to judge a whole run.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from paxoi.core import (
    Accept,
    Accepted,
    AcceptedRecord,
    Applied,
    Ballot,
    Batch,
    Bug,
    CatchupReply,
    ClientReply,
    ClusterConfig,
    Command,
    Decide,
    DurableState,
    Limits,
    Node,
    NodeId,
    PeerMessage,
    Prepare,
    PromisedRecord,
    PValue,
    Ready,
    Record,
    ReplyStatus,
    Role,
    Slot,
    Timing,
)

# ---------------------------------------------------------------------------- values


def cmd(client: str, seq: int, payload: bytes | None = None) -> Command:
    """A client command; the payload defaults to "<client>:<seq>"."""
    return Command(client, seq, payload if payload is not None else f"{client}:{seq}".encode())


def pv(round_: int, node: NodeId, slot: Slot, *values: Command) -> PValue:
    return PValue(Ballot(round_, node), slot, tuple(values))


def config(
    n: int = 3,
    *,
    timing: Timing | None = None,
    policy: object | None = None,
    **limits: int,
) -> ClusterConfig:
    """n co-located nodes (proposer + acceptor + learner each), with optional limits."""
    kw: dict[str, object] = {"limits": Limits(**limits)}
    if timing is not None:
        kw["timing"] = timing
    if policy is not None:
        kw["policy"] = policy
    return ClusterConfig.colocated(n, **kw)


class ListMachine:
    """Deterministic state machine: a list of (slot, client, seq, payload)."""

    def __init__(self) -> None:
        self.entries: list[tuple[Slot, str, int, bytes]] = []

    def apply(self, slot: Slot, command: Command) -> bytes:
        self.entries.append((slot, command.client, command.seq, command.payload))
        return f"{command.payload.decode()}@{len(self.entries)}".encode()

    def snapshot(self) -> bytes:
        return json.dumps([[s, c, q, p.decode()] for s, c, q, p in self.entries]).encode()

    def restore(self, data: bytes) -> None:
        self.entries = [(s, c, q, p.encode()) for s, c, q, p in json.loads(data)]

    @property
    def commands(self) -> list[tuple[str, int]]:
        return [(c, q) for _, c, q, _ in self.entries]


# ---------------------------------------------------------------------------- one role


@dataclass
class Capture:
    """Callbacks for a role under test: what it sent (dst, msg, after_persist) and persisted."""

    sent: list[tuple[NodeId, PeerMessage, bool]] = field(default_factory=list)
    persisted: list[Record] = field(default_factory=list)

    def send(self, dst: NodeId, msg: PeerMessage, after_persist: bool) -> None:
        self.sent.append((dst, msg, after_persist))

    def persist(self, record: Record) -> None:
        self.persisted.append(record)

    def clear(self) -> None:
        self.sent.clear()
        self.persisted.clear()

    def of(self, kind: type) -> list[tuple[NodeId, PeerMessage, bool]]:
        return [s for s in self.sent if isinstance(s[1], kind)]


# ---------------------------------------------------------------------------- one node


def merge(readies: Iterable[Ready]) -> Ready:
    out = Ready()
    for r in readies:
        out.persist += r.persist
        out.persist_lazy += r.persist_lazy
        out.send += r.send
        out.send_lazy += r.send_lazy
        out.send_after_persist += r.send_after_persist
        out.replies += r.replies
        out.applied += r.applied
    return out


def msgs(
    pairs: Iterable[tuple[NodeId, PeerMessage]], kind: type
) -> list[tuple[NodeId, PeerMessage]]:
    return [(d, m) for d, m in pairs if isinstance(m, kind)]


def all_out(ready: Ready) -> list[tuple[NodeId, PeerMessage]]:
    return ready.send + ready.send_lazy + ready.send_after_persist


def make_node(
    node_id: NodeId = 0,
    cfg: ClusterConfig | None = None,
    *,
    seed: int = 0,
    durable: DurableState | None = None,
    bugs: frozenset[Bug] = frozenset(),
) -> tuple[Node, ListMachine | None]:
    cfg = cfg or config(3)
    machine = ListMachine() if Role.LEARNER in cfg.roles[node_id] else None
    return Node(node_id, cfg, random.Random(seed), machine, durable, bugs), machine


def campaign(node: Node, max_ticks: int = 1_000) -> tuple[Ballot, Ready]:
    """Tick a lone node until it sends prepares; the ballot and everything it produced."""
    seen: list[Ready] = []
    for _ in range(max_ticks):
        node.tick()
        seen.append(node.take_ready())
        prepares = msgs(all_out(seen[-1]), Prepare)
        if prepares:
            return prepares[0][1].ballot, merge(seen)  # type: ignore[union-attr]
    raise AssertionError(f"node {node.id} did not campaign within {max_ticks} ticks")


# ---------------------------------------------------------------------------- a cluster

Drop = Callable[[NodeId, NodeId, PeerMessage], bool]


class Cluster:
    """Real nodes wired by an in-test pump. Deterministic for a given seed."""

    def __init__(
        self,
        cfg: ClusterConfig,
        *,
        seed: int = 0,
        bugs: frozenset[Bug] = frozenset(),
    ) -> None:
        self.config = cfg
        self.seed = seed
        self.bugs = bugs
        self.disks: dict[NodeId, DurableState] = {n: DurableState() for n in cfg.nodes}
        self.persisted: dict[NodeId, list[Record]] = {n: [] for n in cfg.nodes}
        self.replies: dict[NodeId, list[ClientReply]] = {n: [] for n in cfg.nodes}
        self.applied: dict[NodeId, list[Applied]] = {n: [] for n in cfg.nodes}
        self.machines: dict[NodeId, ListMachine | None] = {}
        self.nodes: dict[NodeId, Node] = {}
        self.boots: dict[NodeId, int] = {n: 0 for n in cfg.nodes}
        #: Every message handed to the network: (src, dst, msg), dropped or not.
        self.sent: list[tuple[NodeId, NodeId, PeerMessage]] = []
        #: Every message delivered, in delivery order.
        self.delivered: list[tuple[NodeId, NodeId, PeerMessage]] = []
        self.queue: deque[tuple[NodeId, NodeId, PeerMessage]] = deque()
        self.down: set[NodeId] = set()
        #: A filter: True drops the message. None: a perfect network.
        self.drop: Drop | None = None
        #: Every non-empty Ready taken, with its node.
        self.readies: list[tuple[NodeId, Ready]] = []
        for n in cfg.nodes:
            self._boot(n)

    # -- lifecycle
    def _boot(self, n: NodeId) -> None:
        machine = ListMachine() if Role.LEARNER in self.config.roles[n] else None
        rng = random.Random(self.seed * 1_000 + n * 10 + self.boots[n])
        self.machines[n] = machine
        self.nodes[n] = Node(n, self.config, rng, machine, self.disks[n].copy(), self.bugs)
        self._collect(n)

    def crash(self, *ids: NodeId) -> None:
        for n in ids:
            self.down.add(n)

    def restart(self, n: NodeId) -> None:
        """Bring a node back from its disk (everything persisted before the crash)."""
        self.boots[n] += 1
        self.down.discard(n)
        self._boot(n)
        self.run()

    @property
    def up(self) -> list[NodeId]:
        return [n for n in self.config.nodes if n not in self.down]

    # -- the pump
    def _collect(self, n: NodeId) -> None:
        ready = self.nodes[n].take_ready()
        if not ready.is_empty():
            self.readies.append((n, ready))
        for record in ready.persist + ready.persist_lazy:  # 1. durable first, in order
            self.disks[n].apply(record)
            self.persisted[n].append(record)
        for dst, msg in ready.send:  # 2. may leave at once
            self._post(n, dst, msg)
        for dst, msg in ready.send_lazy:  # 6. may wait for a ride; here they go at once
            self._post(n, dst, msg)
        for dst, msg in ready.send_after_persist:  # 3. the records above are durable now
            self._post(n, dst, msg)
        self.replies[n] += ready.replies
        self.applied[n] += ready.applied

    def _post(self, src: NodeId, dst: NodeId, msg: PeerMessage) -> None:
        self.sent.append((src, dst, msg))
        if self.drop is not None and self.drop(src, dst, msg):
            return
        self.queue.append((src, dst, msg))

    def run(self, limit: int = 200_000) -> None:
        """Deliver until no message is in flight (FIFO; messages to down nodes are lost)."""
        steps = 0
        while self.queue:
            src, dst, msg = self.queue.popleft()
            if dst in self.down:
                continue
            self.delivered.append((src, dst, msg))
            self.nodes[dst].step(msg)
            self._collect(dst)
            steps += 1
            if steps > limit:
                raise AssertionError("message storm: the cluster never went quiet")

    def tick(self, times: int = 1) -> None:
        for _ in range(times):
            for n in self.up:
                self.nodes[n].tick()
                self._collect(n)
            self.run()

    def tick_until(self, pred: Callable[[], bool], max_ticks: int = 2_000) -> int:
        for t in range(max_ticks + 1):
            if pred():
                return t
            self.tick()
        raise AssertionError(f"condition not reached within {max_ticks} ticks")

    def submit(self, n: NodeId, *commands: Command, together: bool = False) -> None:
        """Hand commands to node n back to back, then let the network run. Each command
        is its own round of input (its own Ready) unless `together`: then they arrive in
        one round, as a burst read in one go does, and the leader batches them."""
        for command in commands:
            self.nodes[n].submit(command)
            if not together:
                self._collect(n)
        self._collect(n)
        self.run()

    # -- queries
    def leaders(self) -> list[NodeId]:
        return [n for n in self.up if self.nodes[n].is_leader]

    def leader(self) -> NodeId | None:
        """The up leader with the highest ballot, if any."""
        best: tuple[Ballot, NodeId] | None = None
        for n in self.leaders():
            p = self.nodes[n].proposer
            assert p is not None and p.ballot is not None
            if best is None or p.ballot > best[0]:
                best = (p.ballot, n)
        return None if best is None else best[1]

    def elect(self, max_ticks: int = 2_000) -> NodeId:
        self.tick_until(lambda: self.leader() is not None, max_ticks)
        leader = self.leader()
        assert leader is not None
        return leader

    def decided(self, n: NodeId) -> dict[Slot, Batch]:
        """The decisions node n's log holds (not those compacted away)."""
        log = self.nodes[n].log
        return {s: v for s in range(log.base, log.top) if (v := log.get(s)) is not None}

    def history(self) -> dict[Slot, Batch]:
        """Every decision any node was told or holds: compacted logs no longer hold them
        all. A slot told two different values fails (R1)."""
        out: dict[Slot, Batch] = {}

        def add(slot: Slot, value: Batch) -> None:
            assert out.setdefault(slot, value) == value, f"R1: slot {slot} told two values"

        proposed = {(m.slot, m.ballot): m.value for _, _, m in self.sent if isinstance(m, Accept)}
        for _, _, m in self.sent:
            if isinstance(m, Decide):
                # by reference (value None): what the named ballot proposed for the slot
                add(m.slot, m.value if m.value is not None else proposed[(m.slot, m.ballot)])
            elif isinstance(m, CatchupReply):
                for slot, value in m.decisions:
                    add(slot, value)
        for n in self.nodes:
            for slot, value in self.decided(n).items():
                add(slot, value)
        return out

    def ok_replies(self, n: NodeId | None = None) -> list[ClientReply]:
        ids = self.config.nodes if n is None else (n,)
        return [r for i in ids for r in self.replies[i] if r.status is ReplyStatus.OK]

    def sent_of(self, kind: type) -> list[tuple[NodeId, NodeId, PeerMessage]]:
        return [s for s in self.sent if isinstance(s[2], kind)]


# ---------------------------------------------------------------------------- oracles


def expected_entries(decided: dict[Slot, Batch], upto: Slot) -> list[tuple[Slot, str, int]]:
    """What the paper's replica (plus E1/E2) applies for slots [0, upto): a reference model.

    Per client: a seq at or below the last applied is a retry (skipped, E1); a seq that
    skips ahead is not applied (E2); only last+1 is applied.
    """
    last: dict[str, int] = {}
    out: list[tuple[Slot, str, int]] = []
    for slot in range(upto):
        for c in decided[slot]:
            if c.seq == last.get(c.client, 0) + 1:
                last[c.client] = c.seq
                out.append((slot, c.client, c.seq))
    return out


def check_safety(cluster: Cluster) -> None:
    """Check the invariants of INVARIANTS.md against a whole run's messages and disks."""
    cfg = cluster.config
    quorum = cfg.quorum
    # C1: one value per (ballot, slot) in everything proposed.
    proposed: dict[tuple[Ballot, Slot], Batch] = {}
    for _, _, m in cluster.sent_of(Accept):
        assert isinstance(m, Accept)
        old = proposed.setdefault((m.ballot, m.slot), m.value)
        assert old == m.value, f"C1: two values proposed for ballot {m.ballot} slot {m.slot}"
    # A1: per acceptor, promise-bearing records never go back.
    for n, records in cluster.persisted.items():
        high = None
        for r in records:
            b = (
                r.ballot
                if isinstance(r, PromisedRecord)
                else (r.pvalue.ballot if isinstance(r, AcceptedRecord) else None)
            )
            if b is None:
                continue
            assert high is None or b >= high, f"A1: acceptor {n} went back from {high} to {b}"
            high = b
    # A5 / C2: once a majority accepted (b, s, v), every later-ballot proposal for s is v.
    acks: dict[tuple[Ballot, Slot], set[NodeId]] = {}
    for src, _, m in cluster.sent_of(Accepted):
        assert isinstance(m, Accepted)
        acks.setdefault((m.ballot, m.slot), set()).add(src)
    chosen = [(b, s, proposed[(b, s)]) for (b, s), who in acks.items() if len(who) >= quorum]
    for b, s, v in chosen:
        for (b2, s2), v2 in proposed.items():
            if s2 == s and b2 > b:
                assert v2 == v, f"A5/C2: slot {s} chosen {v} in {b}, then {v2} proposed in {b2}"
    # R1: learners agree slot by slot; and what they learned was chosen.
    learners = [n for n in cfg.learners if n not in cluster.down]
    agreed: dict[Slot, Batch] = {}
    for n in learners:
        for s, v in cluster.decided(n).items():
            assert agreed.setdefault(s, v) == v, f"R1: slot {s} differs between learners"
    chosen_values = {(s, v) for _, s, v in chosen}
    for s, v in agreed.items():
        assert (s, v) in chosen_values, f"learned slot {s} = {v} without a quorum of Accepted"
    # R2/R3 and E1/E2: each replica's state is its decided prefix applied by the rules
    # (whether it applied each slot or restored a snapshot covering some).
    history = cluster.history()
    for n in learners:
        node = cluster.nodes[n]
        machine = cluster.machines[n]
        assert node.replica is not None and machine is not None
        slot_out = node.replica.slot_out
        assert all(s in node.log for s in range(slot_out)), f"R2: hole below slot_out at {n}"
        got = [(s, c, q) for s, c, q, _ in machine.entries]
        assert got == expected_entries(history, slot_out), f"R3: replica {n} state differs"
        assert len(set(machine.commands)) == len(machine.commands), f"E1: replica {n}"
