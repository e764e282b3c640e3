"""Cluster membership, timing in ticks, and the limits on every queue and message.

All durations are in ticks: the core never reads a clock. The runtime decides how
long a tick is (see `Timing` for the defaults it assumes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property

from .errors import ConfigError
from .types import ALL_ROLES, NodeId, Role


class ElectionPolicy(str, Enum):
    #: View succession: round r is led by proposers[r % n]; leaders go 0, 1, 2, ... (UMich, CS 380D).
    RANK = "rank"
    #: Any proposer campaigns after a randomized timeout (Raft-like); backs off when preempted.
    RANDOM = "random"


@dataclass(frozen=True)
class Timing:
    """Protocol timers, in ticks. With the runtime's 10 ms tick: heartbeats every 50 ms,
    a leader is suspected after 300 ms of silence."""

    heartbeat: int = 5
    election: int = 30
    #: Resend unanswered prepares/accepts after this long (message loss costs time, not values).
    retransmit: int = 10
    #: A learner with a gap asks peers for the missing decisions after this long.
    catchup: int = 10
    #: Leader leases for local linearizable reads; 0 = off. An acceptor that acknowledged a
    #: leader's heartbeat promises no other proposer for this long; the leader counts on it
    #: for `lease_ticks_held` ticks from when it sent the heartbeat.
    lease: int = 0
    #: The clock assumption behind leases: no two servers' tick rates differ by more
    #: than this (percent). The leader shortens its lease by this much.
    lease_drift_percent: int = 10

    def validate(self) -> None:
        for name in ("heartbeat", "election", "retransmit", "catchup"):
            if getattr(self, name) < 1:
                raise ConfigError(f"timing.{name}: must be at least 1 tick")
        if self.election <= self.heartbeat:
            raise ConfigError("timing.election: must be longer than timing.heartbeat")
        if not 0 <= self.lease_drift_percent < 100:
            raise ConfigError("timing.lease_drift_percent: must be in [0, 100)")
        if self.lease and self.lease_ticks_held < 1:
            raise ConfigError(
                "timing.lease: too short to be of use after the drift margin "
                f"(at least {_min_lease(self.lease_drift_percent)} ticks)"
            )
        if self.lease and self.lease_ticks_held <= self.heartbeat:
            raise ConfigError(
                "timing.lease: must outlast timing.heartbeat after the drift margin, "
                "else the leader's lease lapses between heartbeats"
            )

    @property
    def lease_ticks_held(self) -> int:
        """How long after *sending* a heartbeat the leader may rely on its quorum's grants.

        Two ticks less than the drifted lease: tick boundaries cost up to one tick at
        each end (the leader's send stamp, the acceptor's grant stamp)."""
        if not self.lease:
            return 0
        return self.lease * (100 - self.lease_drift_percent) // 100 - 2


def _min_lease(drift_percent: int) -> int:
    n = 1
    while n * (100 - drift_percent) // 100 - 2 < 1:
        n += 1
    return n


@dataclass(frozen=True)
class Limits:
    """Explicit bounds (TigerBeetle-style): nothing in the core grows without one."""

    #: Slots in phase 2 at once (the pipeline window, the paper's WINDOW).
    window: int = 64
    #: Client commands batched into one slot value.
    max_batch: int = 512
    #: Commands queued at the leader before it answers BUSY.
    max_pending: int = 20_000
    #: Decisions (slots) in one catch-up reply.
    max_catchup: int = 256
    #: Commands in one catch-up reply, all slots together: keeps replies small when slots
    #: are full (a datagram transport needs that), while empty ones travel many at once.
    catchup_commands: int = 65_536
    #: Results a replica remembers per client, for answering retries of pipelined commands.
    client_results: int = 256
    #: A replica snapshots its state every this many applied slots, after which the log
    #: (and a co-located acceptor's accepted values) below the snapshot can be dropped;
    #: 0 turns snapshots and compaction off (the log then grows for ever).
    snapshot_every: int = 10_000
    #: ... or every this many applied commands, whichever comes first: under load a slot
    #: holds hundreds of commands, and memory grows with commands, not slots.
    snapshot_commands: int = 100_000
    #: Decided slots kept below a snapshot, so that a peer lagging by fewer slots than this
    #: catches up from the log rather than by a snapshot transfer.
    log_keep: int = 1_000
    #: ... but no more slots than hold this many commands: under load a slot holds
    #: hundreds, and every kept command is memory and work for the garbage collector.
    log_keep_commands: int = 20_000
    #: Bytes of a snapshot in one transfer message (`SnapshotChunk`); must fit in a frame.
    snapshot_chunk: int = 1024 * 1024
    #: The largest snapshot a replica accepts from a peer (its reassembly buffer's bound).
    max_snapshot: int = 512 * 1024 * 1024

    def validate(self) -> None:
        for name in (
            "window",
            "max_batch",
            "max_pending",
            "max_catchup",
            "catchup_commands",
            "client_results",
            "snapshot_commands",
            "snapshot_chunk",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"limits.{name}: must be at least 1")
        for name in ("snapshot_every", "log_keep", "log_keep_commands"):
            if getattr(self, name) < 0:
                raise ConfigError(f"limits.{name}: must be at least 0")
        if self.max_snapshot < self.snapshot_chunk:
            raise ConfigError("limits.max_snapshot: must be at least limits.snapshot_chunk")


@dataclass(frozen=True)
class ClusterConfig:
    """Who plays which role. Quorums are majorities of *all configured* acceptors, so a
    cluster with fewer acceptors running than configured makes no progress rather than
    deciding with a smaller quorum."""

    roles: Mapping[NodeId, frozenset[Role]]
    timing: Timing = field(default_factory=Timing)
    limits: Limits = field(default_factory=Limits)
    policy: ElectionPolicy = ElectionPolicy.RANK

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def colocated(cls, n: int, **kw: object) -> ClusterConfig:
        """n servers, each proposer, acceptor and learner: the default deployment."""
        return cls(roles={i: ALL_ROLES for i in range(n)}, **kw)  # type: ignore[arg-type]

    @classmethod
    def separate(cls, proposers: int, acceptors: int, learners: int, **kw: object) -> ClusterConfig:
        """Each role on its own nodes, numbered proposers first, then acceptors, then learners."""
        roles: dict[NodeId, frozenset[Role]] = {}
        for count, role in (
            (proposers, Role.PROPOSER),
            (acceptors, Role.ACCEPTOR),
            (learners, Role.LEARNER),
        ):
            for _ in range(count):
                roles[len(roles)] = frozenset({role})
        return cls(roles=roles, **kw)  # type: ignore[arg-type]

    def validate(self) -> None:
        if not self.roles:
            raise ConfigError("roles: a cluster needs at least one node")
        for node, roles in self.roles.items():
            if not isinstance(node, int) or node < 0:
                raise ConfigError(f"roles: node id {node!r} must be a non-negative integer")
            if not roles:
                raise ConfigError(f"roles[{node}]: a node must play at least one role")
        for role in Role:
            if not self.with_role(role):
                raise ConfigError(f"roles: no node plays {role.value}")
        self.timing.validate()
        self.limits.validate()

    def with_role(self, role: Role) -> tuple[NodeId, ...]:
        return tuple(sorted(n for n, r in self.roles.items() if role in r))

    @cached_property
    def nodes(self) -> tuple[NodeId, ...]:
        return tuple(sorted(self.roles))

    @cached_property
    def proposers(self) -> tuple[NodeId, ...]:
        return self.with_role(Role.PROPOSER)

    @cached_property
    def acceptors(self) -> tuple[NodeId, ...]:
        return self.with_role(Role.ACCEPTOR)

    @cached_property
    def learners(self) -> tuple[NodeId, ...]:
        return self.with_role(Role.LEARNER)

    @cached_property
    def quorum(self) -> int:
        """A majority of acceptors: any two quorums share an acceptor."""
        return len(self.acceptors) // 2 + 1

    @property
    def f(self) -> int:
        """How many acceptor failures the cluster tolerates."""
        return (len(self.acceptors) - 1) // 2
