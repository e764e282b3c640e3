"""HeapKeeper: the server freezes what it holds so full collections stay short, and
still reclaims cycles that died frozen."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from paxoi.server.heap import HeapKeeper


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_freezes_after_recovery_and_every_so_many_applied_commands() -> None:
    heap = HeapKeeper(freeze_every=100, reclaim_every=1000)
    heap.started()
    assert gc.get_freeze_count() > 0
    held = [[i] for i in range(500)]  # tracked, long-lived
    frozen = gc.get_freeze_count()
    heap.applied(99)
    assert gc.get_freeze_count() == frozen  # not yet
    heap.applied(1)
    assert gc.get_freeze_count() >= frozen + len(held)
    heap.stop()
    assert gc.get_freeze_count() == 0


def test_reclaims_cycles_that_died_frozen() -> None:
    heap = HeapKeeper(freeze_every=10, reclaim_every=3, reclaim_seconds=0)
    heap.started()
    cycle = _Cycle()
    heap.applied(10)  # frozen with the cycle alive
    del cycle
    gc.collect()
    assert any(type(o) is _Cycle for o in _frozen_and_tracked())  # a frozen cycle survives
    heap.applied(10)
    heap.applied(10)  # the third freeze: unfreeze, collect, then freeze
    assert heap.reclaims == 1
    assert not any(type(o) is _Cycle for o in _frozen_and_tracked())


def test_reclaims_no_more_often_than_its_period() -> None:
    """Under load the freezes come fast; a full collection waits for its period too."""
    now = [0.0]
    heap = HeapKeeper(freeze_every=10, reclaim_every=2, reclaim_seconds=60, clock=lambda: now[0])
    heap.started()
    for _ in range(10):
        heap.applied(10)
    assert heap.reclaims == 0  # ten freezes in no time
    now[0] = 60.0
    heap.applied(10)
    assert heap.reclaims == 1
    now[0] = 200.0
    heap.applied(10)  # the period is over, but one freeze since is not enough
    assert heap.reclaims == 1
    heap.applied(10)
    assert heap.reclaims == 2
    heap.stop()


def _frozen_and_tracked() -> list[object]:
    """Every tracked object, frozen or not (get_objects skips the frozen ones)."""
    count = gc.get_freeze_count()
    gc.unfreeze()
    objects = gc.get_objects()
    if count:
        gc.freeze()
    return objects
