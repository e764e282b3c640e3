"""Admission checks, tokens and client options, without processes: `Gate.check` fed the
certificate dicts `ssl` hands out, and `client_options` fed configurations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from security_helpers import Pki, make_pki

from paxoi.core.errors import ConfigError
from paxoi.security.auth import Gate, client_options, owns
from paxoi.security.tls import (
    IdentityError,
    check_node,
    client_names,
    client_uri,
    cluster_prefix,
    node_uri,
    uris,
)
from paxoi.security.tokens import digest, new_token, read_token_file, token_name, verify
from paxoi.server.config import PaxoiConfig, local_config
from paxoi.wire.messages import KIND_CLIENT, KIND_SERVER, Hello


def cert(*names: str) -> dict[str, Any]:
    """What `getpeercert()` returns for a certificate with these URI names."""
    return {"subjectAltName": (("DNS", "x"), *(("URI", n) for n in names))}


def hello_server(node: int, cluster: str = "c") -> Hello:
    return Hello(1, cluster, KIND_SERVER, node)


def hello_client(client: str, token: str | None = None) -> Hello:
    return Hello(1, "c", KIND_CLIENT, None, client, token=token)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), "c", [0, 1, 2], ["admin"])


def config(pki: Pki, clients: str = "none", **auth: Any) -> PaxoiConfig:
    return local_config(
        1,
        7000,
        pki.dir / "data",
        cluster="c",
        tls={"ca": str(pki.ca), "client_cert": str(pki.client("admin")[0])},
        auth={"clients": clients, **auth},
    )


# ---------------------------------------------------------------- identities


def test_uris() -> None:
    assert node_uri("c", 3) == "paxoi://c/node/3"
    assert client_uri("c", "alice") == "paxoi://c/client/alice"
    # Any cluster id makes a valid URI, and one cannot pass for another.
    assert cluster_prefix("a/b c") == "paxoi://a%2Fb%20c/"
    assert node_uri("a/node/1", 2) != node_uri("a", 1)
    assert uris(None) == [] and uris({}) == [] and uris("junk") == []
    assert client_names(cert("paxoi://c/client/a", "paxoi://d/client/b"), "c") == ["a"]


def test_check_node() -> None:
    check_node(cert("paxoi://c/node/1"), "c", 1)
    for bad in (cert("paxoi://c/node/2"), cert("paxoi://d/node/1"), cert(), None, {}):
        with pytest.raises(IdentityError):
            check_node(bad, "c", 1)
    assert isinstance(IdentityError("x"), OSError)  # retried like any connection failure


@given(st.text(max_size=12), st.text(max_size=12))
def test_owns(name: str, client: str) -> None:
    assert owns(name, client) == (client == name or client.startswith(name + "-"))


# ---------------------------------------------------------------- the gate


def test_without_tls_the_gate_lets_everyone_in(tmp_path: Path) -> None:
    gate = Gate(local_config(1, 7000, tmp_path, cluster="c"), 0)
    assert gate.server_ssl is None and gate.peer_ssl is None
    assert gate.check(hello_server(1), None) is None
    assert gate.check(hello_client("anyone"), None) is None


def test_servers_must_hold_the_certificate_of_the_node_they_claim(pki: Pki) -> None:
    gate = Gate(config(pki), 0)
    assert gate.tls
    assert gate.check(hello_server(1), cert("paxoi://c/node/1")) is None
    for peercert in (cert("paxoi://c/node/2"), cert("paxoi://c/client/admin"), None):
        refusal = gate.check(hello_server(1), peercert)
        assert refusal is not None and "Hello as node 1 refused" in refusal


def test_client_certificates(pki: Pki) -> None:
    gate = Gate(config(pki, "cert"), 0)
    admin = cert("paxoi://c/client/admin")
    assert gate.check(hello_client("admin"), admin) is None
    assert gate.check(hello_client("admin-x-123"), admin) is None
    assert "not allowed" in (gate.check(hello_client("adminx-1"), admin) or "")
    assert "not allowed" in (gate.check(hello_client("bob-1"), admin) or "")
    assert "needs a client certificate" in (gate.check(hello_client("admin-1"), None) or "")
    node = cert("paxoi://c/node/1")  # a server's certificate is not a client's
    assert "needs a client certificate" in (gate.check(hello_client("admin-1"), node) or "")
    other = cert("paxoi://d/client/admin")
    assert "paxoi://d/client/admin" in (gate.check(hello_client("admin-1"), other) or "")


def test_tokens(pki: Pki) -> None:
    alice, bob = new_token("alice"), new_token("bob")
    gate = Gate(config(pki, "token", tokens={"alice": digest(alice)}), 0)
    assert gate.check(hello_client("alice-1", alice), None) is None
    assert gate.check(hello_client("alice-1", bob), None) is not None
    assert gate.check(hello_client("bob-1", alice), None) is not None  # not her namespace
    assert "no token" in (gate.check(hello_client("alice-1"), None) or "")
    refusal = gate.check(hello_client("alice-1", alice[:-1] + "x"), None)
    assert refusal is not None and alice not in refusal  # a refusal never echoes a token


def test_token_format() -> None:
    token = new_token("ops.team_1")
    assert token_name(token) == "ops.team_1"
    assert verify(token, {"ops.team_1": digest(token)}) == "ops.team_1"
    for bad in ("", "nocolon", ":secret", "a-b:secret", "a:", "a:" + "x" * 600):
        assert verify(bad, {"a": digest(bad), "a-b": digest(bad)}) is None
    with pytest.raises(ValueError):
        new_token("bad-name")


def test_token_files(tmp_path: Path) -> None:
    path = tmp_path / "t"
    token = new_token("alice")
    path.write_text(f"\n  {token}  \nignored\n")
    assert read_token_file(path) == token
    path.write_text("not a token")
    with pytest.raises(ConfigError, match="not a paxoi token"):
        read_token_file(path)
    with pytest.raises(ConfigError, match="no such file"):
        read_token_file(tmp_path / "missing")


def with_tls(cfg: PaxoiConfig, **fields: Any) -> PaxoiConfig:
    assert cfg.tls is not None
    return cfg.model_copy(update={"tls": cfg.tls.model_copy(update=fields)})


def test_a_missing_certificate_is_a_config_error_naming_the_file(pki: Pki) -> None:
    with pytest.raises(ConfigError, match=r"tls.cert: .*n0.pem: no such file"):
        Gate(with_tls(config(pki), cert=str(pki.dir / "n{id}.pem")), 0)
    with pytest.raises(ConfigError, match=r"tls.ca: .*not a PEM CA certificate"):
        Gate(with_tls(config(pki), ca=pki.dir / "node-0.key"), 0)
    with pytest.raises(ConfigError, match=r"tls.cert: .*do not load"):  # key of another node
        Gate(with_tls(config(pki), key=str(pki.dir / "node-1.key")), 0)


# ---------------------------------------------------------------- client options


def test_client_options_from_a_configuration(pki: Pki, tmp_path: Path) -> None:
    opts = client_options(config(pki, "cert"), {"name": "bob"})
    assert opts["ssl_context"] is not None
    assert opts["name"] == "admin-bob"  # in the certificate's namespace
    assert client_options(config(pki, "cert"), {"name": "admin"})["name"] == "admin"
    explicit = client_options(config(pki, "cert"), {"client_id": "x-1"})
    assert "name" not in explicit and explicit["client_id"] == "x-1"  # explicit wins
    assert client_options(config(pki, "none"), {"name": "bob"})["name"] == "bob"

    token = new_token("alice")
    (tmp_path / "token").write_text(token)
    cfg = config(pki, "token", tokens={"alice": digest(token)}, token_file=str(tmp_path / "token"))
    opts = client_options(cfg, {"name": "reader"})
    assert opts["token"] == token and opts["name"] == "alice-reader"
    bob = new_token("bob")
    assert client_options(cfg, {"token": bob})["name"] == "bob-client"

    plain = local_config(1, 7000, tmp_path, cluster="c")
    assert client_options(plain, {"name": "n"}) == {"name": "n"}
