"""Running an asyncio program on the fastest event loop installed.

uvloop (`pip install paxoi[fast]`) makes each wake-up, read and write of the loop
cheaper, which is most of a command's latency at low load; without it, asyncio's own
loop does the same job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)`, on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    result: T = uvloop.run(coro)  # typed through T whether or not uvloop's stubs are there
    return result
