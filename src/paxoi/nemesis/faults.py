"""The nemesis proper: carries out a schedule of faults on a LocalCluster, then heals.

It runs in its own thread (the clients have the main thread's event loop), sleeping
until each fault's start or end. What each fault does to the servers:

- kill: SIGKILL to the server's PID (`LocalCluster.kill`); at the end, start it again.
- pause: SIGSTOP to its PID; at the end, SIGCONT. It keeps its sockets, so what peers
  and clients sent meanwhile is waiting for it when it wakes.
- restart: SIGTERM (a clean shutdown, waited for), then start again at once.
- partition: each server is sent Control("partition", <the peers it must not hear>);
  a server drops every message to and from those peers in its transport. Both ends of a
  cut link block it, so one end that is down or paused when the partition starts is
  enough; a server that comes back (restarted, resumed) is sent its blocked set again.
  At the end every server is sent Control("heal").
- clock: Control("clock", rate): the server's protocol clock runs at `rate` percent of
  real time; at the end, 100.

Which servers are struck is decided at the fault's start, with a generator seeded from
the run's seed: "leader" variants strike the server that leads (the highest ballot among
those that say they lead), others a server not already struck by another fault. The
schedule's unit budget keeps a majority up and connected; the servers chosen here never
overlap, so the budget holds for the servers too.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..client import AsyncClient
from ..core.types import NodeId
from ..server.local import LocalCluster, query_statuses
from ..wire.messages import Control
from .schedule import FaultSpec

#: Seconds to wait for a server to answer a Control or a status request.
CONTROL_TIMEOUT = 1.0
#: Seconds a server has to exit after SIGTERM (LocalCluster.kill waits this long).
STOP_TIMEOUT = 10.0
#: Seconds an isolated paused server stays cut off after it wakes.
ISOLATED_WAKE = 0.5


@dataclass
class Injection:
    """A fault as it was carried out: which servers, when (seconds from the run's start),
    and what happened (`note`: e.g. "leader" or why it was skipped)."""

    kind: str
    variant: str
    nodes: list[NodeId]
    start: float
    end: float | None = None
    rate: int = 100
    detail: str = ""
    skipped: str = ""
    #: partition: the blocked set of each server.
    blocked: dict[NodeId, list[NodeId]] = field(default_factory=dict)

    def describe(self) -> str:
        if self.skipped:
            return f"{self.kind}:{self.variant} skipped ({self.skipped})"
        who = ", ".join(str(n) for n in self.nodes)
        extra = f" {self.detail}" if self.detail else ""
        if self.kind == "clock":
            return f"clock node {who} at {self.rate}%{extra}"
        if self.kind == "partition":
            return f"partition {self.detail}"
        if self.kind == "pause" and self.variant == "isolated":
            return f"pause node {who}{extra}, cut off by its peers"
        return f"{self.kind} node {who}{extra}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "variant": self.variant,
            "nodes": self.nodes,
            "start": round(self.start, 3),
            "end": None if self.end is None else round(self.end, 3),
            "rate": self.rate,
            "detail": self.detail,
            "skipped": self.skipped,
            "blocked": {str(k): v for k, v in self.blocked.items()},
        }


def control(cluster: LocalCluster, node: NodeId, request: Control, timeout: float) -> bool:
    """Send one Control to one server; False if it did not accept it in time."""

    async def send() -> None:
        client = AsyncClient.from_config(cluster.config, name="nemesis")
        await client.control(node, request, timeout)

    try:
        asyncio.run(asyncio.wait_for(send(), timeout + 0.5))
    except Exception:
        return False
    return True


def partition_sets(
    variant: str, nodes: Sequence[NodeId], leader: NodeId | None, minority: int, rng: random.Random
) -> tuple[dict[NodeId, frozenset[NodeId]], list[NodeId], str]:
    """The blocked set of each server for a partition, the servers it isolates (or, for a
    bridge, the bridge), and a description. `nodes` lists the servers the partition may
    cut off (those not struck by another fault) first, in a random order."""
    everyone = sorted(nodes)
    order = list(nodes)
    blocked: dict[NodeId, frozenset[NodeId]] = {}
    if variant == "bridge":
        bridge = order[0]
        rest = order[1:]
        half = rest[: len(rest) // 2]
        other = rest[len(rest) // 2 :]
        for n in half:
            blocked[n] = frozenset(other)
        for n in other:
            blocked[n] = frozenset(half)
        blocked[bridge] = frozenset()
        text = f"bridge: {sorted(half)} | {bridge} | {sorted(other)}"
        return blocked, [bridge], text
    if variant == "leader" and leader is not None:
        cut = [leader]
    else:
        cut = order[: max(1, minority)]
    side = frozenset(cut)
    rest_side = frozenset(n for n in everyone if n not in side)
    for n in everyone:
        blocked[n] = rest_side if n in side else side
    what = "leader" if variant == "leader" and leader is not None else "minority"
    return blocked, sorted(cut), f"{what}: {sorted(side)} | {sorted(rest_side)}"


class Nemesis:
    """Carries out `schedule` against `cluster` from `start()` until `stop()` or its end."""

    def __init__(
        self,
        cluster: LocalCluster,
        schedule: Sequence[FaultSpec],
        seed: int | str,
        *,
        t0: float,
        say: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.cluster = cluster
        self.schedule = list(schedule)
        self.rng = random.Random(f"nemesis-targets/{seed}")
        self.t0 = t0
        self.say = say
        self.nodes: list[NodeId] = sorted(cluster.config.servers)
        self.injections: list[Injection] = []
        self.down: set[NodeId] = set()
        self.paused: set[NodeId] = set()
        #: What each server must block (the active partition), and its clock rate.
        self.blocked: dict[NodeId, frozenset[NodeId]] = {}
        self.rates: dict[NodeId, int] = {}
        #: Servers that must be sent their blocked set and rate again when reachable.
        self.resync: set[NodeId] = set()
        #: Servers struck by an active fault (never struck by a second one), per fault.
        self._struck: dict[int, set[NodeId]] = {}
        self._active: dict[int, Injection] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []
        #: Servers that exited on their own (not killed or stopped by the nemesis).
        self.exits: list[str] = []
        #: Servers that did not stop when asked (SIGTERM).
        self.hangs: list[str] = []

    # ------------------------------------------------------------------ the thread
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="nemesis", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop injecting (a fault being carried out finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _run(self) -> None:
        events: list[tuple[float, int, int]] = []  # (time, 1 start / 0 end, index)
        for i, spec in enumerate(self.schedule):
            events.append((spec.start, 1, i))
            events.append((spec.end, 0, i))  # ends first at equal times: room for starts
        events.sort()
        try:
            for when, is_start, i in events:
                while not self._stop.is_set():
                    left = when - self.now()
                    if left <= 0:
                        break
                    self._stop.wait(min(left, 0.2))
                    self._resync()
                if self._stop.is_set():
                    return
                try:
                    if is_start:
                        self._begin(i, self.schedule[i])
                    else:
                        self._end(i)
                except Exception as e:  # reported in the summary; the next fault still comes
                    self.errors.append(f"nemesis at {self.now():.1f} s: {type(e).__name__}: {e}")
            while not self._stop.is_set():
                self._stop.wait(0.2)
                self._resync()
        except Exception as e:  # pragma: no cover - reported in the summary
            self.errors.append(f"nemesis: {type(e).__name__}: {e}")

    # ------------------------------------------------------------------ faults
    def _busy(self) -> set[NodeId]:
        busy: set[NodeId] = set()
        for nodes in self._struck.values():
            busy |= nodes
        return busy | self.down | self.paused

    def leader(self) -> NodeId | None:
        """The server that leads: of those that say they do, the one with the highest
        ballot (an isolated old leader may still think it leads)."""
        best: tuple[Any, NodeId] | None = None
        up = [n for n in self.nodes if n not in self.paused and n not in self.down]
        for node, st in query_statuses(self.cluster.config, CONTROL_TIMEOUT, up).items():
            if st is None or not st.is_leader:
                continue
            key = st.ballot
            if best is None or (key is not None and (best[0] is None or key > best[0])):
                best = (key, node)
        return None if best is None else best[1]

    def _pick(self, kind: str, variant: str) -> tuple[NodeId | None, str]:
        if kind == "clock":  # any server whose clock is not skewed already
            free = [n for n in self.nodes if n not in self.rates]
        else:
            free = [n for n in self.nodes if n not in self._busy()]
        if not free:
            return None, "no server free"
        if variant in ("leader", "isolated"):
            leader = self.leader()
            if leader is not None and leader in free:
                return leader, "(leader)"
        return self.rng.choice(free), ""

    def _begin(self, i: int, spec: FaultSpec) -> None:
        inj = Injection(spec.kind, spec.variant, [], self.now(), rate=spec.rate)
        if spec.kind == "partition":
            self._begin_partition(inj, spec)
        else:
            node, note = self._pick(spec.kind, spec.variant)
            if node is None:
                inj.skipped = note
            else:
                inj.nodes, inj.detail = [node], note
                self._strike(spec.kind, spec.variant, node, spec.rate)
        self.injections.append(inj)
        if not inj.skipped:
            self._active[i] = inj
            if spec.units:  # a clock skew takes no server out: others may strike it too
                self._struck[i] = set(inj.nodes)
        self.say(f"[{self.now():6.1f} s] {inj.describe()}")

    def _strike(self, kind: str, variant: str, node: NodeId, rate: int) -> None:
        c = self.cluster
        if kind == "kill":
            c.kill(node, signal.SIGKILL)
            self.down.add(node)
        elif kind == "pause":
            c.pause(node)
            self.paused.add(node)
            if variant == "isolated":  # its peers cut it off while it sleeps
                others = frozenset(n for n in self.nodes if n != node)
                self.blocked = {n: frozenset([node]) for n in others}
                self.blocked[node] = others
                self._send_blocked(self.nodes)
        elif kind == "restart":
            self.down.add(node)
            try:
                c.kill(node, signal.SIGTERM)
            except subprocess.TimeoutExpired:
                self.hangs.append(
                    f"node {node} did not exit within {STOP_TIMEOUT:.0f} s of SIGTERM "
                    f"(at {self.now():.1f} s; killed with SIGKILL)"
                )
                self.say(f"[{self.now():6.1f} s] node {node} still running after SIGTERM: SIGKILL")
                c.kill(node, signal.SIGKILL)
            c.start([node])
            self.down.discard(node)
            self.resync.add(node)
        elif kind == "clock":
            self.rates[node] = rate
            if not control(c, node, Control("clock", (), rate), CONTROL_TIMEOUT):
                self.resync.add(node)

    def _begin_partition(self, inj: Injection, spec: FaultSpec) -> None:
        busy = self._busy()
        free = [n for n in self.nodes if n not in busy]
        self.rng.shuffle(free)
        order = free + [n for n in self.nodes if n in busy]
        leader = self.leader() if spec.variant == "leader" else None
        if leader is not None and leader in busy:
            leader = None
        blocked, cut, text = partition_sets(spec.variant, order, leader, spec.minority, self.rng)
        inj.nodes, inj.detail = cut, text
        inj.blocked = {n: sorted(b) for n, b in sorted(blocked.items())}
        self.blocked = blocked
        self._send_blocked(self.nodes)

    def _send_blocked(self, nodes: Sequence[NodeId]) -> None:
        for node in nodes:
            if node in self.down or node in self.paused:
                self.resync.add(node)
                continue
            blocked = self.blocked.get(node, frozenset())
            request = Control("partition", tuple(sorted(blocked))) if blocked else Control("heal")
            if not control(self.cluster, node, request, CONTROL_TIMEOUT):
                self.resync.add(node)

    def _end(self, i: int) -> None:
        inj = self._active.pop(i, None)
        self._struck.pop(i, None)
        if inj is None:
            return
        inj.end = self.now()
        c = self.cluster
        struck = inj.nodes
        for node in struck:
            if inj.kind == "kill":
                c.start([node])
                self.down.discard(node)
                self.resync.add(node)
            elif inj.kind == "pause":
                c.resume(node)
                self.paused.discard(node)
                self.resync.add(node)
                if inj.variant == "isolated":
                    # Awake, still cut off for a moment: it must not answer from what
                    # it had (its lease ran out while it slept), then heal.
                    self._stop.wait(ISOLATED_WAKE)
                    self.blocked = {}
                    self._send_blocked(self.nodes)
            elif inj.kind == "clock":
                if self.rates.get(node) == inj.rate:
                    del self.rates[node]
                if not control(c, node, Control("clock", (), 100), CONTROL_TIMEOUT):
                    self.resync.add(node)
        if inj.kind == "partition":
            self.blocked = {}
            self._send_blocked(self.nodes)
        if inj.kind in ("kill", "pause"):
            self.say(f"[{self.now():6.1f} s] {inj.kind} over: node {', '.join(map(str, struck))}")
        elif inj.kind == "partition":
            self.say(f"[{self.now():6.1f} s] partition healed")
        elif inj.kind == "clock":
            self.say(f"[{self.now():6.1f} s] clock of node {struck[0]} back to 100%")

    def _watch_exits(self) -> None:
        for node in self.nodes:
            if node in self.down or self.cluster.alive(node):
                continue
            proc = self.cluster.procs.get(node)
            code = None if proc is None else proc.returncode
            self.exits.append(
                f"node {node} exited on its own (status {code}) at {self.now():.1f} s"
            )
            self.say(f"[{self.now():6.1f} s] node {node} exited on its own (status {code})")
            if sum(f"node {node} " in e for e in self.exits) <= 3:
                self.cluster.start([node])  # keep the majority: it was not ours to take
                self.resync.add(node)
            else:
                self.down.add(node)  # it keeps exiting: left down until heal_all

    def _resync(self) -> None:
        """Send servers that came back (or did not answer) their blocked set and rate."""
        self._watch_exits()
        for node in sorted(self.resync):
            if node in self.down or node in self.paused or not self.cluster.alive(node):
                continue
            blocked = self.blocked.get(node, frozenset())
            request = Control("partition", tuple(sorted(blocked))) if blocked else Control("heal")
            rate = self.rates.get(node, 100)
            if control(self.cluster, node, request, 0.5) and control(
                self.cluster, node, Control("clock", (), rate), 0.5
            ):
                self.resync.discard(node)

    # ------------------------------------------------------------------ the end
    def heal_all(self, timeout: float = 20.0) -> list[str]:
        """Undo everything: SIGCONT the paused, start the dead, clocks at 100, no
        partition. Returns what could not be done by `timeout`."""
        self.stop()
        c = self.cluster
        for i in list(self._active):
            inj = self._active.pop(i)
            inj.end = self.now()
        self._struck.clear()
        for node in sorted(self.paused):
            c.resume(node)
        self.paused.clear()
        for node in self.nodes:
            if not c.alive(node):
                c.start([node])
        self.down.clear()
        self.blocked = {}
        self.rates = {}
        todo = set(self.nodes)
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            for node in sorted(todo):
                if control(c, node, Control("heal"), 0.5) and control(
                    c, node, Control("clock", (), 100), 0.5
                ):
                    todo.discard(node)
            if todo:
                time.sleep(0.1)
        self.resync.clear()
        return [f"node {n}: could not be healed (no answer)" for n in sorted(todo)]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for inj in self.injections:
            if not inj.skipped:
                out[inj.kind] = out.get(inj.kind, 0) + 1
        return out

    def variant_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for inj in self.injections:
            if not inj.skipped:
                name = f"{inj.kind}:{inj.variant}"
                out[name] = out.get(name, 0) + 1
        return out


__all__ = ["CONTROL_TIMEOUT", "Injection", "Nemesis", "control", "partition_sets"]
