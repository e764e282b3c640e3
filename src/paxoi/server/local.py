"""A cluster of real server processes on this machine: start, kill, restart, watch, stop.

Used by `paxoi cluster`, `paxoi demo`, the scenario runner and the integration tests.
Every process it starts is its own child, known by PID, and only those are ever
signalled. Children also watch this process (`--exit-with-parent`), so even if it is
killed outright nothing is left running.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ..core.types import NodeId
from ..wire.messages import Control, StatusReply
from .config import PaxoiConfig, dump_config


class LocalCluster:
    def __init__(
        self,
        config: PaxoiConfig,
        workdir: Path,
        *,
        server_args: Iterable[str] = (),
        log_level: str = "INFO",
        config_path: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        if config_path is None:
            config_path = workdir / "cluster.yaml"
            config_path.write_text(dump_config(config), encoding="utf-8")
        self.config_path = config_path.resolve()
        self.log_dir = workdir / "logs"
        self.log_dir.mkdir(exist_ok=True)
        self.server_args = list(server_args)
        self.log_level = log_level
        #: Environment variables set for the servers on top of ours (e.g. PAXOI_PLANT_BUG).
        self.env = None if env is None else {**os.environ, **env}
        self.procs: dict[NodeId, subprocess.Popen[bytes]] = {}
        self.starts: dict[NodeId, int] = {}

    # ------------------------------------------------------------------ processes
    def command(self, node: NodeId) -> list[str]:
        return [
            sys.executable,
            "-m",
            "paxoi",
            "server",
            "--id",
            str(node),
            "--config",
            str(self.config_path),
            "--log-level",
            self.log_level,
            "--exit-with-parent",
            "--parent-pid",
            str(os.getpid()),
            *self.server_args,
        ]

    def start(self, nodes: Iterable[NodeId] | None = None) -> None:
        for node in self.config.servers if nodes is None else nodes:
            if self.alive(node):
                continue
            self.starts[node] = self.starts.get(node, 0) + 1
            logfile = open(self.log_dir / f"node-{node}.log", "ab")  # noqa: SIM115
            self.procs[node] = subprocess.Popen(
                self.command(node),
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, not them
                env=self.env,
            )
            logfile.close()

    def alive(self, node: NodeId) -> bool:
        proc = self.procs.get(node)
        return proc is not None and proc.poll() is None

    def kill(self, node: NodeId, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.get(node)
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                proc.wait(10)

    def pause(self, node: NodeId) -> None:
        """Freeze server `node` (SIGSTOP): it neither runs nor answers until `resume`."""
        self.kill(node, signal.SIGSTOP)

    def resume(self, node: NodeId) -> None:
        self.kill(node, signal.SIGCONT)

    def restart(self, node: NodeId) -> None:
        self.kill(node)
        self.start([node])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every server we started, then SIGKILL whatever has not exited."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ watching
    def status(self, node: NodeId, timeout: float = 1.0) -> StatusReply | None:
        """The server's own report, or None if it does not answer."""
        return query_status(self.config, node, timeout)

    def statuses(self, timeout: float = 1.0) -> dict[NodeId, StatusReply | None]:
        return query_statuses(self.config, timeout)

    def leader(self, timeout: float = 1.0) -> NodeId | None:
        for node, st in self.statuses(timeout).items():
            if st is not None and st.is_leader:
                return node
        return None

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.05)

    def wait_leader(self, timeout: float = 10.0) -> NodeId:
        found: list[NodeId] = []

        def has_leader() -> bool:
            leader = self.leader()
            if leader is not None:
                found.append(leader)
            return leader is not None

        self.wait_for(has_leader, timeout, "a leader")
        return found[-1]

    # ------------------------------------------------------------------ faults at run time
    # (the servers need faults.control: true)
    def partition(self, *groups: Iterable[NodeId]) -> None:
        """Split the servers: each group hears only its own members until `heal`."""
        sets = [set(g) for g in groups]
        for group in sets:
            others = tuple(n for n in self.config.servers if n not in group)
            for node in group:
                self._control(node, Control("partition", others))

    def heal(self) -> None:
        for node in self.config.servers:
            if self.alive(node):
                self._control(node, Control("heal"))

    def time_bomb(self, node: NodeId, messages: int) -> None:
        """Server `node` crashes after sending `messages` more Paxos messages as leader."""
        self._control(node, Control("time_bomb", (), messages))

    def clock(self, node: NodeId, rate: int) -> None:
        """Run server `node`'s protocol clock at `rate` percent of real time (100: normal)."""
        self._control(node, Control("clock", (), rate))

    def _control(self, node: NodeId, request: Control) -> None:
        from ..client import AsyncClient

        async def send() -> None:
            await AsyncClient.from_config(self.config, name="control").control(node, request)

        asyncio.run(send())

    def chat_log(self, node: NodeId) -> bytes:
        path = self.config.data_dir(node) / "chat.log"
        return path.read_bytes() if path.exists() else b""


def query_status(config: PaxoiConfig, node: NodeId, timeout: float = 1.0) -> StatusReply | None:
    return query_statuses(config, timeout, [node])[node]


def query_statuses(
    config: PaxoiConfig, timeout: float = 1.0, nodes: Iterable[NodeId] | None = None
) -> dict[NodeId, StatusReply | None]:
    """Ask servers for their status concurrently; None for those that do not answer."""
    from ..client import AsyncClient

    wanted = list(config.servers if nodes is None else nodes)

    async def ask() -> dict[NodeId, StatusReply | None]:
        client = AsyncClient.from_config(config, name="status")

        async def one(node: NodeId) -> StatusReply | None:
            try:
                return await client.status(node, timeout)
            except Exception:
                return None

        replies = await asyncio.gather(*(one(n) for n in wanted))
        return dict(zip(wanted, replies, strict=True))

    return asyncio.run(ask())


def parent_watchdog(parent: int, on_orphaned: Callable[[], None]) -> Callable[[], None]:
    """A check to run periodically: calls `on_orphaned` once the parent process is gone."""
    fired = False

    def check() -> None:
        nonlocal fired
        if not fired and os.getppid() != parent:
            fired = True
            on_orphaned()

    return check
