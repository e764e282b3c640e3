"""Hostile or broken input on a server's port closes that connection, with a logged
reason; the server keeps running and the cluster keeps serving.

One cluster serves the whole module, so every test also checks that what earlier tests
did has not worn the servers down.
"""

from __future__ import annotations

import random
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from integration_helpers import (
    RawConnection,
    entries,
    running_cluster,
    submit_one,
    wait_log_line,
    wait_until,
)

from paxoi.core.messages import CatchupRequest
from paxoi.server.local import LocalCluster
from paxoi.transport.tcp import HANDSHAKE_TIMEOUT
from paxoi.wire.codec import PROTOCOL_VERSION
from paxoi.wire.framing import frame
from paxoi.wire.messages import (
    KIND_CLIENT,
    KIND_SERVER,
    ErrorReply,
    Hello,
    HelloAck,
    StatusRequest,
)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    workdir: Path = tmp_path_factory.mktemp("hostile")
    with running_cluster(workdir) as cluster:
        yield cluster


@pytest.fixture
def target(shared: LocalCluster) -> int:
    """The node to attack: the leader, whose loss would hurt most."""
    return shared.wait_leader()


def still_serving(cluster: LocalCluster, node: int) -> None:
    """The attacked server is the same process, alive; a normal client still gets a
    command applied, and the attacked server applies it too."""
    assert cluster.alive(node), f"node {node} died"
    text = f"still serving {uuid.uuid4().hex[:8]}"
    slot = int(submit_one(cluster.config, text))
    wait_until(
        lambda: any(e.slot == slot and e.message == text for e in entries(cluster, node)),
        10,
        f"node {node} to apply {text!r}",
    )
    assert cluster.status(node) is not None
    assert cluster.alive(node)


def refused(conn: RawConnection) -> ErrorReply | None:
    """The ErrorReply the server sent before closing (None if it just closed)."""
    msgs = conn.drain_until_closed()
    errors = [m for m in msgs if isinstance(m, ErrorReply)]
    return errors[0] if errors else None


def test_random_bytes(shared: LocalCluster, target: int) -> None:
    data = random.Random(4).randbytes(4096)
    assert struct.unpack(">I", data[:4])[0] > shared.config.limits.max_frame
    with RawConnection(shared.config, target) as conn:
        conn.send_raw(data)
        error = refused(conn)
        tag = conn.peer_tag
    assert error is not None and error.code == "bad-frame"
    line = wait_log_line(shared, target, tag, "malformed input")
    assert "exceeds the maximum" in line
    still_serving(shared, target)


def test_one_gib_length_prefix(shared: LocalCluster, target: int) -> None:
    with RawConnection(shared.config, target) as conn:
        started = time.monotonic()
        conn.send_raw(struct.pack(">I", 1 << 30) + b"\x00" * 64)
        error = refused(conn)
        elapsed = time.monotonic() - started
        tag = conn.peer_tag
    assert error is not None and error.code == "bad-frame"
    assert elapsed < 2.0  # refused on the header, not after waiting for a body
    wait_log_line(shared, target, tag, "frame of 1073741824 bytes exceeds the maximum")
    still_serving(shared, target)


def test_valid_frame_that_is_not_hello(shared: LocalCluster, target: int) -> None:
    with RawConnection(shared.config, target) as conn:
        conn.send(StatusRequest())
        error = refused(conn)
        tag = conn.peer_tag
    assert error is not None and error.code == "bad-handshake"
    wait_log_line(shared, target, tag, "refused", "the first frame must be Hello")
    still_serving(shared, target)


def test_hello_for_another_cluster(shared: LocalCluster, target: int) -> None:
    with RawConnection(shared.config, target) as conn:
        conn.send(Hello(PROTOCOL_VERSION, "some-other-cluster", KIND_CLIENT, None, "x-1"))
        error = refused(conn)
        tag = conn.peer_tag
    assert error is not None and error.code == "wrong-cluster"
    wait_log_line(shared, target, tag, "refused", "not 'some-other-cluster'")
    still_serving(shared, target)


def test_hello_with_a_wrong_version(shared: LocalCluster, target: int) -> None:
    with RawConnection(shared.config, target) as conn:
        conn.send(Hello(PROTOCOL_VERSION + 41, shared.config.cluster, KIND_CLIENT, None, "x-2"))
        error = refused(conn)
        tag = conn.peer_tag
    assert error is not None and error.code == "bad-version"
    wait_log_line(shared, target, tag, "refused", f"protocol version {PROTOCOL_VERSION + 41}")
    still_serving(shared, target)


def test_server_hello_from_an_unknown_node(shared: LocalCluster, target: int) -> None:
    with RawConnection(shared.config, target) as conn:
        conn.send(Hello(PROTOCOL_VERSION, shared.config.cluster, KIND_SERVER, 17, None))
        error = refused(conn)
        tag = conn.peer_tag
    assert error is not None and error.code == "unknown-node"
    wait_log_line(shared, target, tag, "refused", "node 17 is not a peer")
    still_serving(shared, target)


def test_server_hello_then_a_forged_source(shared: LocalCluster, target: int) -> None:
    claimed, forged = (n for n in sorted(shared.config.servers) if n != target)
    with RawConnection(shared.config, target) as conn:
        conn.send(
            Hello(PROTOCOL_VERSION, shared.config.cluster, KIND_SERVER, claimed, None),
            CatchupRequest(forged, 0, 0),
        )
        error = refused(conn)
        tag = conn.peer_tag
    assert error is not None and error.code == "forged"
    wait_log_line(
        shared,
        target,
        tag,
        "refused",
        f"node {claimed} sent a message claiming to be from {forged}",
    )
    still_serving(shared, target)


def test_silent_connections_do_not_block_others(shared: LocalCluster, target: int) -> None:
    entry = shared.config.servers[target]
    silent: list[socket.socket] = []
    try:
        for _ in range(200):
            silent.append(socket.create_connection((entry.host, entry.port), timeout=5))
        ports = {s.getsockname()[1] for s in silent}
        # While all 200 hang in the handshake, a real client is served at once.
        started = time.monotonic()
        still_serving(shared, target)
        assert time.monotonic() - started < HANDSHAKE_TIMEOUT
        # Then the server gives up on each of them, and says why.

        def timed_out() -> int:
            lines = [
                line
                for line in Path(shared.log_dir / f"node-{target}.log").read_text().splitlines()
                if "no handshake within" in line or "no handshake yet, evicted" in line
            ]
            return sum(any(f"('127.0.0.1', {p})" in line for line in lines) for p in ports) == 200

        wait_until(timed_out, HANDSHAKE_TIMEOUT + 10, "200 timeouts or evictions in the log")
        for s in silent[:5]:
            s.settimeout(2)
            assert s.recv(1) == b""  # closed by the server
    finally:
        for s in silent:
            s.close()
    still_serving(shared, target)


def test_garbage_after_a_valid_client_hello(shared: LocalCluster, target: int) -> None:
    with RawConnection(shared.config, target) as conn:
        conn.hello_client("garbage-client-1")
        assert isinstance(conn.recv(), HelloAck)
        conn.send_raw(frame(b"\xc1 this is not msgpack"))
        error = refused(conn)
        tag = conn.peer_tag
    assert error is not None and error.code == "bad-frame"
    wait_log_line(shared, target, tag, "malformed input")
    still_serving(shared, target)


def test_peer_message_from_a_client(shared: LocalCluster, target: int) -> None:
    with RawConnection(shared.config, target) as conn:
        conn.hello_client("garbage-client-2")
        assert isinstance(conn.recv(), HelloAck)
        conn.send(CatchupRequest(0, 0, 0))
        error = refused(conn)
        tag = conn.peer_tag
    assert error is not None and error.code == "unexpected"
    wait_log_line(shared, target, tag, "refused", "is not a client request")
    still_serving(shared, target)


def test_every_server_survived(shared: LocalCluster) -> None:
    assert all(shared.alive(n) for n in shared.config.servers)
    statuses = shared.statuses()
    assert all(s is not None for s in statuses.values())
    assert sum(s.is_leader for s in statuses.values() if s is not None) == 1
