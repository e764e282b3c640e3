"""bench/plot.py and bench/compare_pysyncobj.py: the plots from a results document, the
comparison's ratios and table, and a short PySyncObj run on real processes."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from paxoi.bench.stats import LatencyHistogram

BENCH = Path(__file__).resolve().parents[2] / "bench"


def script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def fake_run(clients: int, outstanding: int, throughput: float, median_ns: int) -> dict[str, Any]:
    rng = random.Random(clients * 1000 + outstanding)
    hist = LatencyHistogram.of(int(rng.lognormvariate(0, 0.4) * median_ns) for _ in range(2000))
    return {
        "clients": clients,
        "outstanding": outstanding,
        "throughput": throughput,
        "latency_ms": hist.summary_ms(),
        "latency_histogram": hist.to_json(),
        "leader": 0,
        "servers": {"0": {"cpu_percent": 50.0}},
    }


def fake_doc(scale: float = 1.0) -> dict[str, Any]:
    runs = [
        fake_run(1, 1, 500 * scale, 2_000_000),
        fake_run(4, 16, 5000 * scale, 10_000_000),
        fake_run(16, 64, 9000 * scale, 60_000_000),
    ]
    return {"schema": "paxoi-bench/1", "parameters": {"fsync": True}, "runs": runs}


def test_plot_writes_both_pngs(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    plot = script("plot")
    import json

    sweep = tmp_path / "sweep.json"
    compare = {"paxoi": fake_doc(), "pysyncobj": {"runs": fake_doc(2.0)["runs"]}}
    sweep.write_text(json.dumps(compare))
    latency = tmp_path / "latency.json"
    latency.write_text(json.dumps(fake_doc()))
    out = tmp_path / "docs"
    assert plot.main(["--sweep", str(sweep), "--latency", str(latency), "--out", str(out)]) == 0
    for name in ("bench-throughput.png", "bench-latency.png"):
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def test_plot_refuses_other_json(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    plot = script("plot")
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    assert plot.main(["--sweep", str(other), "--out", str(tmp_path)]) == 2


def test_ratios_and_table() -> None:
    compare = script("compare_pysyncobj")
    paxoi, pso = fake_doc()["runs"], fake_doc(2.0)["runs"]
    pso[0]["profile"] = "nobatch"
    rows = compare.ratios(paxoi, pso)
    assert [r["throughput"] for r in rows] == [0.5, 0.5, 0.5]
    assert rows[0]["p50"] == 1.0  # same fake latencies
    table = compare.comparison_table(paxoi, pso, rows)
    assert "0.50x" in table and "nobatch" in table and "PySyncObj" in table


def test_pysyncobj_conf_overrides() -> None:
    pytest.importorskip("pysyncobj")
    compare = script("compare_pysyncobj")
    assert compare._parse_conf(["appendEntriesPeriod=0.005", "journalFile=None"]) == {
        "appendEntriesPeriod": 0.005,
        "journalFile": None,
    }
    with pytest.raises(SystemExit):
        compare._parse_conf(["noSuchField=1"])


@pytest.mark.timeout(60)
def test_a_short_pysyncobj_run() -> None:
    pytest.importorskip("pysyncobj")
    compare = script("compare_pysyncobj")
    doc = compare.run_pysyncobj_profiles(
        [(2, 4)], 16, 0.5, 1.0, "leader", ["batch2ms"], {}, progress=False
    )
    [run] = doc["runs"]
    assert run["profile"] == "batch2ms"
    assert run["committed"] > 0 and run["errors"] == 0
    lat = run["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    assert sum(s["in_flight_issued_here"] for s in run["servers"].values()) == 8
    assert run["servers"][str(run["leader"])]["cpu_percent"] is not None
