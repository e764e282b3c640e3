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
