"""The USI paxos-tests runs, reproduced against adapters/usi/ (the harness's own checks).

Each run starts the role scripts the way the harness does (acceptors, learners,
proposers, clients, about a second apart), gives the clients a window, stops every
process with SIGTERM (the harness uses `pkill -f <conf>`: here, only our own PIDs) and
checks: both learners' outputs identical, every learned value proposed, every distinct
proposed value learned. Every run gets its own multicast ports, on loopback.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
ADAPTER = REPO / "adapters" / "usi"
SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "external-tests" / "usi"


@dataclass
class Run:
    workdir: Path
    conf: Path
    env: dict[str, str]
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, role: str, ident: int, stdin: Path | None = None) -> subprocess.Popen[bytes]:
        out = open(self.workdir / f"{role}{ident}.out", "wb")  # noqa: SIM115
        err = open(self.workdir / f"{role}{ident}.err", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [str(ADAPTER / f"{role}.sh"), str(ident), str(self.conf)],
            stdin=open(stdin, "rb") if stdin else subprocess.DEVNULL,  # noqa: SIM115
            stdout=out,
            stderr=err,
            env=self.env,
            cwd=ADAPTER,
        )
        self.procs.append((f"{role}{ident}", proc))
        return proc

    def stop(self) -> None:
        """SIGTERM everything, as the harness's pkill does; each must exit promptly."""
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        slow = []
        for name, proc in self.procs:
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                slow.append(name)
                proc.kill()
                proc.wait(5)
        assert not slow, f"did not exit within 3 s of SIGTERM: {slow}"

    def learned(self, ident: int) -> list[str]:
        return (self.workdir / f"learner{ident}.out").read_text().splitlines()

    def stderr(self) -> str:
        return "\n".join(
            f"{p.name}: {p.read_text()[-400:]}"
            for p in sorted(self.workdir.glob("*.err"))
            if p.stat().st_size
        )


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    base = random.Random().randrange(20_000, 60_000, 4)
    conf = tmp_path / "paxos.conf"
    roles = ["clients", "proposers", "acceptors", "learners"]
    conf.write_text("".join(f"{r}  239.0.0.1 {base + i}\n" for i, r in enumerate(roles)))
    env = {**os.environ, "PAXOI_PYTHON": sys.executable}
    r = Run(tmp_path, conf, env)
    try:
        yield r
    finally:
        for _, proc in r.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


def values_file(tmp: Path, name: str, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    path = tmp / name
    path.write_text("".join(f"{rng.randrange(10**6)}\n" for _ in range(n)))
    return path


def harness_run(
    run: Run,
    inputs: list[Path],
    *,
    acceptors: int = 3,
    window: float = 5.0,
    kill_acceptor_after: float | None = None,
) -> None:
    """The harness's timeline: acceptors, learners, proposers, clients, ~1 s apart."""
    for i in range(1, acceptors + 1):
        run.start("acceptor", i)
    time.sleep(1)
    run.start("learner", 1)
    run.start("learner", 2)
    time.sleep(1)
    run.start("proposer", 1)
    run.start("proposer", 2)
    time.sleep(1)
    for i, values in enumerate(inputs, 1):
        run.start("client", i, values)
    if kill_acceptor_after is not None:
        time.sleep(kill_acceptor_after)
        victim = next(p for name, p in run.procs if name == "acceptor3")
        victim.kill()
        time.sleep(window - kill_acceptor_after)
    else:
        time.sleep(window)
    run.stop()


def proposed(*inputs: Path) -> set[str]:
    return {v for path in inputs for v in path.read_text().splitlines()}


def check(run: Run, inputs: list[Path], *, complete: bool = True) -> None:
    l1, l2 = run.learned(1), run.learned(2)
    values = proposed(*inputs)
    assert l1 == l2, "learners disagree\n" + run.stderr()
    assert set(l1) <= values, f"learned values never proposed: {sorted(set(l1) - values)[:5]}"
    if complete:
        missing = values - set(l1)
        assert not missing, f"{len(missing)} proposed values not learned\n" + run.stderr()


@pytest.mark.parametrize("per_client", [100, 1000])
def test_normal(run: Run, per_client: int) -> None:
    inputs = [values_file(run.workdir, f"prop{i}", per_client, i) for i in (1, 2)]
    harness_run(run, inputs)
    check(run, inputs)


def test_official_samples(run: Run) -> None:
    inputs = [SAMPLES / "prop1", SAMPLES / "prop2"]
    if not inputs[0].exists():
        pytest.skip(f"course samples not found in {SAMPLES}")
    harness_run(run, inputs)
    check(run, inputs)
    assert len(run.learned(1)) == 200  # repeated values are learned as often as proposed


@pytest.mark.parametrize("per_client", [100, 1000])
def test_two_acceptors_make_progress(run: Run, per_client: int) -> None:
    inputs = [values_file(run.workdir, f"prop{i}", per_client, i) for i in (1, 2)]
    harness_run(run, inputs, acceptors=2)
    check(run, inputs)


@pytest.mark.parametrize("per_client", [100, 1000])
def test_one_acceptor_makes_no_progress(run: Run, per_client: int) -> None:
    """Quorum stays 2 of 3: a lone acceptor must decide nothing (and nothing wrong)."""
    inputs = [values_file(run.workdir, f"prop{i}", per_client, i) for i in (1, 2)]
    harness_run(run, inputs, acceptors=1, window=3)
    assert run.learned(1) == [] and run.learned(2) == []


def test_ten_percent_loss_costs_time_not_values(run: Run) -> None:
    run.env["PAXOI_DROP_RATE"] = "0.1"
    inputs = [values_file(run.workdir, f"prop{i}", 100, i) for i in (1, 2)]
    harness_run(run, inputs, window=10)
    check(run, inputs)


def test_acceptor_killed_while_values_are_proposed(run: Run) -> None:
    inputs = [values_file(run.workdir, f"prop{i}", 1000, i) for i in (1, 2)]
    harness_run(run, inputs, kill_acceptor_after=0.3)
    check(run, inputs)


@pytest.mark.parametrize("per_client", [100, 1000])
def test_late_learner_catches_up(run: Run, per_client: int) -> None:
    """Handout test 6: a learner started after client 1 finished first learns the earlier
    values, in the same order, then the new ones."""
    first = values_file(run.workdir, "prop1", per_client, 1)
    second = values_file(run.workdir, "prop2", per_client, 2)
    for i in (1, 2, 3):
        run.start("acceptor", i)
    time.sleep(1)
    run.start("learner", 1)
    run.start("proposer", 1)
    time.sleep(1)
    run.start("client", 1, first)
    deadline = time.monotonic() + 10
    while len(run.learned(1)) < per_client and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(run.learned(1)) == per_client, run.stderr()
    run.start("learner", 2)
    run.start("client", 2, second)
    deadline = time.monotonic() + 10
    while len(run.learned(2)) < 2 * per_client and time.monotonic() < deadline:
        time.sleep(0.05)
    run.stop()
    check(run, [first, second])
    assert run.learned(2)[:per_client] == first.read_text().splitlines()


def test_ten_thousand_values_per_client_within_ten_seconds(run: Run) -> None:
    """Issue 7: with 10,000 values per client, both learners learn every value within 10 s
    of the clients' start."""
    inputs = [values_file(run.workdir, f"prop{i}", 10_000, i) for i in (1, 2)]
    harness_run(run, inputs, window=10)
    check(run, inputs)
    assert len(run.learned(1)) == 20_000
