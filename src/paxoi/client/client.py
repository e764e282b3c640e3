"""The client library: submit commands to a paxoi cluster and get their results.

The client is half of exactly-once. Every command gets a sequence number once, and
every resend (after a timeout, a redirect, a reconnect) carries the same
(client id, seq), so the replicas' client table applies it at most once. The client
talks to one server at a time: it follows NOT_LEADER redirects, and moves to another
server when the current one goes silent. `max_outstanding` bounds the pipeline:
1 is the "send the next when the previous is answered" mode. `submit` waits for room
in it; `submit_nowait` hands back a future at once, for callers that keep many commands
in flight from callbacks rather than a task for each. The commands of one event-loop
iteration leave in one frame, and the server answers many in one (protocol 5).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import math
import random
import ssl
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ..core.errors import PaxoiError
from ..core.messages import ClientReply, ReadMode, ReadReply, ReplyStatus
from ..core.types import ClientId, Command, NodeId, Slot
from ..security.auth import client_options
from ..security.tls import open_connection
from ..transport.framed import FrameReader, feed_frames
from ..transport.runloop import cancel_and_wait
from ..transport.tcp import close_quietly, write_if_open
from ..wire.codec import PROTOCOL_VERSION, Message, encode
from ..wire.framing import frame
from ..wire.messages import (
    BATCH_FRAME_BYTES,
    ERROR_BUSY,
    KIND_CLIENT,
    ClientReplies,
    Control,
    ControlReply,
    ErrorReply,
    Hello,
    HelloAck,
    LogEntries,
    Read,
    StatusReply,
    StatusRequest,
    Submit,
    Submits,
    Subscribe,
)
from ..wire.values import DecodeError

log = logging.getLogger("paxoi.client")

#: How long to wait before asking again when no server knows a leader yet.
NO_LEADER_PAUSE = 0.05
#: Seconds: a command resent again and again waits at most this long (or the
#: retransmission timeout, if that is longer) between resends.
MAX_RETRY_BACKOFF = 2.0
T = TypeVar("T")

Servers = Mapping[NodeId, tuple[str, int]]


class ClientError(PaxoiError):
    """Base of the client's errors."""


class SubmitTimeout(ClientError, TimeoutError):
    """No answer in time. The command may or may not have been applied (outcome unknown);
    resubmitting it as a new command could apply it twice."""


class ClientClosed(ClientError):
    """The client was closed while the call was waiting."""


class ServerRefused(ClientError):
    """A server refused this client (wrong cluster, bad request, ...)."""


class PipelineFull(ClientError):
    """`submit_nowait` with `max_outstanding` requests in flight already: nothing was
    sent. Wait for one of them to be answered (or use `submit`, which waits)."""


#: What `submit_callback` calls, once per command: (result, None) or (None, error).
ResultCallback = Callable[[bytes | None, BaseException | None], None]


class _Waiter(Protocol):
    """Where a command's outcome goes: an asyncio future, or a `_CallbackWaiter`."""

    def done(self) -> bool: ...

    def set_result(self, result: bytes, /) -> None: ...

    def set_exception(self, error: BaseException, /) -> None: ...


class _CallbackWaiter:
    """A future's stand-in for `submit_callback`: a result calls the caller at once,
    without the future's hop through the event loop (that hop, its handle and the
    caller's closure were about 15% of a load process's CPU at 8 x 64). An error is
    delivered on the next iteration instead: errors come from scans of the client's
    table (deadlines, close), which a callback submitting again would change under them.
    """

    __slots__ = ("_callback", "_done", "_loop")

    def __init__(self, callback: ResultCallback, loop: asyncio.AbstractEventLoop) -> None:
        self._callback = callback
        self._loop = loop
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, result: bytes) -> None:
        self._done = True
        self._call(result, None)

    def set_exception(self, error: BaseException) -> None:
        self._done = True
        self._loop.call_soon(self._call, None, error)

    def _call(self, result: bytes | None, error: BaseException | None) -> None:
        try:
            self._callback(result, error)
        except Exception:
            # The caller's bug must not stop the client's connection task, which is
            # where a result's callback runs.
            log.exception("a submit_callback callback raised")


@dataclass(slots=True)
class _Outstanding:
    command: Command
    future: _Waiter
    sent_at: float = 0.0
    #: When to resend if no answer came (monotonic seconds).
    due: float = 0.0
    #: The wait before the next resend; doubles with each one (exponential backoff).
    backoff: float = 0.0
    resent: bool = False
    #: Past this (monotonic seconds) the caller gets SubmitTimeout; `timeout` is the limit.
    deadline: float = math.inf
    timeout: float = 0.0


@dataclass
class _OutstandingRead:
    request: Read
    future: asyncio.Future[bytes]
    sent_at: float = 0.0
    deadline: float = math.inf
    timeout: float = 0.0


class AsyncClient:
    def __init__(
        self,
        servers: Servers,
        *,
        cluster: str = "paxoi",
        client_id: ClientId | None = None,
        name: str = "client",
        timeout: float = 10.0,
        retry_interval: float = 0.5,
        max_outstanding: int = 1,
        ssl_context: ssl.SSLContext | None = None,
        token: str | None = None,
    ) -> None:
        if not servers:
            raise ValueError("servers: at least one server address is needed")
        if max_outstanding < 1:
            raise ValueError("max_outstanding must be at least 1")
        self.servers = dict(servers)
        self.cluster = cluster
        self.id: ClientId = client_id or f"{name}-{uuid.uuid4().hex[:12]}"
        self.timeout = timeout
        self.retry_interval = retry_interval
        self._order = list(self.servers)
        random.shuffle(self._order)
        self.target: NodeId = self._order[0]
        self._seq = itertools.count(1)
        self.max_outstanding = max_outstanding
        #: submit() and read() calls waiting for room in the window, oldest first.
        self._room: collections.deque[asyncio.Future[None]] = collections.deque()
        self._outstanding: dict[int, _Outstanding] = {}
        self._reads: dict[int, _OutstandingRead] = {}
        self._out: list[bytes] = []
        #: Commands to send at the end of this event-loop iteration, in one frame.
        self._commands: list[Command] = []
        #: The payload bytes in `_commands` (a frame holds at most BATCH_FRAME_BYTES).
        self._commands_bytes = 0
        self._flush_scheduled = False
        self._read_ids = itertools.count(1)
        self._writer: asyncio.StreamWriter | None = None
        self._connected = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        self._last_heard = 0.0
        #: Smoothed reply latency of commands answered at their first sending (Karn's
        #: rule: a resent command's reply cannot tell which sending it answers).
        self._latency: float | None = None
        #: No command is due for a resend before this (the retry loop skips its scan).
        self._earliest_due = 0.0
        self.resends = 0
        self.redirects = 0
        self.failovers = 0
        #: TLS (None: plain TCP): the cluster CA, and our certificate if the cluster
        #: wants one. Each server's certificate must name the node we meant to reach.
        self.ssl_context = ssl_context
        #: Sent in Hello when the cluster authenticates clients by token.
        self.token = token
        self._tls_error = ""

    @classmethod
    def from_config(cls, config: Any, **kw: Any) -> AsyncClient:
        """A client for the servers of a `PaxoiConfig`, with its tls and auth settings
        (`paxoi.security.auth.client_options`); keyword arguments win."""
        servers = {nid: (s.host, s.port) for nid, s in config.servers.items()}
        return cls(servers, cluster=config.cluster, **client_options(config, kw))

    # ------------------------------------------------------------------ API
    async def submit(self, payload: bytes | str, timeout: float | None = None) -> bytes:
        """Order and apply one command; its result. Raises SubmitTimeout, ClientClosed."""
        await self._enter()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        entry = self._start(payload, timeout, future)
        try:
            return await future
        finally:
            # Answered (gone already), failed, or cancelled by our caller: the room is free.
            if not future.done():
                future.cancel()
            self._forget(self._outstanding, entry.command.seq)

    def submit_nowait(
        self, payload: bytes | str, timeout: float | None = None
    ) -> asyncio.Future[bytes]:
        """Send one command now; a future of its result (or of SubmitTimeout,
        ClientClosed, ...). Raises PipelineFull, sending nothing, when `max_outstanding`
        requests are in flight already. Commands are ordered as they are called for,
        as with `submit`. Must be called from the client's event loop. Cancelling the
        future does not recall the command (it may still be applied); its room in the
        window frees when its answer comes, or at the next resend check."""
        self._check_room()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._start(payload, timeout, future)
        return future

    def submit_callback(
        self, payload: bytes | str, callback: ResultCallback, timeout: float | None = None
    ) -> None:
        """Send one command now; `callback(result, None)` when it is applied, or
        `callback(None, error)` (SubmitTimeout, ClientClosed, ...) when it fails.

        The fastest way to keep many commands in flight: no future per command, and a
        result's callback runs as soon as the answer is read, on the client's event
        loop, where it may submit the next command. Keep it short. Raises PipelineFull,
        sending nothing, as `submit_nowait` does; otherwise the callback is called
        exactly once. Must be called from the client's event loop."""
        self._check_room()
        self._start(payload, timeout, _CallbackWaiter(callback, asyncio.get_running_loop()))

    def _check_room(self) -> None:
        if self._closed:
            raise ClientClosed("the client is closed")
        if self._in_flight() >= self.max_outstanding or self._room:
            raise PipelineFull(f"{self.max_outstanding} requests in flight already")

    def _start(self, payload: bytes | str, timeout: float | None, future: _Waiter) -> _Outstanding:
        """Number the command and send it: the path every command takes once, kept to
        one clock reading (it is a good part of a load generator's CPU)."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        self._ensure_running()
        seq = next(self._seq)
        now = time.monotonic()
        if not self._outstanding:
            # Silence is measured from here, not from before an idle spell: else the
            # first command after a pause would look like a dead server at once.
            self._last_heard = now
        entry = _Outstanding(Command(self.id, seq, payload), future)
        self._set_deadline(entry, timeout, now)
        self._outstanding[seq] = entry
        self._send(entry, now)
        return entry

    # ------------------------------------------------------------------ the window
    def _in_flight(self) -> int:
        return len(self._outstanding) + len(self._reads)

    async def _enter(self) -> None:
        """Wait, first come first served, until a request may be sent."""
        if self._closed:
            raise ClientClosed("the client is closed")
        while self._in_flight() >= self.max_outstanding or self._room:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._room.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken and cancelled at once: pass the turn on
                else:
                    self._room.remove(waiter)
                raise
            if self._closed:
                raise ClientClosed("the client is closed")
            if self._in_flight() < self.max_outstanding:
                return

    def _wake(self) -> None:
        """A request has left the window: let the oldest waiter in."""
        room = self._room
        while room:
            waiter = room.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _forget(self, table: dict[int, Any], key: int) -> None:
        if table.pop(key, None) is not None and self._room:
            self._wake()

    def _sweep(self) -> None:
        """Forget the requests whose futures are done (answered, failed, cancelled)."""
        for table in (self._outstanding, self._reads):
            done = [k for k, e in table.items() if e.future.done()]
            for k in done:
                del table[k]
        for _ in range(self.max_outstanding - self._in_flight()):
            if not self._room:
                break
            self._wake()

    async def read(
        self, query: bytes | str, mode: ReadMode | str | None = None, timeout: float | None = None
    ) -> bytes:
        """A read-only query (for the key-value store: `paxoi.apps.kv.get(key)`).

        mode None (the default) is linearizable: the query goes through the log like a
        command. "lease" asks the leader to answer from its state while it holds a lease
        (linearizable if server clocks drift apart no faster than the configured bound;
        ServerRefused if leases are off). "stale" is answered at once by whichever
        server this client talks to, and may miss recent writes."""
        if isinstance(query, str):
            query = query.encode("utf-8")
        if mode is None:
            return await self.submit(query, timeout)
        mode = ReadMode(mode)
        await self._enter()
        self._ensure_running()
        read_id = next(self._read_ids)
        entry = _OutstandingRead(
            Read(read_id, query, mode), asyncio.get_running_loop().create_future()
        )
        self._set_deadline(entry, timeout)
        self._reads[read_id] = entry
        self._send_read(entry)
        try:
            return await entry.future
        finally:
            self._forget(self._reads, read_id)

    def _set_deadline(
        self,
        entry: _Outstanding | _OutstandingRead,
        timeout: float | None,
        now: float | None = None,
    ) -> None:
        """The retry loop fails the request with SubmitTimeout once this passes: one
        scan for all requests rather than a timer per request, on every submit's path."""
        entry.timeout = self.timeout if timeout is None else timeout
        entry.deadline = deadline = (time.monotonic() if now is None else now) + entry.timeout
        if deadline < self._earliest_due:
            self._earliest_due = deadline

    def _fail_all(self, error: ClientError) -> None:
        """End every request still waiting with `error`, and those waiting for room."""
        futures = [e.future for e in self._outstanding.values()]
        futures += [r.future for r in self._reads.values()]
        for future in futures:
            if not future.done():
                future.set_exception(error)
        self._sweep()
        while self._room:
            waiter = self._room.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    async def close(self) -> None:
        self._closed = True
        self._fail_all(ClientClosed("the client was closed"))
        if self._runner is not None:
            # A runner that died of an error has logged it and failed its requests.
            await cancel_and_wait(self._runner)
        if self._writer is not None:
            await close_quietly(self._writer)

    async def __aenter__(self) -> AsyncClient:
        self._ensure_running()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def status(self, node: NodeId, timeout: float = 2.0) -> StatusReply:
        """Ask one server about itself (its own connection, not the command path)."""
        reply = await self._ask(node, StatusRequest(), StatusReply, timeout)
        assert isinstance(reply, StatusReply)
        return reply

    async def control(self, node: NodeId, request: Control, timeout: float = 2.0) -> ControlReply:
        """Run-time fault injection on one server (it must have faults.control on)."""
        reply = await self._ask(node, request, ControlReply, timeout)
        assert isinstance(reply, ControlReply)
        if not reply.ok:
            raise ServerRefused(f"node {node}: {reply.message}")
        return reply

    async def _ask(self, node: NodeId, request: Message, answer: type, timeout: float) -> Message:
        reader, writer = await asyncio.wait_for(self._open(node), timeout)
        try:
            writer.write(frame(encode(self._hello())) + frame(encode(request)))
            frames = FrameReader(reader, 64 * 1024 * 1024)
            while True:
                msg = await asyncio.wait_for(frames.read_one(), timeout)
                if msg is None:
                    raise ClientError(f"node {node} closed the connection")
                if isinstance(msg, ErrorReply):
                    raise ServerRefused(f"node {node}: {msg.code}: {msg.message}")
                if isinstance(msg, answer):
                    return msg
        finally:
            await close_quietly(writer)

    async def subscribe(self, from_slot: Slot = 0) -> AsyncIterator[tuple[Slot, Command, bytes]]:
        """The committed log from `from_slot` on, then each entry as it commits. Survives
        the loss of a server by resuming from another one where it left off."""
        seen_slot, seen_here = from_slot - 1, set[tuple[ClientId, int]]()
        order = list(self._order)
        attempt = 0
        while not self._closed:
            node = order[attempt % len(order)]
            attempt += 1
            try:
                reader, writer = await self._open(node)
            except OSError:
                await asyncio.sleep(min(1.0, 0.05 * attempt))
                continue
            try:
                resume = max(seen_slot, from_slot)
                writer.write(frame(encode(self._hello())) + frame(encode(Subscribe(resume))))
                frames = FrameReader(reader, 64 * 1024 * 1024)
                while True:
                    msg = await frames.read_one()
                    if msg is None:
                        break
                    if isinstance(msg, ErrorReply):
                        raise ServerRefused(f"node {node}: {msg.code}: {msg.message}")
                    if not isinstance(msg, LogEntries):
                        continue
                    attempt = 0
                    for slot, cmd, result in msg.entries:
                        key = (cmd.client, cmd.seq)
                        if slot < seen_slot or (slot == seen_slot and key in seen_here):
                            continue  # already delivered before a reconnect
                        if slot > seen_slot:
                            seen_slot, seen_here = slot, set()
                        seen_here.add(key)
                        yield slot, cmd, result
            except (OSError, DecodeError):
                pass
            finally:
                await close_quietly(writer)

    # ------------------------------------------------------------------ machinery
    async def _open(self, node: NodeId) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to server `node`: plain TCP, or TLS with its identity checked."""
        host, port = self.servers[node]
        try:
            return await open_connection(
                host, port, ssl_context=self.ssl_context, cluster=self.cluster, node=node
            )
        except ssl.SSLError as e:
            self._tls_failed(node, e)
            raise

    def _tls_failed(self, node: NodeId, e: ssl.SSLError) -> None:
        """Say why TLS failed (once per reason: the client keeps retrying); commands
        waiting meanwhile end as SubmitTimeout, their outcome unknown."""
        if str(e) != self._tls_error:
            self._tls_error = str(e)
            log.warning("TLS with node %d failed: %s", node, e)

    def _hello(self) -> Hello:
        return Hello(PROTOCOL_VERSION, self.cluster, KIND_CLIENT, None, self.id, token=self.token)

    def _ensure_running(self) -> None:
        runner = self._runner
        if runner is None or runner.done():
            self._runner = asyncio.get_running_loop().create_task(
                self._run(), name=f"client-{self.id}"
            )

    def _rto(self) -> float:
        """How long to wait for an answer before resending (TCP's RTO, simplified).

        Never under `retry_interval`, and three times the smoothed latency: an
        overloaded cluster answering in seconds must not be sent every command again
        each half second, which would bury it deeper (a retry storm)."""
        if self._latency is None:
            return self.retry_interval
        return max(self.retry_interval, 3 * self._latency)

    def _send(self, entry: _Outstanding, now: float | None = None) -> None:
        """(Re)send `entry` at the end of this loop iteration; `now` saves a clock
        reading when the caller has one."""
        if now is None:
            now = time.monotonic()
        entry.sent_at = now
        if not entry.backoff:
            entry.backoff = self._rto()
        due = entry.due = now + entry.backoff
        if due < self._earliest_due:
            self._earliest_due = due
        if self._writer is None or not self._connected.is_set():
            return  # sent again on connecting (_resend_all)
        command = entry.command
        self._commands.append(command)
        self._commands_bytes += len(command.payload)
        self._schedule_flush()

    def _resend(self, entry: _Outstanding) -> None:
        """No answer in time: send again, and wait twice as long for the next time."""
        entry.resent = True
        self.resends += 1
        self._send(entry)
        entry.backoff = min(entry.backoff * 2, max(MAX_RETRY_BACKOFF, self._rto()))

    def _write(self, data: bytes) -> None:
        """Queue a frame; the frames of one event-loop iteration leave in one write."""
        if self._writer is None or not self._connected.is_set():
            return
        self._out.append(data)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_out)

    def _flush_out(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, []
        commands, self._commands = self._commands, []
        size, self._commands_bytes = self._commands_bytes, 0
        if size <= BATCH_FRAME_BYTES:
            if commands:
                out.append(self._submits_frame(commands))
        else:
            group: list[Command] = []
            size = 0
            for command in commands:
                if group and size + len(command.payload) > BATCH_FRAME_BYTES:
                    out.append(self._submits_frame(group))
                    group, size = [], 0
                group.append(command)
                size += len(command.payload)
            if group:
                out.append(self._submits_frame(group))
        if out and self._writer is not None and self._connected.is_set():
            write_if_open(self._writer, b"".join(out))  # if lost: resent on reconnecting

    def _submits_frame(self, commands: list[Command]) -> bytes:
        if len(commands) == 1:
            return frame(encode(Submit(commands[0])))
        return frame(encode(Submits(self.id, tuple(commands))))

    def _send_read(self, entry: _OutstandingRead) -> None:
        entry.sent_at = time.monotonic()
        self._write(frame(encode(entry.request)))

    def _resend_all(self) -> None:
        """A new connection: everything unanswered goes again, with fresh timers."""
        rto = self._rto()
        for entry in self._outstanding.values():
            if not entry.future.done():
                entry.resent = True
                entry.backoff = rto
                self._send(entry)
        for read in self._reads.values():
            if not read.future.done():
                self._send_read(read)

    def _move(self, to: NodeId | None) -> None:
        """Talk to another server: `to` if given, else the next one in order."""
        if to is None or to not in self.servers or to == self.target:
            i = self._order.index(self.target)
            to = self._order[(i + 1) % len(self._order)]
        self.target = to
        if self._writer is not None:
            self._writer.close()

    async def _run(self) -> None:
        retry = asyncio.get_running_loop().create_task(self._retry_loop())
        try:
            attempt = 0
            churn = 0  # connections in a row that the server closed at once
            while not self._closed:
                try:
                    reader, writer = await asyncio.wait_for(self._open(self.target), 2.0)
                except (OSError, TimeoutError):
                    attempt += 1
                    self.failovers += 1
                    self._move(None)
                    await asyncio.sleep(min(0.5, 0.02 * attempt) * (0.5 + random.random()))
                    continue
                attempt = 0
                here, opened = self.target, time.monotonic()
                self._writer = writer
                # Meant for the old connection; _resend_all covers them.
                self._out, self._commands, self._commands_bytes = [], [], 0
                writer.write(frame(encode(self._hello())))
                self._connected.set()
                self._last_heard = time.monotonic()
                self._resend_all()
                try:
                    await self._read(FrameReader(reader, 64 * 1024 * 1024), writer)
                except (OSError, DecodeError) as e:
                    if isinstance(e, ssl.SSLError):  # e.g. our certificate refused
                        self._tls_failed(self.target, e)
                    log.debug("connection to node %d lost: %s", self.target, e)
                finally:
                    self._connected.clear()
                    self._writer = None
                    await close_quietly(writer)
                if self.target == here and time.monotonic() - opened < 1.0:
                    # Closed on us at once, not redirected: refused (a certificate or
                    # token, another cluster) or going down. Back off rather than spin.
                    churn += 1
                    await asyncio.sleep(min(1.0, 0.05 * churn) * (0.5 + random.random()))
                else:
                    churn = 0
        except Exception as e:
            # The retry loop, which enforces every request's deadline, stops with us:
            # answer the waiting requests now rather than leave them waiting for ever.
            log.exception("client %s: the connection task failed", self.id)
            self._fail_all(
                ClientError(f"the client failed ({e!r}); outcomes of pending requests unknown")
            )
            raise
        finally:
            retry.cancel()

    async def _read(self, frames: FrameReader, writer: asyncio.StreamWriter) -> None:
        here = self.target

        def handle(batch: list[Message]) -> None:
            if here != self.target:
                return  # moving on: _move closed this connection
            self._last_heard = time.monotonic()
            for msg in batch:
                self._on_message(here, msg)
                if here != self.target:
                    return

        await feed_frames(writer, frames, handle)

    def _on_message(self, src: NodeId, msg: Message) -> None:
        if isinstance(msg, ClientReply):
            entry = self._outstanding.get(msg.seq)
            if entry is None or msg.client != self.id:
                return
            if msg.status is ReplyStatus.OK:
                self._answered(msg.seq, msg.result)
                return
            if entry.future.done():
                return
            elif msg.status is ReplyStatus.NOT_LEADER:
                if msg.leader is None or msg.leader == src:
                    # No leader yet (an election is on): stay, and ask again shortly
                    # rather than spin through the servers.
                    entry.due = time.monotonic() + NO_LEADER_PAUSE
                    self._earliest_due = min(self._earliest_due, entry.due)
                    return
                self.redirects += 1
                self._move(msg.leader)
            else:  # BUSY: back-pressure; resent after a backoff that grows while it lasts
                entry.resent = True
                entry.due = time.monotonic() + entry.backoff
                entry.backoff = min(entry.backoff * 2, max(MAX_RETRY_BACKOFF, self._rto()))
        elif isinstance(msg, ClientReplies):
            if msg.client == self.id:
                now = time.monotonic()
                for seq, result in msg.answers:
                    self._answered(seq, result, now)
        elif isinstance(msg, ReadReply):
            read = self._reads.get(msg.id)
            if read is None or read.future.done() or msg.client != self.id:
                return
            if msg.status is ReplyStatus.OK:
                read.future.set_result(msg.result)
            elif msg.status is ReplyStatus.UNSUPPORTED:
                read.future.set_exception(
                    ServerRefused(f"node {src} cannot answer {read.request.mode.value} reads")
                )
            elif msg.status is ReplyStatus.NOT_LEADER and msg.leader not in (None, src):
                self.redirects += 1
                self._move(msg.leader)
            else:  # no leader or no lease yet, or busy: ask again shortly
                read.sent_at = time.monotonic() - self.retry_interval + NO_LEADER_PAUSE
        elif isinstance(msg, HelloAck):
            if msg.leader is not None and msg.leader != src and msg.leader in self.servers:
                self.redirects += 1
                self._move(msg.leader)
        elif isinstance(msg, ErrorReply):
            if msg.code == ERROR_BUSY:
                # Too many connections there: the server closes this one and we connect
                # again after a backoff. Commands sent earlier may still be applied, so
                # they stay outstanding and are resent (exactly-once makes that safe).
                return
            self._fail_all(ServerRefused(f"node {src}: {msg.code}: {msg.message}"))

    def _answered(self, seq: int, result: bytes, now: float | None = None) -> None:
        entry = self._outstanding.pop(seq, None)
        if entry is None:
            return  # answered before (a resend's second answer)
        if self._room:
            self._wake()
        if entry.future.done():
            return  # cancelled by its caller
        if not entry.resent:
            sample = (time.monotonic() if now is None else now) - entry.sent_at
            prev = self._latency
            self._latency = sample if prev is None else 0.875 * prev + 0.125 * sample
        entry.future.set_result(result)

    async def _retry_loop(self) -> None:
        """Every NO_LEADER_PAUSE: fail what is past its deadline, resend what is due,
        and leave a server that went silent."""
        while True:
            await asyncio.sleep(min(self.retry_interval / 2, NO_LEADER_PAUSE))
            now = time.monotonic()
            if not (self._outstanding or self._reads):
                continue
            connected = self._connected.is_set()
            rto = self._rto()
            if connected and now - self._last_heard > rto * 2:
                self.failovers += 1
                self._move(None)  # the server went silent
                connected = False
            if now >= self._earliest_due:
                earliest = now + rto
                ended = False
                for entry in self._outstanding.values():
                    if _ended(entry, now):
                        ended = True
                        continue
                    if connected and now >= entry.due:
                        self._resend(entry)
                    earliest = min(earliest, entry.due, entry.deadline)
                self._earliest_due = earliest
                if ended:
                    self._sweep()  # timed out, or cancelled by submit_nowait's callers
            for read in self._reads.values():
                if not _ended(read, now) and connected and now - read.sent_at >= rto:
                    self._send_read(read)


def _ended(entry: _Outstanding | _OutstandingRead, now: float) -> bool:
    """Whether the request is answered, or has just failed for passing its deadline."""
    if entry.future.done():
        return True
    if now < entry.deadline:
        return False
    if isinstance(entry, _Outstanding):
        what = f"command {entry.command.seq}"
        after = "; it may or may not have been applied"
    else:
        what, after = f"read {entry.request.id}", ""
    entry.future.set_exception(
        SubmitTimeout(f"no answer for {what} within {entry.timeout:.1f} s{after}")
    )
    return True


class Client:
    """The synchronous client: an AsyncClient on a private event loop thread."""

    def __init__(self, servers: Servers, **kw: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="paxoi-client", daemon=True
        )
        self._thread.start()
        self._async = self._call(self._make(servers, kw))

    @classmethod
    def from_config(cls, config: Any, **kw: Any) -> Client:
        servers = {nid: (s.host, s.port) for nid, s in config.servers.items()}
        return cls(servers, cluster=config.cluster, **client_options(config, kw))

    @staticmethod
    async def _make(servers: Servers, kw: dict[str, Any]) -> AsyncClient:
        return AsyncClient(servers, **kw)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def id(self) -> ClientId:
        return self._async.id

    def submit(self, payload: bytes | str, timeout: float | None = None) -> bytes:
        return self._call(self._async.submit(payload, timeout))

    def read(
        self, query: bytes | str, mode: ReadMode | str | None = None, timeout: float | None = None
    ) -> bytes:
        return self._call(self._async.read(query, mode, timeout))

    def status(self, node: NodeId, timeout: float = 2.0) -> StatusReply:
        return self._call(self._async.status(node, timeout))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._call(self._async.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
