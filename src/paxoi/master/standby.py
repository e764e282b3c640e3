"""Quick restarts: warm standby processes, ready to become any server.

Starting a Python server process costs about 0.3 s of CPU (the interpreter, then
pydantic, msgpack, asyncio, the core), and on a loaded 2-core machine that is over a
second of wall time: most of what a restart costs, and a test may restart servers many
times within the tester's 10 s. So the master keeps standbys: `paxoi master-standby`
processes that import all of that, then wait on their standard input. restartServer
sends one a line of JSON, `{"argv": [...], "log": "..."}`, and it points its output at
that server's log and runs the `paxoi server` command line in-process, from its first
line: it opens the node's storage and recovers from disk only then, like any fresh
process. Nothing of the crashed process survives; only the imports were done early.

There is one standby per server that is down, plus a spare for the next crash, so the
standby is warm by the time the server is restarted even when the restart follows the
crash at once. A standby holds no port, no data directory and no lock, and exits at end
of input, so one that is never used (or whose master dies) goes away by itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import subprocess
from collections import deque
from collections.abc import Iterable
from typing import Any

from ..core.types import NodeId
from ..server.local import LocalCluster

log = logging.getLogger("paxoi.master")


class StandbyCluster(LocalCluster):
    """A LocalCluster whose `start` of a server that was down wakes a standby if it can."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.spares: deque[subprocess.Popen[bytes]] = deque()

    def standby_command(self) -> list[str]:
        server = self.command(0)
        # command() is [python, "-m", "paxoi", "server", ...]: the same interpreter and module.
        assert server[1:3] == ["-m", "paxoi"], server
        return [*server[:3], "master-standby", "--for", str(self.workdir.resolve())]

    def prepare(self) -> None:
        """Keep one standby per server that is down, plus one spare."""
        self.spares = deque(s for s in self.spares if s.poll() is None)
        down = sum(not self.alive(node) for node in self.config.servers)
        while len(self.spares) < min(down + 1, len(self.config.servers)):
            with open(self.log_dir / "standby.log", "ab") as logfile:
                self.spares.append(
                    subprocess.Popen(
                        self.standby_command(),
                        stdin=subprocess.PIPE,
                        stdout=logfile,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )

    def start(self, nodes: Iterable[NodeId] | None = None) -> None:
        cold = []
        for node in self.config.servers if nodes is None else nodes:
            if self.alive(node):
                continue
            standby = self._wake(node)
            if standby is None:
                cold.append(node)
                continue
            self.starts[node] = self.starts.get(node, 0) + 1
            self.procs[node] = standby
            log.info("node %d started from a standby (pid %d)", node, standby.pid)
        if cold:
            super().start(cold)

    def _wake(self, node: NodeId) -> subprocess.Popen[bytes] | None:
        """The oldest (so the likeliest warm) standby, told to be server `node`."""
        order = {
            "argv": self.command(node)[3:],
            "log": str(self.log_dir / f"node-{node}.log"),
        }
        while self.spares:
            standby = self.spares.popleft()
            if standby.poll() is not None or standby.stdin is None:
                continue
            try:
                standby.stdin.write(json.dumps(order).encode() + b"\n")
                standby.stdin.close()
            except (BrokenPipeError, OSError):
                continue
            return standby
        return None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the servers; unused standbys get SIGKILL at once (they hold nothing, and
        an orderly exit would only cost CPU that the servers' shutdown needs)."""
        spares, self.spares = list(self.spares), deque()
        for standby in spares:
            if standby.poll() is None:
                standby.send_signal(signal.SIGKILL)
        super().stop(timeout)
        for standby in spares:
            standby.wait(5)
            if standby.stdin is not None:
                with contextlib.suppress(OSError):
                    standby.stdin.close()


__all__ = ["StandbyCluster"]
