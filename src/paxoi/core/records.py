"""What the core asks to be made durable, and the state those records rebuild.

Storage engines (memory, SQLite, the simulator's disk) all store these records and
fold them with `DurableState.apply`, so recovery means the same thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

from .snapshot import Snapshot
from .types import BOTTOM, Ballot, Batch, PValue, Slot


@dataclass(frozen=True, slots=True)
class PromisedRecord:
    """The acceptor promised `ballot`: it must never accept or promise below it again (A1)."""

    ballot: Ballot


@dataclass(frozen=True, slots=True)
class AcceptedRecord:
    """The acceptor accepted `pvalue`; implies a promise of its ballot."""

    pvalue: PValue


@dataclass(frozen=True, slots=True)
class DecidedRecord:
    """The learner learned that `value` is chosen for `slot`."""

    slot: Slot
    value: Batch


@dataclass(frozen=True, slots=True)
class BallotRecord:
    """The proposer is about to use round `round`; a restart must never reuse it (C1)."""

    round: int


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """The learner's state at `snapshot.slot`. Every slot below it is decided and applied
    into it, so decided values below `base` (and a co-located acceptor's accepted values
    below `base`) are no longer needed and are deleted. `base <= snapshot.slot`: the
    slots in between stay, for peers that lag a little (`Limits.log_keep`).

    Persisted durably (`Ready.persist`), never lazily: it is what allows the deletion.
    """

    snapshot: Snapshot
    base: Slot


@dataclass(frozen=True, slots=True)
class SegmentRecord:
    """Segment `index` of the learner's snapshots (a `SegmentedStateMachine`'s), sealed:
    every later snapshot holds these very bytes there, until the state is replaced.

    Persisted lazily (`Ready.persist_lazy`), as the segment seals: the storage keeps it
    ahead of the snapshot that will refer to it, so that the snapshot's own write holds
    only what changed since (its tail), not every segment sealed in the period (with
    1 KiB commands, 100 MB: seconds during which no accept could be made durable). It
    recovers nothing by itself; lost in a crash, it costs the next snapshot that write.
    """

    index: int
    data: bytes


Record: TypeAlias = (
    PromisedRecord | AcceptedRecord | DecidedRecord | BallotRecord | SnapshotRecord | SegmentRecord
)


@dataclass
class DurableState:
    """Everything a node recovers after a crash."""

    promised: Ballot = BOTTOM
    accepted: dict[Slot, PValue] = field(default_factory=dict)
    decided: dict[Slot, Batch] = field(default_factory=dict)
    round_used: int = -1
    #: The newest snapshot, if any.
    snapshot: Snapshot | None = None
    #: Decided and accepted entries below this slot are gone (the snapshot covers them).
    base: Slot = 0

    def apply(self, record: Record) -> None:
        """Fold one record in. Idempotent, and order-insensitive where it can be."""
        if isinstance(record, PromisedRecord):
            if record.ballot > self.promised:
                self.promised = record.ballot
        elif isinstance(record, AcceptedRecord):
            pv = record.pvalue
            old = self.accepted.get(pv.slot)
            if pv.slot >= self.base and (old is None or pv.ballot >= old.ballot):
                self.accepted[pv.slot] = pv
            if pv.ballot > self.promised:
                self.promised = pv.ballot
        elif isinstance(record, DecidedRecord):
            if record.slot >= self.base:
                self.decided[record.slot] = record.value
        elif isinstance(record, BallotRecord):
            if record.round > self.round_used:
                self.round_used = record.round
        elif isinstance(record, SnapshotRecord):
            snap = record.snapshot
            if self.snapshot is None or snap.slot > self.snapshot.slot:
                self.snapshot = snap
            if record.base > self.base:
                self.base = record.base
                for slot in [s for s in self.decided if s < self.base]:
                    del self.decided[slot]
                for slot in [s for s in self.accepted if s < self.base]:
                    del self.accepted[slot]
        elif isinstance(record, SegmentRecord):
            pass  # storage's business: a snapshot refers to it once there is one
        else:  # pragma: no cover - exhaustiveness guard
            raise TypeError(f"not a record: {record!r}")

    def copy(self) -> DurableState:
        return DurableState(
            self.promised,
            dict(self.accepted),
            dict(self.decided),
            self.round_used,
            self.snapshot,
            self.base,
        )
