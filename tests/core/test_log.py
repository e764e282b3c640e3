"""DecisionLog: the decided slots one node knows (R1, R2's contiguous prefix, catch-up spans)."""

from __future__ import annotations

import random

import pytest
from core_helpers import cmd

from paxoi.core import NOOP, DecisionLog, InvariantViolation

A = (cmd("a", 1),)
B = (cmd("b", 1),)
C = (cmd("c", 1),)


def test_R1_conflicting_decision_raises_InvariantViolation() -> None:
    log = DecisionLog()
    assert log.add(0, A)
    with pytest.raises(InvariantViolation, match="R1"):
        log.add(0, B)
    assert log.get(0) == A  # the first decision stands


@pytest.mark.parametrize("first,second", [(A, NOOP), (NOOP, A), (A, (cmd("a", 1, b"other"),))])
def test_R1_noop_and_payload_differences_are_conflicts(first, second) -> None:
    log = DecisionLog({3: first})
    with pytest.raises(InvariantViolation):
        log.add(3, second)


def test_R1_same_decision_again_is_idempotent() -> None:
    log = DecisionLog()
    assert log.add(0, A) is True
    assert log.add(0, A) is False
    assert len(log) == 1 and log.floor == 1 and log.top == 1


@pytest.mark.parametrize(
    "order,floors,tops",
    [
        # in order: floor follows top
        ([0, 1, 2], [1, 2, 3], [1, 2, 3]),
        # a hole at 0 holds the floor back until it is filled
        ([2, 1, 0], [0, 0, 3], [3, 3, 3]),
        ([1, 0, 3, 2], [0, 2, 2, 4], [2, 2, 4, 4]),
        # a decision below the top does not lower it
        ([5, 0], [0, 1], [6, 6]),
    ],
)
def test_floor_is_contiguous_prefix_and_top_is_one_above_highest(order, floors, tops) -> None:
    log = DecisionLog()
    for slot, floor, top in zip(order, floors, tops, strict=True):
        log.add(slot, (cmd("x", slot + 1),))
        assert (log.floor, log.top) == (floor, top), f"after adding slot {slot}"
        assert all(s in log for s in range(log.floor))  # R2: everything below floor is decided


def test_floor_never_decreases_random_orders() -> None:
    rng = random.Random(7)
    for _ in range(20):
        slots = list(range(30))
        rng.shuffle(slots)
        log = DecisionLog()
        last_floor = 0
        for s in slots:
            log.add(s, (cmd("x", s + 1),))
            assert log.floor >= last_floor
            last_floor = log.floor
            expected = 0
            while expected in log:
                expected += 1
            assert log.floor == expected
        assert log.floor == log.top == 30


def test_rebuilt_from_durable_decisions() -> None:
    log = DecisionLog({0: A, 1: B, 3: C})
    assert (log.floor, log.top, len(log)) == (2, 4, 3)
    assert log.get(3) == C and log.get(2) is None and 2 not in log


def test_empty_log() -> None:
    log = DecisionLog()
    assert (log.floor, log.top, len(log)) == (0, 0, 0)
    assert log.get(0) is None
    assert log.span(0, 10, 5) == ()


@pytest.mark.parametrize(
    "start,stop,limit,expected",
    [
        (0, 10, 100, [0, 1, 3, 4]),
        (0, 10, 2, [0, 1]),  # bounded size
        (2, 4, 100, [3]),  # half-open, holes skipped
        (-5, 2, 100, [0, 1]),  # a negative start is clamped
        (5, 10, 100, []),
        (4, 4, 100, []),
    ],
)
def test_span_serves_known_decisions_in_slot_order(start, stop, limit, expected) -> None:
    log = DecisionLog({0: A, 1: B, 3: C, 4: NOOP})
    span = log.span(start, stop, limit)
    assert [s for s, _ in span] == expected
    assert all(v == log.get(s) for s, v in span)


# ------------------------------------------------------------------------------ compaction


def full(n: int, *, start: int = 0) -> DecisionLog:
    """Slots [start, n) decided, each with its own one-command value."""
    log = DecisionLog()
    for s in range(start, n):
        log.add(s, (cmd("x", s + 1),))
    return log


@pytest.mark.parametrize(
    "below,base,held",
    [
        (4, 4, 6),  # values below 4 dropped
        (0, 0, 10),  # nothing to drop
        (10, 10, 0),  # everything decided so far
        (15, 10, 0),  # never past the floor: what is not decided cannot be compacted
    ],
)
def test_compact_drops_values_below_and_keeps_them_decided(below, base, held) -> None:
    log = full(10)
    log.compact(below)
    assert (log.base, log.floor, log.top, len(log)) == (base, 10, 10, held)
    assert all(s in log for s in range(10))  # still decided (R2)
    assert all(log.get(s) is None for s in range(base))
    assert all(log.get(s) is not None for s in range(base, 10))


def test_compact_never_goes_back() -> None:
    log = full(10)
    log.compact(6)
    log.compact(3)
    assert log.base == 6 and len(log) == 4


def test_below_base_a_decision_is_ignored_not_compared() -> None:
    log = full(10)
    log.compact(5)
    assert log.add(2, B) is False  # cannot be checked against a dropped value (R1 is moot)
    assert log.get(2) is None and len(log) == 5
    with pytest.raises(InvariantViolation):
        log.add(7, B)  # above the base R1 still holds


def test_span_never_reaches_below_base() -> None:
    log = full(10)
    log.compact(6)
    assert [s for s, _ in log.span(0, 10, 100)] == [6, 7, 8, 9]


@pytest.mark.parametrize(
    "slot,result,base,floor,top,held",
    [
        (20, True, 20, 23, 23, [20, 21, 22]),  # out-of-order values above survive, and join
        (25, True, 25, 25, 25, []),  # everything held is below: all dropped
        (4, False, 0, 5, 23, [0, 1, 2, 3, 4, 20, 21, 22]),  # not past the floor: no change
    ],
)
def test_install_moves_the_log_past_a_snapshot(slot, result, base, floor, top, held) -> None:
    log = full(5)
    for s in (20, 21, 22):
        log.add(s, (cmd("y", s),))
    assert log.install(slot) is result
    assert (log.base, log.floor, log.top) == (base, floor, top)
    assert sorted(s for s in range(30) if log.get(s) is not None) == held
    assert all(s in log for s in range(log.floor))


@pytest.mark.parametrize(
    "decided,base,known,expected_base,floor",
    [
        # stored log [3, 8) above a snapshot at 6: everything held
        (range(3, 8), 3, 6, 3, 8),
        # decision 4 lost in a crash (persisted lazily): hold only the contiguous part
        ([3, 5, 6, 7], 3, 6, 5, 8),
        # snapshot at 6, nothing held below it
        ([6, 7, 9], 6, 6, 6, 8),
        # no snapshot: the old behaviour
        ([0, 1, 3], 0, 0, 0, 2),
    ],
)
def test_rebuilt_above_a_snapshot(decided, base, known, expected_base, floor) -> None:
    log = DecisionLog({s: (cmd("x", s + 1),) for s in decided}, base, known)
    assert (log.base, log.floor) == (expected_base, floor)
    assert all(s in log for s in range(floor))
    assert all(log.get(s) is not None for s in range(expected_base, floor))
    assert all(log.get(s) is None for s in range(expected_base))


def test_compacted_values_are_freed_a_few_at_a_time_by_later_decisions() -> None:
    """compact() drops the values at once (get is None) but frees them over the next
    decisions, so a snapshot's compaction is no stall; none is kept for ever."""
    import weakref

    class Watched:  # stands in for a command, to see when the batch holding it goes
        pass

    log = DecisionLog()
    refs = []
    for slot in range(40):
        watched = Watched()
        refs.append(weakref.ref(watched))
        log.add(slot, (watched,))  # type: ignore[arg-type]
    del watched
    log.compact(40)
    assert log.get(0) is None and 0 in log and len(log) == 0
    assert sum(r() is not None for r in refs) == 40  # not freed yet
    log.add(40, ())
    assert sum(r() is not None for r in refs) == 40 - 4
    for slot in range(41, 50):
        log.add(slot, ())
    assert all(r() is None for r in refs)
