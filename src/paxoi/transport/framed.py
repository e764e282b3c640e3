"""Reading frames: through a StreamReader for a handshake, then straight from the transport.

A StreamReader hands each chunk of input to a task: it copies the chunk into its buffer,
sets a future, and the task wakes on a later turn of the event loop to copy it out
again. Echoing one small frame under uvloop cost 9 us more CPU that way, and 23 us more
round trip, than a protocol's `data_received` answering at once (measured on this
project's 2-core machines), and a command crosses four such reads on its way from a
client to its answer. So a connection reads its handshake as a stream (`FrameReader`,
which a coroutine can wait on with a timeout), and then `feed_frames` hands the rest of
its input, decoded, to a callback from inside `data_received`: no task, no future, no
buffer between them.

The connection's protocol is a `FramedStreamProtocol` throughout (what
`start_framed_server` and `open_framed_connection` create): a StreamReaderProtocol, so
the StreamWriter, its `drain` and `wait_closed` work as ever, that can switch its input
to a callback.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from ..wire.codec import Message, decode
from ..wire.framing import FrameDecoder

READ_CHUNK = 256 * 1024
#: A callback given each chunk's messages, in order. What it raises ends the connection's
#: `feed_frames` with that exception (and nothing more is read).
Handler = Callable[[list[Message]], None]


class FrameReader:
    """Reads whole decoded messages from a stream, enforcing the maximum frame size."""

    def __init__(self, reader: asyncio.StreamReader, max_frame: int) -> None:
        self.reader = reader
        self.decoder = FrameDecoder(max_frame)
        self._ready: deque[bytes] = deque()

    async def read_batch(self) -> list[Message] | None:
        """The messages of the next chunk of bytes; None at end of stream."""
        while not self._ready:
            data = await self.reader.read(READ_CHUNK)
            if not data:
                return None
            self._ready.extend(self.decoder.feed(data))
        out = [decode(payload) for payload in self._ready]
        self._ready.clear()
        return out

    async def read_one(self) -> Message | None:
        while not self._ready:
            data = await self.reader.read(READ_CHUNK)
            if not data:
                return None
            self._ready.extend(self.decoder.feed(data))
        return decode(self._ready.popleft())

    def pending(self) -> list[Message]:
        out = [decode(payload) for payload in self._ready]
        self._ready.clear()
        return out


class FramedStreamProtocol(asyncio.StreamReaderProtocol):
    """A StreamReaderProtocol whose input can be switched to a callback (`feed_frames`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The peer's input ended (EOF or connection lost), whichever mode we were in.
        self._input_ended = False
        #: Set once switched: where the decoded frames go.
        self._handler: Handler | None = None
        self._decoder: FrameDecoder | None = None
        #: Input that arrived while the switch drained the stream (it goes after that).
        self._held: list[bytes] | None = None
        self._ended: asyncio.Future[None] | None = None
        self._backpressure = False
        self._reading_paused = False
        self._transport_ref: asyncio.BaseTransport | None = None

    # -- the switch --------------------------------------------------------------------

    async def feed(self, frames: FrameReader, handler: Handler, backpressure: bool) -> None:
        """Hand every later message to `handler`; return when the input ends, or raise
        what the handler or the decoder raised (DecodeError for a malformed frame)."""
        loop = asyncio.get_running_loop()
        self._ended = loop.create_future()
        self._handler = handler
        self._decoder = frames.decoder
        self._backpressure = backpressure
        self._held = []
        ended_before = self._input_ended
        # What the stream holds goes first: all of it, at once, since it gets no more.
        frames.reader.feed_eof()
        rest = await frames.reader.read()
        held, self._held = self._held, None
        self._deliver(frames.pending())
        for data in (rest, *held):
            self._feed(data)
        if ended_before or self._input_ended:
            self._end(None)
        await self._ended

    def _feed(self, data: bytes) -> None:
        ended = self._ended
        if ended is None or ended.done() or not data:
            return
        assert self._decoder is not None
        try:
            payloads = self._decoder.feed(data)  # raises on a length it refuses
        except Exception as e:
            self._end(e)
            return
        try:
            messages = [decode(p) for p in payloads]
        except Exception as e:
            self._deliver(_good_prefix(payloads))
            self._end(e)
            return
        self._deliver(messages)

    def _deliver(self, messages: list[Message]) -> None:
        ended = self._ended
        if ended is None or ended.done() or not messages:
            return
        assert self._handler is not None
        try:
            self._handler(messages)
        except Exception as e:
            self._end(e)

    def _end(self, error: BaseException | None) -> None:
        ended = self._ended
        if ended is None or ended.done():
            return
        if error is None:
            ended.set_result(None)
        else:
            ended.set_exception(error)  # later input is dropped (_feed); the owner closes

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport_ref = transport
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._handler is None:
            super().data_received(data)
        elif self._held is not None:
            self._held.append(data)
        else:
            self._feed(data)

    def eof_received(self) -> bool:
        self._input_ended = True
        if self._handler is not None and self._held is None:
            self._end(None)
        return bool(super().eof_received())

    def connection_lost(self, exc: Exception | None) -> None:
        self._input_ended = True
        if self._handler is not None and self._held is None:
            self._end(exc)
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        transport = self._transport_ref
        if self._backpressure and transport is not None and not transport.is_closing():
            # The peer does not read what we write: stop reading what it sends until it
            # does (a StreamReader's owner did this by waiting on `drain`).
            assert isinstance(transport, asyncio.ReadTransport)
            transport.pause_reading()
            self._reading_paused = True

    def resume_writing(self) -> None:
        super().resume_writing()
        transport = self._transport_ref
        if self._reading_paused and transport is not None and not transport.is_closing():
            assert isinstance(transport, asyncio.ReadTransport)
            transport.resume_reading()
        self._reading_paused = False


def _good_prefix(payloads: list[bytes]) -> list[Message]:
    """The messages before the first payload that does not decode: the peer's frames
    that came before its malformed one are handled, as a stream's reader would have."""
    out: list[Message] = []
    for p in payloads:
        try:
            out.append(decode(p))
        except Exception:
            break
    return out


async def feed_frames(
    writer: asyncio.StreamWriter, frames: FrameReader, handler: Handler, backpressure: bool = False
) -> None:
    """Hand the connection's messages to `handler` as they arrive, from the transport's
    own callback; return when its input ends. Raises what `handler` raised, DecodeError
    for a malformed frame, or the OSError that ended the connection.

    `backpressure`: while our writes to the peer back up (it is not reading), read
    nothing from it. A connection not made by this module is read as a stream, with the
    same results."""
    protocol = writer.transport.get_protocol()
    if isinstance(protocol, FramedStreamProtocol):
        await protocol.feed(frames, handler, backpressure)
        return
    while (batch := await frames.read_batch()) is not None:
        handler(batch)
        if backpressure:
            await writer.drain()


async def start_framed_server(
    client_connected_cb: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any],
    host: str | None = None,
    port: int | None = None,
    **kwds: Any,
) -> asyncio.Server:
    """`asyncio.start_server`, with a FramedStreamProtocol per connection."""
    loop = asyncio.get_running_loop()

    def factory() -> FramedStreamProtocol:
        reader = asyncio.StreamReader(loop=loop)
        return FramedStreamProtocol(reader, client_connected_cb, loop=loop)

    return await loop.create_server(factory, host, port, **kwds)


async def open_framed_connection(
    host: str, port: int, **kwds: Any
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """`asyncio.open_connection`, with a FramedStreamProtocol."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(loop=loop)
    protocol = FramedStreamProtocol(reader, loop=loop)
    transport, _ = await loop.create_connection(lambda: protocol, host, port, **kwds)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


__all__ = [
    "READ_CHUNK",
    "FrameReader",
    "FramedStreamProtocol",
    "Handler",
    "feed_frames",
    "open_framed_connection",
    "start_framed_server",
]
