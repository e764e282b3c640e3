"""One simulated run: the real core on a simulated clock, network and disks.

Time is integer milliseconds on an event heap; nothing reads a real clock, and every
random choice comes from generators seeded by `SimParams.seed`, so a run is a pure
function of its parameters. A run has two phases: faults (loss, duplication, delay,
partitions, crashes with loss of unsynced writes) for `fault_ms`, then a settle
phase with the network healed and every node restarted, in which every client must
finish and every learner must apply every acknowledged command within `settle_ms`.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..core.bugs import Bug
from ..core.config import ClusterConfig, ElectionPolicy, Limits, Timing
from ..core.errors import InvariantViolation
from ..core.messages import ClientReply, ReadMode, ReadReply, ReadRequest, ReplyStatus
from ..core.node import Node
from ..core.ready import Ready
from ..core.types import Command, NodeId, Slot
from .checker import Checker, Violation
from .disk import SimDisk
from .network import SimNetwork
from .workload import SimClient

FAULTS = ("loss", "duplicate", "reorder", "partition", "crash", "skip")
LAYOUTS = ("colocated", "separate")


@dataclass(frozen=True)
class SimParams:
    seed: int
    nodes: int = 3
    layout: str = "colocated"
    bugs: frozenset[Bug] = frozenset()
    faults: frozenset[str] = frozenset(FAULTS)
    fault_ms: int = 3000
    settle_ms: int = 30_000
    clients: int = 3
    commands: int = 20
    tick_ms: int = 10
    #: Restart every node for the settle phase (else up to f acceptors may stay down).
    all_up_at_end: bool = False

    def command_line(self) -> str:
        """The exact command that reproduces this run."""
        parts = [
            "paxoi sim --seeds 1",
            f"--start-seed {self.seed}",
            f"--nodes {self.nodes}",
            f"--layout {self.layout}",
        ]
        parts += [f"--bug {b.value}" for b in sorted(self.bugs, key=lambda b: b.value)]
        if self.faults != frozenset(FAULTS):
            parts.append(f"--faults {','.join(sorted(self.faults)) or 'none'}")
        return " ".join(parts)


class RecordingMachine:
    """The simulator's state machine: remembers what it applied; the result is the slot.

    Its snapshot is the whole applied sequence, so the checker can compare a restored
    state with what every replica applied (R3 across snapshots). Restores are noted with
    how many applies came before them since the last `take_restores`, so the simulator
    can replay applies and restores to the checker in the order they happened."""

    def __init__(self) -> None:
        self.applied: list[tuple[Slot, Command]] = []
        self._applies = 0
        self._restores: list[tuple[int, list[tuple[Slot, Command]]]] = []

    def apply(self, slot: Slot, command: Command) -> bytes:
        self.applied.append((slot, command))
        self._applies += 1
        return str(slot).encode()

    def snapshot(self) -> bytes:
        doc = [[s, c.client, c.seq, c.payload.hex()] for s, c in self.applied]
        return json.dumps(doc, separators=(",", ":")).encode()

    def restore(self, data: bytes) -> None:
        try:
            doc = json.loads(data)
            applied = [(s, Command(c, q, bytes.fromhex(p))) for s, c, q, p in doc]
        except (ValueError, TypeError) as e:
            raise ValueError(f"not a simulator snapshot: {e}") from None
        self.applied = applied
        self._restores.append((self._applies, list(applied)))

    def take_restores(self) -> list[tuple[int, list[tuple[Slot, Command]]]]:
        """Restores since the last call, each with the number of applies before it."""
        out, self._restores, self._applies = self._restores, [], 0
        return out

    def query(self, query: bytes) -> bytes:
        return str(len(self.applied)).encode()

    def digest(self) -> str:
        """sha256 of the applied log's canonical form: equal logs, equal digests."""
        h = hashlib.sha256()
        for slot, c in self.applied:
            h.update(f"{slot}\t{c.client}\t{c.seq}\t".encode() + c.payload + b"\n")
        return h.hexdigest()


@dataclass
class RunResult:
    params: SimParams
    sim_ms: int
    acked: int
    decided: int
    leaders: int
    crashes: int
    messages: int
    trace: list[str] = field(default_factory=list)


#: Lease length in the seeds that turn leases on (ticks; heartbeats every 5).
SIM_LEASE_TICKS = 20


def snapshot_limits(seed: int) -> Limits:
    """Snapshots in about two seeds of three, taken often enough (every few slots of a run
    that decides a few dozen) that crashes, restarts and lagging learners meet compacted
    logs and snapshot transfers, in chunks small enough that a transfer takes several."""
    rng = random.Random(f"snapshots/{seed}")
    if rng.random() < 0.35:
        return Limits(snapshot_every=0)
    return Limits(
        snapshot_every=rng.choice([1, 2, 3, 5, 8, 13]),
        log_keep=rng.choice([0, 0, 1, 2, 4, 10]),
        log_keep_commands=rng.choice([0, 3, 20_000]),
        snapshot_chunk=rng.choice([16, 64, 256, 4096]),
        # some runs snapshot on commands before slots (big batches under load)
        snapshot_commands=rng.choice([4, 16, 100_000]),
    )


def make_config(
    params: SimParams, policy: ElectionPolicy, lease: int = 0, limits: Limits | None = None
) -> ClusterConfig:
    timing = Timing(lease=lease)
    kw: dict[str, object] = {"policy": policy, "timing": timing}
    if limits is not None:
        kw["limits"] = limits
    if params.layout == "colocated":
        return ClusterConfig.colocated(params.nodes, **kw)
    if params.layout == "separate":
        f = (params.nodes - 1) // 2
        return ClusterConfig.separate(f + 1, params.nodes, f + 1, **kw)
    raise ValueError(f"unknown layout {params.layout!r}; known: {', '.join(LAYOUTS)}")


class Simulation:
    def __init__(self, params: SimParams) -> None:
        self.p = params
        self.rng = random.Random(params.seed)
        rng = self.rng
        policy = rng.choice([ElectionPolicy.RANK, ElectionPolicy.RANDOM])
        # Leases and lease reads in half the seeds; their own stream, so the other
        # choices of a seed are the same as before leases existed.
        self._read_rng = random.Random(f"reads/{params.seed}")
        self.leases = self._read_rng.random() < 0.5
        # Snapshot settings from their own stream too, for the same reason.
        self.limits = snapshot_limits(params.seed)
        self.config = make_config(
            params, policy, SIM_LEASE_TICKS if self.leases else 0, self.limits
        )
        faults = params.faults
        self.net = SimNetwork(
            random.Random(rng.getrandbits(64)),
            drop=rng.choice([0.0, 0.01, 0.05, 0.15]) if "loss" in faults else 0.0,
            duplicate=rng.choice([0.0, 0.02, 0.1]) if "duplicate" in faults else 0.0,
            delay_min=1,
            delay_max=rng.choice([2, 10, 40]) if "reorder" in faults else 1,
        )
        self.disk_latency = (1, rng.choice([2, 8, 20]))
        # "skip": one proposer's first incarnation leaves a hole at one slot (UMich test 4).
        # Its own stream, so choosing it does not perturb the other faults of the seed.
        self.skip: tuple[NodeId, Slot] | None = None
        if "skip" in faults:
            skip_rng = random.Random(f"skip/{params.seed}")
            self.skip = (
                skip_rng.choice(self.config.proposers),
                skip_rng.randrange(30),
            )
        self.checker = Checker(self.config.quorum)
        self.nodes: dict[NodeId, Node | None] = {}
        self.disks: dict[NodeId, SimDisk] = {}
        self.incarnation: dict[NodeId, int] = {}
        self.machines: dict[NodeId, RecordingMachine] = {}
        self.now = 0
        self._heap: list[tuple[int, int, str, Any, Any, Any]] = []
        self._seq = 0
        self.trace: deque[tuple[int, str, Any, Any]] = deque(maxlen=40)
        self.messages = 0
        self.crashes = 0
        self.leader_terms: set[Any] = set()
        #: Nodes kept down through the settle phase (liveness must hold without them).
        self.down: set[NodeId] = set()
        for nid in self.config.nodes:
            self.disks[nid] = SimDisk()
            self.incarnation[nid] = 0
            self._start(nid)
            self._at(rng.randrange(params.tick_ms), "tick", nid)
        servers = self.config.proposers
        self.clients = {
            f"c{i}": SimClient(
                f"c{i}",
                params.commands,
                rng.choice([1, 1, 4, 16]),
                servers,
                random.Random(rng.getrandbits(64)),
            )
            for i in range(params.clients)
        }
        for name in self.clients:
            self._at(rng.randrange(params.fault_ms // 2 + 1), "client", name)
        #: Lease reads in flight: id -> (slots chosen when it was sent).
        self._reads: dict[int, int] = {}
        self.reads_ok = 0
        if self.leases and self.config.learners:
            self._at(self._read_rng.randrange(200), "read", None)
        self._plan_faults()
        self._at(params.fault_ms, "calm", None)

    # ---------------------------------------------------------------- scheduling
    def _at(self, when: int, kind: str, a: Any, b: Any = None, c: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, kind, a, b, c))

    def _plan_faults(self) -> None:
        p, rng = self.p, self.rng
        if "crash" in p.faults:
            t = rng.randrange(100, 600)
            while t < p.fault_ms:
                nid = rng.choice(self.config.nodes)
                self._at(t, "crash", nid)
                self._at(min(t + rng.randrange(30, 900), p.fault_ms), "restart", nid)
                t += rng.randrange(50, 700)
        if "partition" in p.faults:
            t = rng.randrange(100, 1000)
            while t < p.fault_ms:
                nodes = list(self.config.nodes)
                rng.shuffle(nodes)
                cut = rng.randrange(1, len(nodes))
                groups = [frozenset(nodes[:cut]), frozenset(nodes[cut:])]
                self._at(t, "partition", groups)
                t += rng.randrange(100, 900)
                self._at(min(t, p.fault_ms), "heal", None)
                t += rng.randrange(50, 500)

    # ---------------------------------------------------------------- nodes
    def _start(self, nid: NodeId) -> None:
        machine = RecordingMachine()
        skip = self.skip
        node = Node(
            nid,
            self.config,
            random.Random(f"{self.p.seed}/{nid}/{self.incarnation[nid]}"),
            machine,
            self.disks[nid].durable.copy(),
            self.p.bugs,
            skip[1] if skip is not None and skip[0] == nid and self.incarnation[nid] == 0 else None,
        )
        self.nodes[nid] = node
        self.machines[nid] = machine
        if node.acceptor is not None:
            self.checker.on_acceptor_recovered(nid, node.acceptor)
        self._flush(nid, node)

    def _report_applied(self, nid: NodeId, inc: int, ready: Ready) -> None:
        """Applies and snapshot restores, to the checker in the order they happened."""
        machine = self.machines.get(nid)
        done = 0
        if machine is not None:
            for before, applied in machine.take_restores():
                for a in ready.applied[done:before]:
                    self.checker.on_applied(nid, inc, a.slot, a.command, a.result)
                done = before
                self.checker.on_restored(nid, inc, applied)
        for a in ready.applied[done:]:
            self.checker.on_applied(nid, inc, a.slot, a.command, a.result)

    def _crash(self, nid: NodeId) -> None:
        if self.nodes.get(nid) is None:
            return
        self.crashes += 1
        self.nodes[nid] = None
        self.disks[nid].crash()
        self.incarnation[nid] += 1

    def _flush(self, nid: NodeId, node: Node) -> None:
        ready: Ready = node.take_ready()
        # A lazy message may wait for the next one to its peer; leaving at once is one of
        # the schedules that allows (the network delays it as it likes anyway).
        for dst, msg in ready.send + ready.send_lazy:
            self._send(nid, dst, msg)
        disk = self.disks[nid]
        start, free = disk.write(ready.persist, ready.send_after_persist, ready.persist_lazy)
        for dst, msg in free:
            self._send(nid, dst, msg)
        if start:
            self._at(
                self.now + self.rng.randint(*self.disk_latency), "sync", nid, self.incarnation[nid]
            )
        self._report_applied(nid, self.incarnation[nid], ready)
        for reply in ready.replies:
            for delay in self.net.delays(nid, reply.client):
                self._at(self.now + delay, "reply", reply.client, nid, reply)
        for answer in ready.read_replies:
            for delay in self.net.delays(nid, answer.client):
                self._at(self.now + delay, "read_reply", answer, nid)
        if node.is_leader and node.proposer is not None:
            self.leader_terms.add(node.proposer.ballot)

    def _send(self, src: NodeId, dst: NodeId, msg: Any) -> None:
        self.checker.on_send(src, msg)
        self.messages += 1
        for delay in self.net.delays(src, dst):
            self._at(self.now + delay, "msg", dst, msg, None)

    # ---------------------------------------------------------------- the run
    def run(self) -> RunResult:
        try:
            self._loop()
        except InvariantViolation as e:
            text = str(e)
            raise Violation(text.split(":", 1)[0] if ":" in text else "invariant", text) from e
        decided = len(self.checker.learned)
        return RunResult(
            self.p,
            self.now,
            sum(len(c.acked) for c in self.clients.values()),
            decided,
            len(self.leader_terms),
            self.crashes,
            self.messages,
        )

    def _loop(self) -> None:
        deadline = self.p.fault_ms + self.p.settle_ms
        calm = False
        while self._heap:
            when, _, kind, a, b, c = heapq.heappop(self._heap)
            self.now = when
            if when > deadline:
                raise Violation("liveness", self._stuck())
            if kind != "tick":
                self.trace.append((when, kind, a, b))
            if kind == "msg":
                node = self.nodes.get(a)
                if node is not None:
                    node.step(b)
                    self._flush(a, node)
            elif kind == "tick":
                node = self.nodes.get(a)
                if node is not None:
                    node.tick()
                    self._flush(a, node)
                self._at(when + self.p.tick_ms, "tick", a)
                if (
                    calm
                    and a == self.config.nodes[0]
                    and when % 100 < self.p.tick_ms
                    and self._finished()
                ):
                    return
            elif kind == "sync":
                self._sync(a, b)
            elif kind == "submit":
                node = self.nodes.get(a)
                if node is not None:
                    node.submit(b)
                    self._flush(a, node)
            elif kind == "reply":
                self._on_reply(a, b, c)
            elif kind == "client":
                self._client(a)
            elif kind == "read":
                self._read()
            elif kind == "read_request":
                node = self.nodes.get(a)
                if node is not None:
                    node.read(b)
                    self._flush(a, node)
            elif kind == "read_reply":
                self._on_read_reply(a)
            elif kind == "crash":
                self._crash(a)
            elif kind == "restart":
                if self.nodes.get(a) is None:
                    self._start(a)
            elif kind == "partition":
                self.net.groups = a
            elif kind == "heal":
                self.net.groups = []
            elif kind == "calm":
                calm = True
                self.net.groups = []
                self.net.drop = 0.0
                self.net.duplicate = 0.0
                self.down = set()
                if "crash" in self.p.faults and not self.p.all_up_at_end:
                    self.down = self._survivable_outage()
                if self.skip is not None and self.incarnation[self.skip[0]] == 0:
                    self._crash(self.skip[0])  # a hole heals only once its leader goes
                for nid in self.config.nodes:
                    if nid in self.down:
                        self._crash(nid)
                    elif self.nodes.get(nid) is None:
                        self._start(nid)

    def _sync(self, nid: NodeId, incarnation: int) -> None:
        if self.incarnation[nid] != incarnation or self.nodes.get(nid) is None:
            return  # the node crashed while this sync was in flight: it never completed
        more, released = self.disks[nid].sync_done()
        for dst, msg in released:
            self._send(nid, dst, msg)
        if more:
            self._at(self.now + self.rng.randint(*self.disk_latency), "sync", nid, incarnation)

    def _client(self, name: str) -> None:
        client = self.clients[name]
        for target, cmd in client.due(self.now):
            self.checker.on_submit(cmd)
            for delay in self.net.delays(name, target):
                self._at(self.now + delay, "submit", target, cmd)
        if not client.done:
            self._at(self.now + self.p.tick_ms, "client", name)

    def _read(self) -> None:
        """A lease read to a random learner (only the leader may answer it)."""
        rng = self._read_rng
        read_id = len(self._reads) + 1
        # L1's bound: every slot chosen before the read is sent must be in its answer.
        self._reads[read_id] = max(self.checker.chosen, default=-1) + 1
        target = rng.choice(self.config.learners)
        req = ReadRequest("reader", read_id, b"", ReadMode.LEASE)
        for delay in self.net.delays("reader", target):
            self._at(self.now + delay, "read_request", target, req)
        if self.now < self.p.fault_ms + self.p.settle_ms // 2:
            self._at(self.now + rng.randrange(5, 120), "read", None)

    def _on_read_reply(self, answer: ReadReply) -> None:
        if answer.status is not ReplyStatus.OK:
            return
        floor = self._reads[answer.id]
        if answer.slot < floor:
            raise Violation(
                "L1",
                f"lease read {answer.id} answered at slot {answer.slot}, but slots below "
                f"{floor} were chosen before it was sent (a stale read)",
            )
        self.reads_ok += 1

    def _on_reply(self, name: str, src: NodeId, reply: ClientReply) -> None:
        client = self.clients[name]
        before = reply.seq in client.acked
        client.on_reply(src, reply, self.now)
        if not before and reply.seq in client.acked:
            key = (name, reply.seq)
            if self.checker.results.get(key) != reply.result:
                raise Violation("E3", f"{key} acknowledged with {reply.result!r}, never applied so")

    # ---------------------------------------------------------------- liveness
    def _survivable_outage(self) -> set[NodeId]:
        """Nodes left down for the settle phase: at most f acceptors, and never every
        proposer or every learner. Liveness is promised with just that much up."""
        cfg, rng = self.config, self.rng
        down: set[NodeId] = set(rng.sample(cfg.acceptors, rng.randint(0, cfg.f)))
        for group in (cfg.proposers, cfg.learners):
            up = [n for n in group if n not in down]
            keep = rng.choice(up) if up else None
            down |= {n for n in group if n != keep and rng.random() < 0.3}
        if (
            not any(n not in down for n in cfg.proposers)
            or not any(n not in down for n in cfg.learners)
            or sum(n in down for n in cfg.acceptors) > cfg.f
        ):
            return set()  # colocated roles made the pick unsafe for liveness: keep all up
        return down

    def _missing(self) -> dict[NodeId, int]:
        acked = {(n, s) for n, c in self.clients.items() for s in c.acked}
        out = {}
        for nid in self.config.learners:
            if nid in self.down:
                continue
            applied = self.checker.applied_by(nid, self.incarnation[nid])
            missing = len(acked - applied)
            if missing:
                out[nid] = missing
        return out

    def _lagging(self) -> dict[NodeId, int]:
        """Up learners that have not applied every slot anyone learned: learner -> slot_out."""
        top = max(self.checker.learned, default=-1) + 1
        out = {}
        for nid in self.config.learners:
            node = self.nodes.get(nid)
            replica = node.replica if node is not None and nid not in self.down else None
            if replica is not None and replica.slot_out < top:
                out[nid] = replica.slot_out
        return out

    def _finished(self) -> bool:
        return (
            all(c.done for c in self.clients.values())
            and not self._missing()
            and not self._lagging()
        )

    def _stuck(self) -> str:
        waiting = {n: sorted(c.outstanding) for n, c in self.clients.items() if not c.done}
        leaders = [n for n, node in self.nodes.items() if node is not None and node.is_leader]
        return (
            f"not done {self.p.settle_ms} ms after faults stopped: clients waiting {waiting}, "
            f"learners missing acknowledged commands {self._missing()}, learners behind "
            f"(node: next slot to apply, of {max(self.checker.learned, default=-1) + 1}) "
            f"{self._lagging()}, leaders {leaders}, kept down {sorted(self.down)}"
        )

    def format_trace(self) -> list[str]:
        out = []
        for when, kind, a, b in self.trace:
            if kind == "msg":
                out.append(f"{when:>6} ms  -> {a}: {b}")
            elif kind in ("submit",):
                out.append(f"{when:>6} ms  client -> {a}: {b}")
            elif kind == "reply":
                out.append(f"{when:>6} ms  {b} -> {a}")
            else:
                out.append(f"{when:>6} ms  {kind} {a if a is not None else ''}")
        return out
