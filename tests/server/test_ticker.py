"""A server's ticker wakes about once per tick, also on uvloop, whose clock counts whole
milliseconds. It used to spin there through zero-length timers for up to a millisecond
of every tick, a tenth of a CPU per idle server: the next tick's time, a sum of float
intervals, lay a rounding error past a clock reading that would not move until the next
millisecond, and uvloop makes a timer shorter than half a millisecond one of 0 ms. (The
standard loop rounds its wait up to a millisecond, so it never spun.)"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest

from paxoi.server.config import parse_config
from paxoi.server.runtime import TICK_SLACK, TIMER_GRAIN, Server, ticker_sleep, ticks_due

TICK_MS = 10.0
RUN_S = 0.3


def sum_of_ticks(n: int, interval: float) -> float:
    t = 0.0
    for _ in range(n):
        t += interval
    return t


def test_a_tick_a_rounding_error_past_the_clock_is_due() -> None:
    six = sum_of_ticks(6, 0.01)
    assert six > 0.06  # the rounding the ticker met under uvloop
    assert ticks_due(six, 0.06, 0.01, limit=100) == 1
    assert ticker_sleep(six, 0.06, 0.01) == 0.0


def test_a_tick_not_yet_due_is_not() -> None:
    assert ticks_due(0.06 + 2 * TICK_SLACK, 0.06, 0.01, limit=100) == 0
    assert ticks_due(0.06, 0.0899, 0.01, limit=100) == 3
    assert ticks_due(0.06, 10.0, 0.01, limit=7) == 7  # a long stall: up to the limit


def test_the_ticker_never_sleeps_less_than_a_timer_can() -> None:
    # Half a millisecond to go: uvloop would make that a timer of 0 ms, and spin.
    assert ticker_sleep(0.0605, 0.06, 0.01) == TIMER_GRAIN
    assert ticker_sleep(0.07, 0.06, 0.01) == pytest.approx(0.01)
    # Ticks shorter than the grain: sleep one tick, not the grain (ticks stay single).
    assert ticker_sleep(0.0602, 0.06, 0.0005) == 0.0005


def uvloop_factory() -> asyncio.AbstractEventLoop:
    uvloop = pytest.importorskip("uvloop")
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def ticker_wakeups(new_loop: Callable[[], asyncio.AbstractEventLoop]) -> tuple[int, int]:
    """(wake-ups, ticks) of an idle one-server node over RUN_S seconds."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = parse_config(
        {
            "servers": {0: {"host": "127.0.0.1", "port": port}},
            "storage": {"memory": True},
            "tick_ms": TICK_MS,
        }
    )
    server = Server(config, 0)
    wakeups = 0
    ticks = 0
    tick = server.node.tick
    advance = server._advance_clock

    def counting_tick(catching_up: bool = False) -> None:
        nonlocal ticks
        ticks += 1
        tick(catching_up=catching_up)

    def counting_advance() -> None:
        nonlocal wakeups
        wakeups += 1
        advance()

    server.node.tick = counting_tick  # type: ignore[method-assign]
    server._advance_clock = counting_advance  # type: ignore[method-assign]

    async def run() -> None:
        await server.start()
        try:
            await asyncio.sleep(RUN_S)
        finally:
            await server.close()

    loop = new_loop()
    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    return wakeups, ticks


@pytest.mark.parametrize(
    "new_loop", [asyncio.new_event_loop, uvloop_factory], ids=["asyncio", "uvloop"]
)
def test_an_idle_server_wakes_about_once_per_tick(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    wakeups, ticks = ticker_wakeups(new_loop)
    expected = RUN_S * 1000 / TICK_MS
    # Ticks keep time (a loaded test machine may delay them, never multiply them) ...
    assert expected / 3 <= ticks <= expected + 2, (ticks, expected)
    # ... and a wake-up that ticks nothing is rare (the spin made hundreds per tick).
    assert wakeups <= ticks + expected / 4 + 2, (wakeups, ticks)
