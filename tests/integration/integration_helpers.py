"""Helpers shared by the integration tests (real server processes on 127.0.0.1).

Importable as `integration_helpers` (conftest.py puts this folder on sys.path; the name
is unique so it cannot clash with helpers of other test folders).

Nothing here sleeps and hopes: every wait polls a condition until a deadline and fails
with what it was waiting for.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from paxoi.client import AsyncClient
from paxoi.core.types import NodeId
from paxoi.server.config import PaxoiConfig, free_ports, local_config
from paxoi.server.local import LocalCluster
from paxoi.wire.codec import PROTOCOL_VERSION, Message, decode, encode
from paxoi.wire.framing import FrameDecoder, frame
from paxoi.wire.messages import KIND_CLIENT, Hello

T = TypeVar("T")

HOST = "127.0.0.1"


# ---------------------------------------------------------------------- waiting
def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `condition` until it returns something truthy (returned) or `timeout` passes
    (AssertionError naming `what` and the last value seen)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}: {value!r}")
        time.sleep(interval)


# ---------------------------------------------------------------------- clusters
def make_local_cluster(workdir: Path, f: int = 1, **config: Any) -> LocalCluster:
    """A LocalCluster of 2f+1 servers on free ports of 127.0.0.1, not started yet.

    `config` is extra top-level configuration (e.g. `timing={"election": 50}`)."""
    cfg = local_config(f, 0, workdir / "data", ports=free_ports(2 * f + 1), **config)
    return LocalCluster(cfg, workdir)


@contextlib.contextmanager
def running_cluster(workdir: Path, f: int = 1, **config: Any) -> Iterator[LocalCluster]:
    """A started cluster with an elected leader; always stopped (by PID) on the way out."""
    cluster = make_local_cluster(workdir, f, **config)
    try:
        cluster.start()
        cluster.wait_leader(20)
        yield cluster
    finally:
        stop_cluster(cluster)


def stop_cluster(cluster: LocalCluster) -> None:
    cluster.stop()
    alive = [n for n in cluster.procs if cluster.alive(n)]
    assert not alive, f"servers still running after stop: {alive}"


def server_log(cluster: LocalCluster, node: NodeId) -> str:
    path = cluster.log_dir / f"node-{node}.log"
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def wait_log_line(cluster: LocalCluster, node: NodeId, *needles: str, timeout: float = 5.0) -> str:
    """The first line of node's log containing every needle (polled until `timeout`)."""

    def find() -> str | None:
        for line in server_log(cluster, node).splitlines():
            if all(n in line for n in needles):
                return line
        return None

    return wait_until(find, timeout, f"a line with {needles} in node {node}'s log")


def follower_of(cluster: LocalCluster, leader: NodeId) -> NodeId:
    return next(n for n in sorted(cluster.config.servers) if n != leader)


# ---------------------------------------------------------------------- chat logs
@dataclass(frozen=True)
class Entry:
    slot: int
    sender: str
    seq: int
    message: str


def entries(cluster: LocalCluster, node: NodeId) -> list[Entry]:
    """Replica `node`'s chat.log, parsed (slot, sender, seq, message per line)."""
    out = []
    for line in cluster.chat_log(node).decode("utf-8").splitlines():
        slot, sender, seq, message = line.split("\t", 3)
        out.append(Entry(int(slot), sender, int(seq), message))
    return out


def wait_logs_equal(
    cluster: LocalCluster, nodes: list[NodeId], count: int, timeout: float = 20.0
) -> bytes:
    """Wait until every node's chat.log has `count` entries and all are byte-identical."""

    def same() -> bool:
        logs = [cluster.chat_log(n) for n in nodes]
        return all(log.count(b"\n") == count for log in logs) and len(set(logs)) == 1

    def describe() -> str:
        counts = {n: cluster.chat_log(n).count(b"\n") for n in nodes}
        return ", ".join(f"node {n}: {c} entries" for n, c in counts.items())

    try:
        wait_until(same, timeout, "equal logs")
    except AssertionError:
        raise AssertionError(
            f"replicas {nodes} did not converge on {count} identical entries ({describe()})"
        ) from None
    return cluster.chat_log(nodes[0])


def check_exactly_once(
    log: list[Entry], sent: dict[str, list[str]], results: dict[str, list[bytes]] | None = None
) -> None:
    """Each client's messages appear exactly once, in the order sent (seq 1, 2, ...), and
    nothing else is in the log. With `results`, each reply named the entry's slot."""
    by_client: dict[str, list[Entry]] = {}
    for e in log:
        by_client.setdefault(e.sender, []).append(e)
    assert set(by_client) == set(sent), f"senders {sorted(by_client)} != {sorted(sent)}"
    for client, messages in sent.items():
        got = by_client[client]
        assert [e.message for e in got] == messages, f"{client}: wrong messages or order"
        assert [e.seq for e in got] == list(range(1, len(messages) + 1)), f"{client}: seqs"
        if results is not None:
            assert [int(r) for r in results[client]] == [e.slot for e in got], f"{client}: slots"
    slots = [e.slot for e in log]
    assert slots == sorted(slots), "log not in slot order"


# ---------------------------------------------------------------------- clients
@dataclass
class Load:
    """What a group of clients sent and was told (acks in order, per client id)."""

    sent: dict[str, list[str]]
    results: dict[str, list[bytes]]
    ack_times: list[tuple[float, str, NodeId]]  # (monotonic time, client id, server it was on)


async def run_clients(
    config: PaxoiConfig,
    clients: int,
    per_client: int,
    *,
    deadline: float = 30.0,
    on_ack: Callable[[int], None] | None = None,
    submit_timeout: float = 20.0,
) -> Load:
    """`clients` AsyncClients send `per_client` messages each concurrently, one
    outstanding each. Bounded: fails if it does not finish within `deadline` seconds."""
    made = [
        AsyncClient.from_config(config, name=f"c{i}", timeout=submit_timeout)
        for i in range(clients)
    ]
    load = Load({c.id: [] for c in made}, {c.id: [] for c in made}, [])

    async def drive(i: int, client: AsyncClient) -> None:
        for n in range(per_client):
            text = f"c{i} message {n}"
            result = await client.submit(text)
            load.sent[client.id].append(text)
            load.results[client.id].append(result)
            load.ack_times.append((time.monotonic(), client.id, client.target))
            if on_ack is not None:
                on_ack(len(load.ack_times))

    try:
        async with asyncio.timeout(deadline):
            await asyncio.gather(*(drive(i, c) for i, c in enumerate(made)))
    finally:
        for c in made:
            await c.close()
    return load


def submit_one(config: PaxoiConfig, text: str, timeout: float = 10.0) -> bytes:
    """One command through a fresh client; its result (the slot, as ASCII digits)."""

    async def go() -> bytes:
        async with AsyncClient.from_config(config, name="probe", timeout=timeout) as client:
            return await client.submit(text)

    return asyncio.run(go())


# ---------------------------------------------------------------------- raw wire
class RawConnection:
    """A blocking TCP connection speaking (or abusing) the wire protocol by hand."""

    def __init__(self, config: PaxoiConfig, node: NodeId, timeout: float = 5.0) -> None:
        entry = config.servers[node]
        self.config = config
        self.sock = socket.create_connection((entry.host, entry.port), timeout=timeout)
        self.decoder = FrameDecoder(64 * 1024 * 1024)
        self.pending: list[bytes] = []

    @property
    def local_port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def peer_tag(self) -> str:
        """How the server's log names this connection: "('127.0.0.1', <our port>)"."""
        return f"('{HOST}', {self.local_port})"

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, *msgs: Message) -> None:
        self.sock.sendall(b"".join(frame(encode(m)) for m in msgs))

    def hello_client(self, client_id: str) -> None:
        self.send(Hello(PROTOCOL_VERSION, self.config.cluster, KIND_CLIENT, None, client_id))

    def recv(self, timeout: float = 5.0) -> Message | None:
        """The next message, or None once the server closed the connection."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message from the server in time")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.pending.extend(self.decoder.feed(data))
        return decode(self.pending.pop(0))

    def recv_until(self, predicate: Callable[[Message], bool], timeout: float = 5.0) -> Message:
        """Skip messages until one satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.0, deadline - time.monotonic()))
            if msg is None:
                raise AssertionError("the server closed the connection")
            if predicate(msg):
                return msg

    def drain_until_closed(self, timeout: float = 5.0) -> list[Message]:
        """Every message until the server closes the connection."""
        out: list[Message] = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            if msg is None:
                return out
            out.append(msg)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------- command line
def paxoi(
    *args: str, stdin: str | None = None, timeout: float = 30.0, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m paxoi ARGS` as a user runs it, with a timeout."""
    return subprocess.run(
        [sys.executable, "-m", "paxoi", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )
