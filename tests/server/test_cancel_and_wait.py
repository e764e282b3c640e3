"""`cancel_and_wait`: stopping a task must not eat the caller's own cancellation.

A scenario run hung once this way: its runner cancelled a client task while the client
was closing (cancelling and awaiting its reader task under suppress(CancelledError));
the suppress took the client task's cancellation, and the client went on retrying.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from paxoi.client import AsyncClient
from paxoi.transport.runloop import cancel_and_wait


async def _slow_to_end(ending: asyncio.Event, release: asyncio.Event) -> None:
    """A task that, once cancelled, takes until `release` to end."""
    try:
        await asyncio.Event().wait()
    finally:
        ending.set()
        await release.wait()


async def _cancel_while_stopping(stop: Callable[[asyncio.Task[None]], Awaitable[None]]) -> str:
    """Start `stop(child)` on a child slow to end, cancel it while it waits for the child,
    and say whether it ended "cancelled" or "carried on"."""
    ending, release = asyncio.Event(), asyncio.Event()
    child = asyncio.create_task(_slow_to_end(ending, release))
    await asyncio.sleep(0)  # the child is waiting

    async def stopper() -> str:
        await stop(child)
        return "carried on"

    outer = asyncio.create_task(stopper())
    await asyncio.wait_for(ending.wait(), 5)  # stopper is waiting for the child now
    outer.cancel()
    release.set()
    try:
        return await asyncio.wait_for(outer, 5)
    except asyncio.CancelledError:
        return "cancelled"


def test_the_callers_cancellation_is_raised_again() -> None:
    assert asyncio.run(_cancel_while_stopping(cancel_and_wait)) == "cancelled"


def test_the_tasks_own_end_is_swallowed(caplog: pytest.LogCaptureFixture) -> None:
    async def fails() -> None:
        raise RuntimeError("its own problem")

    async def main() -> tuple[bool, bool]:
        waiting = asyncio.create_task(asyncio.Event().wait())
        await asyncio.sleep(0)
        await cancel_and_wait(waiting)  # its CancelledError is not ours
        failed = asyncio.create_task(fails())
        await asyncio.sleep(0)
        await cancel_and_wait(failed)  # already failed: nothing raised here
        return waiting.cancelled(), failed.done()

    assert asyncio.run(main()) == (True, True)
    # the error is not raised, but not lost either
    assert "ended with an error: RuntimeError('its own problem')" in caplog.text


def test_cleanup_in_a_cancelled_tasks_finally_goes_on() -> None:
    """A shutdown that runs because its task was cancelled stops every child, not just the
    first: the cancellation it is handling is not a new one."""

    async def main() -> list[bool]:
        children = [asyncio.create_task(asyncio.Event().wait()) for _ in range(3)]
        started = asyncio.Event()

        async def serve() -> None:
            try:
                started.set()
                await asyncio.Event().wait()
            finally:
                for child in children:
                    await cancel_and_wait(child)

        server = asyncio.create_task(serve())
        await started.wait()
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
        return [c.cancelled() for c in children]

    assert asyncio.run(main()) == [True, True, True]


def test_a_closing_client_can_be_cancelled() -> None:
    """AsyncClient.close() cancelled while its reader task ends: the closing task ends."""

    async def close(runner: asyncio.Task[None]) -> None:
        client = AsyncClient({0: ("127.0.0.1", 9)}, client_id="c")
        client._runner = runner
        await client.close()

    assert asyncio.run(_cancel_while_stopping(close)) == "cancelled"
