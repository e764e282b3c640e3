"""One nemesis run: a cluster, clients, faults; then heal, recover, check, report.

1. Start 2f+1 servers on free ports of 127.0.0.1 (a `LocalCluster` in the run's
   directory) running the key-value store, with leases on for lease reads and run-time
   fault injection allowed; wait for a leader.
2. Run the clients (`paxoi.nemesis.workload`) for `duration` seconds while the nemesis
   (`paxoi.nemesis.faults`) carries out a seeded schedule (`paxoi.nemesis.schedule`).
   Every operation is recorded in a history (`paxoi.client.history`).
3. Heal everything: SIGCONT the paused, restart the dead, clocks back to 100%, no
   partition. Wait until every server answers, one leads, and all have applied the same
   slots.
4. Read every key through the log (recorded in the history too), wait until every server
   has applied those reads, and ask each server for its own copy of every key (a stale
   read, which after quiescence must equal the final value).
5. Stop the servers. Check the history for linearizability (`paxoi.check.linear`) and the
   final values against every acknowledged write (`paxoi.nemesis.lost`).

The run passes when the cluster recovered, the history is linearizable, nothing
acknowledged was lost, the replicas agree, and no server exited on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..apps import kv
from ..check.linear import LINEARIZABLE, LinearResult, check_history
from ..client import AsyncClient
from ..client.history import Event, HistoryRecorder, RecordingKV
from ..core.types import NodeId
from ..server.config import PaxoiConfig, free_ports, local_config
from ..server.local import LocalCluster, query_statuses
from .faults import Injection, Nemesis
from .lost import LostReport, check_lost
from .schedule import FaultSet, FaultSpec, generate_schedule
from .workload import Workload, WorkloadOptions

#: Lines of the checker's explanation printed in the summary (all of it is in --json).
EXPLANATION_LINES = 40
#: Leases of 20 ticks (200 ms at 10 ms a tick) when reads are lease reads.
LEASE_TICKS = 20


@dataclass
class NemesisOptions:
    servers: int = 3
    duration: float = 30.0
    faults: FaultSet = field(default_factory=FaultSet)
    clients: int = 8
    readers: int | None = None  # None: one per server
    keys: int = 8
    reads: str = "lease"
    workload: str = "mixed"
    seed: int = 0
    history: Path | None = None
    plant_bug: str | None = None
    workdir: Path | None = None
    keep: bool = False
    op_timeout: float = 1.0
    check_timeout: float | None = None
    clock_beyond_bound: bool = False
    recover_timeout: float = 30.0

    @property
    def f(self) -> int:
        return (self.servers - 1) // 2


@dataclass
class NemesisReport:
    options: NemesisOptions
    schedule: list[FaultSpec] = field(default_factory=list)
    injections: list[Injection] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "fail": 0, "info": 0})
    by_function: dict[str, dict[str, int]] = field(default_factory=dict)
    linear: LinearResult | None = None
    lost: LostReport | None = None
    final: dict[str, str | None] = field(default_factory=dict)
    #: Why the run failed, apart from the checks (no recovery, servers exiting, ...).
    problems: list[str] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)
    client_errors: dict[str, int] = field(default_factory=dict)
    workdir: Path | None = None
    kept: bool = False
    history: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def linearizable(self) -> bool:
        return self.linear is not None and self.linear.status == LINEARIZABLE

    @property
    def ok(self) -> bool:
        return (
            self.linearizable
            and self.lost is not None
            and self.lost.ok
            and not self.problems
            and not self.disagreements
        )

    @property
    def verdict(self) -> str:
        if self.ok:
            return "PASS"
        if self.linear is not None and self.linear.status != LINEARIZABLE:
            return "FAIL: " + (
                "not linearizable" if self.linear.status != "unknown" else "undecided"
            )
        if self.lost is not None and not self.lost.ok:
            return "FAIL: acknowledged writes lost"
        if self.disagreements:
            return "FAIL: replicas disagree"
        if self.lost is None:
            return "FAIL: not checked for lost writes (no final values; problems below)"
        return "FAIL: linearizable and nothing lost, but see the problems above"

    def fault_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for inj in self.injections:
            if not inj.skipped:
                out[inj.kind] = out.get(inj.kind, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        o = self.options
        return {
            "verdict": self.verdict,
            "ok": self.ok,
            "servers": o.servers,
            "duration": o.duration,
            "faults": o.faults.describe(),
            "workload": o.workload,
            "reads": o.reads,
            "clients": o.clients,
            "readers": o.readers,
            "keys": o.keys,
            "seed": o.seed,
            "plant_bug": o.plant_bug,
            "operations": sum(self.counts.values()),
            "counts": dict(self.counts),
            "by_function": self.by_function,
            "faults_injected": self.fault_counts(),
            "injections": [i.to_dict() for i in self.injections],
            "schedule": [s.to_dict() for s in self.schedule],
            "linearizability": None if self.linear is None else self.linear.to_dict(),
            "lost": None if self.lost is None else self.lost.to_dict(),
            "final": self.final,
            "disagreements": self.disagreements,
            "problems": self.problems,
            "client_errors": self.client_errors,
            "history": None if self.history is None else str(self.history),
            "workdir": None if self.workdir is None or not self.kept else str(self.workdir),
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
        }

    def render(self) -> str:
        o = self.options
        c = self.counts
        total = sum(c.values())
        lines = [
            f"operations: {total} ({c['ok']} ok, {c['fail']} fail, {c['info']} unknown)",
        ]
        parts = []
        for f_name, fc in sorted(self.by_function.items()):
            parts.append(f"{f_name} {sum(fc.values())}")
        if parts:
            lines.append(f"  by kind: {', '.join(parts)}")
        injected = self.fault_counts()
        if injected:
            detail = ", ".join(f"{k} {n}" for k, n in injected.items())
            lines.append(f"faults injected: {sum(injected.values())} ({detail})")
        else:
            lines.append(f"faults injected: none ({o.faults.describe()})")
        if self.linear is not None:
            lines.append(
                f"linearizability: {self.linear.status} "
                f"({len(self.linear.keys)} keys, checked in {self.linear.seconds:.1f} s)"
            )
        if self.lost is not None:
            lo = self.lost
            state = "nothing lost" if lo.ok else f"{len(lo.problems)} problem(s)"
            lines.append(
                f"acknowledged writes: {lo.acknowledged}, {state} "
                f"(final lists hold {lo.elements} elements, {lo.unknown_elements} of unknown outcome)"
            )
        else:
            lines.append("acknowledged writes: not checked (no final values)")
        if self.disagreements:
            lines.append(f"replicas disagree: {len(self.disagreements)} value(s)")
        for p in self.problems:
            lines.append(f"problem: {p}")
        if self.lost is not None:
            for p in self.lost.problems:
                lines.append(f"lost: {p}")
        for d in self.disagreements[:5]:
            lines.append(f"disagreement: {d}")
        if self.linear is not None and not self.linearizable and self.linear.explanation:
            text = self.linear.explanation.splitlines()
            lines.append("")
            lines += text[:EXPLANATION_LINES]
            if len(text) > EXPLANATION_LINES:
                where = (
                    f"paxoi check-linear {self.history}"
                    if self.history is not None
                    else "--json, or keep the history with --history FILE"
                )
                lines.append(f"... ({len(text) - EXPLANATION_LINES} more lines: {where})")
            lines.append("")
        took = self.seconds.get("total", 0.0)
        lines.append(f"verdict: {self.verdict} (seed {o.seed}, {took:.1f} s)")
        if self.kept and self.workdir is not None:
            lines.append(f"run directory kept: {self.workdir}")
        if self.history is not None and self.history.exists():
            lines.append(f"history: {self.history}")
        return "\n".join(lines)


def build_config(opts: NemesisOptions, data: Path) -> PaxoiConfig:
    timing: dict[str, Any] = {}
    if opts.reads == "lease":
        timing["lease"] = LEASE_TICKS
    return local_config(
        opts.f,
        0,
        data,
        cluster="nemesis",
        ports=free_ports(opts.servers),
        app="kv",
        timing=timing,
        faults={"control": True},
    )


def run_nemesis(
    opts: NemesisOptions, say: Callable[[str], None] = lambda line: None
) -> NemesisReport:
    """Carry out one run (see the module docstring); never leaves a process running."""
    started = time.monotonic()
    report = NemesisReport(opts)
    own_dir = opts.workdir is None
    root = Path(tempfile.mkdtemp(prefix="paxoi-nemesis-")) if own_dir else opts.workdir
    assert root is not None
    root.mkdir(parents=True, exist_ok=True)
    report.workdir = root
    history = opts.history if opts.history is not None else root / "history.jsonl"
    report.history = history
    config = build_config(opts, root / "data")
    drift = config.timing.lease_drift_percent
    report.schedule = generate_schedule(
        opts.seed,
        opts.duration,
        opts.faults,
        opts.servers,
        drift_percent=drift,
        clock_beyond_bound=opts.clock_beyond_bound,
    )
    cluster = LocalCluster(config, root / "cluster", env={"PAXOI_PLANT_BUG": opts.plant_bug or ""})
    nemesis: Nemesis | None = None
    recorder = HistoryRecorder(history)
    try:
        cluster.start()
        try:
            leader = cluster.wait_leader(30.0)
        except TimeoutError as e:
            report.problems.append(f"the cluster did not start: {e}")
            return report
        say(f"[{0.0:6.1f} s] {opts.servers} servers up, node {leader} leads")
        report.seconds["startup"] = time.monotonic() - started

        t0 = time.monotonic()
        nemesis = Nemesis(cluster, report.schedule, opts.seed, t0=t0, say=say)
        nemesis.start()
        workload = Workload(
            config,
            recorder,
            WorkloadOptions(
                workload=opts.workload,
                keys=opts.keys,
                clients=opts.clients,
                readers=opts.servers if opts.readers is None else opts.readers,
                reads=opts.reads,
                op_timeout=opts.op_timeout,
                seed=opts.seed,
            ),
        )
        asyncio.run(workload.run(opts.duration))
        report.client_errors = dict(workload.stats.errors)
        report.seconds["workload"] = time.monotonic() - t0

        t1 = time.monotonic()
        say(f"[{time.monotonic() - t0:6.1f} s] clients stopped; healing everything")
        report.problems += nemesis.heal_all()
        report.problems += nemesis.errors
        report.problems += nemesis.exits
        report.problems += nemesis.hangs
        report.injections = list(nemesis.injections)
        recovered = _wait_converged(cluster, opts.recover_timeout)
        report.seconds["recovery"] = time.monotonic() - t1
        if not recovered:
            report.problems.append(
                f"no recovery within {opts.recover_timeout:.0f} s after healing: "
                + _describe_statuses(cluster)
            )
        else:
            say(f"[{time.monotonic() - t0:6.1f} s] recovered in {report.seconds['recovery']:.1f} s")
            # Even after other problems (a server that ignored SIGTERM, ...): the checks
            # of the history and the final values still say whether data was lost.
            final, missing = asyncio.run(final_reads(config, recorder, workload.keys))
            report.final = final
            if missing:
                report.problems.append(f"final reads failed for key(s) {', '.join(missing)}")
            if not _wait_converged(cluster, opts.recover_timeout):
                report.problems.append("the servers did not all apply the final reads")
            else:
                report.disagreements = asyncio.run(replica_agreement(config, workload.keys, final))
    except KeyboardInterrupt:
        report.problems.append("interrupted")
        raise
    finally:
        if nemesis is not None:
            nemesis.stop()
            for node in sorted(nemesis.paused):
                cluster.resume(node)
            report.injections = list(nemesis.injections)
        cluster.stop()
        recorder.close()
        events = recorder.events
        _tally(report, events)
        report.seconds["run"] = time.monotonic() - started
        if events:
            t2 = time.monotonic()
            timeout = opts.check_timeout or max(60.0, 2 * opts.duration)
            report.linear = check_history(events, timeout=timeout)
            # Without final values (no recovery) the lost-write check cannot be made.
            report.lost = check_lost(events, report.final) if report.final else None
            report.seconds["check"] = time.monotonic() - t2
        report.seconds["total"] = time.monotonic() - started
        expected_failure = opts.plant_bug is not None or opts.reads == "stale"
        report.kept = not own_dir or opts.keep or (not report.ok and not expected_failure)
        if not report.kept:
            shutil.rmtree(root, ignore_errors=True)
            if opts.history is None:
                report.history = None
    return report


def _tally(report: NemesisReport, events: Sequence[Event]) -> None:
    kinds: dict[int, str] = {}
    fns: dict[int, str] = {}
    for e in events:
        if e.type == "invoke":
            kinds[e.id] = "info"
            fns[e.id] = e.f
        else:
            kinds[e.id] = e.type
    counts = {"ok": 0, "fail": 0, "info": 0}
    by_function: dict[str, dict[str, int]] = {}
    for op_id, kind in kinds.items():
        counts[kind] += 1
        fc = by_function.setdefault(fns[op_id], {"ok": 0, "fail": 0, "info": 0})
        fc[kind] += 1
    report.counts = counts
    report.by_function = by_function


def _wait_converged(cluster: LocalCluster, timeout: float) -> bool:
    """Every server answers, exactly one leads, and all have applied the same slots."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = query_statuses(cluster.config, 1.0)
        if all(st is not None for st in statuses.values()):
            leaders = [n for n, st in statuses.items() if st is not None and st.is_leader]
            applied = {st.applied for st in statuses.values() if st is not None}
            if len(leaders) == 1 and len(applied) == 1:
                return True
        time.sleep(0.1)
    return False


def _describe_statuses(cluster: LocalCluster) -> str:
    parts = []
    for node, st in query_statuses(cluster.config, 1.0).items():
        if st is None:
            parts.append(f"node {node} silent")
        else:
            role = "leader" if st.is_leader else f"leader {st.leader}"
            parts.append(f"node {node} {role}, applied {st.applied}")
    return "; ".join(parts)


async def final_reads(
    config: PaxoiConfig, recorder: HistoryRecorder, keys: Sequence[str], attempts: int = 5
) -> tuple[dict[str, str | None], list[str]]:
    """Read every key through the log (recorded as process "final"); the values, and the
    keys no attempt could read. A read of unknown outcome is retried with a new client."""
    final: dict[str, str | None] = {}
    missing: list[str] = []
    gen = 0
    client: AsyncClient | None = None
    rkv: RecordingKV | None = None
    try:
        for key in keys:
            for _ in range(attempts):
                if client is None or rkv is None:
                    client = AsyncClient.from_config(
                        config, name=f"nemesis-final-{gen}", timeout=3.0, retry_interval=0.5
                    )
                    rkv = RecordingKV(client, recorder, process=f"final.{gen}", timeout=3.0)
                try:
                    final[key] = await rkv.get(key)
                    break
                except Exception:
                    gen += 1  # outcome unknown: the next attempt is a new client
                    with contextlib.suppress(Exception):
                        await client.close()
                    client = rkv = None
            else:
                missing.append(key)
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
    return final, missing


async def replica_agreement(
    config: PaxoiConfig, keys: Sequence[str], final: dict[str, str | None]
) -> list[str]:
    """Each server's own value of each key (a stale read: after quiescence it must equal
    the final value); the differences."""
    problems: list[str] = []

    async def one(node: NodeId, entry: Any) -> None:
        client = AsyncClient(
            {node: (entry.host, entry.port)}, cluster=config.cluster, name="nemesis-agree",
            timeout=3.0,
        )  # fmt: skip
        try:
            for key in keys:
                if key not in final:
                    continue
                try:
                    raw = await client.read(kv.get(key), mode="stale", timeout=3.0)
                    value = json.loads(raw).get("value")
                except Exception as e:
                    problems.append(f"node {node}: cannot read {key!r}: {type(e).__name__}")
                    continue
                if value != final[key]:
                    problems.append(
                        f"node {node}: {key!r} is {_short(value)}, not {_short(final[key])}"
                    )
        finally:
            await client.close()

    await asyncio.gather(*(one(n, e) for n, e in sorted(config.servers.items())))
    return problems


def _short(value: str | None, limit: int = 40) -> str:
    if value is None:
        return "absent"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(value)} chars)"


def random_seed() -> int:
    return random.SystemRandom().randrange(1, 1_000_000)


__all__ = [
    "LEASE_TICKS",
    "NemesisOptions",
    "NemesisReport",
    "build_config",
    "final_reads",
    "random_seed",
    "replica_agreement",
    "run_nemesis",
]
