"""The nemesis's bookkeeping, against a stub cluster (no processes)."""

from __future__ import annotations

import signal
import subprocess
from types import SimpleNamespace
from typing import Any

from paxoi.nemesis.faults import Nemesis
from paxoi.nemesis.schedule import FaultSpec


class StubCluster:
    """What Nemesis calls on a LocalCluster, recorded; SIGTERM can be made to hang."""

    def __init__(self, n: int, hang_on_term: bool = False) -> None:
        self.config = SimpleNamespace(servers={i: None for i in range(n)})
        self.calls: list[tuple[Any, ...]] = []
        self.hang_on_term = hang_on_term
        self.up = set(range(n))
        self.procs: dict[int, Any] = {}

    def kill(self, node: int, sig: int = signal.SIGKILL) -> None:
        self.calls.append(("kill", node, sig))
        if sig == signal.SIGTERM and self.hang_on_term:
            raise subprocess.TimeoutExpired(["paxoi", "server"], 10)
        self.up.discard(node)

    def start(self, nodes: list[int]) -> None:
        self.calls.append(("start", *nodes))
        self.up.update(nodes)

    def pause(self, node: int) -> None:
        self.calls.append(("pause", node))

    def resume(self, node: int) -> None:
        self.calls.append(("resume", node))

    def alive(self, node: int) -> bool:
        return node in self.up


def test_a_server_that_ignores_sigterm_is_reported_and_killed() -> None:
    cluster = StubCluster(3, hang_on_term=True)
    nemesis = Nemesis(cluster, [], seed=1, t0=0.0)  # type: ignore[arg-type]
    nemesis._begin(0, FaultSpec("restart", "any", 1.0, 2.0, 1))
    node = nemesis.injections[0].nodes[0]
    assert cluster.calls == [
        ("kill", node, signal.SIGTERM),
        ("kill", node, signal.SIGKILL),
        ("start", node),
    ]
    assert len(nemesis.hangs) == 1 and f"node {node} did not exit" in nemesis.hangs[0]
    assert node not in nemesis.down


def test_kill_and_pause_strike_distinct_servers_and_end() -> None:
    cluster = StubCluster(5)
    nemesis = Nemesis(cluster, [], seed=2, t0=0.0)  # type: ignore[arg-type]
    nemesis._begin(0, FaultSpec("kill", "any", 1.0, 3.0, 1))
    nemesis._begin(1, FaultSpec("pause", "any", 1.5, 3.0, 1))
    killed, paused = nemesis.injections[0].nodes[0], nemesis.injections[1].nodes[0]
    assert killed != paused
    assert nemesis.down == {killed} and nemesis.paused == {paused}
    assert ("kill", killed, signal.SIGKILL) in cluster.calls and ("pause", paused) in cluster.calls
    nemesis._end(0)
    nemesis._end(1)
    assert not nemesis.down and not nemesis.paused
    assert ("start", killed) in cluster.calls and ("resume", paused) in cluster.calls
    assert nemesis.counts() == {"kill": 1, "pause": 1}
