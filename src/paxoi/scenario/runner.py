"""Run one scenario on real processes and judge it: `paxoi scenario NAME|FILE`.

The runner starts the servers (a `LocalCluster` on free ports, in a temporary directory),
runs batch clients against them while it injects the scenario's faults, and when the
clients are done (or provably stuck) lets the live replicas converge, stops everything,
and judges the outcome with the result checker. It writes the same files `paxoi check`
reads, so a kept run (`--keep`) can be judged again later:

    <dir>/proposed/<client>.jsonl   every command each client submitted, and whether acked
    <dir>/learned/node-N.txt        the chat.log of each replica alive at the end
    <dir>/crashed/node-N.txt        the chat.log of each replica that was down at the end
    <dir>/cluster/                  cluster.yaml, the servers' logs, their data
    <dir>/summary.json              what was run and the verdict

Clients follow the UMich batch mode: each sends its next message as soon as the previous
one is answered (one outstanding). A command that gets no answer in `command_timeout`
seconds has an unknown outcome; the client records it as not acknowledged and sends the
message again under a new client id (its old id's next sequence number would wait
forever behind the lost one: the replicas apply each client's commands in order).

Only processes this runner started are ever signalled, by PID (through LocalCluster);
every server listens on the chosen local address only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..check.results import (
    Report,
    check,
    empty_slots,
    format_slots,
    load_results,
    parse_chat_log,
    top_slot,
)
from ..client import AsyncClient, ClientError
from ..core.errors import PaxoiError
from ..core.types import NodeId, Role
from ..server.config import PaxoiConfig, parse_config
from ..server.local import LocalCluster
from ..server.runtime import CRASH_EXIT_CODE
from .named import Scenario, ScenarioError

#: Without a majority and without progress for this long, the clients are declared stuck.
STALL_NO_MAJORITY = 3.0
#: With a majority up but no progress for this long, something is wrong: stuck too.
STALL_WITH_MAJORITY = 20.0
LEADER_TIMEOUT = 20.0


@dataclass(frozen=True)
class RunOptions:
    #: Where every server listens (a local address); None: the hosts the scenario names.
    host: str | None = None
    #: Keep the run's directory (it is also kept when the run fails unexpectedly).
    keep: bool = False
    #: Bound on the client phase, in seconds.
    timeout: float = 40.0
    #: Seconds a client waits for one answer before giving that command up.
    command_timeout: float = 4.0
    #: Use this directory (created if missing; kept) instead of a temporary one.
    workdir: Path | None = None
    log_level: str = "WARNING"


@dataclass
class ClientState:
    """One batch client, as the runner sees it (for progress and the stuck report)."""

    name: str
    target: int
    acked: int = 0
    failed: int = 0
    done: bool = False
    client_id: str = ""
    #: (message, seq, since) of the command it is waiting for
    waiting: tuple[str, int, float] | None = None
    server: NodeId | None = None
    last_error: str | None = None

    def describe(self, now: float) -> str:
        text = f"{self.name}: {self.acked} of {self.target} acknowledged"
        if self.waiting is not None:
            message, seq, since = self.waiting
            text += (
                f"; waiting {now - since:.1f} s for {message!r} "
                f"(client id {self.client_id}, seq {seq}) at server {self.server}"
            )
        if self.failed:
            text += f"; {self.failed} command(s) without an answer"
        if self.last_error:
            text += f"; last error: {self.last_error}"
        return text


@dataclass(frozen=True)
class ReplicaSummary:
    node: NodeId
    state: str
    entries: int
    sha256: str
    empty_slots: tuple[int, ...]
    top_slot: int | None
    live: bool


@dataclass
class Outcome:
    """What a run found; `exit_code` is what `paxoi scenario` exits with."""

    scenario: str
    exit_code: int
    verdict: str
    root: Path
    kept: bool = False
    acked: int = 0
    total: int = 0
    elapsed: float = 0.0
    report: Report | None = None
    replicas: list[ReplicaSummary] = field(default_factory=list)
    #: why clients could not finish (None if they all did)
    stuck_reason: str | None = None
    stuck_clients: list[str] = field(default_factory=list)
    no_majority: bool = False
    failures: list[str] = field(default_factory=list)
    expected_failure: bool = False


class ScenarioCluster(LocalCluster):
    """A LocalCluster whose servers may get extra command-line arguments each.

    The skip-slot fault goes to the first primary only, so the verdict can name the one
    server that must leave the hole and crash itself (UMich test 4); its successors must
    find the hole and fill it with a no-op."""

    def __init__(
        self, *args: Any, node_args: Mapping[NodeId, Sequence[str]] | None = None, **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        self.node_args = {n: list(a) for n, a in (node_args or {}).items()}

    def command(self, node: NodeId) -> list[str]:
        return [*super().command(node), *self.node_args.get(node, [])]


def run_scenario(
    scenario: Scenario, options: RunOptions | None = None, out: TextIO | None = None
) -> Outcome:
    """Run `scenario` and judge it; progress and the verdict go to `out` (stdout).
    Raises ScenarioError before starting anything if the scenario cannot run here."""
    return Runner(scenario, options or RunOptions(), out or sys.stdout).run()


class Runner:
    def __init__(self, scenario: Scenario, options: RunOptions, out: TextIO) -> None:
        self.s = scenario.validated()
        self.o = options
        self.out = out
        self.t0 = time.monotonic()
        self.cluster: ScenarioCluster | None = None
        self.clients: list[ClientState] = []
        self.total_acked = 0
        #: servers the runner killed itself (their exits are not news)
        self.killed: set[NodeId] = set()
        #: node -> how it went down
        self.down: dict[NodeId, str] = {}
        self.partitioned = False
        self._phase_over = False
        self._acked = asyncio.Event()
        self._armed: tuple[int, Callable[[], object]] | None = None
        #: the primary when the last whole-cluster kill was armed
        self._primary: NodeId | None = None
        self.thresholds: list[int] = []
        self.gates: list[tuple[int, asyncio.Event]] = []
        self.events: list[str] = []
        #: what the faults actually did, against what the scenario asked
        self.done = {"primary_kills": 0, "restarts": 0, "partition": 0, "majority_killed": 0}
        self.chaos_error: str | None = None
        self._skipper: NodeId | None = None
        # set when the cluster is configured
        self.root = Path()
        self.quorum = 1
        self.acceptors: tuple[NodeId, ...] = ()
        self.learners: list[NodeId] = []

    # ------------------------------------------------------------------ the whole run
    def run(self) -> Outcome:
        s = self.s
        host = pick_host(s, self.o.host)
        if self.o.workdir is not None:
            root = self.o.workdir.resolve()
            root.mkdir(parents=True, exist_ok=True)
            if any(root.iterdir()):
                raise ScenarioError(f"{root}: not empty; give an empty or new directory")
        else:
            root = Path(tempfile.mkdtemp(prefix=f"paxoi-scenario-{s.name}-")).resolve()
        outcome: Outcome | None = None
        refused = False
        try:
            outcome = self._run_in(root, host)
            return outcome
        except ScenarioError:
            refused = True  # nothing ran: nothing worth keeping
            raise
        finally:
            # Kept on request, and whenever the run failed unexpectedly (or was interrupted):
            # the servers' logs and data are the evidence.
            keep = self.o.keep or self.o.workdir is not None
            if not refused and (
                outcome is None or (outcome.exit_code != 0 and not outcome.expected_failure)
            ):
                keep = True
            if outcome is not None:
                outcome.kept = keep
            if keep:
                self.say(f"(kept {root}; judge it again with: paxoi check {root})")
            else:
                shutil.rmtree(root, ignore_errors=True)

    def _run_in(self, root: Path, host: str) -> Outcome:
        s = self.s
        storage = (root / "cluster" / s.storage).resolve()
        if not storage.is_relative_to(root):
            raise ScenarioError(
                f"storage directory {s.storage!r} would leave the scenario's directory {root}"
            )
        config = build_config(s, host, storage)
        acceptors = config.cluster_config().acceptors
        self.quorum = config.cluster_config().quorum
        self.acceptors = acceptors
        self.learners = [n for n, e in sorted(config.servers.items()) if Role.LEARNER in e.roles]
        node_args: dict[NodeId, list[str]] = {}
        if s.skip_slot >= 0:
            self._skipper = min(config.cluster_config().proposers)
            node_args[self._skipper] = ["--skip-slot", str(s.skip_slot)]
        for sub in ("proposed", "learned", "crashed"):
            (root / sub).mkdir()
        self.root = root
        total = s.clients * s.messages
        self.clients = [ClientState(f"client{k}", s.messages) for k in range(s.clients)]
        ports = ", ".join(str(e.port) for e in config.servers.values())
        self.say(f"paxoi scenario {s.name}: {s.summary}")
        self.say(
            f"  f={s.f}: {len(config.servers)} servers on {host} (ports {ports}); "
            f"{s.clients} clients x {s.messages} messages; faults: {describe_faults(s)}"
        )
        planted = os.environ.get("PAXOI_PLANT_BUG", "").strip()
        if planted:
            self.say(f"  WARNING: PAXOI_PLANT_BUG={planted}: the servers run with a planted bug")
        cluster = ScenarioCluster(
            config, root / "cluster", log_level=self.o.log_level, node_args=node_args
        )
        with cluster:
            self.cluster = cluster
            try:
                leader = self._start_cluster(cluster, storage)
            except TimeoutError as e:
                tails = log_tails(cluster)
                verdict = f"FAIL: {s.name}: {e}\n{tails}"
                self.say(verdict)
                return Outcome(s.name, 1, verdict, root, total=total, failures=[verdict])
            self.event(f"{len(config.servers)} servers up; server {leader} leads")
            stuck_reason = asyncio.run(self._drive())
            now = time.monotonic()
            stuck = [c.describe(now) for c in self.clients if not c.done]
            no_majority = self._acceptors_up() < self.quorum
            if stuck_reason is None and stuck:
                stuck_reason = "clients ended without finishing"
            if stuck_reason is None:
                self.event(
                    f"clients done: {self.total_acked} of {total} acknowledged{self._retries()}"
                )
            else:
                self.event(f"clients stuck: {stuck_reason}")
                for line in stuck:
                    self.say(f"    {line}")
            live = [n for n in self.learners if cluster.alive(n)]
            self._converge(live, 3.0 if no_majority else 15.0)
            states = {n: self._state(n) for n in config.servers}
            cluster.stop()
        replicas = self._collect(live, states)
        report = check(load_results(root), require_acked=not no_majority)
        self._print_table(replicas)
        for line in report.render(learners=False).splitlines():
            self.say(line if line.startswith(("OK", "VIOLATION")) else f"check: {line}")
        outcome = Outcome(
            s.name,
            0,
            "",
            root,
            acked=self.total_acked,
            total=total,
            elapsed=time.monotonic() - self.t0,
            report=report,
            replicas=replicas,
            stuck_reason=stuck_reason,
            stuck_clients=stuck,
            no_majority=no_majority,
        )
        self._judge(outcome)
        self.say(outcome.verdict)
        self._write_summary(outcome)
        return outcome

    def _start_cluster(self, cluster: ScenarioCluster, storage: Path) -> NodeId:
        """Start every server and wait for a leader. With a skipped slot, the server given
        the fault must be the first primary; which server wins the first election depends
        on which process starts first, so until it does (a few tries at most), the
        cluster is wiped and started again, before any client has sent anything."""
        for attempt in range(1, 7):
            cluster.start()
            leader = cluster.wait_leader(LEADER_TIMEOUT)
            if self._skipper is None or leader == self._skipper:
                return leader
            self.event(
                f"server {leader} won the first election, not {self._skipper} (which skips "
                f"slot {self.s.skip_slot}): starting afresh (attempt {attempt})"
            )
            cluster.stop()
            shutil.rmtree(storage, ignore_errors=True)
        raise TimeoutError(f"server {self._skipper} never won the first election")

    # ------------------------------------------------------------------ judging
    def _judge(self, o: Outcome) -> None:
        s = self.s
        failures = []
        live = [r for r in o.replicas if r.live]
        hashes = {r.sha256 for r in live}
        if len(hashes) > 1:
            failures.append(f"the live replicas' chat logs differ ({len(hashes)} distinct hashes)")
        if o.report is not None and not o.report.ok:
            failures.append(f"checker: {o.report.verdict()}")
        safety_ok = not failures
        if o.stuck_reason is not None:
            if o.no_majority:
                failures.append(f"clients stuck: {o.stuck_reason}")
            else:
                failures.append(
                    f"clients could not finish although a majority was up: {o.stuck_reason}"
                )
        failures.extend(self._unmet_expectations(o))
        for node, how in sorted(self.down.items()):
            if how.startswith("exited"):
                failures.append(
                    f"server {node} {how} on its own (see cluster/logs/node-{node}.log)"
                )
        if self.chaos_error:
            failures.append(f"fault injection failed: {self.chaos_error}")
        o.failures = failures
        o.exit_code = 1 if failures else 0
        took = f"{o.elapsed:.1f} s"
        if (
            s.expect_stuck
            and safety_ok
            and o.stuck_reason is not None
            and o.no_majority
            and len(failures) == 1
        ):
            o.expected_failure = True
            o.verdict = (
                f"FAIL (expected): {s.name}: clients stuck: {o.stuck_reason}; "
                f"no safety violation ({o.acked} of {o.total} acknowledged, {took})"
            )
        elif failures:
            o.verdict = f"FAIL: {s.name}: " + "; ".join(failures) + f" ({took})"
        else:
            entries = live[0].entries if live else 0
            o.verdict = (
                f"PASS: {s.name} (f={s.f}): {o.acked} of {o.total} messages acknowledged; "
                f"{len(live)} live replicas hold identical logs ({entries} entries); {took}"
            )

    def _unmet_expectations(self, o: Outcome) -> list[str]:
        """Did the faults happen as the scenario says? A scenario that silently skipped its
        fault would pass for the wrong reason."""
        s = self.s
        unmet = []
        if s.expect_stuck and (o.stuck_reason is None or not o.no_majority):
            unmet.append("expected the clients to be stuck without a majority, but they were not")
        if s.kills and self.done["primary_kills"] < s.kills:
            unmet.append(f"only {self.done['primary_kills']} of {s.kills} primary kills happened")
        if s.crash_restart_all and self.done["restarts"] < s.crash_restart_all:
            unmet.append(
                f"only {self.done['restarts']} of {s.crash_restart_all} whole-cluster restarts "
                "happened"
            )
        if s.partition and not self.done["partition"]:
            unmet.append("the partition did not happen as planned (see the events above)")
        if s.skip_slot >= 0 and o.stuck_reason is None and self._skipper is not None:
            if self.down.get(self._skipper) != _SELF_CRASH:
                unmet.append(
                    f"server {self._skipper} (the first primary) was expected to skip slot "
                    f"{s.skip_slot} and crash itself, but it did not"
                )
            for r in o.replicas:
                passed = r.live and r.top_slot is not None and r.top_slot > s.skip_slot
                if passed and s.skip_slot not in r.empty_slots:
                    unmet.append(
                        f"slot {s.skip_slot} of node-{r.node} holds a command, not a no-op"
                    )
        return unmet

    # ------------------------------------------------------------------ the client phase
    async def _drive(self) -> str | None:
        self._make_gates()
        tasks = [asyncio.create_task(self._client(c, k)) for k, c in enumerate(self.clients)]
        chaos = asyncio.create_task(self._chaos())
        self.event(f"{len(tasks)} clients start")
        try:
            return await self._watch(tasks, chaos)
        finally:
            # A step under way (say, between killing every server and restarting them)
            # is finished, not abandoned; steps not begun are skipped.
            self._phase_over = True
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(chaos, LEADER_TIMEOUT + 10)
            for t in tasks:
                t.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for c, r in zip(self.clients, results, strict=True):
                if isinstance(r, Exception):
                    c.last_error = f"the client crashed: {type(r).__name__}: {r}"
            if self.partitioned:
                await asyncio.to_thread(self._heal)

    async def _watch(
        self, tasks: list[asyncio.Task[None]], chaos: asyncio.Task[None]
    ) -> str | None:
        """Until every client is done, or they are stuck: then say why."""
        start = time.monotonic()
        last_total, last_progress = -1, start
        while not all(t.done() for t in tasks):
            await asyncio.sleep(0.1)
            self._note_exits()
            now = time.monotonic()
            if self.total_acked != last_total:
                last_total, last_progress = self.total_acked, now
            stalled = now - last_progress
            if now - start >= self.o.timeout:
                return f"time limit of {self.o.timeout:.0f} s reached; " + await self._diagnose(
                    stalled
                )
            if chaos.done() and stalled >= STALL_NO_MAJORITY and self._acceptors_up() < self.quorum:
                return await self._diagnose(stalled)
            if stalled >= STALL_WITH_MAJORITY:
                return await self._diagnose(stalled)
        return None

    async def _diagnose(self, stalled: float) -> str:
        assert self.cluster is not None
        servers = sorted(self.cluster.config.servers)
        up = [n for n in servers if self.cluster.alive(n)]
        down = [n for n in servers if n not in up]
        if self._acceptors_up() < self.quorum:
            return (
                f"no majority: only {len(up)} of {len(servers)} servers up "
                f"(down: {', '.join(map(str, down))}; a majority is {self.quorum})"
            )
        statuses = await asyncio.to_thread(self.cluster.statuses, 1.0)
        leaders = [n for n, st in statuses.items() if st is not None and st.is_leader]
        silent = [n for n in up if statuses.get(n) is None]
        return (
            f"a majority is up ({len(up)} of {len(servers)}) but nothing was acknowledged for "
            f"{stalled:.1f} s; leader: {', '.join(map(str, leaders)) or 'none'}"
            + (f"; not answering: {', '.join(map(str, silent))}" if silent else "")
        )

    async def _client(self, c: ClientState, k: int) -> None:
        """One batch client: the next message as soon as the previous one is answered."""
        assert self.cluster is not None
        rng = random.Random(f"{self.s.seed}/{k}")
        lo, hi = self.s.pause
        incarnation, attempt = 0, 0
        path = self.root / "proposed" / f"{c.name}.jsonl"
        with path.open("a", encoding="utf-8") as log:

            def record(seq: int, value: str, acked: bool) -> None:
                row = {"client": c.client_id, "seq": seq, "value": value, "acked": acked}
                log.write(json.dumps(row) + "\n")
                log.flush()

            client = self._new_client(c, incarnation)
            seq = 0
            try:
                while c.acked < c.target:
                    await self._pass_gates(c.acked + 1)
                    if hi > 0:
                        await asyncio.sleep(rng.uniform(lo, hi))
                    value = f"{c.name} message {c.acked + 1}"
                    if attempt:
                        value += f" (attempt {attempt + 1})"
                    seq += 1
                    c.waiting, c.server = (value, seq, time.monotonic()), client.target
                    try:
                        await client.submit(value, timeout=self.o.command_timeout)
                    except ClientError as e:
                        record(seq, value, False)
                        c.failed += 1
                        c.last_error = f"{type(e).__name__}: {e}"
                        await client.close()
                        incarnation, attempt, seq = incarnation + 1, attempt + 1, 0
                        client = self._new_client(c, incarnation)
                        await asyncio.sleep(0.05)
                        continue
                    except asyncio.CancelledError:
                        record(seq, value, False)
                        raise
                    record(seq, value, True)
                    c.acked += 1
                    self.total_acked += 1
                    if self._armed is not None and self.total_acked >= self._armed[0]:
                        strike, self._armed = self._armed[1], None
                        strike()
                    self._acked.set()
                    c.waiting, attempt = None, 0
                c.done = True
            finally:
                await client.close()

    def _new_client(self, c: ClientState, incarnation: int) -> AsyncClient:
        assert self.cluster is not None
        c.client_id = c.name if incarnation == 0 else f"{c.name}.{incarnation}"
        return AsyncClient.from_config(
            self.cluster.config,
            client_id=c.client_id,
            timeout=self.o.command_timeout,
            retry_interval=0.3,
            max_outstanding=1,
        )

    # ------------------------------------------------------------------ the faults
    def _plan(self) -> list[str]:
        """The faults to inject during the load, in order, one per step."""
        s = self.s
        return (
            ["kill-primary"] * s.kills
            + ["restart-all"] * s.crash_restart_all
            + ["partition"] * int(s.partition)
            + ["kill-majority"] * int(s.kill_majority)
        )

    def _make_gates(self) -> None:
        """Step i strikes when `thresholds[i]` messages are acknowledged in all. So that it
        always strikes mid-load, however fast the clients are, no client sends a message
        past its gate until the step has struck; the gates leave room above the
        threshold, so clients are still sending when it does."""
        s, steps = self.s, len(self._plan())
        total = s.clients * s.messages
        self.thresholds = [max(1, total * (i + 1) // (steps + 1)) for i in range(steps)]
        slack = max(1, s.messages // (2 * (steps + 1)))
        self.gates = [
            (min(s.messages, -(-t // s.clients) + slack), asyncio.Event()) for t in self.thresholds
        ]

    async def _pass_gates(self, n: int) -> None:
        """Before a client sends its n-th message: wait for the steps gated below it."""
        for gate, struck in self.gates:
            if n > gate and not struck.is_set():
                await struck.wait()

    async def _chaos(self) -> None:
        steps = {
            "kill-primary": self._kill_primary,
            "restart-all": self._restart_all,
            "partition": self._partition,
            "kill-majority": self._kill_majority,
        }
        try:
            for (_gate, struck), threshold, action in zip(
                self.gates, self.thresholds, self._plan(), strict=True
            ):
                if action == "restart-all":
                    self._primary = await self._find_leader()
                    self._arm(threshold)
                reached = await self._until_acked(threshold)
                self._armed = None  # fired or not, never later
                if not reached:
                    return
                try:
                    await steps[action](struck.set)
                finally:
                    struck.set()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # reported, never a traceback
            self.chaos_error = f"{type(e).__name__}: {e}"
            self.event(f"fault injection failed: {self.chaos_error}")
        finally:
            self._armed = None
            for _, struck in self.gates:
                struck.set()

    async def _kill_primary(self, struck: Callable[[], None]) -> None:
        leader = await self._find_leader()
        if leader is None:
            self.event("no leader to kill")
            return
        acked = self.total_acked
        await self._kill([leader])
        struck()
        self.done["primary_kills"] += 1
        self.event(f"killed primary {leader} (SIGKILL) after {acked} acknowledged messages")
        new = await self._find_leader()
        if new is not None:
            self.event(f"server {new} leads")

    async def _restart_all(self, struck: Callable[[], None]) -> None:
        """Kill every server at once; restart them all, the old primary last.

        The others elect a leader first, from their disks alone: the old primary wrote
        its records earliest, so without it the new leader depends most on what the
        others really made durable before they answered (a planted persistence bug
        shows up here). The old primary then rejoins with a log that may be ahead."""
        assert self.cluster is not None
        nodes = sorted(self.cluster.config.servers)
        acked = self.total_acked
        await self._kill(nodes)
        struck()
        self.event(f"killed all {len(nodes)} servers (SIGKILL) after {acked} acknowledged")
        await asyncio.sleep(0.2)
        old = self._primary
        first = [n for n in nodes if n != old] if len(nodes) > 2 else nodes
        self._restart(first)
        leader = await self._find_leader(timeout=LEADER_TIMEOUT)
        if first != nodes:
            self._restart([n for n in nodes if n not in first])
        self.done["restarts"] += 1
        self.event(
            f"restarted all {len(nodes)} servers from their disks"
            + (f", the old primary {old} last" if first != nodes else "")
            + (f"; server {leader} leads" if leader is not None else "")
        )

    async def _partition(self, struck: Callable[[], None]) -> None:
        assert self.cluster is not None
        total = self.s.clients * self.s.messages
        old = await self._find_leader()
        if old is None:
            self.event("no leader to isolate")
            return
        others = [n for n in sorted(self.cluster.config.servers) if n != old]
        self.partitioned = True
        await asyncio.to_thread(self.cluster.partition, [old], others)
        struck()
        self.event(f"partition: leader {old} cut off from {', '.join(map(str, others))}")
        new = await self._find_leader(exclude={old}, timeout=15.0)
        if new is None:
            self.event("the majority elected no new leader")
            return
        self.event(f"server {new} leads the majority")
        base = self.total_acked
        await self._until_acked(base + max(3, total // 6), timeout=15.0)
        self.event(f"the majority committed {self.total_acked - base} messages meanwhile")
        await asyncio.to_thread(self._heal)
        self.done["partition"] = 1

    async def _kill_majority(self, struck: Callable[[], None]) -> None:
        assert self.cluster is not None
        leader = await self._find_leader()
        victims = [leader] if leader is not None and leader in self.acceptors else []
        victims += [a for a in self.acceptors if a not in victims][: self.s.f + 1 - len(victims)]
        acked = self.total_acked
        await self._kill(victims)
        struck()
        self.done["majority_killed"] = 1
        n = len(self.cluster.config.servers)
        self.event(
            f"killed servers {', '.join(map(str, victims))} (SIGKILL) after {acked} "
            f"acknowledged: {n - len(victims)} of {n} left, fewer than a majority ({self.quorum})"
        )

    def _heal(self) -> None:
        assert self.cluster is not None
        if self.partitioned:
            self.partitioned = False
            self.cluster.heal()
            self.event("partition healed")

    async def _until_acked(self, n: int, timeout: float | None = None) -> bool:
        """Until `n` messages are acknowledged in all (False if the clients ended first).

        Woken by each acknowledgement, not by polling: a fault then strikes right after
        an answer reached a client, while the commands around it are still in flight."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.total_acked < n:
            if self._phase_over or all(c.done for c in self.clients):
                return False
            if deadline is not None and time.monotonic() > deadline:
                return False
            self._acked.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acked.wait(), 0.1)
        return True

    async def _find_leader(
        self, exclude: Iterable[NodeId] = (), timeout: float = 10.0
    ) -> NodeId | None:
        assert self.cluster is not None
        skip = set(exclude)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._phase_over:
            statuses = await asyncio.to_thread(self.cluster.statuses, 0.5)
            for node, st in sorted(statuses.items()):
                if (
                    st is not None
                    and st.is_leader
                    and node not in skip
                    and self.cluster.alive(node)
                ):
                    return node
            await asyncio.sleep(0.05)
        return None

    async def _kill(self, nodes: Sequence[NodeId]) -> None:
        """SIGKILL these servers at once: all are signalled, from this thread and without
        a pause, before any is waited for."""
        assert self.cluster is not None
        procs = self._signal_kill(nodes)
        for p in procs:
            await asyncio.to_thread(p.wait, 10)

    def _signal_kill(self, nodes: Sequence[NodeId]) -> list[subprocess.Popen[bytes]]:
        assert self.cluster is not None
        self.killed.update(nodes)
        for n in nodes:
            self.down[n] = "killed"
        procs = [self.cluster.procs[n] for n in nodes if self.cluster.alive(n)]
        for p in procs:
            p.send_signal(signal.SIGKILL)
        return procs

    def _arm(self, threshold: int) -> None:
        """Kill every server from inside the client callback that sees acknowledgement
        number `threshold`, with no event-loop round trip in between: the commands
        decided just before are then as fresh as they can be (their records may still
        be on their way to disk, which is what a planted persistence bug gets wrong)."""
        assert self.cluster is not None
        nodes = sorted(self.cluster.config.servers)
        if self.total_acked >= threshold:
            self._signal_kill(nodes)
        else:
            self._armed = (threshold, lambda: self._signal_kill(nodes))

    def _restart(self, nodes: Sequence[NodeId]) -> None:
        assert self.cluster is not None
        self.cluster.start(nodes)
        for n in nodes:
            self.killed.discard(n)
            self.down.pop(n, None)

    def _note_exits(self) -> None:
        """Report servers that died on their own (a fault knob, or a failure)."""
        assert self.cluster is not None
        for node, proc in sorted(self.cluster.procs.items()):
            code = proc.poll()
            if code is None or node in self.down:
                continue
            if code == CRASH_EXIT_CODE:
                self.down[node] = _SELF_CRASH
                self.event(f"server {node} crashed itself on purpose (exit status {code})")
            else:
                self.down[node] = f"exited (status {code})"
                self.event(f"server {node} exited with status {code}")

    def _acceptors_up(self) -> int:
        assert self.cluster is not None
        return sum(self.cluster.alive(a) for a in self.acceptors)

    def _retries(self) -> str:
        failed = sum(c.failed for c in self.clients)
        if not failed:
            return ""
        return f" ({failed} command(s) timed out and were sent again under a new client id)"

    # ------------------------------------------------------------------ the end
    def _converge(self, live: list[NodeId], bound: float) -> None:
        """Until the live replicas' chat logs are identical, twice in a row (bounded)."""
        assert self.cluster is not None
        deadline = time.monotonic() + bound
        previous: dict[NodeId, bytes] | None = None
        while True:
            logs = {n: self.cluster.chat_log(n) for n in live}
            if len(set(logs.values())) <= 1 and logs == previous:
                if len(live) > 1:
                    self.event(f"the {len(live)} live replicas hold identical logs")
                return
            if time.monotonic() > deadline:
                self.event(f"the live replicas did not converge within {bound:.0f} s")
                return
            previous = logs
            time.sleep(0.1)

    def _state(self, node: NodeId) -> str:
        assert self.cluster is not None
        if self.cluster.alive(node):
            return "up"
        self._note_exits()
        return self.down.get(node, "down")

    def _collect(self, live: list[NodeId], states: dict[NodeId, str]) -> list[ReplicaSummary]:
        """Copy each learner's chat.log into learned/ (live) or crashed/ (down)."""
        assert self.cluster is not None
        out = []
        for node in self.learners:
            data = self.cluster.chat_log(node)
            folder = "learned" if node in live else "crashed"
            (self.root / folder / f"node-{node}.txt").write_bytes(data)
            entries = parse_chat_log(data.decode("utf-8"), f"node-{node}")
            out.append(
                ReplicaSummary(
                    node,
                    states.get(node, "down"),
                    len(entries),
                    hashlib.sha256(data).hexdigest(),
                    empty_slots(entries),
                    top_slot(entries),
                    node in live,
                )
            )
        return out

    def _print_table(self, replicas: list[ReplicaSummary]) -> None:
        header = ("replica", "state", "entries", "sha256 (first 16)", "empty slots (no-ops)")
        self.say("{:<8} {:<24} {:>7}  {:<17}  {}".format(*header))
        for r in replicas:
            self.say(
                f"{'node-' + str(r.node):<8} {r.state:<24} {r.entries:>7}  {r.sha256[:16]:<17}  "
                f"{format_slots(r.empty_slots)}"
            )

    def _write_summary(self, o: Outcome) -> None:
        s = self.s
        doc = {
            "scenario": s.name,
            "source": s.source,
            "f": s.f,
            "clients": s.clients,
            "messages": s.messages,
            "faults": describe_faults(s),
            "exit_code": o.exit_code,
            "verdict": o.verdict,
            "expected_failure": o.expected_failure,
            "acked": o.acked,
            "total": o.total,
            "elapsed": round(o.elapsed, 3),
            "stuck_reason": o.stuck_reason,
            "stuck_clients": o.stuck_clients,
            "failures": o.failures,
            "replicas": [asdict(r) for r in o.replicas],
            "events": self.events,
            "check": o.report.to_dict() if o.report is not None else None,
        }
        (o.root / "summary.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")

    # ------------------------------------------------------------------ output
    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def event(self, what: str) -> None:
        line = f"[{time.monotonic() - self.t0:5.1f} s] {what}"
        self.events.append(line)
        self.say(f"  {line}")


_SELF_CRASH = f"crashed itself (exit {CRASH_EXIT_CODE})"


# -- configuration --------------------------------------------------------------------------


def describe_faults(s: Scenario) -> str:
    parts = []
    if s.skip_slot >= 0:
        parts.append(f"the first primary skips slot {s.skip_slot}, then dies")
    if s.kills:
        parts.append(f"kill the primary {s.kills} time(s)")
    if s.drop_rate:
        parts.append(f"drop {s.drop_rate:.0%} of messages (seed {s.seed})")
    if s.disk_delay:
        parts.append(f"a slow disk ({s.disk_delay * 1000:.0f} ms per write)")
    if s.crash_restart_all:
        parts.append(f"kill and restart every server {s.crash_restart_all} time(s)")
    if s.partition:
        parts.append("isolate the leader, then heal")
    if s.kill_majority:
        parts.append(f"kill f+1 = {s.f + 1} servers")
    if s.pause[1] > 0:
        parts.append(f"random pauses of {s.pause[0]:g}-{s.pause[1]:g} s between messages")
    return "; ".join(parts) or "none"


def pick_host(s: Scenario, host: str | None) -> str:
    """The local address every server listens on. The course's files name a remote
    machine; the runner starts every server here, so such a host is refused with a hint
    (`--host 127.0.0.1`) rather than tried."""
    if host is not None:
        check_local(host, "--host")
        return host
    hosts = sorted(set(s.hosts)) or ["127.0.0.1"]
    if len(hosts) > 1:
        raise ScenarioError(
            f"{s.source}: the servers are on several hosts ({', '.join(hosts)}); the runner "
            "starts every server on this machine: pass --host 127.0.0.1"
        )
    check_local(hosts[0], f"{s.source}: host")
    return hosts[0]


def check_local(host: str, what: str) -> None:
    """Refuse a host this machine cannot listen on. A name other than localhost is not
    looked up (that would need DNS, and it names another machine anyway)."""
    hint = "the runner starts every server on this machine: pass --host 127.0.0.1"
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ScenarioError(
                f"{what} {host} is not an address of this machine; {hint}"
            ) from None
    try:
        with socket.create_server((host, 0)):
            pass
    except OSError as e:
        raise ScenarioError(f"{what} {host}: cannot listen there ({e.strerror}); {hint}") from None


def free_ports_on(host: str, n: int) -> list[int]:
    """n TCP ports that nothing listens on right now at `host`."""
    socks = []
    try:
        for _ in range(n):
            socks.append(socket.create_server((host, 0)))
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def build_config(s: Scenario, host: str, storage: Path) -> PaxoiConfig:
    """The cluster's configuration: the scenario's servers on `host`, free ports, the
    storage directory, and the faults as config fields (skip-slot excepted: it is given
    to the first primary alone, on its command line)."""
    ports = free_ports_on(host, s.servers)
    faults: dict[str, Any] = {
        "msg_drop_rate": s.drop_rate,
        "seed": s.seed,
        "skip_slot": -1,
        "disk_delay": s.disk_delay,
    }
    if s.base is not None:
        base = s.base
        data = base.model_dump(mode="json", exclude={"servers", "storage", "f", "faults"})
        servers = {
            nid: {"host": host, "port": port, "roles": [r.value for r in entry.roles]}
            for (nid, entry), port in zip(sorted(base.servers.items()), ports, strict=True)
        }
        data["faults"] = {
            **base.faults.model_dump(mode="json"),
            **faults,
            "control": base.faults.control or s.partition,
        }
        fsync = base.storage.fsync
    else:
        data = {"cluster": "scenario"}
        servers = {i: {"host": host, "port": ports[i]} for i in range(s.servers)}
        data["faults"] = {**faults, "control": s.partition}
        fsync = True
    data["servers"] = servers
    data["storage"] = {"dir": str(storage), "fsync": fsync, "memory": False}
    try:
        return parse_config(data, "scenario")
    except PaxoiError as e:
        raise ScenarioError(str(e)) from None


def log_tails(cluster: LocalCluster, lines: int = 8) -> str:
    """The end of every server's own log, to explain a failure."""
    out = []
    for node in sorted(cluster.config.servers):
        path = cluster.log_dir / f"node-{node}.log"
        text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
        out.append(f"--- node {node} ({path}) ---\n" + "\n".join(text))
    return "\n".join(out)
