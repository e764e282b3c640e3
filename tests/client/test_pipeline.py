"""The client's pipeline against a scripted server: the commands of one event-loop
iteration leave in one Submits frame, a ClientReplies frame answers many, and the window
of `max_outstanding` requests holds for `submit` (which waits, first come first served)
and `submit_nowait` (which refuses, sending nothing)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from paxoi.client import AsyncClient, PipelineFull, SubmitTimeout
from paxoi.core.messages import ClientReply, ReplyStatus
from paxoi.core.types import Command
from paxoi.transport.tcp import FrameReader
from paxoi.wire.codec import PROTOCOL_VERSION, Message, encode
from paxoi.wire.framing import frame
from paxoi.wire.messages import ClientReplies, Hello, HelloAck, Submit, Submits


class ScriptedServer:
    """Records every frame a client sends; answers only when told to."""

    def __init__(self) -> None:
        self.frames: list[Message] = []
        self.arrived = asyncio.Condition()
        self.writer: asyncio.StreamWriter | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        frames = FrameReader(reader, 1 << 20)
        while (batch := await frames.read_batch()) is not None:
            for msg in batch:
                if isinstance(msg, Hello):
                    self.send(HelloAck(PROTOCOL_VERSION, msg.cluster, 0, 0))
                else:
                    async with self.arrived:
                        self.frames.append(msg)
                        self.arrived.notify_all()

    def send(self, msg: Message) -> None:
        assert self.writer is not None
        self.writer.write(frame(encode(msg)))

    def commands(self) -> list[Command]:
        out: list[Command] = []
        for msg in self.frames:
            if isinstance(msg, Submit):
                out.append(msg.command)
            elif isinstance(msg, Submits):
                out.extend(msg.commands)
        return out

    async def wait_commands(self, n: int) -> list[Command]:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.commands()) >= n), 5)
        return self.commands()


@asynccontextmanager
async def scripted(max_outstanding: int) -> AsyncIterator[tuple[ScriptedServer, AsyncClient]]:
    server = ScriptedServer()
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        client = AsyncClient(
            {0: ("127.0.0.1", port)}, max_outstanding=max_outstanding, retry_interval=30
        )
        async with client:
            yield server, client
    finally:
        listener.close()
        await listener.wait_closed()


def test_one_frame_carries_an_iterations_commands_and_one_answers_them() -> None:
    async def scenario() -> None:
        async with scripted(8) as (server, client):
            first = client.submit_nowait(b"warm-up")  # connects; sent alone
            await server.wait_commands(1)
            server.send(ClientReply(client.id, 1, ReplyStatus.OK, b"r1"))
            assert await first == b"r1"

            futures = [client.submit_nowait(b"m%d" % i) for i in range(5)]
            commands = await server.wait_commands(6)
            assert isinstance(server.frames[-1], Submits)
            assert server.frames[-1].commands == tuple(commands[1:])
            assert [c.payload for c in commands[1:]] == [b"m%d" % i for i in range(5)]
            seqs = [c.seq for c in commands[1:]]
            assert seqs == [2, 3, 4, 5, 6]
            # Out of order, and one twice (a resend's second answer): each future once.
            answers = tuple((s, b"r%d" % s) for s in reversed(seqs))
            server.send(ClientReplies(client.id, answers + answers[:1]))
            assert await asyncio.gather(*futures) == [b"r%d" % s for s in seqs]

    asyncio.run(scenario())


def test_submit_nowait_refuses_when_the_window_is_full_and_sends_nothing() -> None:
    async def scenario() -> None:
        async with scripted(2) as (server, client):
            a, b = client.submit_nowait(b"a"), client.submit_nowait(b"b")
            with pytest.raises(PipelineFull):
                client.submit_nowait(b"c")
            commands = await server.wait_commands(2)
            server.send(ClientReply(client.id, commands[0].seq, ReplyStatus.OK, b"A"))
            assert await a == b"A"
            c = client.submit_nowait(b"c")  # room again
            commands = await server.wait_commands(3)
            assert [cmd.payload for cmd in commands] == [b"a", b"b", b"c"]
            server.send(ClientReplies(client.id, ((2, b"B"), (3, b"C"))))
            assert await asyncio.gather(b, c) == [b"B", b"C"]

    asyncio.run(scenario())


def test_submit_waits_for_room_in_arrival_order_and_a_cancelled_call_frees_it() -> None:
    async def scenario() -> None:
        async with scripted(1) as (server, client):
            first = asyncio.ensure_future(client.submit(b"first"))
            await server.wait_commands(1)
            waiting = [asyncio.ensure_future(client.submit(b"w%d" % i)) for i in range(3)]
            await asyncio.sleep(0.05)
            assert len(server.commands()) == 1  # the window holds one
            with pytest.raises(PipelineFull):
                client.submit_nowait(b"x")  # others wait already: no jumping the queue
            waiting[0].cancel()  # leaves the queue without taking a turn
            first.cancel()  # and this frees the room: the next waiter goes
            commands = await server.wait_commands(2)
            assert commands[1].payload == b"w1"
            server.send(ClientReply(client.id, commands[1].seq, ReplyStatus.OK, b"1"))
            assert await waiting[1] == b"1"
            commands = await server.wait_commands(3)
            assert commands[2].payload == b"w2"
            server.send(ClientReply(client.id, commands[2].seq, ReplyStatus.OK, b"2"))
            assert await waiting[2] == b"2"

    asyncio.run(scenario())


def test_a_frame_carries_at_most_its_byte_budget_of_commands() -> None:
    """12 KiB commands: two to a Submits frame (BATCH_FRAME_BYTES is 32 KiB), the odd
    one alone in a Submit: a batch never makes a frame a server's limit would refuse
    where the commands alone would pass."""

    async def scenario() -> None:
        async with scripted(8) as (server, client):
            first = client.submit_nowait(b"warm-up")
            await server.wait_commands(1)
            server.send(ClientReply(client.id, 1, ReplyStatus.OK, b""))
            await first
            futures = [client.submit_nowait(bytes([65 + i]) * 12 * 1024) for i in range(5)]
            await server.wait_commands(6)
            sizes = [
                len(m.commands) if isinstance(m, Submits) else 1
                for m in server.frames[1:]
                if isinstance(m, Submit | Submits)
            ]
            assert sizes == [2, 2, 1]
            assert isinstance(server.frames[-1], Submit)
            server.send(ClientReplies(client.id, tuple((s, b"") for s in range(2, 7))))
            await asyncio.gather(*futures)

    asyncio.run(scenario())


def test_submit_callback_answers_each_command_once_and_may_submit_from_the_callback() -> None:
    """A chain of commands, each submitted from the previous one's callback (the bench's
    closed loop); a callback that raises is logged and does not stop the client; the
    window holds as for submit_nowait; close fails what is left, through the callback."""

    async def scenario() -> None:
        async with scripted(2) as (server, client):
            outcomes: list[tuple[bytes | None, str | None]] = []

            def record(result: bytes | None, error: BaseException | None) -> None:
                outcomes.append((result, type(error).__name__ if error else None))
                if result == b"A":
                    client.submit_callback(b"next", record)  # room again already
                if result == b"B":
                    raise RuntimeError("a caller's bug")

            client.submit_callback(b"a", record)
            client.submit_callback(b"b", record)
            with pytest.raises(PipelineFull):
                client.submit_callback(b"c", record)
            commands = await server.wait_commands(2)
            server.send(ClientReplies(client.id, ((1, b"A"), (1, b"A"), (2, b"B"))))
            commands = await server.wait_commands(3)
            assert [c.payload for c in commands] == [b"a", b"b", b"next"]
            assert outcomes == [(b"A", None), (b"B", None)]  # once each, in answer order
            server.send(ClientReply(client.id, 3, ReplyStatus.OK, b"N"))
            await asyncio.wait_for(_until(lambda: len(outcomes) == 3), 5)
            client.submit_callback(b"last", record)
            await server.wait_commands(4)
            await client.close()
            await asyncio.wait_for(_until(lambda: len(outcomes) == 4), 5)
            assert outcomes[2:] == [(b"N", None), (None, "ClientClosed")]

    asyncio.run(scenario())


def test_submit_callback_reports_a_timeout_once() -> None:
    async def scenario() -> None:
        async with scripted(4) as (server, client):
            outcomes: list[tuple[bytes | None, BaseException | None]] = []
            client.submit_callback(b"lost", lambda r, e: outcomes.append((r, e)), timeout=0.1)
            await server.wait_commands(1)
            await asyncio.wait_for(_until(lambda: bool(outcomes)), 5)
            await asyncio.sleep(0.2)  # a second report would come within a scan or two
            assert len(outcomes) == 1
            result, error = outcomes[0]
            assert result is None and isinstance(error, SubmitTimeout)
            # The answer that comes too late is ignored.
            server.send(ClientReply(client.id, 1, ReplyStatus.OK, b"late"))
            more = client.submit_nowait(b"more")
            await server.wait_commands(2)
            server.send(ClientReply(client.id, 2, ReplyStatus.OK, b"M"))
            assert await more == b"M"
            assert len(outcomes) == 1

    asyncio.run(scenario())


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.005)
