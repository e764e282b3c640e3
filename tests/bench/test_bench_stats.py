"""The benchmark's aggregation: the log-linear histogram against exact sorted percentiles,
merging, JSON round trips, and the small helpers of the driver."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paxoi.apps.chat import escape
from paxoi.bench.cluster import NodeSample, Sample, window_figures
from paxoi.bench.load import split_clients
from paxoi.bench.runner import best_under, parse_points
from paxoi.bench.stats import (
    BITS,
    LatencyHistogram,
    add_series,
    bucket_bounds,
    bucket_index,
    exact_percentile,
)
from paxoi.bench.worker import WorkerSpec, make_payload

REL = 1.0 / (1 << (BITS + 1))  # the histogram's relative error bound

values = st.lists(st.integers(min_value=0, max_value=10**11), min_size=1, max_size=300)


@given(st.integers(min_value=0, max_value=10**15))
def test_a_value_lies_within_its_bucket(v: int) -> None:
    low, high = bucket_bounds(bucket_index(v))
    assert low <= v <= high
    assert high - low <= max(1, v) * 2 * REL


def test_buckets_are_contiguous_and_increasing() -> None:
    previous_high = -1
    for index in range(0, 40 << BITS):
        low, high = bucket_bounds(index)
        assert low == previous_high + 1, index
        assert high >= low
        assert bucket_index(low) == index and bucket_index(high) == index
        previous_high = high


@given(values, st.sampled_from([1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 100.0]))
def test_percentiles_match_the_exact_ones_within_the_error_bound(data: list[int], p: float) -> None:
    hist = LatencyHistogram.of(data)
    exact = exact_percentile(sorted(data), p)
    got = hist.percentile(p)
    assert got is not None
    assert abs(got - exact) <= exact * REL + 1
    assert min(data) <= got <= max(data)


def test_small_values_are_exact() -> None:
    data = list(range(1, 101))
    hist = LatencyHistogram.of(data)
    assert hist.percentile(50) == 50
    assert hist.percentile(90) == 90
    assert hist.percentile(99) == 99
    assert hist.percentile(100) == 100
    assert hist.min == 1 and hist.max == 100
    assert hist.mean == pytest.approx(50.5)


def test_percentiles_are_ordered_and_bounded_by_min_and_max() -> None:
    rng = random.Random(7)
    data = [int(rng.lognormvariate(14, 1.2)) for _ in range(20_000)]  # ~1 ms, long tail
    s = LatencyHistogram.of(data).summary_ms()
    order = [s["min"], s["p50"], s["p90"], s["p99"], s["p99.9"], s["max"]]
    assert all(isinstance(x, float) for x in order)
    assert order == sorted(order)  # type: ignore[type-var]
    assert s["max"] == round(max(data) / 1e6, 4)


def test_an_empty_histogram_has_no_percentiles() -> None:
    hist = LatencyHistogram()
    assert hist.percentile(50) is None
    assert hist.summary_ms()["p99"] is None
    assert hist.mean is None


def test_percentile_refuses_out_of_range() -> None:
    hist = LatencyHistogram.of([1])
    with pytest.raises(ValueError):
        hist.percentile(0)
    with pytest.raises(ValueError):
        hist.percentile(101)
    with pytest.raises(ValueError):
        hist.record(-1)


@given(values, values)
def test_merging_equals_recording_everything(a: list[int], b: list[int]) -> None:
    merged = LatencyHistogram.of(a)
    merged.merge(LatencyHistogram.of(b))
    whole = LatencyHistogram.of(a + b)
    assert merged.counts == whole.counts
    assert (merged.count, merged.total, merged.min, merged.max) == (
        whole.count,
        whole.total,
        whole.min,
        whole.max,
    )


@given(values)
def test_json_round_trip(data: list[int]) -> None:
    hist = LatencyHistogram.of(data)
    again = LatencyHistogram.from_json(json.loads(json.dumps(hist.to_json())))
    assert again.counts == hist.counts
    assert again.percentile(99) == hist.percentile(99)
    assert again.max == hist.max and again.min == hist.min


def test_from_json_refuses_inconsistent_counts() -> None:
    doc = LatencyHistogram.of([5, 6, 7]).to_json()
    doc["count"] = 4
    with pytest.raises(ValueError, match="add up"):
        LatencyHistogram.from_json(doc)


def test_cdf_ends_at_one_and_increases() -> None:
    cdf = LatencyHistogram.of([10, 10, 300, 5000, 5001, 10**6]).cdf()
    assert cdf[-1][1] == pytest.approx(1.0)
    fractions = [f for _, f in cdf]
    assert fractions == sorted(fractions)
    assert [v for v, _ in cdf] == sorted(v for v, _ in cdf)


def test_add_series_of_unequal_length() -> None:
    assert add_series([[1, 2, 3], [10], [], [0, 0, 0, 4]]) == [11, 2, 3, 4]


@pytest.mark.parametrize(
    ("clients", "processes", "expected"),
    [(1, 4, [1]), (5, 2, [3, 2]), (8, 8, [1] * 8), (32, 3, [11, 11, 10]), (3, 0, [3])],
)
def test_split_clients(clients: int, processes: int, expected: list[int]) -> None:
    assert split_clients(clients, processes) == expected


def test_parse_points() -> None:
    assert parse_points("1x1, 4X16,32x128") == [(1, 1), (4, 16), (32, 128)]
    with pytest.raises(ValueError):
        parse_points("4-16")


@given(st.integers(min_value=1, max_value=5000), st.text(max_size=20))
def test_payload_is_printable_ascii_of_the_size(size: int, tag: str) -> None:
    payload = make_payload(size, tag.encode("ascii", "ignore").decode())
    assert len(payload) == size
    assert all(0x20 <= b < 0x7F for b in payload)
    assert b"\\" not in payload  # the chat log would escape every message
    assert escape(payload.decode("utf-8")) == payload.decode("utf-8")


def test_worker_spec_json_round_trip() -> None:
    spec = WorkerSpec({0: ("127.0.0.1", 7000), 2: ("127.0.0.1", 7002)}, "c", 3, 16, 1024, 2)
    assert WorkerSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


def _sample(at: float, syncs: int, cpu: float, rss: int, leader: int = 0) -> Sample:
    return Sample(
        at,
        {
            n: NodeSample(True, n == leader, syncs * (n + 1), 100 * syncs, cpu * (n + 1), rss)
            for n in range(3)
        },
    )


def test_window_figures() -> None:
    first = _sample(10.0, 100, 1.0, 1000)
    last = _sample(12.0, 300, 2.0, 5000)
    fig = window_figures(first, last, committed=4000)
    assert fig["sample_seconds"] == 2.0
    leader = fig["servers"]["0"]
    assert leader["leader"] is True
    assert leader["syncs"] == 200
    assert leader["syncs_per_s"] == 100.0
    assert leader["commands_per_sync"] == 20.0
    assert leader["cpu_percent"] == 50.0
    assert (leader["rss_start_bytes"], leader["rss_end_bytes"]) == (1000, 5000)
    assert fig["servers"]["2"]["cpu_percent"] == 150.0
    assert fig["servers"]["1"]["applied_per_s"] == 10000.0


def test_window_figures_without_counters() -> None:
    gone = Sample(1.0, {0: NodeSample(False, False, None, None, None, None)})
    fig = window_figures(gone, gone, committed=0)
    s = fig["servers"]["0"]
    assert s["syncs_per_s"] is None and s["cpu_percent"] is None and s["up"] is False


def test_best_under() -> None:
    runs = [
        {"throughput": 100.0, "latency_ms": {"p99": 1.0}},
        {"throughput": 900.0, "latency_ms": {"p99": 9.9}},
        {"throughput": 2000.0, "latency_ms": {"p99": 25.0}},
        {"throughput": 5000.0, "latency_ms": {"p99": None}},
    ]
    best = best_under(runs, 10.0)
    assert best is not None and best["throughput"] == 900.0
    assert best_under(runs, 0.5) is None


@pytest.mark.parametrize("size", [1, 16, 64, 1024])
def test_kv_payload_is_a_put_of_the_lane_key(size: int) -> None:
    import json

    from paxoi.bench.worker import command_payload

    payload = command_payload("kv", size, "b0.3 ")
    doc = json.loads(payload)
    assert doc["op"] == "put" and doc["key"] == "b0.3"
    from paxoi.apps import kv

    assert len(payload) == max(size, len(kv.put("b0.3", "")))  # padded to size if it can
    assert command_payload("chat", size, "b0.3 ") == make_payload(size, "b0.3 ")


def test_leader_change_is_judged_by_ballots() -> None:
    from paxoi.bench.cluster import leader_changed

    def sample(leader: int | None, ballot: tuple[int, int] | None) -> Sample:
        nodes = {
            n: NodeSample(True, n == leader, 0, 0, 0.0, 0, ballot if n != 2 else None)
            for n in range(3)
        }
        return Sample(0.0, nodes)

    assert not leader_changed(sample(0, (3, 0)), sample(None, (3, 0)))  # leader too busy
    assert leader_changed(sample(0, (3, 0)), sample(1, (4, 1)))
    assert leader_changed(sample(0, (3, 0)), sample(0, (6, 0)))  # re-elected: a change too
