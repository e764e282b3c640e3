"""A TLS cluster that requires client certificates, on real processes (127.0.0.1).

One cluster serves the whole module. Throughout, a well-behaved client keeps
submitting; every attack is made while it runs and must not stop it, and the last test
checks that everything it was ever told was acknowledged is on every replica, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
import time
from collections.abc import Iterator

import pytest
from integration_helpers import entries, stop_cluster, wait_log_line, wait_until
from security_helpers import (
    Pki,
    Raw,
    Steady,
    all_acked_present,
    make_pki,
    rss_kib,
    still_serving,
    tls_cluster,
    tls_context,
)

from paxoi.client import AsyncClient, Client, SubmitTimeout
from paxoi.core.messages import Accept, CatchupRequest, ClientReply, ReplyStatus
from paxoi.core.types import Ballot, Command
from paxoi.security.tls import IdentityError, client_context, open_connection
from paxoi.server.local import LocalCluster
from paxoi.wire.codec import PROTOCOL_VERSION
from paxoi.wire.framing import FrameDecoder
from paxoi.wire.messages import KIND_SERVER, ErrorReply, Hello, HelloAck, Submit
from paxoi.wire.values import DecodeError

CLUSTER = "sec"
ACKED: list[str] = []  # every message acknowledged to a well-behaved client, module-wide


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), CLUSTER, [0, 1, 2], ["admin", "alice"])


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Another CA whose certificates claim the very same names (cluster, node ids)."""
    return make_pki(tmp_path_factory.mktemp("foreign"), CLUSTER, [0, 1, 2], ["admin"])


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[LocalCluster]:
    cluster = tls_cluster(
        tmp_path_factory.mktemp("tls-cluster"),
        pki,
        tls={"ca": str(pki.ca), "client_cert": str(pki.client("admin")[0])},
        auth={"clients": "cert"},
    )
    try:
        cluster.start()
        cluster.wait_leader(20)
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest.fixture(scope="module")
def steady(shared: LocalCluster) -> Iterator[Steady]:
    client = Steady(shared.config).start()
    try:
        yield client
    finally:
        client.stop()
        ACKED.extend(client.acked)


@pytest.fixture
def target(shared: LocalCluster, steady: Steady) -> int:
    """The node to attack: the leader, whose loss would hurt most."""
    return shared.wait_leader()


def admin(pki: Pki) -> ssl.SSLContext:
    return tls_context(pki.ca, pki.client("admin"))


# ---------------------------------------------------------------------- it works


def test_tls_cluster_commits_commands(shared: LocalCluster, steady: Steady) -> None:
    with steady.keeps_going():
        with Client.from_config(shared.config, name="writer", timeout=20) as client:
            assert client.id.startswith("admin-writer-")  # in the certificate's namespace
            texts = [f"tls {i}" for i in range(20)]
            slots = [int(client.submit(t)) for t in texts]
        ACKED.extend(texts)
    assert slots == sorted(slots)
    for node in shared.config.servers:
        wait_until(
            lambda n=node: {e.message for e in entries(shared, n)} >= set(texts),
            10,
            f"node {node} to apply the 20 commands",
        )
    statuses = shared.statuses()
    assert all(s is not None and s.extra["peers_connected"] == 2 for s in statuses.values())


def test_the_servers_speak_tls_1_3_with_node_certificates(shared: LocalCluster, pki: Pki) -> None:
    with Raw(shared.config, 1, admin(pki)) as conn:
        assert isinstance(conn.sock, ssl.SSLSocket)
        assert conn.sock.version() == "TLSv1.3"
        cert = conn.sock.getpeercert()
        assert ("URI", "paxoi://sec/node/1") in cert["subjectAltName"]
        assert ("IP Address", "127.0.0.1") in cert["subjectAltName"]
        conn.hello_client("admin-probe")
        assert isinstance(conn.recv(), HelloAck)


# ---------------------------------------------------------------------- clients


def test_client_without_a_certificate_is_refused(
    shared: LocalCluster, pki: Pki, steady: Steady, target: int
) -> None:
    ctx = tls_context(pki.ca)
    with steady.keeps_going(), Raw(shared.config, target, ctx) as conn:
        conn.hello_client("admin-nocert")
        # No HelloAck, nothing at all: the TLS handshake failed (TLS 1.3 fails it after the
        # client finished its part, so the client sees the connection close).
        assert conn.drain_until_closed() == []

        async def submit_without_cert() -> None:
            async with AsyncClient.from_config(
                shared.config, name="admin-nocert", ssl_context=client_context(pki.ca)
            ) as client:
                with pytest.raises(SubmitTimeout):
                    await client.submit("must not be applied", timeout=2.0)

        asyncio.run(submit_without_cert())
    assert all(
        "must not be applied" not in {e.message for e in entries(shared, n)}
        for n in shared.config.servers
    )
    still_serving(shared, target)


def test_client_certificate_of_another_ca_is_refused(
    shared: LocalCluster, pki: Pki, foreign: Pki, steady: Steady, target: int
) -> None:
    # It trusts our CA (so it gets as far as it can) but holds the other CA's "admin".
    ctx = tls_context(pki.ca, foreign.client("admin"))
    with steady.keeps_going(), Raw(shared.config, target, ctx) as conn:
        conn.hello_client("admin-foreign")
        assert conn.drain_until_closed() == []
    still_serving(shared, target)


def test_plain_tcp_is_refused(shared: LocalCluster, steady: Steady, target: int) -> None:
    with steady.keeps_going(), Raw(shared.config, target, None) as conn:
        started = time.monotonic()
        conn.hello_client("admin-plain")
        with contextlib.suppress(DecodeError):  # a TLS alert record is not a paxoi frame
            conn.drain_until_closed()
        assert time.monotonic() - started < 3.0  # refused at once, not timed out
        # Whatever came back, it was no paxoi message.
        decoder = FrameDecoder(1 << 20)
        try:
            frames = decoder.feed(conn.raw_received)
        except DecodeError:
            frames = []
        assert frames == []
    still_serving(shared, target)


def test_a_client_may_only_use_its_own_client_ids(
    shared: LocalCluster, pki: Pki, steady: Steady, target: int
) -> None:
    ctx = tls_context(pki.ca, pki.client("alice"))
    with steady.keeps_going():
        with Raw(shared.config, target, ctx) as conn:
            conn.hello_client("steady-1234")  # the good client's namespace, not alice's
            error = conn.refusal()
            tag = conn.peer_tag
        assert error is not None and error.code == "unauthorized"
        wait_log_line(shared, target, tag, "refused", "'steady-1234' is not allowed")
        with Raw(shared.config, target, ctx) as conn:
            conn.hello_client("alice-1")  # her own namespace: served
            assert isinstance(conn.recv(), HelloAck)
            conn.send(Submit(Command("alice-1", 1, b"alice was here")))
            reply = conn.recv_until(lambda m: isinstance(m, ClientReply))
            assert isinstance(reply, ClientReply) and reply.status is ReplyStatus.OK
        ACKED.append("alice was here")
    still_serving(shared, target)


def test_a_client_certificate_of_another_cluster_is_refused(
    shared: LocalCluster, pki: Pki, steady: Steady, target: int
) -> None:
    # Same CA (an operator reusing it for two clusters), other cluster in the URI.
    cert = pki.issue_client("admin", cluster="other")
    with steady.keeps_going(), Raw(shared.config, target, tls_context(pki.ca, cert)) as conn:
        conn.hello_client("admin-other")
        error = conn.refusal()
        tag = conn.peer_tag
    assert error is not None and error.code == "unauthorized"
    wait_log_line(shared, target, tag, "refused", "paxoi://other/client/admin")
    still_serving(shared, target)


def test_the_client_checks_which_server_it_reached(shared: LocalCluster, pki: Pki) -> None:
    host, port = shared.config.servers[1].host, shared.config.servers[1].port
    ctx = client_context(pki.ca, *pki.client("admin"))

    async def connect(node: int) -> None:
        _, writer = await open_connection(host, port, ssl_context=ctx, cluster=CLUSTER, node=node)
        writer.close()

    asyncio.run(connect(1))  # node 1's port: node 1's certificate
    with pytest.raises(IdentityError, match="does not name paxoi://sec/node/0"):
        asyncio.run(connect(0))  # an impostor, as far as the client can tell
    with pytest.raises(IdentityError, match="does not name paxoi://elsewhere/node/1"):

        async def other_cluster() -> None:
            await open_connection(host, port, ssl_context=ctx, cluster="elsewhere", node=1)

        asyncio.run(other_cluster())


def test_the_client_refuses_a_server_of_another_ca(shared: LocalCluster, foreign: Pki) -> None:
    async def go() -> None:
        async with AsyncClient.from_config(
            shared.config,
            name="admin-trusting-foreign",
            ssl_context=client_context(foreign.ca, *foreign.client("admin")),
        ) as client:
            with pytest.raises(SubmitTimeout):
                await client.submit("to the wrong servers", timeout=2.0)

    asyncio.run(go())


# ---------------------------------------------------------------------- servers


def test_a_server_with_a_certificate_of_another_ca_is_refused(
    shared: LocalCluster, pki: Pki, foreign: Pki, steady: Steady, target: int
) -> None:
    peer = next(n for n in shared.config.servers if n != target)
    ctx = tls_context(pki.ca, foreign.node(peer))
    with steady.keeps_going(), Raw(shared.config, target, ctx) as conn:
        conn.send(Hello(PROTOCOL_VERSION, CLUSTER, KIND_SERVER, peer, None))
        assert conn.drain_until_closed() == []
    still_serving(shared, target)


def test_a_node_certificate_of_another_cluster_is_refused(
    shared: LocalCluster, pki: Pki, steady: Steady, target: int
) -> None:
    peer = next(n for n in shared.config.servers if n != target)
    cert = pki.issue_node(peer, cluster="other")
    with steady.keeps_going(), Raw(shared.config, target, tls_context(pki.ca, cert)) as conn:
        conn.send(Hello(PROTOCOL_VERSION, CLUSTER, KIND_SERVER, peer, None))
        error = conn.refusal()
        tag = conn.peer_tag
    assert error is not None and error.code == "unauthorized"
    wait_log_line(shared, target, tag, "refused", f"does not name paxoi://sec/node/{peer}")
    still_serving(shared, target)


def test_a_member_cannot_claim_to_be_another_member(
    shared: LocalCluster, pki: Pki, steady: Steady, target: int
) -> None:
    holder, claimed = (n for n in sorted(shared.config.servers) if n != target)
    ctx = tls_context(pki.ca, pki.node(holder))
    with steady.keeps_going(), Raw(shared.config, target, ctx) as conn:
        conn.send(Hello(PROTOCOL_VERSION, CLUSTER, KIND_SERVER, claimed, None))
        error = conn.refusal()
        tag = conn.peer_tag
    assert error is not None and error.code == "unauthorized"
    wait_log_line(shared, target, tag, "refused", f"Hello as node {claimed} refused")
    still_serving(shared, target)


def test_a_client_certificate_cannot_pass_for_a_server(
    shared: LocalCluster, pki: Pki, steady: Steady, target: int
) -> None:
    peer = next(n for n in shared.config.servers if n != target)
    ctx = tls_context(pki.ca, pki.client("alice"))
    with steady.keeps_going(), Raw(shared.config, target, ctx) as conn:
        conn.send(
            Hello(PROTOCOL_VERSION, CLUSTER, KIND_SERVER, peer, None),
            Accept(peer, Ballot(10**9, peer), 0, ()),
        )
        error = conn.refusal()
    assert error is not None and error.code == "unauthorized"
    still_serving(shared, target)


def test_a_forged_message_from_a_non_member(
    shared: LocalCluster, pki: Pki, steady: Steady, target: int
) -> None:
    # Node 7 has a certificate of this very CA and cluster, but is not in the membership.
    cert = pki.issue_node(7)
    with steady.keeps_going(), Raw(shared.config, target, tls_context(pki.ca, cert)) as conn:
        conn.send(
            Hello(PROTOCOL_VERSION, CLUSTER, KIND_SERVER, 7, None),
            Accept(7, Ballot(10**9, 7), 0, (Command("evil-1", 1, b"forged"),)),
        )
        error = conn.refusal()
        tag = conn.peer_tag
    assert error is not None and error.code == "unknown-node"
    wait_log_line(shared, target, tag, "refused", "node 7 is not a peer")
    still_serving(shared, target)
    assert all(
        "forged" not in {e.message for e in entries(shared, n)} for n in shared.config.servers
    )


def test_a_member_sending_a_forged_source_is_cut_off(
    shared: LocalCluster, pki: Pki, steady: Steady, target: int
) -> None:
    holder, forged = (n for n in sorted(shared.config.servers) if n != target)
    ctx = tls_context(pki.ca, pki.node(holder))
    with steady.keeps_going(), Raw(shared.config, target, ctx) as conn:
        conn.send(
            Hello(PROTOCOL_VERSION, CLUSTER, KIND_SERVER, holder, None),
            CatchupRequest(forged, 0, 0),
        )
        error = conn.refusal()
    assert error is not None and error.code == "forged"
    still_serving(shared, target)


# ---------------------------------------------------------------------- hostile frames


def test_one_gib_length_prefix_over_tls(
    shared: LocalCluster, pki: Pki, steady: Steady, target: int
) -> None:
    pid = shared.procs[target].pid
    before = rss_kib(pid)
    with steady.keeps_going(), Raw(shared.config, target, admin(pki)) as conn:
        conn.hello_client("admin-gib")
        assert isinstance(conn.recv(), HelloAck)
        started = time.monotonic()
        conn.send_raw(struct.pack(">I", 1 << 30) + b"\x00" * 64)
        error = conn.refusal()
        elapsed = time.monotonic() - started
        tag = conn.peer_tag
    assert isinstance(error, ErrorReply) and error.code == "bad-frame"
    assert elapsed < 2.0  # refused on the header, not after waiting for a gigabyte
    wait_log_line(shared, target, tag, "frame of 1073741824 bytes exceeds the maximum")
    assert rss_kib(pid) - before < 64 * 1024  # nothing like a gigabyte was allocated
    still_serving(shared, target)


def test_silent_tls_connections_do_not_block_others(
    shared: LocalCluster, steady: Steady, target: int
) -> None:
    import socket

    entry = shared.config.servers[target]
    silent = [socket.create_connection((entry.host, entry.port), timeout=5) for _ in range(50)]
    try:
        with steady.keeps_going():
            started = time.monotonic()
            still_serving(shared, target)
            assert time.monotonic() - started < 5.0
        for s in silent[:5]:  # each is dropped after the TLS handshake timeout
            s.settimeout(15)
            assert s.recv(1) == b""
    finally:
        for s in silent:
            s.close()


# ---------------------------------------------------------------------- at the end


def test_every_server_survived_and_nothing_acknowledged_was_lost(
    shared: LocalCluster, steady: Steady
) -> None:
    steady.check()
    assert len(steady.acked) > 0
    steady.stop()
    acked = ACKED + steady.acked
    assert all(shared.alive(n) for n in shared.config.servers)
    all_acked_present(shared, acked)
    statuses = shared.statuses()
    assert all(s is not None for s in statuses.values())
    assert sum(s.is_leader for s in statuses.values() if s is not None) == 1
