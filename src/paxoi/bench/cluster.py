"""The cluster under test: real `paxoi server` processes on 127.0.0.1, and their counters.

`BenchCluster` starts 2f+1 servers (fsync on unless asked otherwise) in a temporary
directory that is deleted afterwards, waits for a leader, and takes `Sample`s: each
server's group-commit count (`syncs`), applied commands (its `applied` counter), CPU time and resident
memory. Two samples make the figures of a measuring window. Only the PIDs it started are
ever looked at or signalled (through `LocalCluster`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from paxoi.core.types import NodeId
from paxoi.server.config import free_ports, local_config
from paxoi.server.local import LocalCluster

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def proc_usage(pid: int) -> tuple[float, int] | None:
    """(user + system CPU seconds, resident bytes) of process `pid`, None if unknown.

    psutil when installed (`paxoi[bench]`), else Linux's /proc; None elsewhere or when the
    process is gone.
    """
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            p = psutil.Process(pid)
            with p.oneshot():
                t = p.cpu_times()
                return t.user + t.system, int(p.memory_info().rss)
        except psutil.Error:
            return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        statm = Path(f"/proc/{pid}/statm").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _CLK_TCK, int(statm.split()[1]) * _PAGE


@dataclass(frozen=True)
class NodeSample:
    up: bool
    leader: bool
    syncs: int | None
    entries: int | None
    cpu: float | None  # seconds, user + system
    rss: int | None  # bytes
    #: The highest ballot this server has seen, as (round, node); None if it did not answer.
    ballot: tuple[int, int] | None = None


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic() when the counters were read (mid-point of the query)
    nodes: dict[NodeId, NodeSample]

    def leader(self) -> NodeId | None:
        for node, s in self.nodes.items():
            if s.leader:
                return node
        return None

    def ballot(self) -> tuple[int, int] | None:
        """The highest ballot any server reported: it changes only with an election."""
        seen = [s.ballot for s in self.nodes.values() if s.ballot is not None]
        return max(seen) if seen else None


def leader_changed(first: Sample, last: Sample) -> bool:
    """Was a new leader elected between two samples? Judged by ballots, so a server
    too busy to answer a status query in time is not taken for a lost leader."""
    a, b = first.ballot(), last.ballot()
    if a is not None and b is not None:
        return a != b
    return first.leader() != last.leader()


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def window_figures(first: Sample, last: Sample, committed: int) -> dict[str, Any]:
    """Per-server figures between two samples; `committed` commands acknowledged meanwhile."""
    seconds = max(last.at - first.at, 1e-9)
    servers: dict[str, Any] = {}
    for node, a in first.nodes.items():
        b = last.nodes.get(node, a)
        syncs = _delta(a.syncs, b.syncs)
        cpu = _delta(a.cpu, b.cpu)
        entries = _delta(a.entries, b.entries)
        servers[str(node)] = {
            "leader": b.leader,
            "up": a.up and b.up,
            "syncs": syncs,
            "syncs_per_s": None if syncs is None else round(syncs / seconds, 1),
            "commands_per_sync": (None if not syncs else round(committed / syncs, 2)),
            "applied_per_s": None if entries is None else round(entries / seconds, 1),
            "cpu_percent": None if cpu is None else round(100.0 * cpu / seconds, 1),
            "rss_start_bytes": a.rss,
            "rss_end_bytes": b.rss,
        }
    return {"sample_seconds": round(seconds, 4), "servers": servers}


class BenchCluster:
    """2f+1 local servers for a benchmark; a context manager that always cleans up."""

    def __init__(
        self,
        servers: int = 3,
        *,
        fsync: bool = True,
        workdir: Path | None = None,
        keep: bool = False,
        log_level: str = "WARNING",
        start_timeout: float = 30.0,
        app: str = "chat",
    ) -> None:
        if servers < 1 or servers % 2 == 0:
            raise ValueError("servers: an odd number (3, 5, 7)")
        self.n = servers
        self.fsync = fsync
        self.keep = keep
        self.start_timeout = start_timeout
        self._own_dir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="paxoi-bench-"))
        config = local_config(
            (servers - 1) // 2, 0, self.workdir / "data", ports=free_ports(servers), app=app
        )
        self.local = LocalCluster(
            config,
            self.workdir,
            server_args=[] if fsync else ["--no-fsync"],
            log_level=log_level,
        )
        self.leader_id: NodeId | None = None

    @property
    def config(self) -> Any:
        return self.local.config

    @property
    def servers(self) -> dict[NodeId, tuple[str, int]]:
        return {nid: (s.host, s.port) for nid, s in self.config.servers.items()}

    def pids(self) -> dict[NodeId, int]:
        return {node: proc.pid for node, proc in self.local.procs.items()}

    def start(self) -> NodeId:
        self.local.start()
        self.leader_id = self.local.wait_leader(self.start_timeout)
        # Every server up and answering, not only a majority.
        self.local.wait_for(
            lambda: all(s is not None for s in self.local.statuses().values()),
            self.start_timeout,
            "every server to answer",
        )
        return self.leader_id

    def check_alive(self) -> None:
        dead = [n for n in self.local.procs if not self.local.alive(n)]
        if dead:
            logs = ", ".join(str(self.local.log_dir / f"node-{n}.log") for n in dead)
            raise RuntimeError(f"server(s) {dead} exited during the benchmark (see {logs})")

    def sample(self) -> Sample:
        before = time.monotonic()
        statuses = self.local.statuses(timeout=2.0)
        after = time.monotonic()
        nodes: dict[NodeId, NodeSample] = {}
        for node, st in statuses.items():
            proc = self.local.procs.get(node)
            usage = proc_usage(proc.pid) if proc is not None else None
            syncs = st.extra.get("syncs") if st is not None else None
            entries = st.extra.get("applied") if st is not None else None
            nodes[node] = NodeSample(
                up=st is not None,
                leader=bool(st is not None and st.is_leader),
                syncs=syncs if isinstance(syncs, int) else None,
                entries=entries if isinstance(entries, int) else None,
                cpu=usage[0] if usage else None,
                rss=usage[1] if usage else None,
                ballot=(st.ballot.round, st.ballot.node) if st and st.ballot else None,
            )
        return Sample((before + after) / 2, nodes)

    def stop(self) -> None:
        self.local.stop()
        if self._own_dir and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> BenchCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
