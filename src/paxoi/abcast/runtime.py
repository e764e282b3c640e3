"""Role processes of the atomic broadcast: the core's Node behind a multicast shell.

Every role process drives a Node exactly as the TCP server does (tick, step, take the
Ready, send) with in-memory state (the harness assumes crash-stop: no recovery). What
differs is addressing: a message to a node goes to its role's group, and a message
sent to every member of a group goes once, as a broadcast datagram.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import sys
from collections import defaultdict
from typing import IO

from ..core.messages import (
    CatchupRequest,
    ClientReply,
    PeerMessage,
    ReplyStatus,
    is_peer_message,
)
from ..core.node import Node
from ..core.records import DurableState
from ..core.types import Command, NodeId, Slot
from ..transport.multicast import BROADCAST, Group, MulticastEndpoint
from ..wire.codec import decode, encode
from ..wire.messages import Submit
from ..wire.values import DecodeError
from .config import ACCEPTORS, AbcastConfig, cluster_config, node_id

log = logging.getLogger("paxoi.abcast")

TICK = 0.01


class PrintMachine:
    """A learner's state machine: print each decided value on its own line, flushed."""

    def __init__(self, out: IO[str] | None) -> None:
        self.out = out
        self.count = 0

    def apply(self, slot: Slot, command: Command) -> bytes:
        self.count += 1
        if self.out is not None:
            self.out.write(command.payload.decode("utf-8", errors="replace") + "\n")
            self.out.flush()
        return b""

    def snapshot(self) -> bytes:
        return b""

    def restore(self, data: bytes) -> None:
        pass


async def _until_terminated() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


class RoleProcess:
    def __init__(
        self, role: str, index: int, conf: AbcastConfig, out: IO[str] | None = None
    ) -> None:
        self.conf = conf
        self.id = node_id(role, index)
        self.role = role
        self.cluster = cluster_config(index)
        machine = PrintMachine(out if role == "learners" else None)
        self.machine = machine
        learns = role in ("learners", "proposers")
        self.node = Node(
            self.id, self.cluster, random.Random(), machine if learns else None, DurableState()
        )
        self.endpoint = MulticastEndpoint(self.id, self._on_payloads)
        self._members: dict[Group, frozenset[NodeId]] = defaultdict(frozenset)
        for n in self.cluster.nodes:
            g = conf.group_of(n)
            self._members[g] = self._members[g] | {n}
        self._kick_pending = False

    async def run(self) -> None:
        await self.endpoint.listen(self.conf.groups[self.role])
        ticker = asyncio.get_running_loop().create_task(self._ticker())
        try:
            await _until_terminated()
        finally:
            ticker.cancel()
            self.endpoint.close()
            e = self.endpoint
            log.info(
                "%s %d stops: %d datagrams sent, %d dropped, %d malformed; %d slots decided",
                self.role,
                self.id,
                e.sent,
                e.dropped,
                e.malformed,
                self.node.log.floor,
            )

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += TICK
            await asyncio.sleep(max(0.0, due - loop.time()))
            if loop.time() - due > 1.0:
                due = loop.time()
            self.node.tick()
            self._flush()

    def _on_payloads(self, payloads: list[bytes]) -> None:
        for data in payloads:
            try:
                msg = decode(data)
            except DecodeError:
                self.endpoint.malformed += 1
                continue
            if is_peer_message(msg):
                if msg.src != self.id:
                    self.node.step(msg)
            elif isinstance(msg, Submit) and self.node.proposer is not None:
                self.node.submit(msg.command)
        if not self._kick_pending:
            self._kick_pending = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._kick_pending = False
        ready = self.node.take_ready()
        if ready.is_empty():
            return
        # In memory, "durable" is immediate: after-persist messages may go now, in order.
        outgoing = ready.send + ready.send_lazy + ready.send_after_persist
        local = [m for dst, m in outgoing if dst == self.id]
        self._send([(dst, m) for dst, m in outgoing if dst != self.id])
        for m in local:
            self.node.step(m)
        replies = [encode(r) for r in ready.replies if r.status is not ReplyStatus.NOT_LEADER]
        if replies:
            self.endpoint.send(self.conf.groups["clients"], BROADCAST, replies)
        if local:
            self._flush()

    def _send(self, messages: list[tuple[NodeId, PeerMessage]]) -> None:
        # Which nodes each message goes to, per group: a message for every member of a
        # group goes once, as a broadcast.
        targets: dict[int, tuple[PeerMessage, dict[Group, set[NodeId]]]] = {}
        for dst, msg in messages:
            entry = targets.setdefault(id(msg), (msg, defaultdict(set)))
            entry[1][self.conf.group_of(dst)].add(dst)
        batches: dict[tuple[Group, int], list[bytes]] = defaultdict(list)
        for msg, per_group in targets.values():
            data = encode(msg)
            if isinstance(msg, CatchupRequest):
                # Anyone who knows the decisions may answer: ask the groups, not one node.
                for role in ("learners", "proposers"):
                    batches[(self.conf.groups[role], BROADCAST)].append(data)
                continue
            for group, dsts in per_group.items():
                if dsts >= self._members[group] - {self.id}:
                    batches[(group, BROADCAST)].append(data)
                else:
                    for d in dsts:
                        batches[(group, d)].append(data)
        for (group, dst), payloads in batches.items():
            self.endpoint.send(group, dst, payloads)


class ClientProcess:
    """Reads values from stdin, one per line, and submits each until it is learned.

    Each value is a command with its own sequence number, resent with the same number
    until a learner confirms it, so a value is decided once however often it is resent.
    """

    WINDOW = 512
    RETRY = 0.3

    def __init__(self, index: int, conf: AbcastConfig) -> None:
        self.conf = conf
        self.client = f"{index}-{os.getpid()}"
        self.endpoint = MulticastEndpoint(-(1000 + index), self._on_payloads)
        self._values: asyncio.Queue[str | None] = asyncio.Queue()
        self._outstanding: dict[int, tuple[Command, float]] = {}
        self._seq = 0
        self._eof = False
        self._space = asyncio.Event()
        self._space.set()
        self.acked = 0

    async def run(self) -> None:
        await self.endpoint.listen(self.conf.groups["clients"])
        loop = asyncio.get_running_loop()
        tasks = [
            loop.create_task(self._read_stdin()),
            loop.create_task(self._submit_loop()),
            loop.create_task(self._retry_loop()),
        ]
        try:
            await _until_terminated()
        finally:
            for t in tasks:
                t.cancel()
            self.endpoint.close()

    async def _read_stdin(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                await self._values.put(None)
                return
            value = line.rstrip("\n")
            if value:
                await self._values.put(value)

    async def _submit_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            value = await self._values.get()
            if value is None:
                self._eof = True
                return
            batch = [value]
            while not self._values.empty() and len(batch) < 256:
                v = self._values.get_nowait()
                if v is None:
                    self._eof = True
                    break
                batch.append(v)
            commands = []
            for v in batch:
                while len(self._outstanding) >= self.WINDOW:
                    self._space.clear()
                    await self._space.wait()
                self._seq += 1
                cmd = Command(self.client, self._seq, v.encode("utf-8"))
                self._outstanding[self._seq] = (cmd, loop.time())
                commands.append(cmd)
            self._submit(commands)
            if self._eof:
                return

    def _submit(self, commands: list[Command]) -> None:
        group = self.conf.groups["proposers"]
        self.endpoint.send(group, BROADCAST, [encode(Submit(c)) for c in commands])

    async def _retry_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.RETRY / 2)
            now = loop.time()
            stale = [c for c, sent in self._outstanding.values() if now - sent >= self.RETRY]
            for c in stale:
                self._outstanding[c.seq] = (c, now)
            if stale:
                self._submit(stale)

    def _on_payloads(self, payloads: list[bytes]) -> None:
        for data in payloads:
            try:
                msg = decode(data)
            except DecodeError:
                continue
            if (
                isinstance(msg, ClientReply)
                and msg.client == self.client
                and msg.status is ReplyStatus.OK
                and msg.seq in self._outstanding
            ):
                del self._outstanding[msg.seq]
                self.acked += 1
        if len(self._outstanding) < self.WINDOW:
            self._space.set()


def main(role: str, index: int, conf: AbcastConfig) -> None:
    level = os.environ.get("PAXOI_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(level=getattr(logging, level, logging.WARNING), stream=sys.stderr)
    if role == "clients":
        asyncio.run(ClientProcess(index, conf).run())
    else:
        asyncio.run(RoleProcess(role, index, conf, sys.stdout).run())


__all__ = ["ACCEPTORS", "ClientProcess", "PrintMachine", "RoleProcess", "main"]
