"""The switch from reading a connection as a stream (its handshake) to handing its frames
to a callback (paxoi.transport.framed): nothing is lost, reordered or handled twice
across it, and the connection's end, a malformed frame and a handler's error each end
it as reading the stream would have."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from paxoi.core.types import Command
from paxoi.transport.framed import (
    FrameReader,
    feed_frames,
    open_framed_connection,
    start_framed_server,
)
from paxoi.wire.codec import Message, encode
from paxoi.wire.framing import frame
from paxoi.wire.messages import Submit
from paxoi.wire.values import DecodeError

REFUSED = -1  # framed(REFUSED): a command the handler raises on


def submit(i: int) -> Message:
    """Command number i (its seq is i + 1: a seq starts at 1)."""
    if i == REFUSED:
        return Submit(Command("c", 10**6, b"refused"))
    return Submit(Command("c", i + 1, b"m%d" % i))


def framed(*numbers: int) -> bytes:
    return b"".join(frame(encode(submit(i))) for i in numbers)


Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def server(serve: Serve) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    listener = await start_framed_server(serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    reader, writer = await open_framed_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        listener.close()
        await listener.wait_closed()


def run_server_side(
    send: Callable[[asyncio.StreamWriter], Awaitable[None]],
) -> tuple[list[int], BaseException | None]:
    """What a server that reads one message as a stream, then switches, receives of what
    `send` writes: the sequence numbers in order, and how feed_frames ended."""
    got: list[int] = []
    outcome: list[BaseException | None] = []

    async def scenario() -> None:
        finished = asyncio.Event()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            frames = FrameReader(reader, 1 << 20)
            first = await frames.read_one()
            assert isinstance(first, Submit)
            got.append(first.command.seq - 1)
            # Let everything the client wrote pile up in the stream before switching.
            await asyncio.sleep(0.05)

            def handle(batch: list[Message]) -> None:
                for m in batch:
                    assert isinstance(m, Submit)
                    if m.command.payload == b"refused":
                        raise RuntimeError("the handler refuses")
                    got.append(m.command.seq - 1)

            try:
                await feed_frames(writer, frames, handle)
                outcome.append(None)
            except Exception as e:
                outcome.append(e)
            finally:
                writer.close()
                finished.set()

        async with server(serve) as (_, writer):
            await send(writer)
            await asyncio.wait_for(finished.wait(), 5)

    asyncio.run(scenario())
    return got, outcome[0]


def test_frames_buffered_before_the_switch_come_first_then_the_rest_in_order() -> None:
    async def send(w: asyncio.StreamWriter) -> None:
        data = framed(*range(5))
        w.write(data[:-3])  # the stream holds whole frames and half of the last one
        await asyncio.sleep(0.2)  # the switch happens meanwhile
        w.write(data[-3:] + framed(5, 6))
        await asyncio.sleep(0.05)
        w.write(framed(7))
        await w.drain()
        w.write_eof()

    got, ended = run_server_side(send)
    assert got == list(range(8))
    assert ended is None


def test_an_end_of_input_before_the_switch_still_delivers_what_came_first() -> None:
    async def send(w: asyncio.StreamWriter) -> None:
        w.write(framed(0, 1, 2))
        w.write_eof()  # before the server switches (it sleeps 50 ms after the first)

    got, ended = run_server_side(send)
    assert got == [0, 1, 2]
    assert ended is None


def test_a_malformed_frame_ends_it_with_a_decode_error_after_the_good_ones() -> None:
    async def send(w: asyncio.StreamWriter) -> None:
        w.write(framed(0, 1))
        await asyncio.sleep(0.2)
        w.write(framed(2) + frame(b"\xc1") + framed(3))  # 0xc1: never valid msgpack

    got, ended = run_server_side(send)
    assert got == [0, 1, 2]
    assert isinstance(ended, DecodeError)


def test_the_handlers_error_ends_it_and_nothing_after_it_is_handled() -> None:
    async def send(w: asyncio.StreamWriter) -> None:
        w.write(framed(0))
        await asyncio.sleep(0.2)
        w.write(framed(1, REFUSED, 2))
        await asyncio.sleep(0.05)
        w.write(framed(3))
        await asyncio.sleep(0.05)

    got, ended = run_server_side(send)
    assert got == [0, 1]
    assert isinstance(ended, RuntimeError)


def test_a_plain_asyncio_stream_is_read_the_same_way() -> None:
    async def scenario() -> list[int]:
        got: list[int] = []
        done = asyncio.Event()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            frames = FrameReader(reader, 1 << 20)

            def handle(batch: list[Message]) -> None:
                got.extend(m.command.seq - 1 for m in batch if isinstance(m, Submit))

            await feed_frames(writer, frames, handle, backpressure=True)
            writer.close()
            done.set()

        listener = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        _, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(framed(0, 1, 2))
        w.write_eof()
        await asyncio.wait_for(done.wait(), 5)
        w.close()
        listener.close()
        await listener.wait_closed()
        return got

    assert asyncio.run(scenario()) == [0, 1, 2]


@pytest.mark.parametrize("backpressure", [True, False])
def test_a_peer_that_does_not_read_is_not_read_either_with_backpressure(
    backpressure: bool,
) -> None:
    """The server answers every frame with 64 KiB; the client never reads. With
    backpressure the server stops reading its frames once its writes back up."""

    async def scenario() -> int:
        handled = 0

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            frames = FrameReader(reader, 1 << 20)

            def handle(batch: list[Message]) -> None:
                nonlocal handled
                handled += len(batch)
                writer.write(b"x" * 65536)

            await feed_frames(writer, frames, handle, backpressure=backpressure)

        async with server(serve) as (_, w):
            w.transport.set_write_buffer_limits(high=1 << 24)
            for i in range(400):
                w.write(framed(i))
                await asyncio.sleep(0.002)
        return handled

    handled = asyncio.run(scenario())
    if backpressure:
        assert handled < 400  # 26 MB of answers never fit the socket buffers
    else:
        assert handled == 400
