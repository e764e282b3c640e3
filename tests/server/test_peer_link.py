"""A peer link against a listening socket on 127.0.0.1: `send` only queues, `flush`
writes what is queued at once (without waiting for the pump), and everything arrives in
the order it was queued."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from paxoi.core.messages import Heartbeat
from paxoi.core.types import Ballot
from paxoi.transport.tcp import Address, FrameReader, PeerLink
from paxoi.wire.codec import Message, encode
from paxoi.wire.framing import frame
from paxoi.wire.messages import Hello


def beat(n: int) -> bytes:
    return frame(encode(Heartbeat(0, Ballot(n, 0), 0)))


async def next_messages(inbox: asyncio.Queue[Message], timeout: float) -> list[Message]:
    """What arrives within `timeout` seconds (nothing: [])."""
    out: list[Message] = []
    try:
        out.append(await asyncio.wait_for(inbox.get(), timeout))
        while not inbox.empty():
            out.append(inbox.get_nowait())
    except TimeoutError:
        pass
    return out


@asynccontextmanager
async def linked() -> AsyncIterator[tuple[asyncio.Queue[Message], PeerLink]]:
    """A started link to a listener that puts every message it receives in the inbox."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames = FrameReader(reader, 1 << 20)
        while (batch := await frames.read_batch()) is not None:
            for msg in batch:
                inbox.put_nowait(msg)

    listener = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    link = PeerLink(0, 1, Address("127.0.0.1", port), "c", 100, random.Random(1))
    link.start()
    try:
        yield inbox, link
    finally:
        await link.stop()
        listener.close()
        await listener.wait_closed()


def test_send_queues_and_flush_writes_everything_queued_in_order() -> None:
    async def scenario() -> None:
        async with linked() as (inbox, link):
            hello = await asyncio.wait_for(inbox.get(), 5)
            assert isinstance(hello, Hello)

            link.send(beat(1))
            assert await next_messages(inbox, 0.2) == []  # no flush: it waits

            link.send(beat(2))
            link.flush()  # both written here, in order
            got = await next_messages(inbox, 5)
            assert [m.ballot.round for m in got if isinstance(m, Heartbeat)] == [1, 2]

            link.send(beat(3))
            link.flush()  # what a server's tick does for lazy messages still queued
            got = await next_messages(inbox, 5)
            assert [m.ballot.round for m in got if isinstance(m, Heartbeat)] == [3]
            assert link.sent == 3 and link.dropped == 0

    asyncio.run(scenario())


def _loops() -> list[object]:
    """asyncio, and uvloop where it is installed: on a lost transport uvloop's write
    raises, asyncio's drops the data with a warning (both lost the queue before 4b842a9)."""
    loops: list[object] = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop

        loops.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    except ImportError:
        pass
    return loops


@pytest.mark.parametrize("new_loop", _loops())
def test_a_link_whose_connection_was_just_lost_neither_raises_nor_loses_the_queue(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """Between a connection's loss and the moment the link's own task hears of it, the
    server may still send and flush (a Ready, a tick): nothing raises, and what was
    queued then arrives over the next connection."""

    async def scenario() -> None:
        async with linked() as (inbox, link):
            assert isinstance(await asyncio.wait_for(inbox.get(), 5), Hello)
            writer = link._writer
            assert writer is not None
            writer.transport.abort()  # lost, and nobody has heard yet
            for n in range(1, 4):
                link.send(beat(n))
                link.flush()  # the transport is closed: no write, no exception
            got: list[Message] = []
            while len([m for m in got if isinstance(m, Heartbeat)]) < 3:
                got.append(await asyncio.wait_for(inbox.get(), 5))
            assert isinstance(got[0], Hello)  # a new connection, then the queue in order
            assert [m.ballot.round for m in got if isinstance(m, Heartbeat)] == [1, 2, 3]

    loop = new_loop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
