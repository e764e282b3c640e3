"""Simulated clients: they find the leader, retry with the same (client, seq), pipeline.

A client is the part of exactly-once that lives outside the servers: it keeps
resending a command, always with the same sequence number, until some replica
answers it. The servers' client table turns those retries into one application.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..core.messages import ClientReply, ReplyStatus
from ..core.types import Command, NodeId, Seq


@dataclass
class SimClient:
    name: str
    total: int
    #: Commands in flight at once: 1 is the "send the next when answered" mode.
    window: int
    servers: tuple[NodeId, ...]
    rng: random.Random
    retry_after: int = 150  # ms without an answer before resending
    next_seq: Seq = 1
    target: NodeId = 0
    #: When the current target last answered anything: silence means it is down.
    last_heard: int = 0
    #: seq -> when to resend it if still unanswered
    outstanding: dict[Seq, int] = field(default_factory=dict)
    acked: dict[Seq, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.target = self.rng.choice(self.servers)

    @property
    def done(self) -> bool:
        return len(self.acked) == self.total

    def command(self, seq: Seq) -> Command:
        return Command(self.name, seq, f"{self.name}:{seq}".encode())

    def due(self, now: int) -> list[tuple[NodeId, Command]]:
        """What to send now: new commands up to the window, and resends."""
        out: list[tuple[NodeId, Command]] = []
        stale = [seq for seq, when in self.outstanding.items() if now >= when]
        if stale and now - self.last_heard >= self.retry_after and len(self.servers) > 1:
            # The target went silent: suspect it and try another server.
            self.target = self.rng.choice([s for s in self.servers if s != self.target])
            self.last_heard = now
        for seq in stale:
            self.outstanding[seq] = now + self.retry_after
            out.append((self.target, self.command(seq)))
        while len(self.outstanding) < self.window and self.next_seq <= self.total:
            seq = self.next_seq
            self.next_seq += 1
            self.outstanding[seq] = now + self.retry_after
            out.append((self.target, self.command(seq)))
        return out

    def on_reply(self, src: NodeId, reply: ClientReply, now: int) -> None:
        if src == self.target:
            self.last_heard = now
        if reply.seq not in self.outstanding:
            return
        if reply.status is ReplyStatus.OK:
            del self.outstanding[reply.seq]
            self.acked[reply.seq] = reply.result
            return
        if src != self.target:
            return  # a stale refusal from a server we no longer talk to
        if reply.status is ReplyStatus.BUSY:
            self.outstanding[reply.seq] = now + self.retry_after // 2
            return
        # NOT_LEADER: follow the hint (or try another server) with everything outstanding.
        hint = reply.leader
        others = [s for s in self.servers if s != src] or [src]
        self.target = hint if hint is not None and hint != src else self.rng.choice(others)
        self.last_heard = now
        for seq in self.outstanding:
            self.outstanding[seq] = now
