"""The `paxoi` command as a user runs it (`python -m paxoi ...` in a subprocess), against
real clusters on 127.0.0.1: config errors, send, log --hash, status, and the demo."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from integration_helpers import entries, paxoi, wait_logs_equal

from paxoi.server.config import dump_config, free_ports, parse_config
from paxoi.server.local import LocalCluster


def write_yaml(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("servers", "extra", "field"),
    [
        ({0: {"port": 70000}}, {}, "servers.0.port"),
        ({0: {"port": 7000}}, {"timing": {"electoin": 50}}, "timing.electoin"),
        ({0: {"port": 7000, "prot": 7001}}, {}, "servers.0.prot"),
    ],
    ids=["port-70000", "unknown-timing-key", "unknown-server-key"],
)
def test_server_refuses_an_invalid_config(
    tmp_path: Path, servers: dict[int, dict[str, int]], extra: dict[str, object], field: str
) -> None:
    config = write_yaml(tmp_path / "bad.yaml", {"servers": servers, **extra})
    run = paxoi("server", "--id", "0", "--config", str(config), timeout=20)
    assert run.returncode == 2, run.stderr
    assert field in run.stderr
    assert "invalid configuration" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "paxoi-data").exists()  # refused before touching any data


def test_server_refuses_an_unknown_id(tmp_path: Path) -> None:
    ports = free_ports(3)
    config = write_yaml(
        tmp_path / "ok.yaml",
        {
            "servers": {i: {"port": p} for i, p in enumerate(ports)},
            "storage": {"dir": str(tmp_path / "data")},
        },
    )
    run = paxoi("server", "--id", "9", "--config", str(config), timeout=20)
    assert run.returncode != 0
    assert "--id 9: no such server" in run.stderr
    assert "known: 0, 1, 2" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "data" / "node-9").exists()


def test_send_log_hash_and_status(cluster: LocalCluster, tmp_path: Path) -> None:
    config = str(cluster.config_path)
    lines = [f"line {i} from stdin" for i in range(30)]
    sent = paxoi("send", "--config", config, "--name", "cli", stdin="\n".join(lines) + "\n")
    assert sent.returncode == 0, sent.stderr
    assert "30 acknowledged, 0 failed" in sent.stdout
    assert "Traceback" not in sent.stderr

    wait_logs_equal(cluster, [0, 1, 2], 30)
    assert [e.message for e in entries(cluster, 0)] == lines
    expected = hashlib.sha256(cluster.chat_log(0)).hexdigest()
    for node in (0, 1, 2):
        run = paxoi("log", "--config", config, "--id", str(node), "--hash")
        assert run.returncode == 0, run.stderr
        digest, rest = run.stdout.split(maxsplit=1)
        assert digest == expected
        assert "30 entries" in rest

    shown = paxoi("log", "--config", config, "--id", "1")
    assert shown.returncode == 0, shown.stderr
    assert [line.split(": ", 1)[1] for line in shown.stdout.splitlines()] == lines

    status = paxoi("status", "--config", config)
    assert status.returncode == 0, status.stderr
    # (Also proves the /proc scan test_demo relies on finds running servers.)
    assert sorted(server_processes_under(cluster.workdir)) == sorted(
        p.pid for p in cluster.procs.values()
    )
    header, *rows = status.stdout.strip().splitlines()
    assert header.split()[:3] == ["id", "address", "state"]
    states = [row.split()[2] for row in rows]
    assert len(rows) == 3
    assert states.count("LEADER") == 1
    assert states.count("up") == 2


def test_status_shows_a_down_server(cluster: LocalCluster) -> None:
    leader = cluster.wait_leader()
    down = next(n for n in (0, 1, 2) if n != leader)
    cluster.kill(down)
    status = paxoi("status", "--config", str(cluster.config_path))
    assert status.returncode == 0, status.stderr
    rows = {row.split()[0]: row.split() for row in status.stdout.strip().splitlines()[1:]}
    assert rows[str(down)][2] == "down"
    assert rows[str(leader)][2] == "LEADER"


def server_processes_under(path: Path) -> list[int]:
    """PIDs of live `paxoi server` processes whose command line mentions `path`."""
    found = []
    mine = str(path)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if "server" in args and any(mine in a for a in args):
            found.append(int(entry.name))
    return found


def test_demo(tmp_path: Path) -> None:
    # The demo makes its temporary directory under TMPDIR: here, so that its servers
    # (whose command lines name their config file in it) can be told from anyone else's.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    run = subprocess.run(
        [sys.executable, "-m", "paxoi", "demo", "--messages", "50"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "OK: every replica holds the same log" in run.stdout
    hashes = {line.split("sha256 ")[1] for line in run.stdout.splitlines() if "sha256" in line}
    assert len(hashes) == 1
    assert "150 messages acknowledged" in run.stdout
    assert "Traceback" not in run.stderr
    # Nothing left behind: no server process, no listening port, no temporary directory.
    assert server_processes_under(tmp) == []
    ports_line = next(line for line in run.stdout.splitlines() if "(ports " in line)
    ports = [int(p) for p in ports_line.split("(ports ")[1].rstrip(")").split(", ")]
    for port in ports:
        with socket.socket() as s, pytest.raises(ConnectionRefusedError):
            s.connect(("127.0.0.1", port))
    assert list(tmp.iterdir()) == []


def test_operations_doc_lists_every_config_field_at_its_default() -> None:
    """docs/operations.md promises a configuration example with every field at its
    default; keep it true as fields are added."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    block = doc.split("This is every field, at its default:\n\n```yaml\n", 1)[1].split("```")[0]
    example = yaml.safe_load(block)
    config = parse_config(example)
    assert config == parse_config({"servers": example["servers"]})  # all defaults

    def keys(data: object, prefix: str = "") -> set[str]:
        if not isinstance(data, dict):
            return set()
        out = set()
        for k, v in data.items():
            out.add(f"{prefix}{k}")
            out |= keys(v, f"{prefix}{k}.")
        return out

    everything = yaml.safe_load(dump_config(config))
    assert keys({k: v for k, v in example.items() if k != "servers"}) == keys(
        {k: v for k, v in everything.items() if k != "servers"}
    )
    assert set(example["servers"][0]) == set(everything["servers"]["0"])
