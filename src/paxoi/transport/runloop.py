"""Running an asyncio program on the fastest event loop installed, and stopping its
tasks without losing a cancellation.

uvloop (`pip install paxoi[fast]`) makes each wake-up, read and write of the loop
cheaper, which is most of a command's latency at low load; without it, asyncio's own
loop does the same job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)`, on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    result: T = uvloop.run(coro)  # typed through T whether or not uvloop's stubs are there
    return result


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until it has ended, whatever it ended with: an error it
    ended with is logged (once awaited here, asyncio would never report it) and not
    raised, so one failed task does not stop a shutdown from stopping the others.

    `with suppress(CancelledError): await task` is not enough: if the task calling it
    is cancelled meanwhile, that cancellation is the CancelledError suppressed, and the
    caller carries on as if never cancelled (a scenario's client whose close() was
    under way when the runner cancelled it kept retrying for ever, and the run hung).
    Here a cancellation of the caller that arrives while it waits is raised again; one
    that came before (a shutdown running in the `finally` of a cancelled task) is not
    new, and the caller goes on with its cleanup, as TaskGroup tells them apart."""
    current = asyncio.current_task()
    before = current.cancelling() if current is not None else 0
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if current is not None and current.cancelling() > before:
            raise
    except Exception as e:
        log.warning("task %s had ended with an error: %r", task.get_name(), e)
