"""Issue 3's acceptance on real processes: SIGKILLed servers (the leader among them) and a
SIGKILLed whole cluster lose no acknowledged command, apply none twice, and come back
serving; a server refuses bad data directories with a clear error and no traceback.

Loopback only; every process is started by these tests and stopped by PID in teardown.
`PAXOI_CRASH_SEED=N` replays one schedule of kills (each test prints its seed, which pytest
shows with a failure).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# pytest runs in importlib mode, which does not put this folder on sys.path.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from crash_helpers import (
    Load,
    final_check,
    log_tails,
    running_cluster,
    submit_one,
    wait_answers,
    wait_converged,
    wait_logs_identical,
)

from paxoi.server.config import PaxoiConfig, dump_config, load_config, local_config
from paxoi.server.local import LocalCluster

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def rng() -> random.Random:
    seed = int(os.environ.get("PAXOI_CRASH_SEED", random.randrange(1 << 30)))
    print(f"PAXOI_CRASH_SEED={seed}")
    return random.Random(seed)


def kill_all(c: LocalCluster) -> None:
    """SIGKILL every running server at once (all signals first, then reap)."""
    running = [p for p in c.procs.values() if p.poll() is None]
    for p in running:
        p.send_signal(signal.SIGKILL)
    for p in running:
        p.wait(10)


# -- a: servers killed one at a time, the leader among them --------------------------------


def test_sigkilled_servers_lose_no_acknowledged_command(tmp_path: Path, rng: random.Random) -> None:
    kills, leader_kills = 0, 0
    plan = ["leader"] * 4 + ["any"] * 8
    rng.shuffle(plan)
    with running_cluster(tmp_path) as c:
        load = Load(c.config, clients=3, max_seconds=75).start()
        try:
            load.wait_acked(30, 15, "before the first kill")
            for kind in plan:
                time.sleep(rng.uniform(0.0, 0.4))  # a random moment
                leader = c.wait_leader(15)
                victim = leader if kind == "leader" else rng.choice(sorted(c.config.servers))
                c.kill(victim)  # SIGKILL, and reaped: at most this one server is down
                kills += 1
                leader_kills += victim == leader
                time.sleep(rng.uniform(0.05, 1.0))  # random downtime
                base = load.count
                c.start([victim])
                wait_answers(c, victim)
                # The load keeps going: the two others (and now all three) serve it.
                load.wait_acked(base + 5, 20, f"after restarting node {victim}")
        finally:
            load.stop()
        assert kills >= 10 and leader_kills >= 3, (kills, leader_kills)
        assert sum(c.starts.values()) == 3 + kills
        final_check(c, load)
        print(
            f"{kills} kills ({leader_kills} of the leader), {load.count} acknowledged, "
            f"{len(load.unknown)} unknown outcome: {load.errors[:3]}"
        )


# -- b: the whole cluster killed at once, and a clean stop ---------------------------------


def test_whole_cluster_sigkilled_loses_no_acknowledged_command(
    tmp_path: Path, rng: random.Random
) -> None:
    with running_cluster(tmp_path) as c:
        load = Load(c.config, clients=3, max_seconds=50).start()
        try:
            for _ in range(3):
                load.wait_acked(load.count + 100, 20, "before killing the cluster")
                time.sleep(rng.uniform(0.0, 0.3))
                kill_all(c)  # mid-load: commands are in flight
                acked = load.count
                time.sleep(rng.uniform(0.1, 0.6))
                c.start()
                load.wait_acked(acked + 30, 30, "after restarting the whole cluster")
        finally:
            load.stop()
        final_check(c, load)
        print(f"3 whole-cluster kills, {load.count} acknowledged, {len(load.unknown)} unknown")


def test_clean_stop_and_start_keeps_the_log(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as c:
        with Load(c.config, clients=3, max_seconds=30) as load:
            load.wait_acked(150, 20)
        top = max(a.slot for a in load.acked if a.slot is not None)
        applied = wait_converged(c, at_least=top + 1)
        before = wait_logs_identical(c)

        c.stop()  # SIGTERM: each server shuts down cleanly
        codes = {n: p.returncode for n, p in c.procs.items()}
        assert codes == {0: 0, 1: 0, 2: 0}, f"{codes}\n{log_tails(c)}"
        for node in c.config.servers:
            d = c.config.data_dir(node)
            # A clean close checkpoints the WAL into data.db and removes it (docs/storage.md);
            # snapshot segments, once a chunk of the chat seals, are files in segments/.
            names = sorted(p.name for p in d.iterdir() if p.name != "segments")
            assert names == ["LOCK", "chat.log", "data.db"]

        c.start()
        c.wait_leader(20)
        assert wait_converged(c, at_least=applied) == applied
        assert wait_logs_identical(c) == before
        final_check(c, load)


def test_sigterm_of_one_server_is_clean(tmp_path: Path) -> None:
    """Regression: Server.close left its inbound connections' tasks to asyncio.run's
    teardown, which logged a CancelledError traceback for each peer connection."""
    with running_cluster(tmp_path) as c:
        submit_one(c.config, "hello")
        wait_converged(c, at_least=1)
        leader = c.wait_leader(10)
        follower = next(n for n in sorted(c.config.servers) if n != leader)
        c.kill(follower, signal.SIGTERM)  # and reaped; its peers keep running
        assert c.procs[follower].returncode == 0
        log = (c.log_dir / f"node-{follower}.log").read_text()
        assert "Traceback" not in log and " ERROR " not in log, log[-2000:]


# -- c: bad data directories, through the CLI ----------------------------------------------


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[PaxoiConfig, Path]:
    """Data directories of a cluster 'alpha' that served 40 commands and stopped cleanly."""
    workdir = tmp_path_factory.mktemp("pristine")
    with running_cluster(workdir, cluster="alpha") as c:
        for i in range(40):
            submit_one(c.config, f"m{i}")
        wait_converged(c, at_least=40)
        wait_logs_identical(c)
    return c.config, c.config.storage.dir


def setup_copy(pristine: tuple[PaxoiConfig, Path], tmp_path: Path, cluster: str = "alpha") -> Path:
    """A copy of the pristine data, and a configuration file (same servers) that uses it."""
    config, data = pristine
    shutil.copytree(data, tmp_path / "data")
    ports = [s.port for _, s in sorted(config.servers.items())]
    mine = local_config(1, 0, tmp_path / "data", cluster=cluster, ports=ports)
    path = tmp_path / "cluster.yaml"
    path.write_text(dump_config(mine), encoding="utf-8")
    return path


def run_server(config_path: Path, node: int = 0) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "paxoi", "server", "--id", str(node), "--config", str(config_path)]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired as e:  # run() has killed it
        pytest.fail(f"the server did not refuse its data directory; it ran: {e.stderr!r}")


def assert_refused(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    err = r.stderr
    assert r.returncode != 0, f"exit 0; stderr {err!r}"
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("paxoi server: "), err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"


def fingerprint(d: Path) -> dict[str, str]:
    """What must survive a refused start unchanged: every file but LOCK (its pid may be
    rewritten by the refused process)."""
    if d.is_file():
        return {"": hashlib.sha256(d.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file() and p.name != "LOCK"
    }


def test_cli_refuses_another_clusters_data(
    pristine: tuple[PaxoiConfig, Path], tmp_path: Path
) -> None:
    config_path = setup_copy(pristine, tmp_path, cluster="beta")
    d = tmp_path / "data" / "node-0"
    before = fingerprint(d)
    assert_refused(
        run_server(config_path), f"{d} belongs to cluster 'alpha' node 0, not cluster 'beta'"
    )
    assert fingerprint(d) == before


def test_cli_refuses_another_nodes_data(pristine: tuple[PaxoiConfig, Path], tmp_path: Path) -> None:
    config_path = setup_copy(pristine, tmp_path)
    d = tmp_path / "data" / "node-0"
    shutil.rmtree(d)
    shutil.copytree(tmp_path / "data" / "node-1", d)
    before = fingerprint(d)
    assert_refused(
        run_server(config_path),
        f"{d} belongs to cluster 'alpha' node 1, not cluster 'alpha' node 0",
    )
    assert fingerprint(d) == before


def test_cli_refuses_a_corrupted_database(
    pristine: tuple[PaxoiConfig, Path], tmp_path: Path
) -> None:
    config_path = setup_copy(pristine, tmp_path)
    d = tmp_path / "data" / "node-0"
    db = d / "data.db"
    size = db.stat().st_size
    with db.open("r+b") as f:
        f.seek(size // 2 - 4096)
        f.write(random.Random(3).randbytes(8192))
    before = fingerprint(d)
    assert_refused(run_server(config_path), f"the database {db} is damaged")
    assert fingerprint(d) == before


@pytest.mark.parametrize(
    "keep",
    [
        "half",
        "one page short",
        # Regression: a refused start once wrote a fresh SQLite header into an empty file.
        "nothing",
    ],
)
def test_cli_refuses_a_truncated_database(
    pristine: tuple[PaxoiConfig, Path], tmp_path: Path, keep: str
) -> None:
    config_path = setup_copy(pristine, tmp_path)
    d = tmp_path / "data" / "node-0"
    db = d / "data.db"
    size = db.stat().st_size
    os.truncate(db, {"half": size // 2, "one page short": size - 4096, "nothing": 0}[keep])
    before = fingerprint(d)
    assert_refused(run_server(config_path), f"the database {db} is damaged")
    assert fingerprint(d) == before


def test_cli_refuses_a_data_dir_in_use(pristine: tuple[PaxoiConfig, Path], tmp_path: Path) -> None:
    config_path = setup_copy(pristine, tmp_path)
    first = LocalCluster(load_config(config_path), tmp_path, config_path=config_path)
    try:
        first.start([0])
        wait_answers(first, 0)
        entries = first.status(0).extra["entries"]  # type: ignore[union-attr]
        pid = first.procs[0].pid
        assert_refused(
            run_server(config_path), f"{tmp_path / 'data' / 'node-0'} is in use by pid {pid}"
        )
        # The first server is unharmed: still running, still serving the same log.
        assert first.alive(0)
        st = first.status(0)
        assert st is not None and st.extra["entries"] == entries
    finally:
        first.stop()


def test_cli_refuses_a_data_dir_that_is_a_file(
    pristine: tuple[PaxoiConfig, Path], tmp_path: Path
) -> None:
    config_path = setup_copy(pristine, tmp_path)
    d = tmp_path / "data" / "node-0"
    shutil.rmtree(d)
    d.write_bytes(b"not a directory\n")
    assert_refused(run_server(config_path), f"data directory {d} is a regular file")
    assert d.read_bytes() == b"not a directory\n"
