"""A TLS cluster that authenticates clients by token, on real processes (127.0.0.1).

Servers hold only the tokens' digests (auth.tokens); clients read theirs from
auth.token_file or are given one. As in test_tls_cluster.py, a well-behaved client keeps
submitting through every refusal, and nothing it was told is acknowledged may be lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from integration_helpers import paxoi, stop_cluster, wait_log_line
from security_helpers import (
    Pki,
    Raw,
    Steady,
    all_acked_present,
    make_pki,
    still_serving,
    tls_cluster,
    tls_context,
)

from paxoi.client import AsyncClient, Client, ServerRefused
from paxoi.security import certs
from paxoi.security.tokens import digest, new_token
from paxoi.server.local import LocalCluster
from paxoi.wire.messages import HelloAck

CLUSTER = "tok"
ACKED: list[str] = []


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), CLUSTER, [0, 1, 2])


@pytest.fixture(scope="module")
def tokens(pki: Pki) -> dict[str, str]:
    return {"alice": certs.save_token(pki.dir, "alice", False), "bob": new_token("bob")}


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, tokens: dict[str, str]
) -> Iterator[LocalCluster]:
    cluster = tls_cluster(
        tmp_path_factory.mktemp("token-cluster"),
        pki,
        tls={"ca": str(pki.ca)},
        auth={
            "clients": "token",
            "tokens": {name: digest(t) for name, t in tokens.items()},
            "token_file": str(certs.token_path(pki.dir, "alice")),
        },
    )
    try:
        cluster.start()
        cluster.wait_leader(20)  # LocalCluster's own status queries carry alice's token
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
    return shared.wait_leader()


def test_the_token_file_of_the_configuration_is_used(shared: LocalCluster) -> None:
    with Client.from_config(shared.config, name="reader", timeout=20) as client:
        assert client.id.startswith("alice-reader-")
        assert client.submit("with alice's token")
    ACKED.append("with alice's token")


def test_another_valid_token_is_served(
    shared: LocalCluster, tokens: dict[str, str], steady: Steady
) -> None:
    async def go() -> None:
        async with AsyncClient.from_config(shared.config, name="bob", token=tokens["bob"]) as c:
            assert c.id.startswith("bob-")
            await c.submit("with bob's token")

    with steady.keeps_going():
        asyncio.run(go())
    ACKED.append("with bob's token")


@pytest.mark.parametrize(
    ("case", "token"),
    [
        ("a wrong secret", "alice:" + "A" * 43),
        ("an unknown name", new_token("carol")),
        ("no secret", "alice:"),
        ("an oversized token", "alice:" + "x" * 100_000),
    ],
)
def test_a_bad_token_is_refused(
    shared: LocalCluster, steady: Steady, target: int, case: str, token: str
) -> None:
    async def go() -> None:
        async with AsyncClient.from_config(
            shared.config, name=f"alice-{case.replace(' ', '_')}", token=token
        ) as c:
            with pytest.raises(ServerRefused, match="unauthorized"):
                await c.submit(f"must not be applied: {case}", timeout=10)

    with steady.keeps_going():
        asyncio.run(go())
    still_serving(shared, target)


def test_no_token_is_refused(shared: LocalCluster, pki: Pki, steady: Steady, target: int) -> None:
    with steady.keeps_going(), Raw(shared.config, target, tls_context(pki.ca)) as conn:
        conn.hello_client("alice-without-token")
        error = conn.refusal()
        tag = conn.peer_tag
    assert error is not None and error.code == "unauthorized"
    wait_log_line(shared, target, tag, "refused", "needs a valid token (it presented no token)")
    still_serving(shared, target)


def test_a_token_only_covers_its_own_client_ids(
    shared: LocalCluster, pki: Pki, tokens: dict[str, str], steady: Steady, target: int
) -> None:
    ctx = tls_context(pki.ca)
    with steady.keeps_going():
        with Raw(shared.config, target, ctx) as conn:
            conn.hello_client("alice-1", token=tokens["bob"])
            error = conn.refusal()
        assert error is not None and error.code == "unauthorized"
        with Raw(shared.config, target, ctx) as conn:
            conn.hello_client("bob-1", token=tokens["bob"])
            assert isinstance(conn.recv(), HelloAck)
    still_serving(shared, target)


def test_the_command_line_works_with_tls_and_tokens(shared: LocalCluster) -> None:
    result = paxoi("status", "--config", str(shared.config_path), timeout=60)
    assert result.returncode == 0, result.stderr
    assert "LEADER" in result.stdout
    result = paxoi("send", "--config", str(shared.config_path), stdin="from the cli\n", timeout=60)
    assert result.returncode == 0, result.stderr
    ACKED.append("from the cli")


def test_nothing_acknowledged_was_lost(shared: LocalCluster, steady: Steady) -> None:
    steady.check()
    steady.stop()
    all_acked_present(shared, ACKED + steady.acked)
    assert all(shared.alive(n) for n in shared.config.servers)
    assert not any(
        "must not be applied" in line
        for n in shared.config.servers
        for line in shared.chat_log(n).decode().splitlines()
    )
    assert Path(shared.config_path).exists()
