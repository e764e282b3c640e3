"""A client connection's idle watch: silent after `idle` seconds of waiting without
input, never while its input is being handled or while it is exempt (a subscriber).
tests/integration/test_limits.py checks the same end to end, with a real client."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from paxoi.server.runtime import IdleWatch

IDLE = 0.05


def run(scenario: Callable[[asyncio.AbstractEventLoop], Coroutine[Any, Any, None]]) -> None:
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(scenario(loop))
    finally:
        loop.close()


async def wait_for_call(calls: list[float], deadline: float) -> None:
    loop = asyncio.get_running_loop()
    while not calls and loop.time() < deadline:
        await asyncio.sleep(0.005)


def test_a_connection_waited_on_for_idle_seconds_is_silent() -> None:
    async def scenario(loop: asyncio.AbstractEventLoop) -> None:
        calls: list[float] = []
        watch = IdleWatch(loop, IDLE, lambda: calls.append(loop.time()), exempt=lambda: False)
        start = watch.waiting_since = loop.time()
        await wait_for_call(calls, start + 5)
        watch.cancel()
        assert len(calls) == 1
        assert calls[0] - start >= IDLE - 0.002

    run(scenario)


def test_input_restarts_the_count_and_handling_it_is_not_silence() -> None:
    async def scenario(loop: asyncio.AbstractEventLoop) -> None:
        calls: list[float] = []
        watch = IdleWatch(loop, IDLE, lambda: calls.append(loop.time()), exempt=lambda: False)
        watch.waiting_since = None  # handling input, for longer than `idle`
        await asyncio.sleep(IDLE * 3)
        assert calls == []
        for _ in range(4):  # input every half idle period
            watch.waiting_since = loop.time()
            await asyncio.sleep(IDLE / 2)
            assert calls == []
        last = watch.waiting_since = loop.time()
        await wait_for_call(calls, last + 5)
        watch.cancel()
        assert len(calls) == 1 and calls[0] - last >= IDLE - 0.002

    run(scenario)


@pytest.mark.parametrize("cancelled", [False, True], ids=["exempt", "cancelled"])
def test_an_exempt_or_cancelled_watch_never_calls(cancelled: bool) -> None:
    async def scenario(loop: asyncio.AbstractEventLoop) -> None:
        calls: list[float] = []
        watch = IdleWatch(
            loop, IDLE, lambda: calls.append(loop.time()), exempt=lambda: not cancelled
        )
        watch.waiting_since = loop.time()
        if cancelled:
            watch.cancel()
        await asyncio.sleep(IDLE * 4)
        watch.cancel()
        assert calls == []

    run(scenario)
