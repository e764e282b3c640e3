"""The server: drives one sans-IO Node with a real clock, real disk and TCP.

The loop is etcd-raft's: inputs (peer messages, client commands, ticks) go into the
node; once per event-loop iteration the node's `Ready` is taken and handled in order:
messages that may go at once are queued to peers; records go to the group committer,
and the messages that must wait for them are released from its callback; applied
commands go to the chat log file, to subscribers and, as replies, to the clients
waiting for them. Durable writes never block the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
from collections.abc import Callable, Coroutine, Iterator, Sequence, Sized
from functools import partial
from pathlib import Path
from typing import IO, Any

from ..apps.chat import ChatEntry, ChatLog
from ..apps.kv import KVStore
from ..core.bugs import Bug, parse_bugs
from ..core.messages import (
    PROTOCOL_MESSAGES,
    Applied,
    ClientReply,
    PeerMessage,
    ReadReply,
    ReadRequest,
    ReplyStatus,
    is_peer_message,
)
from ..core.node import Node
from ..core.proposer import Phase
from ..core.records import Record
from ..core.statemachine import StateMachine
from ..core.types import ClientId, Command, NodeId
from ..security.auth import Gate
from ..storage import (
    GroupCommitter,
    MemoryStorage,
    NodeIdentity,
    SqliteStorage,
    Storage,
    StorageError,
)
from ..transport.framed import FrameReader, feed_frames, start_framed_server
from ..transport.runloop import cancel_and_wait
from ..transport.tcp import Address, PeerLink, close_quietly, send_error, write_if_open
from ..wire.codec import PROTOCOL_VERSION, Message, encode
from ..wire.framing import frame
from ..wire.messages import (
    BATCH_FRAME_BYTES,
    ERROR_BUSY,
    ERROR_UNAUTHORIZED,
    KIND_CLIENT,
    KIND_SERVER,
    ClientReplies,
    Control,
    ControlReply,
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
from .config import PaxoiConfig
from .heap import HeapKeeper

log = logging.getLogger("paxoi.server")

SUBSCRIBE_CHUNK = 512
#: Lazy records that force a write even while others keep coming (a bound on memory).
LAZY_LIMIT = 4096
#: Ticks lazy records wait for a write to join before they get one of their own.
LAZY_TICKS = 10
#: Exit status of a server that crashed itself on purpose (time bomb, lifetime, skip slot).
CRASH_EXIT_CODE = 3
#: How far past the event loop's clock a tick may be and still be due (seconds): the
#: float rounding of adding up intervals, never a real early tick.
TICK_SLACK = 1e-6
#: The shortest sleep the ticker asks of its event loop (seconds). uvloop's clock and
#: timers count whole milliseconds: a shorter sleep is a timer of 0 ms, which fires at
#: once while the clock stands still, so the ticker would spin until the next millisecond.
TIMER_GRAIN = 1e-3


class ClientSession:
    """One client connection: where replies and subscribed log entries go."""

    def __init__(
        self,
        client: ClientId,
        writer: asyncio.StreamWriter,
        dirty: set[ClientSession] | None = None,
    ) -> None:
        self.client = client
        self.writer = writer
        self.subscribed_from: int | None = None
        self.closed = False
        #: Frames not yet written: replies of one Ready go out in one write.
        self._out: list[bytes] = []
        #: OK answers not yet framed, (seq, result) pairs: one ClientReplies frame
        #: carries those of one Ready.
        self._answers: list[tuple[int, bytes]] = []
        self._answer_bytes = 0
        self._dirty = dirty
        #: Sequence numbers submitted here and not answered yet (bounded: client_pending).
        self.pending: set[int] = set()

    def send(self, msg: Message) -> None:
        """Queue `msg`; it leaves at the end of the server's current Ready (or at once
        for a session outside the Ready loop)."""
        if self.closed:
            return
        if type(msg) is ClientReply and msg.status is ReplyStatus.OK:
            size = len(msg.result)
            if self._answers and self._answer_bytes + size > BATCH_FRAME_BYTES:
                self._frame_answers()
            self._answers.append((msg.seq, msg.result))
            self._answer_bytes += size
        else:
            if self._answers:
                self._frame_answers()  # they were queued first: they go first
            self._out.append(frame(encode(msg)))
        if self._dirty is None:
            self.flush()
        else:
            self._dirty.add(self)

    def _frame_answers(self) -> None:
        answers = self._answers
        if len(answers) == 1:
            seq, result = answers[0]
            msg: Message = ClientReply(self.client, seq, ReplyStatus.OK, result)
        else:
            msg = ClientReplies(self.client, tuple(answers))
        self._out.append(frame(encode(msg)))
        answers.clear()
        self._answer_bytes = 0

    def flush(self) -> None:
        if self._answers:
            self._frame_answers()
        if self._out and not self.closed:
            write_if_open(self.writer, b"".join(self._out))
        self._out.clear()


class IdleWatch:
    """Calls `silent` once a connection has been waited on for `idle` seconds without a
    byte (`waiting_since` says since when; None while its input is being handled),
    unless `exempt()` (a subscriber may listen for ever).

    One timer per idle period, not one per read: an `asyncio.timeout` around each read
    of a client was 3% of a loaded leader's time. It also keeps the read itself free of
    the cancellation that a timeout would inject into it."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        idle: float,
        silent: Callable[[], None],
        exempt: Callable[[], bool],
    ) -> None:
        self.waiting_since: float | None = None
        self._loop = loop
        self._idle = idle
        self._silent = silent
        self._exempt = exempt
        self._timer = loop.call_later(idle, self._check)

    def cancel(self) -> None:
        self._timer.cancel()

    def _check(self) -> None:
        now = self._loop.time()
        since = self.waiting_since
        if since is None or self._exempt():
            self._timer = self._loop.call_at(now + self._idle, self._check)
        elif now >= since + self._idle - TIMER_GRAIN:  # a timer may fire that much early
            self._silent()
        else:
            self._timer = self._loop.call_at(since + self._idle, self._check)


class Server:
    def __init__(
        self,
        config: PaxoiConfig,
        node_id: NodeId,
        *,
        storage: Storage | None = None,
        heap: HeapKeeper | None = None,
    ) -> None:
        """`heap`: freeze the garbage collector's view of the heap as it grows (see
        server/heap.py). The process's, so only for a process that is this server."""
        if node_id not in config.servers:
            known = ", ".join(str(n) for n in sorted(config.servers))
            raise ValueError(
                f"--id {node_id}: no such server in the configuration (known: {known})"
            )
        self.config = config
        self.id = node_id
        self.heap = heap
        self.me = config.servers[node_id]
        self.identity = NodeIdentity(config.cluster, node_id, config.fingerprint())
        self.data_dir: Path | None = None if config.storage.memory else config.data_dir(node_id)
        self.storage = storage if storage is not None else self._open_storage()
        self.machine: StateMachine = ChatLog() if config.app == "chat" else KVStore()
        #: The chat log, when the application is the chat (its file and subscriptions).
        self.chat: ChatLog | None = self.machine if isinstance(self.machine, ChatLog) else None
        #: Speed of the protocol clock in percent (a "clock" Control skews it).
        self.clock_rate = 100
        #: Event-loop time of the node's next tick (see `_advance_clock`).
        self._next_tick = 0.0
        seed = config.faults.seed
        self._rng = random.Random(f"{seed}/{node_id}") if seed else random.Random()
        self._drop_rng = random.Random(f"drop/{seed}/{node_id}")
        faults = config.faults
        #: The connection each client last submitted on: where its answers go (and the
        #: node's audience: it builds answers for these clients only).
        self.sessions: dict[ClientId, ClientSession] = {}
        self.node = Node(
            node_id,
            config.cluster_config(),
            self._rng,
            self.machine,
            self.storage.load(),
            skip_slot=faults.skip_slot if faults.skip_slot >= 0 else None,
            bugs=planted_bugs(),
            audience=self.sessions,
        )
        #: Paxos messages sent to other servers while leading (for the time bomb).
        self.bomb_count = 0
        self._bomb_limit: int | None = faults.time_bomb
        #: Peers cut off by a Control("partition"): nothing is sent to or taken from them.
        self.blocked: frozenset[NodeId] = frozenset()
        self._doomed = False
        self._skip_passed = False
        self.committer: GroupCommitter | None = None
        #: Records that may wait (Ready.persist_lazy): they go with the next write, or
        #: once they have waited LAZY_TICKS with the disk idle, so a decision never costs
        #: an fsync of its own while commands keep coming.
        self._lazy: list[Record] = []
        self._lazy_waited = 0
        #: (phase, ballot) of our proposer when last logged (see _log_role).
        self._role: tuple[object, object] = (None, None)
        self.links: dict[NodeId, PeerLink] = {}
        #: Fixed for this process's life; peers remake their links when it changes.
        self.incarnation = int.from_bytes(os.urandom(7), "big") | 1
        self._peer_incarnations: dict[NodeId, int] = {}
        #: Every client connection (several may share a client id).
        self._client_conns: set[ClientSession] = set()
        #: Sessions with replies queued during this Ready.
        self._dirty: set[ClientSession] = set()
        #: Connections that have not finished their handshake, oldest first.
        self._handshaking: dict[asyncio.StreamWriter, None] = {}
        self._subscribers: set[ClientSession] = set()
        self._flush_scheduled = False
        self._chat_file: IO[bytes] | None = None
        self._written = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        #: Why the server stopped on its own, if it did (a storage failure).
        self.failed: BaseException | None = None
        self.stats = {"peer_in": 0, "peer_out": 0, "client_in": 0, "dropped": 0, "rejected": 0}
        self.stats["applied"] = 0  # commands applied by this process (replay included)
        self._applied_counted = 0  # of the replica's applied_commands
        self._report_applied()

    def _open_storage(self) -> Storage:
        if self.config.storage.memory:
            return MemoryStorage(self.identity)
        assert self.data_dir is not None
        return SqliteStorage.open(self.data_dir, self.identity, fsync=self.config.storage.fsync)

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT (or `stop()`); then shut down cleanly."""
        await self.start()
        await self.run_started()

    async def run_started(self) -> None:
        """The rest of `run`, for a caller that called `start` itself."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stop.set)
        try:
            await self._stop.wait()
        finally:
            await self.close()

    def stop(self) -> None:
        self._stop.set()

    def crash(self, why: str) -> None:
        """An injected fault: die like a SIGKILL would (no clean shutdown), but say why.

        Sends stop at once; the process exits a moment later, so that what was already
        handed to the sockets (the time bomb's last message) does leave."""
        if self._doomed:
            return
        self._doomed = True
        log.critical("node %d crashes itself: %s", self.id, why)
        logging.shutdown()
        asyncio.get_running_loop().call_later(0.05, os._exit, CRASH_EXIT_CODE)

    def _check_faults(self) -> None:
        faults = self.config.faults
        proposer = self.node.proposer
        if not self.node.is_leader or proposer is None:
            return
        if self._bomb_limit is not None and self.bomb_count >= self._bomb_limit:
            self.crash(f"time bomb: {self.bomb_count} Paxos messages sent as leader")
        # Only the leader that left the hole dies: a successor that fills it and moves on
        # past the slot must live (else two deaths, and no majority).
        if proposer.skipped and proposer.next_slot > faults.skip_slot + 1 and not self._skip_passed:
            self._skip_passed = True
            asyncio.get_running_loop().call_later(
                faults.skip_slot_grace, self.crash, f"skipped slot {faults.skip_slot} and moved on"
            )

    def _fatal(self, error: BaseException) -> None:
        """The disk failed: what is durable is now unknown, so nothing more may leave
        this node. Stop, and exit non-zero (see `failed`)."""
        if self.failed is None:
            self.failed = error
            log.critical("node %d: storage failed, stopping: %s", self.id, error)
        self._stop.set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # TLS contexts and client auth; first, so that a missing certificate fails the
        # start (ConfigError naming the file) before anything is opened.
        self.gate = Gate(self.config, self.id)
        self.committer = GroupCommitter(
            self.storage,
            loop.call_soon_threadsafe,
            on_error=partial(_call_in, loop, self._fatal),
            inline=loop.call_soon,
            delay=self.config.faults.disk_delay,
        )
        if self.data_dir is not None and self.chat is not None:
            self._chat_file = open(self.data_dir / "chat.log", "wb")  # noqa: SIM115
            self._sync_chat()  # what the snapshot and the replayed log already hold
        self._server = await start_framed_server(
            self._on_connection,
            self.me.bind_host,
            self.me.port,
            reuse_address=True,
            ssl=self.gate.server_ssl,  # with TLS on, plain TCP fails the handshake
            ssl_handshake_timeout=self.config.limits.handshake_timeout if self.gate.tls else None,
        )
        for peer, entry in self.config.servers.items():
            if peer != self.id:
                link = PeerLink(
                    self.id,
                    peer,
                    Address(entry.host, entry.port),
                    self.config.cluster,
                    self.config.limits.peer_queue,
                    self._rng,
                    self.incarnation,
                    ssl_context=self.gate.peer_ssl,
                )
                link.start()
                self.links[peer] = link
        self._next_tick = loop.time()
        self._spawn(self._ticker())
        if self.config.faults.lifetime is not None:
            loop.call_later(self.config.faults.lifetime, self.crash, "its lifetime is over")
        self._flush()  # the replay of the durable log, if any
        if self.heap is not None:
            self.heap.started()
        log.info(
            "node %d serving on %s:%d (roles %s, data %s)",
            self.id,
            self.me.bind_host,
            self.me.port,
            ",".join(sorted(r.value for r in self.node.roles)),
            self.data_dir or "in memory",
        )

    async def close(self) -> None:
        self._server.close()
        # Our connections' tasks are ours to end: left to the interpreter's teardown they
        # would be cancelled mid-callback and logged as errors.
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for session in list(self.sessions.values()):
            session.closed = True
            session.writer.close()
        for link in self.links.values():
            await link.stop()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            await cancel_and_wait(task)
        if self.committer is not None:
            if self._lazy and not self.committer.failed and not self._doomed:
                with contextlib.suppress(StorageError):
                    self.committer.submit(self._lazy, _nothing)
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.committer.close)
            except StorageError as e:
                self.failed = self.failed or e
        self.storage.close()
        if self._chat_file is not None:
            self._chat_file.close()
        if self.heap is not None:
            self.heap.stop()
        log.info("node %d stopped", self.id)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ticker(self) -> None:
        """Tick on time without spinning. Under uvloop, whose clock counts whole
        milliseconds, sleeping until the next tick used to wake in a loop of zero-length
        timers for up to a millisecond of every tick: the deadline, a sum of intervals,
        lay a float's rounding past a clock reading that would not move until the next
        millisecond. That was a tenth of a CPU per idle server (TICK_SLACK, TIMER_GRAIN)."""
        loop = asyncio.get_running_loop()
        self._next_tick = loop.time()
        while True:
            await asyncio.sleep(ticker_sleep(self._next_tick, loop.time(), self._tick_interval()))
            self._advance_clock()

    def _tick_interval(self) -> float:
        """Seconds of event-loop time per tick (`clock_rate` skews it)."""
        return self.config.tick_ms / 1000.0 * 100 / self.clock_rate

    def _advance_clock(self) -> None:
        """Tick the node once for every tick interval that has passed.

        After a suspension (SIGSTOP, a long GC, a long iteration of a loaded loop) the
        missed ticks are made up at once, up to enough to expire every timer and lease,
        and *before* any input is handled: a leader that slept through its lease must
        not answer a lease read from a frozen clock (the sleep is real time in which a
        successor could have been chosen). All but the last are `catching_up` ticks,
        which do not count towards an election timeout: the input we did not read while
        stalled may well hold the leader's heartbeats (see Node.tick)."""
        now = asyncio.get_running_loop().time()
        interval = self._tick_interval()
        timing = self.config.timing
        burst = timing.election + timing.lease + 2
        late = now - self._next_tick
        if late > timing.election * interval / 3:
            # Long enough to cost a follower's patience: say so, it explains elections.
            log.warning("node %d: event loop stalled %.0f ms", self.id, late * 1000)
        ticks = ticks_due(self._next_tick, now, interval, burst)
        for i in range(ticks):
            self.node.tick(catching_up=i < ticks - 1)
        self._next_tick += ticks * interval
        if self._next_tick <= now:
            self._next_tick = now + interval  # the rest of a long sleep: skip, no storm
        if ticks:
            self._flush()
            self._write_lazy(ticks)
            for link in self.links.values():
                link.flush()  # lazy messages (Ready.send_lazy) that found no ride

    # ------------------------------------------------------------------ the Ready loop
    def _kick(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._doomed:
            return  # a crashing node sends nothing more
        ready = self.node.take_ready()
        if ready.is_empty():
            self._flush_sessions()  # answers given outside the node (status, busy)
            return
        self._send_all(ready.send, ready.send_lazy)
        self._lazy += ready.persist_lazy
        if ready.persist or ready.send_after_persist or len(self._lazy) >= LAZY_LIMIT:
            records = ready.persist
            if self._lazy:
                records, self._lazy, self._lazy_waited = self._lazy + records, [], 0
            if not self._commit(records, partial(self._release, ready.send_after_persist)):
                return
        self._on_applied(ready.applied)
        self._sync_chat()
        if ready.replies:
            self._answer(ready.replies)
        for answer in ready.read_replies:
            self._read_reply(answer)
        self._flush_sessions()
        self._log_role()
        self._check_faults()

    def _log_role(self) -> None:
        """Say when this node starts or stops leading, or campaigns: the first thing an
        operator asks about a cluster that slowed down."""
        p = self.node.proposer
        if p is None:
            return
        role = (p.phase, p.ballot)
        if role == self._role:
            return
        self._role = role
        seen = p.election.max_seen
        if p.phase is Phase.LEADER:
            log.info("node %d leads in ballot %s", self.id, p.ballot)
        elif p.phase is Phase.CANDIDATE:
            log.info(
                "node %d campaigns in ballot %s (highest seen %s, leader was %s)",
                self.id, p.ballot, seen, self.node.leader,
            )  # fmt: skip
        else:
            log.info("node %d follows (highest ballot seen %s)", self.id, seen)

    def _commit(self, records: list[Record], done: Callable[[], None]) -> bool:
        assert self.committer is not None
        try:
            self.committer.submit(records, done)
        except StorageError as e:
            self._fatal(e)
            return False
        return True

    def _write_lazy(self, ticks: int) -> None:
        """On a tick: decisions that found no write to ride along with go now, if the
        node has been quiet for a while (under load a write is always coming)."""
        if not self._lazy:
            self._lazy_waited = 0
            return
        self._lazy_waited += ticks
        if self._lazy_waited < LAZY_TICKS or self.committer is None or self.committer.pending:
            return
        records, self._lazy = self._lazy, []
        self._lazy_waited = 0
        self._commit(records, _nothing)

    def _flush_sessions(self) -> None:
        dirty = self._dirty
        while dirty:
            dirty.pop().flush()

    def _release(self, messages: list[tuple[NodeId, PeerMessage]]) -> None:
        """The records these messages depend on are durable: let them go."""
        if self._doomed:
            return
        me = self.id
        local = [m for dst, m in messages if dst == me]
        self._send_all([(dst, m) for dst, m in messages if dst != me] if local else messages)
        for m in local:
            self.node.step(m)
        self._kick()

    def _send_all(
        self,
        messages: Sequence[tuple[NodeId, PeerMessage]],
        lazy: Sequence[tuple[NodeId, PeerMessage]] = (),
    ) -> None:
        """Queue each message on its peer's link, the `lazy` ones (Ready.send_lazy)
        after the others, then write the links that got one that is not lazy
        (PeerLink.flush): a lazy one rides along with them, or waits."""
        if not messages and not lazy:
            return  # most Readies of a leader at low load (three a command)
        encoded: dict[int, bytes] = {}  # a broadcast is encoded once
        used: set[PeerLink] = set()
        for dst, msg in messages:
            link = self._queue_on_link(dst, msg, encoded)
            if link is not None:
                used.add(link)
        for dst, msg in lazy:
            self._queue_on_link(dst, msg, encoded)
        for link in used:
            link.flush()

    def _queue_on_link(
        self, dst: NodeId, msg: PeerMessage, encoded: dict[int, bytes]
    ) -> PeerLink | None:
        """`msg` queued on the link to `dst` (its bytes from `encoded` if sent before);
        the link, or None if the message went nowhere (no such peer, a simulated
        partition or drop, a crash)."""
        link = self.links.get(dst)
        if link is None or self._doomed or dst in self.blocked:
            return None
        bomb = self._bomb_limit
        if bomb is not None and isinstance(msg, PROTOCOL_MESSAGES) and self.node.is_leader:
            if self.bomb_count >= bomb:
                self.crash(f"time bomb: {self.bomb_count} Paxos messages sent as leader")
                return None
            self.bomb_count += 1
        if self.config.faults.msg_drop_rate and self._dropped():
            return None
        data = encoded.get(id(msg))
        if data is None:
            data = encoded[id(msg)] = frame(encode(msg))
        link.send(data)
        self.stats["peer_out"] += 1
        return link

    def _report_applied(self) -> None:
        """Have the node list what it applies (Ready.applied) only while a subscriber to
        a key-value log needs it: the chat's subscribers are fed from the chat itself,
        and the counts come from `applied_commands`."""
        if self.node.replica is not None:
            self.node.replica.report_applied = self.chat is None and bool(self._subscribers)

    def _on_applied(self, applied: list[Applied]) -> None:
        replica = self.node.replica
        done = replica.applied_commands if replica is not None else 0
        if done != self._applied_counted:
            count, self._applied_counted = done - self._applied_counted, done
            self.stats["applied"] += count
            if self.heap is not None:
                self.heap.applied(count)
        if applied and self._subscribers and self.chat is None:
            entries = tuple((a.slot, a.command, a.result) for a in applied)
            for session in list(self._subscribers):
                session.send(LogEntries(entries))

    def _sync_chat(self) -> None:
        """Bring chat.log and the subscribers up to the chat's state.

        Driven by the chat itself, not by applied commands: a snapshot installed from a
        peer, or one a restart begins from, adds entries that were never "applied"
        here, and the file and the subscribers must have them too."""
        chat = self.chat
        if chat is None or len(chat) == self._written:
            return
        start, self._written = self._written, len(chat)
        if self._chat_file is not None:
            self._chat_file.write(chat.canonical_bytes(start, self._written))
            self._chat_file.flush()
        if self._subscribers:
            for chunk in _log_entries(chat.since(start, self._written)):
                for session in list(self._subscribers):
                    session.send(chunk)

    def _answer(self, replies: list[ClientReply]) -> None:
        """A Ready's answers to commands, each to the connection its client last
        submitted on. Per command on the leader, so with the names looked up once."""
        sessions = self.sessions
        drop = self.config.faults.msg_drop_rate
        for reply in replies:
            session = sessions.get(reply.client)
            if session is None:
                continue
            session.pending.discard(reply.seq)
            if not (drop and self._dropped()):
                session.send(reply)

    def _read_reply(self, answer: ReadReply) -> None:
        session = self.sessions.get(answer.client)
        if session is not None and not self._dropped():
            session.send(answer)

    def _dropped(self) -> bool:
        """Fault injection: should this message be lost?"""
        rate = self.config.faults.msg_drop_rate
        if rate and self._drop_rng.random() < rate:
            self.stats["dropped"] += 1
            return True
        return False

    # ------------------------------------------------------------------ connections
    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
        peer = writer.get_extra_info("peername")
        limits = self.config.limits
        if len(self._handshaking) >= limits.max_handshaking:
            # A flood of silent connections: drop the oldest, not the newcomer, so that a
            # real peer (whose Hello comes at once) still gets through.
            oldest = next(iter(self._handshaking))
            del self._handshaking[oldest]
            log.warning(
                "closed connection from %s: no handshake yet, evicted for a newer one (%d at once)",
                oldest.get_extra_info("peername"),
                limits.max_handshaking,
            )
            oldest.transport.abort()
            self.stats["evicted"] = self.stats.get("evicted", 0) + 1
        self._handshaking[writer] = None
        frames = FrameReader(reader, self.config.limits.max_frame)
        try:
            try:
                # Not wait_for: on 3.11 it can swallow the cancellation close() sends
                # when the read completes at the same moment (gh-86296), and the server
                # would then not stop until this peer went away.
                async with asyncio.timeout(limits.handshake_timeout):
                    hello = await frames.read_one()
            finally:
                self._handshaking.pop(writer, None)
            if not isinstance(hello, Hello):
                raise _Refuse("bad-handshake", "the first frame must be Hello")
            if hello.version != PROTOCOL_VERSION:
                raise _Refuse(
                    "bad-version", f"protocol version {hello.version} is not {PROTOCOL_VERSION}"
                )
            if hello.cluster != self.config.cluster:
                raise _Refuse(
                    "wrong-cluster",
                    f"this is cluster {self.config.cluster!r}, not {hello.cluster!r}",
                )
            # Certificates and tokens (paxoi.security.auth): is it who its Hello claims?
            refusal = self.gate.check(hello, writer.get_extra_info("peercert"))
            if refusal is not None:
                raise _Refuse(ERROR_UNAUTHORIZED, refusal)
            if hello.kind == KIND_SERVER:
                if (
                    hello.node is None
                    or hello.node not in self.config.servers
                    or hello.node == self.id
                ):
                    raise _Refuse(
                        "unknown-node", f"node {hello.node} is not a peer of node {self.id}"
                    )
                await self._serve_peer(hello.node, hello.incarnation, frames, writer)
            elif hello.kind == KIND_CLIENT and hello.client:
                await self._serve_client(hello.client, frames, writer)
            else:
                raise _Refuse("bad-handshake", f"unknown peer kind {hello.kind!r}")
        except _Refuse as r:
            self.stats["rejected"] += 1
            log.warning("refused connection from %s: %s", peer, r.message)
            await send_error(writer, r.code, r.message)
        except DecodeError as e:
            self.stats["rejected"] += 1
            log.warning("closed connection from %s: malformed input: %s", peer, e)
            await send_error(writer, "bad-frame", str(e))
        except TimeoutError:
            log.warning(
                "closed connection from %s: no handshake within %.1f s",
                peer,
                limits.handshake_timeout,
            )
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            # The server is closing. This task is the connection's own and ends here;
            # ending it cancelled would make asyncio's stream callback log an error.
            pass
        finally:
            await close_quietly(writer)

    async def _serve_peer(
        self, peer: NodeId, incarnation: int, frames: FrameReader, writer: asyncio.StreamWriter
    ) -> None:
        link = self.links.get(peer)
        if link is not None:
            known = self._peer_incarnations.get(peer)
            self._peer_incarnations[peer] = incarnation
            if (known is not None and known != incarnation) or not link.connected:
                # It restarted (or we could not reach it): remake our link to it now. Our
                # own reconnecting never changes our incarnation, so this cannot loop.
                link.reconnect()
        stats, step = self.stats, self.node.step

        def handle(batch: list[Message]) -> None:
            for msg in batch:
                if not is_peer_message(msg):
                    raise _Refuse("unexpected", f"{type(msg).__name__} is not a peer message")
                if msg.src != peer:
                    raise _Refuse(
                        "forged", f"node {peer} sent a message claiming to be from {msg.src}"
                    )
                if peer in self.blocked:
                    continue  # a simulated partition
                stats["peer_in"] += 1
                step(msg)
            self._kick()

        await feed_frames(writer, frames, handle)

    async def _serve_client(
        self, client: ClientId, frames: FrameReader, writer: asyncio.StreamWriter
    ) -> None:
        # Replies go to the connection that last submitted for this client id: a client
        # may hold another connection (a subscription) under the same id.
        limits = self.config.limits
        if len(self._client_conns) >= limits.max_clients:
            raise _Refuse(ERROR_BUSY, f"too many client connections ({limits.max_clients})")
        session = ClientSession(client, writer, self._dirty)
        self._client_conns.add(session)
        session.send(HelloAck(PROTOCOL_VERSION, self.config.cluster, self.id, self.node.leader))
        session.flush()
        loop = asyncio.get_running_loop()

        def silent() -> None:
            log.info("closing client %s: silent for %.0f s", client, limits.client_idle)
            writer.close()  # the read below ends (None), and so does this session

        watch = IdleWatch(
            loop, limits.client_idle, silent, exempt=lambda: session in self._subscribers
        )

        def handle(batch: list[Message]) -> None:
            for msg in batch:
                if isinstance(msg, Submits):
                    self._take(session, msg.commands)
                elif isinstance(msg, Submit):
                    self._take(session, (msg.command,))
                elif isinstance(msg, Read):
                    if self.sessions.get(client) is not session:
                        self.sessions[client] = session
                    self._advance_clock()  # a lease must be judged on the time now
                    self.node.read(ReadRequest(client, msg.id, msg.query, msg.mode))
                elif isinstance(msg, Subscribe):
                    self._subscribe(session, msg.from_slot)
                elif isinstance(msg, StatusRequest):
                    session.send(self.status())
                elif isinstance(msg, Control):
                    session.send(self._control(msg))
                else:
                    raise _Refuse("unexpected", f"{type(msg).__name__} is not a client request")
            self._kick()
            watch.waiting_since = loop.time()

        try:
            watch.waiting_since = loop.time()
            # Back-pressure: a client that does not read its answers is not read either.
            await feed_frames(writer, frames, handle, backpressure=True)
        finally:
            watch.cancel()
            session.closed = True
            self._client_conns.discard(session)
            self._subscribers.discard(session)
            self._report_applied()
            if self.sessions.get(client) is session:
                del self.sessions[client]

    def _take(self, session: ClientSession, commands: Sequence[Command]) -> None:
        """A client's commands (one frame's): to the node, each that the client has
        room for; BUSY for the rest. Per command on a leader, so per frame where it can."""
        client = session.client
        self.stats["client_in"] += len(commands)
        if self.sessions.get(client) is not session:
            self.sessions[client] = session
        drop = self.config.faults.msg_drop_rate
        taken: list[Command] = []
        for cmd in commands:
            if cmd.client != client:
                raise _Refuse("forged", "a client may submit only its own commands")
            if not self._admit(session, cmd.seq):
                self.stats["busy"] = self.stats.get("busy", 0) + 1
                reply = ClientReply(client, cmd.seq, ReplyStatus.BUSY, leader=self.node.leader)
                session.send(reply)
            elif not (drop and self._dropped()):
                taken.append(cmd)
        if taken:
            self.node.submit_many(taken)

    def _admit(self, session: ClientSession, seq: int) -> bool:
        """Per-connection back-pressure: at most `client_pending` commands unanswered."""
        pending = session.pending
        if seq in pending or len(pending) < self.config.limits.client_pending:
            pending.add(seq)
            return True
        # Full: forget what the replica has applied meanwhile (answers lost to faults).
        replica = self.node.replica
        table = replica.clients.get(session.client) if replica is not None else None
        if table is not None:
            pending.difference_update([s for s in pending if s <= table.last_seq])
        if len(pending) < self.config.limits.client_pending:
            pending.add(seq)
            return True
        return False

    def _control(self, msg: Control) -> ControlReply:
        if not self.config.faults.control:
            return ControlReply(False, "run-time fault injection is off (faults.control)")
        log.warning("node %d: control %s %s %s", self.id, msg.action, list(msg.nodes), msg.value)
        if msg.action == "partition":
            self.blocked = frozenset(msg.nodes) - {self.id}
        elif msg.action == "heal":
            self.blocked = frozenset()
        elif msg.action == "time_bomb":
            self._bomb_limit, self.bomb_count = msg.value, 0
            self._check_faults()
        elif msg.action == "clock":
            if not 1 <= msg.value <= 10_000:
                return ControlReply(False, "clock: value is a rate in percent, 1-10000")
            self.clock_rate = msg.value
        return ControlReply(True, f"{msg.action} done")

    def _subscribe(self, session: ClientSession, from_slot: int) -> None:
        if self.chat is not None:  # the backlog: the chat keeps its entries
            # Up to what _sync_chat has sent the subscribers: it sends the rest.
            backlog = [e for e in self.chat.since(0, self._written) if e.slot >= from_slot]
            for chunk in _log_entries(backlog):
                session.send(chunk)
        self._subscribers.add(session)
        self._report_applied()

    def status(self) -> StatusReply:
        node = self.node
        proposer = node.proposer
        return StatusReply(
            node=self.id,
            roles=tuple(sorted(r.value for r in node.roles)),
            leader=node.leader,
            ballot=proposer.ballot if proposer is not None else None,
            is_leader=node.is_leader,
            chosen=node.log.floor,
            applied=node.replica.slot_out if node.replica is not None else 0,
            extra={
                "entries": len(self.machine) if isinstance(self.machine, Sized) else 0,
                "clients": len(self.sessions),
                "peers_connected": sum(link.connected for link in self.links.values()),
                **({"syncs": self.committer.stats.syncs} if self.committer else {}),
                **self.stats,
            },
        )


def ticks_due(next_tick: float, now: float, interval: float, limit: int) -> int:
    """How many ticks, the first at `next_tick` and then one every `interval`, are due
    by `now` (at most `limit`). One that lies within TICK_SLACK past `now` is due: it is
    a float's rounding of the sum of intervals, not a tick that is early."""
    ticks = 0
    while next_tick + ticks * interval <= now + TICK_SLACK and ticks < limit:
        ticks += 1
    return ticks


def ticker_sleep(next_tick: float, now: float, interval: float) -> float:
    """How long the ticker sleeps before it looks again: until `next_tick`, but at
    least TIMER_GRAIN (or one interval, if that is shorter), and not at all if the
    tick is due (ticks_due)."""
    delay = next_tick - now
    if delay <= TICK_SLACK:
        return 0.0
    return max(delay, min(TIMER_GRAIN, interval))


def _nothing() -> None:
    pass


def _log_entries(entries: list[ChatEntry]) -> Iterator[LogEntries]:
    """Chat entries as subscribers get them, SUBSCRIBE_CHUNK per message. The chat
    machine's result for an entry is its slot."""
    for i in range(0, len(entries), SUBSCRIBE_CHUNK):
        chunk = entries[i : i + SUBSCRIBE_CHUNK]
        yield LogEntries(tuple((e.slot, e.command(), str(e.slot).encode()) for e in chunk))


def _call_in(
    loop: asyncio.AbstractEventLoop, fn: Callable[[BaseException], None], error: BaseException
) -> None:
    loop.call_soon_threadsafe(fn, error)


def planted_bugs() -> frozenset[Bug]:
    """Test-only: known protocol bugs to plant, from PAXOI_PLANT_BUG (comma-separated
    names of `paxoi sim --list-bugs`), so the checkers can be shown to catch them on real
    processes. Never set in production; a server running with one says so loudly."""
    names = [n for n in os.environ.get("PAXOI_PLANT_BUG", "").split(",") if n.strip()]
    bugs = parse_bugs([n.strip() for n in names])
    for bug in bugs:
        log.critical("PLANTED BUG %s is active: this server is deliberately unsafe", bug.value)
    return bugs


class _Refuse(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def serve(config: PaxoiConfig, node_id: NodeId) -> None:
    server = Server(config, node_id)
    await server.run()


__all__ = ["ClientSession", "Server", "serve"]
