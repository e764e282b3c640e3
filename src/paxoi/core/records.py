"""What the core asks to be made durable, and the state those records rebuild.

Storage engines (memory, SQLite, the simulator's disk) all store these records and
fold them with `DurableState.apply`, so recovery means the same thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

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


Record: TypeAlias = PromisedRecord | AcceptedRecord | DecidedRecord | BallotRecord


@dataclass
class DurableState:
    """Everything a node recovers after a crash."""

    promised: Ballot = BOTTOM
    accepted: dict[Slot, PValue] = field(default_factory=dict)
    decided: dict[Slot, Batch] = field(default_factory=dict)
    round_used: int = -1

    def apply(self, record: Record) -> None:
        """Fold one record in. Idempotent, and order-insensitive where it can be."""
        if isinstance(record, PromisedRecord):
            if record.ballot > self.promised:
                self.promised = record.ballot
        elif isinstance(record, AcceptedRecord):
            pv = record.pvalue
            old = self.accepted.get(pv.slot)
            if old is None or pv.ballot >= old.ballot:
                self.accepted[pv.slot] = pv
            if pv.ballot > self.promised:
                self.promised = pv.ballot
        elif isinstance(record, DecidedRecord):
            self.decided[record.slot] = record.value
        elif isinstance(record, BallotRecord):
            if record.round > self.round_used:
                self.round_used = record.round
        else:  # pragma: no cover - exhaustiveness guard
            raise TypeError(f"not a record: {record!r}")

    def copy(self) -> DurableState:
        return DurableState(self.promised, dict(self.accepted), dict(self.decided), self.round_used)
