"""The nemesis's fault schedule: parsing, clock rates, determinism, bounds, the budget."""

from __future__ import annotations

import random

import pytest

from paxoi.nemesis.faults import partition_sets
from paxoi.nemesis.schedule import (
    KINDS,
    VARIANTS,
    FaultSpec,
    ScheduleError,
    clock_band,
    clock_rates,
    cuts_links,
    generate_schedule,
    max_units,
    parse_faults,
)


def test_parse_faults() -> None:
    assert parse_faults("none").variants == {}
    assert parse_faults("all").kinds == list(KINDS)
    assert parse_faults("all").variants == VARIANTS
    fs = parse_faults("kill, partition:leader,pause:isolated,pause:any")
    assert fs.variants == {
        "kill": ("any", "leader"),
        "partition": ("leader",),
        "pause": ("isolated", "any"),
    }
    assert fs.describe() == "kill,pause:isolated|any,partition:leader"
    assert parse_faults("clock,kill").kinds == ["kill", "clock"]  # canonical order


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("kill,bogus", "unknown fault 'bogus'"),
        ("partition:everything", "partition has no variant 'everything'"),
        ("none,kill", "none cannot be combined"),
    ],
)
def test_parse_faults_refuses(text: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        parse_faults(text)


def test_clock_rates_stay_within_the_drift_bound() -> None:
    assert clock_band(10) == 4
    assert clock_band(0) == 0
    for drift in (1, 2, 5, 10, 20, 50):
        rates = clock_rates(drift, beyond_bound=False)
        if not rates:
            continue
        assert 100 not in rates
        # any two servers' rates (one may stay at 100) differ by less than the bound
        lo, hi = min([*rates, 100]), max([*rates, 100])
        assert hi * 100 < (100 + drift) * lo, (drift, rates)
    assert clock_rates(1, beyond_bound=False) == ()
    wild = clock_rates(10, beyond_bound=True)
    assert max(wild) / min(wild) > 1.1


def test_schedule_is_deterministic_per_seed() -> None:
    faults = parse_faults("all")
    a = generate_schedule(42, 60, faults, 5)
    assert a == generate_schedule(42, 60, faults, 5)
    assert a != generate_schedule(43, 60, faults, 5)
    assert generate_schedule(42, 60, parse_faults("none"), 5) == []


@pytest.mark.parametrize("servers", [3, 5])
@pytest.mark.parametrize("faults", ["all", "kill,pause", "partition", "pause:isolated,partition"])
def test_schedule_bounded_and_within_budget(servers: int, faults: str) -> None:
    f = (servers - 1) // 2
    fs = parse_faults(faults)
    for seed in range(100):
        duration = 5 + seed % 60
        schedule = generate_schedule(seed, duration, fs, servers, warmup=1.0)
        assert len(schedule) <= duration  # at most one start per 0.4 s gap... and far fewer
        for s in schedule:
            assert 1.0 <= s.start < s.end <= duration
            assert s.kind in fs.variants and s.variant in fs.variants[s.kind]
            if s.kind == "clock":
                assert s.units == 0 and s.rate in clock_rates(10, False)
            if s.kind == "partition" and s.variant == "majority":
                assert 1 <= s.minority <= f and s.units == s.minority
        assert max_units(schedule) <= f, (seed, schedule)
        cutting = [s for s in schedule if cuts_links(s.kind, s.variant)]
        for x in cutting:
            for y in cutting:
                assert x is y or x.end <= y.start or y.end <= x.start  # one at a time
        starts = [s.start for s in schedule]
        assert starts == sorted(starts)


def test_all_faults_show_up_in_a_minute() -> None:
    for servers in (3, 5):
        kinds = {s.kind for s in generate_schedule(1, 60, parse_faults("all"), servers)}
        assert kinds == set(KINDS)


def test_max_units_counts_overlaps() -> None:
    a = FaultSpec("kill", "any", 1.0, 3.0, 1)
    b = FaultSpec("pause", "any", 2.0, 4.0, 1)
    c = FaultSpec("clock", "skew", 2.5, 3.5, 0, rate=104)
    assert max_units([a]) == 1
    assert max_units([a, b, c]) == 2
    assert max_units([a, FaultSpec("pause", "any", 3.0, 4.0, 1)]) == 1  # ends are exclusive


def test_partition_topologies() -> None:
    rng = random.Random(1)
    nodes = [0, 1, 2, 3, 4]
    blocked, cut, _ = partition_sets("majority", nodes, None, 2, rng)
    assert cut == [0, 1]
    assert blocked[0] == blocked[1] == {2, 3, 4}
    assert blocked[2] == blocked[3] == blocked[4] == {0, 1}

    blocked, cut, text = partition_sets("leader", [3, 0, 1, 2, 4], 2, 0, rng)
    assert cut == [2] and blocked[2] == {0, 1, 3, 4} and blocked[0] == {2}
    assert "leader" in text

    blocked, cut, _ = partition_sets("bridge", [4, 0, 1, 2, 3], None, 0, rng)
    assert cut == [4] and blocked[4] == frozenset()
    assert blocked[0] == blocked[1] == {2, 3} and blocked[2] == blocked[3] == {0, 1}
    # the bridge and either half form a majority that hears itself
    blocked3, cut3, _ = partition_sets("bridge", [1, 0, 2], None, 0, rng)
    assert cut3 == [1] and blocked3[0] == {2} and blocked3[2] == {0} and not blocked3[1]
    # every cut is symmetric: a blocks b exactly when b blocks a
    for b in (blocked, blocked3):
        for x, peers in b.items():
            for y in peers:
                assert x in b[y]
