"""Resource limits: a flood of idle connections, too many clients, a client that floods
commands, a client that goes silent. Each is refused or throttled with a clear answer,
the server's memory stays bounded, and a well-behaved client keeps being served."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from integration_helpers import RawConnection, running_cluster, submit_one, wait_until

from paxoi.core.messages import ClientReply, ReplyStatus
from paxoi.core.types import Command
from paxoi.server.local import LocalCluster
from paxoi.wire.codec import encode
from paxoi.wire.framing import frame
from paxoi.wire.messages import ERROR_BUSY, ClientReplies, ErrorReply, HelloAck, Submit

LIMITS = {
    "max_clients": 20,
    "max_handshaking": 32,
    "handshake_timeout": 2.0,
    "client_idle": 2.0,
    "client_pending": 64,
}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    workdir: Path = tmp_path_factory.mktemp("limits")
    with running_cluster(workdir, limits=LIMITS) as cluster:
        yield cluster


def served(cluster: LocalCluster) -> None:
    text = f"served {uuid.uuid4().hex[:8]}"
    assert int(submit_one(cluster.config, text, timeout=10)) >= 0


def rss(cluster: LocalCluster, node: int) -> int:
    return int(psutil.Process(cluster.procs[node].pid).memory_info().rss)


def test_a_thousand_idle_connections(shared: LocalCluster) -> None:
    leader = shared.wait_leader()
    entry = shared.config.servers[leader]
    before = rss(shared, leader)
    idle: list[socket.socket] = []
    try:
        for _ in range(1000):
            idle.append(socket.create_connection((entry.host, entry.port), timeout=5))
        # The server evicts the oldest silent ones rather than refusing newcomers.
        started = time.monotonic()
        served(shared)
        assert time.monotonic() - started < 5
        status = shared.status(leader)
        assert status is not None and int(status.extra.get("evicted", 0)) >= 1000 - 32 - 1
    finally:
        for s in idle:
            s.close()
    assert shared.alive(leader)
    assert rss(shared, leader) < before + 64 * 1024 * 1024
    served(shared)


def test_too_many_clients_are_refused_busy(shared: LocalCluster) -> None:
    leader = shared.wait_leader()
    conns: list[RawConnection] = []
    try:
        for i in range(LIMITS["max_clients"]):
            c = RawConnection(shared.config, leader)
            conns.append(c)
            c.hello_client(f"holder-{i}")
            assert isinstance(c.recv_until(lambda m: isinstance(m, HelloAck)), HelloAck)
        with RawConnection(shared.config, leader) as extra:
            extra.hello_client("one-too-many")
            msgs = extra.drain_until_closed()
            errors = [m for m in msgs if isinstance(m, ErrorReply)]
            assert errors and errors[0].code == ERROR_BUSY, msgs
        # A client library user refused "busy" is not told its command failed (it may
        # still be applied): the client backs off, reconnects and resends.
        server_log = shared.log_dir / f"node-{leader}.log"
        refused_before = _refusals(server_log)
        outcome: list[object] = []
        waiting = threading.Thread(
            target=lambda: outcome.append(_submit_or_error(shared, "patient")), daemon=True
        )
        waiting.start()
        wait_until(
            lambda: _refusals(server_log) > refused_before,
            10,
            "the waiting client to be refused busy",
        )
    finally:
        for c in conns:
            c.close()
    # Once they are gone, clients are served again.
    waiting.join(30)
    assert outcome and isinstance(outcome[0], bytes), outcome
    wait_until(lambda: _try_serve(shared), 10, "a client to be served after the holders left")


def _refusals(server_log: Path) -> int:
    return server_log.read_text(errors="replace").count("too many client connections")


def _submit_or_error(cluster: LocalCluster, text: str) -> bytes | Exception:
    try:
        return submit_one(cluster.config, text, timeout=20)
    except Exception as e:
        return e


def _try_serve(cluster: LocalCluster) -> bool:
    try:
        served(cluster)
    except Exception:
        return False
    return True


def test_a_flooding_client_gets_busy_and_others_are_served(shared: LocalCluster) -> None:
    leader = shared.wait_leader()
    before = rss(shared, leader)
    flood = 5000
    with RawConnection(shared.config, leader, timeout=10) as c:
        c.hello_client("flooder")
        c.recv_until(lambda m: isinstance(m, HelloAck))
        payload = b"x" * 16
        frames = (
            frame(encode(Submit(Command("flooder", seq, payload)))) for seq in range(1, flood + 1)
        )
        c.send_raw(b"".join(frames))
        served(shared)  # another client, meanwhile
        statuses: dict[int, ReplyStatus] = {}
        deadline = time.monotonic() + 30
        while len(statuses) < flood and time.monotonic() < deadline:
            msg = c.recv(timeout=max(0.1, deadline - time.monotonic()))
            if isinstance(msg, ClientReply):
                statuses.setdefault(msg.seq, msg.status)
            elif isinstance(msg, ClientReplies):
                for seq, _ in msg.answers:
                    statuses.setdefault(seq, ReplyStatus.OK)
        assert len(statuses) == flood, f"{flood - len(statuses)} commands never answered"
        ok = sum(s is ReplyStatus.OK for s in statuses.values())
        busy = sum(s is ReplyStatus.BUSY for s in statuses.values())
        assert busy > 0, "the flood was never throttled"
        assert ok >= LIMITS["client_pending"], "throttling refused even what fits"
        assert ok + busy == flood
    assert rss(shared, leader) < before + 64 * 1024 * 1024
    served(shared)


def test_a_silent_client_is_closed(shared: LocalCluster) -> None:
    leader = shared.wait_leader()
    with RawConnection(shared.config, leader) as c:
        c.hello_client("sleepy")
        c.recv_until(lambda m: isinstance(m, HelloAck))
        started = time.monotonic()
        c.drain_until_closed(timeout=LIMITS["client_idle"] + 5)
        assert time.monotonic() - started >= LIMITS["client_idle"] - 0.5
    served(shared)
