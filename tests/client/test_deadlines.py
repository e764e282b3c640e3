"""Client deadlines: a request nobody answers ends as SubmitTimeout near its limit,
whether the client is connected to a server that stays silent or cannot connect at all.
(The deadlines are enforced by the client's retry loop, not by a timer per request.)"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from paxoi.client import AsyncClient, ClientError, SubmitTimeout


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _timed_out_after(client: AsyncClient, limit: float, read: bool) -> float:
    started = time.monotonic()
    with pytest.raises(SubmitTimeout, match="within"):
        if read:
            await client.read("k", mode="stale", timeout=limit)
        else:
            await client.submit("hello", timeout=limit)
    return time.monotonic() - started


@pytest.mark.parametrize("read", [False, True], ids=["submit", "read"])
def test_silent_server_times_out_near_the_limit(read: bool) -> None:
    async def scenario() -> float:
        async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await reader.read(65536):
                pass  # accepts and reads everything, answers nothing

        server = await asyncio.start_server(swallow, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with AsyncClient({0: ("127.0.0.1", port)}) as client:
                return await _timed_out_after(client, 0.4, read)
        finally:
            server.close()
            await server.wait_closed()

    elapsed = asyncio.run(scenario())
    assert 0.4 <= elapsed < 1.5


def test_unreachable_cluster_times_out_near_the_limit() -> None:
    async def scenario() -> float:
        async with AsyncClient({0: ("127.0.0.1", _unused_port())}) as client:
            return await _timed_out_after(client, 0.4, False)

    elapsed = asyncio.run(scenario())
    assert 0.4 <= elapsed < 1.5


def test_a_failed_connection_task_ends_waiting_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deadlines live in the connection task's retry loop: if that task dies of an
    unexpected error, the requests waiting on it are answered at once, not left hanging."""

    async def broken(self: AsyncClient, node: int) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr(AsyncClient, "_open", broken)

    async def scenario() -> None:
        async with AsyncClient({0: ("127.0.0.1", _unused_port())}) as client:
            with pytest.raises(ClientError, match="outcomes of pending requests unknown"):
                await asyncio.wait_for(client.submit("hello", timeout=30), 5)

    asyncio.run(scenario())
