"""`paxoi certs init|issue`: the files, their permissions and names, and the refusals."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from paxoi.cli.main import main
from paxoi.security.certs import read_cert_identities
from paxoi.security.tls import client_context, server_context
from paxoi.security.tokens import digest, verify


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "cluster": "prod",
                "servers": {
                    0: {"host": "10.0.0.1", "port": 7000},
                    1: {"host": "db2.example.net", "port": 7000, "bind": "0.0.0.0"},
                    2: {"host": "::1", "port": 7000},
                },
            }
        )
    )
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sans(path: Path) -> list[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(getattr(n, "value", n)) for n in san]


def test_init_makes_a_ca_every_node_and_a_client(
    conf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certs", "init", "--config", str(conf)]) == 0
    out = capsys.readouterr().out
    d = conf.parent / "certs"
    assert sorted(p.name for p in d.iterdir()) == [
        "ca.key",
        "ca.pem",
        "client-admin.key",
        "client-admin.pem",
        "node-0.key",
        "node-0.pem",
        "node-1.key",
        "node-1.pem",
        "node-2.key",
        "node-2.pem",
    ]
    assert all(mode(p) == 0o600 for p in d.glob("*.key"))
    assert all(mode(p) == 0o644 for p in d.glob("*.pem"))
    # Each server's certificate names its node and the address others reach it by.
    assert sans(d / "node-0.pem") == ["paxoi://prod/node/0", "10.0.0.1"]
    assert sans(d / "node-1.pem") == ["paxoi://prod/node/1", "db2.example.net"]
    assert sans(d / "node-2.pem") == ["paxoi://prod/node/2", "::1"]
    assert read_cert_identities(d / "client-admin.pem") == ["paxoi://prod/client/admin"]
    # And the snippet to paste says where they are.
    assert "tls:\n  ca: certs/ca.pem" in out and "client_cert: certs/client-admin.pem" in out
    # They load into the contexts the servers and clients build.
    server_context(d / "ca.pem", d / "node-1.pem", d / "node-1.key", require_client_cert=True)
    client_context(d / "ca.pem", d / "client-admin.pem", d / "client-admin.key")


def test_client_certificates_cannot_serve(conf: Path, tmp_path: Path) -> None:
    assert main(["certs", "init", "--config", str(conf), "--client", "ops"]) == 0
    d = conf.parent / "certs"
    usage = x509.load_pem_x509_certificate((d / "client-ops.pem").read_bytes()).extensions
    eku = usage.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert [u.dotted_string for u in eku] == ["1.3.6.1.5.5.7.3.2"]  # client auth only
    ca = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_nothing_is_overwritten_without_force(
    conf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certs", "init", "--config", str(conf)]) == 0
    ca = (conf.parent / "certs" / "ca.pem").read_bytes()
    capsys.readouterr()
    assert main(["certs", "init", "--config", str(conf)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("paxoi certs: ") and "use --force" in err and err.count("\n") == 1
    assert (conf.parent / "certs" / "ca.pem").read_bytes() == ca
    assert main(["certs", "init", "--config", str(conf), "--force"]) == 0
    assert (conf.parent / "certs" / "ca.pem").read_bytes() != ca
    assert mode(conf.parent / "certs" / "ca.key") == 0o600


def test_issue_with_the_existing_ca(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["certs", "init", "--config", str(conf)]) == 0
    d = conf.parent / "certs"
    (d / "node-1.pem").unlink()
    (d / "node-1.key").unlink()
    args = ["certs", "issue", "--config", str(conf), "--node", "1", "--san", "10.9.9.9"]
    assert main(args) == 0
    assert sans(d / "node-1.pem") == ["paxoi://prod/node/1", "db2.example.net", "10.9.9.9"]
    assert main(["certs", "issue", "--config", str(conf), "--client", "bob"]) == 0
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(d / "ca.pem"))
    ctx.load_cert_chain(str(d / "client-bob.pem"), str(d / "client-bob.key"))
    capsys.readouterr()
    assert main(["certs", "issue", "--config", str(conf), "--token", "alice"]) == 0
    out = capsys.readouterr().out
    token = (d / "token-alice").read_text().strip()
    assert mode(d / "token-alice") == 0o600
    assert f"alice: {digest(token)}" in out
    assert verify(token, {"alice": digest(token)}) == "alice"


def test_files_go_where_the_configuration_says(tmp_path: Path) -> None:
    conf = tmp_path / "c.yaml"
    conf.write_text(
        yaml.safe_dump(
            {
                "servers": {0: {"port": 7000}},
                "tls": {"ca": "pki/root.pem", "cert": "pki/s{id}.crt", "key": "keys/s{id}.key"},
            }
        )
    )
    assert main(["certs", "init", "--config", str(conf)]) == 0
    for name in (
        "pki/root.pem",
        "pki/root.key",
        "pki/s0.crt",
        "keys/s0.key",
        "pki/client-admin.pem",
    ):
        assert (tmp_path / name).is_file(), name
    assert main(["certs", "issue", "--config", str(conf), "--node", "0", "--force"]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["issue", "--node", "7"],
            "--node 7: no such server in the configuration (known: 0, 1, 2)",
        ),
        (["issue", "--client", "bad-name"], "bad client name 'bad-name'"),
        (["issue", "--token", "a b"], "bad client name 'a b'"),
        (["issue", "--client", "x", "--san", "h"], "--san goes with --node"),
        (["init", "--days", "0"], "--days must be at least 1"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    conf: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["certs", *args, "--config", str(conf)]) == 2
    err = capsys.readouterr().err
    assert err == f"paxoi certs: {message}\n" or message in err
    assert err.count("\n") == 1


def test_issue_needs_a_ca(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["certs", "issue", "--config", str(conf), "--client", "bob"]) == 1
    err = capsys.readouterr().err
    assert "run `paxoi certs init` first" in err and err.count("\n") == 1


def test_argument_errors(conf: Path, tmp_path: Path) -> None:
    assert main(["certs"]) == 2
    assert main(["certs", "issue", "--config", str(conf)]) == 2  # no --node/--client/--token
    assert main(["certs", "issue", "--config", str(conf), "--node", "1", "--client", "x"]) == 2
    assert main(["certs", "init", "--config", str(tmp_path / "missing.yaml")]) == 2
