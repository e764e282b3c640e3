"""The CS 380D master program: drive a chat room of real paxoi processes from stdin.

The servers are a `LocalCluster` of `paxoi server` processes on free ports of 127.0.0.1;
each client is a `paxoi master-client` process (see `paxoi.master.client`). The master
runs one command at a time, in order, and writes nothing but printChatLog's lines:
the course's tester compares standard output exactly and forbids anything extra, even
on stderr, so everything else (including refused commands) goes to `master.log` in the
working directory.

The cluster's settings are chosen for the tester, not for production:

- `limits.max_batch` 1: the expected outputs give every message its own slot, and a
  leader that batched would put several messages in one.
- Fast timers (10 ms ticks, a leader suspected after 150 ms of silence): a test with
  several leader failovers and restarts must finish within the tester's 10 seconds.
- `faults.control`: timeBombLeader arms the leader's time bomb at run time.
- Durable storage with fsync: restartServer brings a server back with its own state.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ..core.types import NodeId
from ..server.config import PaxoiConfig, free_ports, parse_config
from ..server.local import query_statuses
from ..wire.messages import StatusReply
from .channel import ClientProcess
from .commands import (
    AllClear,
    CrashServer,
    MasterCommand,
    PrintChatLog,
    Rejected,
    RestartServer,
    SendMessage,
    Start,
    TimeBombLeader,
    parse_command,
)
from .standby import StandbyCluster

log = logging.getLogger("paxoi.master")


@dataclass(frozen=True)
class Settings:
    """The master's knobs. The defaults were measured on a loaded 2-core machine (see
    docs/cs380d.md): fast enough for the tester's 10 s, slow enough not to elect leaders
    spuriously while seven Python processes start at once."""

    tick_ms: float = 10.0
    timing: dict[str, int] = field(
        default_factory=lambda: {"heartbeat": 3, "election": 15, "retransmit": 5, "catchup": 5}
    )
    #: allClear gives up (and says so in the log) after this long without idleness.
    all_clear_timeout: float = 10.0
    #: Seconds between two looks at the system while waiting for it to be idle.
    poll_interval: float = 0.05
    #: With only a minority alive nothing can commit, so allClear waits only this long
    #: for clients to see what the live servers have already applied.
    minority_grace: float = 0.3
    #: How long timeBombLeader looks for a leader (an election may be under way).
    find_leader_timeout: float = 3.0
    #: One status question to one server.
    status_timeout: float = 0.5
    #: One question to one client process (a client still starting answers late).
    client_timeout: float = 3.0
    #: At the end, how long servers may shut down cleanly before SIGKILL.
    stop_grace: float = 0.3


def cluster_config(servers: int, data_dir: Path, settings: Settings) -> PaxoiConfig:
    """`servers` colocated servers on free ports, every one leader-capable, acceptor and
    replica. Built directly rather than with `local_config`, which only makes 2f+1."""
    ports = free_ports(servers)
    return parse_config(
        {
            "cluster": "cs380d",
            "servers": {i: {"host": "127.0.0.1", "port": ports[i]} for i in range(servers)},
            "storage": {"dir": str(data_dir), "fsync": True},
            "tick_ms": settings.tick_ms,
            "timing": dict(settings.timing),
            "policy": "rank",
            "limits": {"max_batch": 1},
            "faults": {"control": True},
        },
        "master",
    )


@dataclass
class _Look:
    """One look at the whole system, for allClear."""

    live: list[NodeId]
    statuses: dict[NodeId, StatusReply | None]
    clients: dict[int, dict[str, Any] | None]


class Master:
    def __init__(
        self,
        workdir: Path,
        out: BinaryIO,
        settings: Settings | None = None,
        *,
        python: str = sys.executable,
    ) -> None:
        self.workdir = workdir
        self.out = out
        self.settings = settings or Settings()
        self.python = python
        self.cluster: StandbyCluster | None = None
        self.clients: list[ClientProcess] = []
        #: Servers whose time bomb is armed: they exit on their own (status 3).
        self.armed: set[NodeId] = set()

    # ------------------------------------------------------------------ the loop
    def run(self, lines: Iterable[str]) -> None:
        """Every command of `lines`, in order; then stop everything."""
        try:
            for line in lines:
                self.execute_line(line)
        finally:
            self.close()

    def execute_line(self, line: str) -> None:
        command = parse_command(line)
        if command is None:
            return
        if isinstance(command, Rejected):
            log.warning("ignored %r: %s", command.line, command.reason)
            return
        started = time.monotonic()
        try:
            self.execute(command)
            self._prepare_standbys()
        except Exception:  # one command's failure must not end the session: log it
            log.exception("command %r failed", line.strip())
        log.info("%s done in %.0f ms", line.strip(), (time.monotonic() - started) * 1000)

    def execute(self, command: MasterCommand) -> None:
        if isinstance(command, Start):
            self.start(command.servers, command.clients)
            return
        if self.cluster is None:
            log.warning("ignored %s: no chat room started yet", command)
            return
        handlers: dict[type, Callable[[Any], None]] = {
            SendMessage: self.send_message,
            CrashServer: self.crash_server,
            RestartServer: self.restart_server,
            AllClear: lambda _: self.all_clear(),
            TimeBombLeader: self.time_bomb_leader,
            PrintChatLog: self.print_chat_log,
        }
        handlers[type(command)](command)

    # ------------------------------------------------------------------ commands
    def start(self, servers: int, clients: int) -> None:
        if self.cluster is not None:
            log.warning("ignored start: a chat room is already running")
            return
        config = cluster_config(servers, self.workdir / "data", self.settings)
        self.cluster = StandbyCluster(config, self.workdir, log_level="INFO")
        # Everything starts at once, without waiting: start-up is most of a short test's
        # time, and nothing needs a server up until allClear (which waits for them).
        self.cluster.start()
        for i in range(clients):
            command = [
                self.python,
                "-m",
                "paxoi",
                "master-client",
                "--config",
                str(self.cluster.config_path),
                "--index",
                str(i),
            ]
            self.clients.append(ClientProcess(i, command, self.cluster.log_dir / f"client-{i}.log"))
        ports = ", ".join(str(s.port) for s in config.servers.values())
        log.info("started %d servers (ports %s) and %d clients", servers, ports, clients)

    def send_message(self, command: SendMessage) -> None:
        client = self._client(command.client)
        if client is not None:
            client.post({"op": "send", "text": command.text})

    def crash_server(self, command: CrashServer) -> None:
        node = self._server(command.server)
        if node is None:
            return
        assert self.cluster is not None
        if not self.cluster.alive(node):
            log.warning("ignored crashServer %d: it is not running", node)
            return
        self.cluster.kill(node)  # SIGKILL: no clean shutdown, as a crash
        self.armed.discard(node)

    def restart_server(self, command: RestartServer) -> None:
        node = self._server(command.server)
        if node is None:
            return
        assert self.cluster is not None
        if node in self.armed and self.cluster.alive(node):
            # A time bomb that went off a moment ago: the process exits 50 ms after it
            # crashes itself. Give it that moment rather than refuse the restart.
            self._wait(lambda: not self.cluster_alive(node), 1.0)
        if self.cluster.alive(node):
            log.warning("ignored restartServer %d: it is running", node)
            return
        self.armed.discard(node)
        self.cluster.start([node])

    def all_clear(self) -> None:
        """Return once the system is idle: every message that can commit has, and every
        client has seen everything the live servers applied. With only a minority alive
        nothing can commit, so return as soon as clients caught up (or a short grace)."""
        s = self.settings
        started = time.monotonic()
        deadline = started + s.all_clear_timeout
        minority_since: float | None = None
        reason = ""
        next_report = started + 1.0
        while True:
            look = self._look()
            majority = self._majority(look.live)
            if majority:
                minority_since = None
                reason = self._busy(look)
                if not reason:
                    log.info("allClear: idle; %s", self._summary(look))
                    return
            else:
                now = time.monotonic()
                minority_since = minority_since or now
                reason = self._clients_behind(look)
                if not reason or now - minority_since >= s.minority_grace:
                    log.info("allClear: only %d of %d servers alive", len(look.live), self._n)
                    return
            now = time.monotonic()
            if now > deadline:
                log.warning("allClear gave up after %.1f s: %s", s.all_clear_timeout, reason)
                return
            if now >= next_report:
                log.info("allClear still waiting: %s", reason)
                next_report = now + 1.0
            time.sleep(s.poll_interval)

    def time_bomb_leader(self, command: TimeBombLeader) -> None:
        assert self.cluster is not None
        leader = self._find_leader()
        if leader is None:
            log.warning("ignored timeBombLeader %d: no leader found", command.messages)
            return
        try:
            self.cluster.time_bomb(leader, command.messages)
        except Exception as e:
            log.error("timeBombLeader %d: could not arm node %d: %s", command.messages, leader, e)
            return
        self.armed.add(leader)
        log.info("armed node %d to crash after %d Paxos messages", leader, command.messages)
        if command.messages == 0:
            # It crashes at once; wait for the exit so that what follows (a majority
            # count, a restart) sees it down, as after crashServer.
            self._wait(lambda: not self.cluster_alive(leader), 1.0)

    def print_chat_log(self, command: PrintChatLog) -> None:
        client = self._client(command.client)
        if client is None:
            return
        answer = client.ask({"op": "log"}, self.settings.client_timeout)
        if answer is None or not isinstance(answer.get("log"), list):
            log.error("printChatLog %d: client %d did not answer", command.client, command.client)
            return
        lines = [f"{slot} {sender}: {message}\n" for slot, sender, message in answer["log"]]
        self._write("".join(lines).encode("utf-8", "surrogateescape"))

    # ------------------------------------------------------------------ stopping
    def close(self) -> None:
        """Stop every child, by PID: clients read EOF and exit; servers get SIGTERM and,
        after a short grace, SIGKILL (their state is on disk and no longer needed, and
        eight Python processes tearing down at once on two cores take most of a second
        of the tester's time); unused standbys just go."""
        started = time.monotonic()
        for client in self.clients:
            client.close_input()
        if self.cluster is not None:
            self.cluster.stop(timeout=self.settings.stop_grace)
        servers_done = time.monotonic()
        deadline = time.monotonic() + 2.0
        for client in self.clients:
            client.stop(deadline)
        log.info(
            "stopped the servers in %.0f ms, the clients %.0f ms later",
            (servers_done - started) * 1000,
            (time.monotonic() - servers_done) * 1000,
        )
        self.clients = []

    # ------------------------------------------------------------------ helpers
    def _prepare_standbys(self) -> None:
        """Warm standbys for quick restarts (paxoi.master.standby): one for each server
        that is down (crashServer, a time bomb), and a spare, started with the servers:
        it costs start-up a little CPU, and saves the first restart most of a second."""
        if self.cluster is not None:
            self.cluster.prepare()

    @property
    def _n(self) -> int:
        return 0 if self.cluster is None else len(self.cluster.config.servers)

    def cluster_alive(self, node: NodeId) -> bool:
        return self.cluster is not None and self.cluster.alive(node)

    def _majority(self, live: list[NodeId]) -> bool:
        return len(live) > self._n // 2

    def _server(self, index: int) -> NodeId | None:
        if index >= self._n:
            log.warning("ignored: there is no server %d (%d servers)", index, self._n)
            return None
        return index

    def _client(self, index: int) -> ClientProcess | None:
        if index >= len(self.clients):
            log.warning("ignored: there is no client %d (%d clients)", index, len(self.clients))
            return None
        client = self.clients[index]
        if not client.alive():
            log.error("ignored: client %d has exited (status %s)", index, client.proc.returncode)
            return None
        return client

    def _live(self) -> list[NodeId]:
        assert self.cluster is not None
        return [n for n in self.cluster.config.servers if self.cluster.alive(n)]

    def _look(self) -> _Look:
        """The clients' states, then the servers'. In that order, a look cannot pass for
        idle while a message commits: a message a client reports acknowledged was applied
        (by the leader, at least) before the servers are asked, so either some server
        lags, or every server counts it and the client's older view does not."""
        assert self.cluster is not None
        # Ask every client first, then collect: the questions are answered in parallel.
        asked = {c.index: c.post({"op": "state"}) for c in self.clients if c.alive()}
        deadline = time.monotonic() + self.settings.client_timeout
        clients: dict[int, dict[str, Any] | None] = {}
        for index, rid in asked.items():
            clients[index] = (
                None if rid is None else self.clients[index].await_answer(rid, deadline)
            )
        live = self._live()
        statuses = (
            query_statuses(self.cluster.config, self.settings.status_timeout, live) if live else {}
        )
        return _Look(live, statuses, clients)

    def _busy(self, look: _Look) -> str:
        """Why the system is not idle yet ("" when it is), with a majority alive."""
        silent = [n for n in look.live if look.statuses.get(n) is None]
        if silent:
            return f"servers {silent} do not answer"
        statuses = [st for st in look.statuses.values() if st is not None]
        leaders = [st.node for st in statuses if st.is_leader]
        if len(leaders) != 1:
            return f"leaders: {leaders}"
        if any(st.leader != leaders[0] for st in statuses):
            return f"not every server follows {leaders[0]}"
        applied = {st.applied for st in statuses}
        entries = {st.extra.get("entries") for st in statuses}
        if len(applied) != 1 or len(entries) != 1:
            return f"servers disagree: applied {sorted(applied)}"
        (count,) = entries
        for index, state in look.clients.items():
            if state is None:
                return f"client {index} does not answer"
            if state.get("pending"):
                return f"client {index} has {state['pending']} messages unacknowledged"
            if state.get("entries") != count:
                return f"client {index} saw {state.get('entries')} of {count} entries"
        return ""

    @staticmethod
    def _summary(look: _Look) -> str:
        parts = []
        for node, st in sorted(look.statuses.items()):
            if st is None:
                parts.append(f"{node}: silent")
            else:
                role = "leads" if st.is_leader else f"follows {st.leader}"
                parts.append(f"{node}: {role}, ballot {st.ballot}, applied {st.applied}")
        return "; ".join(parts)

    def _clients_behind(self, look: _Look) -> str:
        """With a minority alive: which client has not seen what the live servers applied."""
        counts = [st.extra.get("entries", 0) for st in look.statuses.values() if st is not None]
        top = max((c for c in counts if isinstance(c, int)), default=0)
        for index, state in look.clients.items():
            seen = None if state is None else state.get("entries")
            if not isinstance(seen, int) or seen < top:
                return f"client {index} saw {seen} of {top} entries"
        return ""

    def _find_leader(self) -> NodeId | None:
        """The live server that leads; with two that think so (the older one not yet told
        it was preempted), the one with the higher ballot, which is the real one."""
        assert self.cluster is not None
        deadline = time.monotonic() + self.settings.find_leader_timeout
        while True:
            live = self._live()
            statuses = query_statuses(self.cluster.config, self.settings.status_timeout, live)
            leaders = [
                (st.ballot, st.node)
                for st in statuses.values()
                if st is not None and st.is_leader and st.ballot is not None
            ]
            if leaders:
                return max(leaders)[1]
            if time.monotonic() > deadline:
                return None
            time.sleep(self.settings.poll_interval)

    @staticmethod
    def _wait(condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _write(self, data: bytes) -> None:
        try:
            self.out.write(data)
            self.out.flush()
        except (BrokenPipeError, OSError) as e:
            log.error("cannot write the output: %s", e)


__all__ = ["Master", "Settings", "cluster_config"]
