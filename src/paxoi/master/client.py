"""One chat client of the CS 380D master, run as its own process (`paxoi master-client`).

The handout requires clients and servers to be separate processes that share no memory,
so each client is a process with a real `AsyncClient`, driven by the master over its
standard input and output, one JSON object per line (see `paxoi.master.channel`):

- `{"id": n, "op": "send", "text": "..."}`: queue a message; no answer (the handout's
  sendMessage is asynchronous).
- `{"id": n, "op": "state"}`: answered with `pending` (messages not yet acknowledged)
  and `entries` (how many log entries this client has seen), for allClear.
- `{"id": n, "op": "log"}`: answered with `log`, this client's view of the chat log as
  `[slot, sender, message]` triples, for printChatLog.

Messages go out one at a time in the order they were asked for (per-client FIFO), each
retried until it commits however long that takes: a message sent while only a minority
of servers is alive must commit once a majority is back, and giving up and resending it
as a new command could apply it twice. The client's view of the log comes from a
subscription, not from its own acknowledgements, so it also holds the other clients'
messages, and it survives the loss of a server by resuming on another.

Standard output carries only the answers; logging goes to standard error, which the
master points at a file. End of input (the master is done, or died) stops the client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from ..client import AsyncClient
from ..client.client import _Outstanding
from ..core.types import ClientId, Slot
from ..server.config import PaxoiConfig

log = logging.getLogger("paxoi.master.client")

#: Effectively "never give up" (about eleven days): see the module docstring.
SUBMIT_TIMEOUT = 1e6
#: How long a command may go unanswered before it is resent to the same server (and twice
#: that without a word from the server before moving to another). A crashed server closes
#: its connections, which the client notices at once, so this matters only for a server
#: that holds a command (a leader without a majority, a candidate): there a resend is
#: ignored, except one that arrives just after the command was decided, which the leader
#: orders again. So rather long than short.
RETRY_INTERVAL = 1.0
#: At the end, how long the client's own tasks may take to wind down.
STOP_TIMEOUT = 1.0
#: Longest request line accepted from the master (a chat message rides in one).
MAX_LINE = 16 * 1024 * 1024


def client_id_for(index: int) -> ClientId:
    """`<index>-<random>`: unique per run, and the sender's index can be read back from
    every log entry, by any client, with no table shared between processes."""
    return f"{index}-{uuid.uuid4().hex[:12]}"


def sender_of(client: ClientId) -> str:
    """The master's index of the client that sent a command ("3" for "3-ab12..."), or
    the whole id for a command that did not come from a master client."""
    head, sep, _ = client.partition("-")
    return head if sep and head.isascii() and head.isdigit() else client


class ChatView:
    """One client's view of the chat log: what its subscription delivered, by slot.

    With `limits.max_batch` 1 a slot holds at most one message; should a slot ever hold a
    batch, its messages keep their order. No-op slots deliver nothing, so they have no
    entry and print no line.
    """

    def __init__(self) -> None:
        self._entries: list[tuple[Slot, str, str]] = []
        self._seen: set[tuple[ClientId, int]] = set()
        #: The highest slot seen (0 before any): where a new subscription resumes.
        self.top: Slot = 0

    def add(self, slot: Slot, client: ClientId, seq: int, message: str) -> bool:
        """Record one applied command; False if it was already here. A command is
        applied once, under one (client, seq), so that pair tells a redelivery (after a
        resubscription) from a new entry."""
        if (client, seq) in self._seen:
            return False
        self._seen.add((client, seq))
        self._entries.append((slot, sender_of(client), message))
        self.top = max(self.top, slot)
        return True

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[tuple[Slot, str, str]]:
        """(slot, sender index, message), in slot order (a stable sort keeps batch order)."""
        return sorted(self._entries, key=lambda e: e[0])


class _Client(AsyncClient):
    """AsyncClient, with one workaround (until the library has it; see docs/cs380d.md).

    AsyncClient decides that its server went silent when it has heard nothing for two
    retry intervals while a command is outstanding, counting from the last frame heard,
    even one heard before an idle spell. So the first command after a pause of half a
    second, if it takes more than a few tens of milliseconds to commit, makes the client
    leave a healthy leader and resend the command through another server. A resend that
    reaches the leader after the first copy was decided is ordered again: a second slot,
    skipped when applied, and every later message is numbered one further on. Here the
    silence is counted from the first sending of a command, when the wait starts.
    """

    def _send(self, entry: _Outstanding, now: float | None = None) -> None:
        if entry.sent_at == 0.0:  # the first sending of this command
            self._last_heard = max(self._last_heard, time.monotonic() if now is None else now)
        super()._send(entry, now)


class MasterClient:
    def __init__(self, config: PaxoiConfig, index: int) -> None:
        self.index = index
        self.client = _Client.from_config(
            config,
            client_id=client_id_for(index),
            timeout=SUBMIT_TIMEOUT,
            retry_interval=RETRY_INTERVAL,
            max_outstanding=1,
        )
        # The subscription gets a client id of its own: a server keeps one session per
        # client id, and a second connection under the same id (the subscription next to
        # the submissions) would replace the first, losing its replies or its log feed.
        self.watcher = AsyncClient.from_config(config, client_id=f"{self.client.id}-view")
        self.view = ChatView()
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        #: Messages asked for and not yet acknowledged (queued or on their way).
        self.pending = 0

    async def run(self, requests: asyncio.StreamReader, answer: Callable[[bytes], None]) -> bool:
        """Serve the master's requests until its end of the pipe closes; False if some
        task would not stop."""
        log.info("client %d is %s", self.index, self.client.id)
        tasks = [
            asyncio.create_task(self._send_loop(), name="send"),
            asyncio.create_task(self._watch_log(), name="watch"),
        ]
        try:
            while True:
                try:
                    line = await requests.readline()
                except ValueError:  # longer than MAX_LINE: cannot be one of ours
                    log.error("dropped an over-long request line")
                    continue
                if not line:
                    break
                reply = self.handle(line)
                if reply is not None:
                    answer(json.dumps(reply).encode("ascii") + b"\n")
        finally:
            # Close the clients before cancelling the tasks that use them: a closed client
            # ends its loops by itself, whereas a cancellation can be lost (Python 3.11's
            # wait_for swallows one that lands as the awaited call completes, e.g. while a
            # subscription closes a connection to a server that is stopping), and the
            # subscription would then reconnect forever.
            await self.client.close()
            await self.watcher.close()
            for task in tasks:
                task.cancel()
            _, stuck = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
            if stuck:
                log.error("%d tasks did not stop", len(stuck))
            log.info("client %d stopped", self.index)
        return not stuck

    def handle(self, line: bytes) -> dict[str, Any] | None:
        """One request; the answer to write back, if it has one."""
        try:
            request = json.loads(line)
            rid, op = request["id"], request["op"]
        except (ValueError, TypeError, KeyError) as e:
            log.error("malformed request %r: %s", line[:200], e)
            return None
        if op == "send":
            text = request.get("text")
            if not isinstance(text, str):
                log.error("send without a text: %r", line[:200])
                return None
            self.pending += 1
            self._outbox.put_nowait(text)
            return None
        if op == "state":
            return {"id": rid, "pending": self.pending, "entries": len(self.view)}
        if op == "log":
            return {"id": rid, "log": [list(e) for e in self.view.entries()]}
        log.error("unknown request %r", op)
        return {"id": rid, "error": f"unknown op {op!r}"}

    async def _send_loop(self) -> None:
        """One message at a time, in order: the next goes out when the last is applied."""
        while True:
            text = await self._outbox.get()
            try:
                slot = await self.client.submit(text, SUBMIT_TIMEOUT)
                log.info("message %r committed at slot %s", text, slot.decode(errors="replace"))
            except Exception:
                # Not retried as a new command: it may have been applied already.
                log.exception("message %r failed", text)
            finally:
                self.pending -= 1

    async def _watch_log(self) -> None:
        """Keep the view of the log current, from whichever server is reachable."""
        while True:
            try:
                async for slot, command, _ in self.watcher.subscribe(self.view.top):
                    message = command.payload.decode("utf-8", "replace")
                    self.view.add(slot, command.client, command.seq, message)
                return
            except Exception:
                # A refusal, or a bug: the view must keep up or allClear cannot finish.
                log.exception("subscription failed; subscribing again")
                await asyncio.sleep(0.2)


async def serve(config: PaxoiConfig, index: int) -> None:
    """The process's main: wire standard input and output to a `MasterClient`."""
    loop = asyncio.get_running_loop()
    requests = asyncio.StreamReader(limit=MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(requests), sys.stdin)
    out = sys.stdout.buffer

    def answer(data: bytes) -> None:
        out.write(data)
        out.flush()

    if not await MasterClient(config, index).run(requests, answer):
        # asyncio.run would wait for the stuck tasks forever; the master must not have
        # to kill us, and there is no state to save.
        logging.shutdown()
        os._exit(0)


__all__ = ["ChatView", "MasterClient", "client_id_for", "sender_of", "serve"]
