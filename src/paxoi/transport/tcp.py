"""asyncio TCP links: length-prefixed msgpack frames, a handshake, bounded queues.

Each server keeps one outbound connection to every peer for what it sends, and accepts
inbound connections from peers (what they send it) and from clients. Outbound traffic
is queued per peer, bounded, and written in one `write` per loop iteration (frames
coalesced); when a peer is unreachable its queue fills and further messages are
dropped, which Paxos tolerates (retransmission covers it) and which keeps memory flat.

Anything a peer sends that is not a well-formed frame of the expected kind closes
that connection with a logged reason; the server itself carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..core.types import NodeId
from ..security.tls import open_connection
from ..wire.codec import PROTOCOL_VERSION, encode
from ..wire.framing import frame
from ..wire.messages import KIND_SERVER, ErrorReply, Hello
from ..wire.values import DecodeError
from .framed import FrameReader
from .runloop import cancel_and_wait

log = logging.getLogger("paxoi.transport")

HANDSHAKE_TIMEOUT = 5.0
#: Bytes a link may hold unsent in its transport and still be written to outside its
#: pump (PeerLink.flush); past this the pump, which waits for the drain, writes.
FLUSH_BACKLOG = 64 * 1024


class ProtocolViolation(Exception):
    """A peer broke the wire protocol; the connection is closed with this reason."""


@dataclass
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class PeerLink:
    """The outbound connection to one peer: connects, handshakes, writes, reconnects."""

    def __init__(
        self,
        me: NodeId,
        peer: NodeId,
        address: Address,
        cluster: str,
        max_queue: int,
        rng: random.Random,
        incarnation: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.incarnation = incarnation
        #: TLS with our node certificate (None: plain TCP); the peer's certificate must
        #: name the peer (paxoi.security.tls.open_connection).
        self.ssl_context = ssl_context
        self._tls_error = ""
        self.me = me
        self.peer = peer
        self.address = address
        self.cluster = cluster
        self.max_queue = max_queue
        self._rng = rng
        self._queue: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: The connection, once its Hello is written; None while down.
        self._writer: asyncio.StreamWriter | None = None
        self.connected = False
        self.dropped = 0
        self.sent = 0
        self.reconnects = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"link-{self.peer}")

    def reconnect(self) -> None:
        """Connect to the peer now: it is up (it just connected to us), and our link is
        down or leads into a connection its restart left dead. Waiting out a backoff, or
        writing into the dead connection, would make a restarted server miss heartbeats
        and depose a healthy leader. Queued messages are kept."""
        self.reconnects += 1
        if self._task is not None:
            self._task.cancel()
        self.start()

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)

    def send(self, data: bytes) -> None:
        """Queue one framed message; dropped (and counted) if the queue is full. It
        leaves at the next `flush`: the server flushes a link after each batch of sends
        with a message for it that is not lazy, and on every tick (waking the pump here
        as well cost a task's wake-up per message for nothing)."""
        if len(self._queue) >= self.max_queue:
            self.dropped += 1
            return
        self._queue.append(data)

    def flush(self) -> None:
        """Write what is queued now rather than when the pump next runs (an event-loop
        iteration later), unless the link is down or backed up. The server calls it
        after each batch of sends: a small storage write that follows on the loop's
        thread (a fraction of a millisecond) would otherwise hold the Accept back from
        the followers, and their writes would start only after the leader's ended.
        Down or backed up, the pump is woken instead (it writes on connecting)."""
        if not self._queue:
            return
        writer = self._writer
        if (
            writer is None
            or writer.transport.is_closing()  # lost: the pump reconnects, then writes
            or writer.transport.get_write_buffer_size() > FLUSH_BACKLOG
        ):
            self._wake.set()
            return
        self._write_queue(writer)

    def _write_queue(self, writer: asyncio.StreamWriter) -> None:
        """Everything queued, in one write (the pump's and `flush`'s one way to write)."""
        chunk = b"".join(self._queue)
        self.sent += len(self._queue)
        self._queue.clear()
        writer.write(chunk)

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            writer: asyncio.StreamWriter | None = None
            try:
                reader, writer = await open_connection(
                    self.address.host,
                    self.address.port,
                    ssl_context=self.ssl_context,
                    cluster=self.cluster,
                    node=self.peer,
                    handshake_timeout=HANDSHAKE_TIMEOUT,
                )
                writer.write(
                    frame(
                        encode(
                            Hello(
                                PROTOCOL_VERSION,
                                self.cluster,
                                KIND_SERVER,
                                self.me,
                                incarnation=self.incarnation,
                            )
                        )
                    )
                )
                self.connected = True
                self._writer = writer
                backoff = 0.05
                log.info("connected to node %d at %s", self.peer, self.address)
                watcher = asyncio.get_running_loop().create_task(self._watch(reader))
                try:
                    await self._pump(writer, watcher)
                finally:
                    watcher.cancel()
            except ssl.SSLError as e:  # a TLS or certificate problem, not a down peer
                self._tls_failed(e)
            except (OSError, ConnectionError) as e:
                if self.connected:
                    log.info("lost node %d at %s: %s", self.peer, self.address, e)
            finally:
                self.connected = False
                self._writer = None
                if writer is not None:
                    writer.close()
                    with contextlib.suppress(Exception):
                        await writer.wait_closed()
            # Jittered exponential backoff: peers restarting together don't retry in lockstep.
            await asyncio.sleep(backoff * (0.5 + self._rng.random()))
            backoff = min(backoff * 2, 1.0)

    async def _pump(self, writer: asyncio.StreamWriter, watcher: asyncio.Task[None]) -> None:
        """Write what is queued, all of it in one write, whenever the queue fills.

        Waits on the wake event alone (the watcher sets it when it ends): no task or
        `asyncio.wait` per wake-up, which on a busy leader is thousands a second."""
        watcher.add_done_callback(lambda _: self._wake.set())
        while not watcher.done():
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            if writer.transport.is_closing():
                return  # lost before the watcher heard: reconnect, the queue kept
            self._write_queue(writer)
            await writer.drain()

    async def _watch(self, reader: asyncio.StreamReader) -> None:
        """Peers never send on our outbound link except to refuse it; log why, then close."""
        frames = FrameReader(reader, 64 * 1024)
        try:
            msg = await frames.read_one()
        except DecodeError:
            msg = None
        except ssl.SSLError as e:  # with TLS 1.3 a refused certificate shows up here
            self._tls_failed(e)
            return
        except OSError:
            return
        if isinstance(msg, ErrorReply):
            log.warning("node %d refused our connection: %s: %s", self.peer, msg.code, msg.message)

    def _tls_failed(self, e: ssl.SSLError) -> None:
        """Log a TLS failure once per distinct reason (the link retries every second)."""
        why = str(e)
        if why != self._tls_error:
            self._tls_error = why
            log.warning("TLS with node %d at %s failed: %s", self.peer, self.address, why)


def write_if_open(writer: asyncio.StreamWriter, data: bytes) -> bool:
    """Write `data` unless the connection is closing or lost; whether it was written.

    Between a connection's loss and the moment its owner's coroutine hears of it, code
    on other paths (a Ready's answers, a tick's flush) may still hold its writer. asyncio
    would drop such a write with a warning; uvloop raises RuntimeError, which in a
    callback or the ticker would break what called it (a stopped ticker is a node that
    never times out again)."""
    if writer.transport.is_closing():
        return False
    writer.write(data)
    return True


async def send_error(writer: asyncio.StreamWriter, code: str, message: str) -> None:
    with contextlib.suppress(Exception):
        writer.write(frame(encode(ErrorReply(code, message))))
        await asyncio.wait_for(writer.drain(), 1.0)


async def close_quietly(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 1.0)


OnConnection = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter], "asyncio.Future[None] | object"
]
