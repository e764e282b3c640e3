"""The CI smoke run of `paxoi bench`: a 5-second run on a real local cluster completes,
exits 0 and reports sane numbers. No assertion about how fast anything is."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from paxoi.bench.runner import Progress
from paxoi.cli.main import main

pytestmark = pytest.mark.timeout(90)


def test_paxoi_bench_smoke_run(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    began = time.monotonic()
    argv = ["bench", "--clients", "2", "--outstanding", "4", "--duration", "5", "--warmup", "1"]
    run = subprocess.run(
        [sys.executable, "-m", "paxoi", *argv, "--json", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    took = time.monotonic() - began
    assert run.returncode == 0, run.stderr + run.stdout
    assert "Traceback" not in run.stderr
    assert "commands/s" in run.stdout and "p99" in run.stdout
    doc = json.loads(out.read_text())
    assert doc["schema"] == "paxoi-bench/1"
    assert doc["parameters"]["fsync"] is True
    assert doc["machine"]["cpu_count"] == os.cpu_count()
    [r] = doc["runs"]
    assert (r["clients"], r["outstanding"], r["duration_s"]) == (2, 4, 5.0)
    assert r["errors"] == 0
    assert r["committed"] > 0
    assert r["throughput"] == pytest.approx(r["committed"] / 5.0, rel=1e-3)
    assert sum(r["per_second"]) == r["committed"]
    lat = r["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert lat["max"] < 60_000  # nothing took longer than the whole run
    assert r["latency_histogram"]["count"] == r["committed"]
    assert r["fsync"]["enabled"] is True
    assert r["fsync"]["leader_syncs_per_s"] > 0
    assert r["fsync"]["commands_per_sync"] > 0
    assert r["leader"] is not None and r["servers"][str(r["leader"])]["leader"] is True
    assert set(r["servers"]) == {"0", "1", "2"}
    for s in r["servers"].values():
        assert s["up"] is True
        assert s["cpu_percent"] is not None and s["cpu_percent"] > 0
        assert s["rss_start_bytes"] > 0 and s["rss_end_bytes"] > 0
        assert s["syncs"] > 0
    assert r["load_cpu_percent"] and all(c is not None for c in r["load_cpu_percent"])
    # Every process it started is gone, and its temporary directory too.
    for pid in [*doc["cluster"]["pids"].values(), *r["load_pids"]]:
        assert not _running(pid), pid
    assert doc["cluster"]["workdir"] is None
    assert took < 40, f"the smoke run took {took:.0f} s"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes; any other state is a live process.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "--clients", "0"],
        ["bench", "--size", "0"],
        ["bench", "--duration", "0.1"],
        ["bench", "--sweep", "4-16"],
        ["bench", "--servers", "4"],
    ],
)
def test_bad_arguments_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_progress_line() -> None:
    stream = io.StringIO()
    progress = Progress(stream, "(1/2) ")
    progress.update(0.0, 0.0, 1.0, 3.0, 0)
    progress.update(0.6, 0.0, 1.0, 3.0, 600)
    progress.update(1.5, 0.0, 1.0, 3.0, 1500)
    text = stream.getvalue()
    assert text.startswith("\r(1/2) [")
    assert "warm-up" in text and "measuring" in text
    assert "1,000 cmd/s" in text
    progress.finish()
    assert stream.getvalue().endswith("\r")
