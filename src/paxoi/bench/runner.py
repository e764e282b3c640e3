"""`paxoi bench` itself: one measured run, or a sweep of runs, on one local cluster.

A run ("point") is C clients with K commands outstanding each, spread over P load
processes. They connect, then all start together; the first `warmup` seconds do not
count, the next `duration` seconds do. The cluster's counters are sampled at both ends of
that window. Everything ends by a deadline: the load processes stop sending when the
window closes, their in-flight commands get a bounded drain, and every process started
here (servers and load) is stopped by its PID.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TextIO, TypeVar

from paxoi.bench.cluster import BenchCluster, leader_changed, window_figures
from paxoi.bench.load import LoadProcesses, LoadResult, split_clients
from paxoi.bench.worker import DRAIN_SECONDS, WorkerSpec

SCHEMA = "paxoi-bench/1"

#: The default sweep: (clients, outstanding per client); 1 to 4096 commands in flight.
#: Outstanding stays <= 256 per client, the replicas' remembered results per client.
DEFAULT_SWEEP: tuple[tuple[int, int], ...] = (
    (1, 1),
    (1, 8),
    (4, 16),
    (8, 32),
    (16, 64),
    (32, 128),
)


@dataclass
class BenchParams:
    servers: int = 3
    clients: int = 1
    outstanding: int = 1
    size: int = 16
    duration: float = 10.0
    warmup: float = 1.5
    fsync: bool = True
    #: Load processes; None: one per client, at most one per CPU (and 8).
    workers: int | None = None
    #: (clients, outstanding) points; None: one run of clients x outstanding.
    sweep: list[tuple[int, int]] | None = None
    timeout: float = 10.0
    keep: bool = False
    #: The servers' application: "chat", or "kv" (bounded state, for memory runs).
    app: str = "chat"
    #: The servers' log level (their logs are in the work directory; see --keep).
    log_level: str = "WARNING"

    def validate(self) -> None:
        if self.servers not in (1, 3, 5, 7, 9):
            raise ValueError("--servers: 1, 3, 5, 7 or 9")
        if self.clients < 1 or self.outstanding < 1:
            raise ValueError("--clients and --outstanding: at least 1")
        if self.size < 1 or self.size > 1 << 20:
            raise ValueError("--size: 1 byte to 1 MiB")
        if not 0.5 <= self.duration <= 3600:
            raise ValueError("--duration: 0.5 to 3600 s")
        if not 0 <= self.warmup <= 600:
            raise ValueError("--warmup: 0 to 600 s")
        if self.app not in ("chat", "kv"):
            raise ValueError("--app: chat or kv")
        if self.workers is not None and self.workers < 1:
            raise ValueError("--workers: at least 1")
        for c, k in self.sweep or []:
            if c < 1 or k < 1:
                raise ValueError(f"sweep point {c}x{k}: both at least 1")

    def points(self) -> list[tuple[int, int]]:
        return list(self.sweep) if self.sweep else [(self.clients, self.outstanding)]


def default_workers(clients: int) -> int:
    return max(1, min(clients, os.cpu_count() or 1, 8))


def parse_points(text: str) -> list[tuple[int, int]]:
    """ "1x1,4x16" -> [(1, 1), (4, 16)]."""
    points = []
    for part in text.split(","):
        c, sep, k = part.strip().lower().partition("x")
        if not sep:
            raise ValueError(f"sweep point {part!r}: CLIENTSxOUTSTANDING, e.g. 4x16")
        points.append((int(c), int(k)))
    if not points:
        raise ValueError("no sweep points")
    return points


def measure_fsync(directory: Path, n: int = 20) -> float | None:
    """Median milliseconds of a 64-byte append + fsync in `directory` (the disk's floor)."""
    times = []
    try:
        fd, name = tempfile.mkstemp(dir=directory, prefix="fsync-probe-")
    except OSError:
        return None
    try:
        for _ in range(n):
            t = time.perf_counter()
            os.write(fd, b"x" * 64)
            os.fsync(fd)
            times.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(name)
    times.sort()
    return round(1000 * times[len(times) // 2], 3)


def machine_info() -> dict[str, Any]:
    try:
        import uvloop  # noqa: F401

        has_uvloop = True
    except ImportError:
        has_uvloop = False
    return {
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "uvloop": has_uvloop,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


class Progress:
    """One `\\r` line on stderr: a bar, the phase, elapsed time and the recent rate."""

    WIDTH = 24

    def __init__(self, stream: TextIO | None, label: str = "") -> None:
        self.stream = stream
        self.label = label
        self._last: tuple[float, int] | None = None
        self._rate = 0.0
        self._drawn = False

    def update(self, now: float, t0: float, start: float, end: float, done: int) -> None:
        if self.stream is None:
            return
        if self._last is not None and now - self._last[0] >= 0.5:
            self._rate = (done - self._last[1]) / (now - self._last[0])
            self._last = (now, done)
        elif self._last is None:
            self._last = (now, done)
        total = max(end - t0, 1e-9)
        frac = min(1.0, max(0.0, (now - t0) / total))
        filled = int(frac * self.WIDTH)
        phase = "warm-up" if now < start else ("measuring" if now < end else "draining")
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.stream.write(
            f"\r{self.label}[{bar}] {max(0.0, now - t0):5.1f}/{total:.1f} s {phase:<9} "
            f"{self._rate:>9,.0f} cmd/s"
        )
        self.stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self.stream is not None and self._drawn:
            self.stream.write("\r" + " " * 80 + "\r")
            self.stream.flush()
            self._drawn = False


S = TypeVar("S")


@dataclass
class Measured(Generic[S]):
    """What one measuring window gave: the server samples at both ends, the load
    processes' CPU seconds at both ends, and their merged results."""

    first: S
    last: S
    load_cpu_first: list[float | None]
    load_cpu_last: list[float | None]
    result: LoadResult
    seconds: float  # between the two samples, as the driver saw it

    def load_cpu_percent(self) -> list[float | None]:
        return [
            None if a is None or b is None else round(100.0 * (b - a) / self.seconds, 1)
            for a, b in zip(self.load_cpu_first, self.load_cpu_last, strict=True)
        ]


def drive_window(
    load: LoadProcesses,
    warmup: float,
    duration: float,
    sample: Callable[[], S],
    progress: Progress | None = None,
    extra: list[dict[str, Any] | None] | None = None,
) -> Measured[S]:
    """Start ready load processes together; `sample()` the servers when the warm-up
    ends and when the window closes; collect the results (all bounded in time)."""
    t0 = time.monotonic() + 0.05
    start, end = t0 + warmup, t0 + warmup + duration
    load.go(start, end, extra)

    def wait_until(when: float) -> None:
        while (now := time.monotonic()) < when:
            load.poll(min(0.1, when - now))
            load.check("while running")
            if progress is not None:
                progress.update(time.monotonic(), t0, start, end, load.done())

    wait_until(start)
    at_first = time.monotonic()
    first = sample()
    cpu_first = load.cpu_seconds()
    wait_until(end)
    at_last = time.monotonic()
    last = sample()
    cpu_last = load.cpu_seconds()
    result = load.collect(timeout=DRAIN_SECONDS + 15.0)
    if progress is not None:
        progress.finish()
    return Measured(first, last, cpu_first, cpu_last, result, max(at_last - at_first, 1e-9))


def load_figures(result: LoadResult, duration: float, size: int) -> dict[str, Any]:
    """The client-side figures of a window: throughput and latency."""
    hist = result.histogram
    return {
        "duration_s": duration,
        "committed": result.committed,
        "errors": result.errors,
        "error_kinds": result.error_kinds,
        "throughput": round(result.committed / duration, 1),
        "throughput_mb_s": round(result.committed * size / duration / 1e6, 3),
        "per_second": result.per_second,
        "latency_ms": hist.summary_ms(),
        "latency_histogram": hist.to_json(),
    }


def run_point(
    cluster: BenchCluster,
    params: BenchParams,
    clients: int,
    outstanding: int,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """One measured run of `clients` x `outstanding` against a started cluster."""
    shares = split_clients(clients, params.workers or default_workers(clients))
    specs = [
        WorkerSpec(
            servers=cluster.servers,
            cluster=cluster.config.cluster,
            clients=n,
            outstanding=outstanding,
            size=params.size,
            index=i,
            timeout=params.timeout,
            app=params.app,
        )
        for i, n in enumerate(shares)
    ]
    with LoadProcesses(specs, log_dir=cluster.workdir / "logs") as load:
        load.wait_ready(timeout=30.0 + params.timeout)
        cluster.check_alive()
        m = drive_window(load, params.warmup, params.duration, cluster.sample, progress)
        pids = load.pids()
    cluster.check_alive()
    servers = window_figures(m.first, m.last, m.result.committed)
    # The leader when the window opened; if none was (an election under way), at its end.
    leader = m.first.leader()
    if leader is None:
        leader = m.last.leader()
    leader_fig = servers["servers"].get(str(leader)) if leader is not None else None
    return {
        "clients": clients,
        "outstanding": outstanding,
        "in_flight": clients * outstanding,
        "load_processes": len(specs),
        "load_clients_per_process": shares,
        "load_pids": pids,
        **load_figures(m.result, params.duration, params.size),
        "leader": leader,
        "leader_changed": leader_changed(m.first, m.last),
        "fsync": {
            "enabled": params.fsync,
            # storage write transactions (each one fsync when fsync is on) of the leader
            "leader_syncs_per_s": leader_fig["syncs_per_s"] if leader_fig else None,
            "commands_per_sync": leader_fig["commands_per_sync"] if leader_fig else None,
        },
        "sample_seconds": servers["sample_seconds"],
        "servers": servers["servers"],
        "load_cpu_percent": m.load_cpu_percent(),
    }


def run_bench(
    params: BenchParams,
    *,
    progress_stream: TextIO | None = None,
    on_point: Callable[[dict[str, Any]], None] | None = None,
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Start a cluster, run every point, stop it; the whole JSON document."""
    params.validate()
    started = datetime.now(UTC)
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "argv": list(argv) if argv is not None else None,
        "started": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "parameters": {k: v for k, v in asdict(params).items() if k != "keep"},
        "runs": [],
    }
    with BenchCluster(
        params.servers,
        fsync=params.fsync,
        keep=params.keep,
        app=params.app,
        log_level=params.log_level,
    ) as cluster:
        doc["machine"]["fsync_probe_ms"] = measure_fsync(cluster.workdir)
        idle = cluster.sample()
        doc["cluster"] = {
            "servers": params.servers,
            "leader": cluster.leader_id,
            "pids": {str(n): pid for n, pid in cluster.pids().items()},
            "workdir": str(cluster.workdir) if params.keep else None,
            "rss_idle_bytes": {str(n): s.rss for n, s in idle.nodes.items()},
        }
        points = params.points()
        for i, (c, k) in enumerate(points):
            label = f"{c}x{k} " if len(points) > 1 else ""
            if len(points) > 1:
                label = f"({i + 1}/{len(points)}) {label}"
            progress = Progress(progress_stream, label)
            point = run_point(cluster, params, c, k, progress)
            doc["runs"].append(point)
            if on_point is not None:
                on_point(point)
        final = cluster.sample()
        doc["cluster"]["rss_final_bytes"] = {str(n): s.rss for n, s in final.nodes.items()}
    doc["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    return doc


def best_under(runs: Sequence[dict[str, Any]], p99_ms: float) -> dict[str, Any] | None:
    """The run with the highest throughput whose p99 latency is below `p99_ms`."""
    ok = [r for r in runs if (r["latency_ms"].get("p99") or float("inf")) < p99_ms]
    return max(ok, key=lambda r: r["throughput"]) if ok else None


def write_json(doc: dict[str, Any], path: Path) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
