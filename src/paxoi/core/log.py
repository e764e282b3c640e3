"""The decisions a node knows: slot -> chosen batch, with the contiguous prefix tracked.

One log per node, shared by its proposer (to know where phase 1 must start and to
serve catch-up) and its replica (to apply in order), so a decision is stored once.

Compaction: once a snapshot covers them, values below `base` are dropped (`compact`),
or skipped without ever being held (`install`, after a snapshot transfer). Slots below
`base` still count as decided (`slot in log` is true), but their values are gone:
`get` returns None and catch-up from below `base` needs a snapshot.
"""

from __future__ import annotations

from .errors import InvariantViolation
from .types import Batch, Slot

#: Compacted values freed per new decision. A compaction drops at most the slots decided
#: since the one before, so the graveyard is empty a quarter of the way to the next: it
#: never holds more than one snapshot period's values.
_FREE_PER_ADD = 4


class DecisionLog:
    def __init__(
        self, decided: dict[Slot, Batch] | None = None, base: Slot = 0, known: Slot = 0
    ) -> None:
        """`decided` values; with a snapshot, `base` is where the stored log starts and
        `known` the snapshot's slot (every slot below it is decided)."""
        values = decided or {}
        #: Every slot below `floor` is decided.
        self.floor: Slot = max(base, known)
        # Values of [base, floor) must all be held: a decision lost in a crash (they are
        # persisted lazily) moves the start of what we hold up past it.
        start = self.floor
        while start > base and start - 1 in values:
            start -= 1
        #: Values below `base` are not held (compacted away, or covered by a snapshot).
        #: Every slot in [base, floor) is held.
        self.base: Slot = start
        self._values: dict[Slot, Batch] = {s: v for s, v in values.items() if s >= start}
        #: Values compacted away and not yet freed (see `compact`).
        self._graveyard: list[Batch] = []
        #: One above the highest decided slot known here (0 if none).
        self.top: Slot = max(max(self._values, default=-1) + 1, self.floor)
        self._advance()

    def _advance(self) -> None:
        while self.floor in self._values:
            self.floor += 1

    def __contains__(self, slot: Slot) -> bool:
        """Whether `slot` is known to be decided (its value may be compacted away)."""
        return slot < self.base or slot in self._values

    def __len__(self) -> int:
        """How many values are held (not how many slots are decided)."""
        return len(self._values)

    def get(self, slot: Slot) -> Batch | None:
        return self._values.get(slot)

    def add(self, slot: Slot, value: Batch) -> bool:
        """Record a decision; True if it is new. A different value for a known slot breaks R1.

        Below `base` the slot is decided and its value gone: nothing to record or compare."""
        if slot < self.base:
            return False
        old = self._values.get(slot)
        if old is not None:
            if old != value:
                raise InvariantViolation(
                    f"R1: slot {slot} decided twice with different values: {old!r} and {value!r}"
                )
            return False
        self._values[slot] = value
        if self._graveyard:
            del self._graveyard[-_FREE_PER_ADD:]
        if slot >= self.top:
            self.top = slot + 1
        if slot == self.floor:
            self._advance()
        return True

    def compact(self, below: Slot) -> None:
        """Drop the values of slots below `below` (at most `floor`): a durable snapshot
        covers them. They stay decided."""
        below = min(below, self.floor)
        if below <= self.base:
            return
        # Freed a few at a time by later decisions (`add`), not all here: a snapshot's
        # compaction drops 100,000 commands, and freeing them at once stalled the event
        # loop 10-30 ms (with the heap keeper's collection, p99 latency rose by half).
        values = self._values
        graveyard = self._graveyard
        for slot in range(self.base, below):
            value = values.pop(slot, None)
            if value is not None:
                graveyard.append(value)
        self.base = below

    def install(self, slot: Slot) -> bool:
        """Every slot below `slot` is decided and covered by a snapshot installed here:
        move the log past them without their values. False if it already was."""
        if slot <= self.floor:
            return False
        values = self._values
        for s in [s for s in values if s < slot]:
            del values[s]
        self.base = self.floor = slot
        if slot > self.top:
            self.top = slot
        self._advance()
        return True

    def span(
        self, start: Slot, stop: Slot, limit: int, budget: int | None = None
    ) -> tuple[tuple[Slot, Batch], ...]:
        """Known decisions in [start, stop), in slot order: at most `limit` slots and, if
        `budget` is given, at most that many commands in all (but always the first)."""
        out: list[tuple[Slot, Batch]] = []
        commands = 0
        for slot in range(max(start, self.base), stop):
            value = self._values.get(slot)
            if value is not None:
                commands += len(value)
                if out and budget is not None and commands > budget:
                    break
                out.append((slot, value))
                if len(out) >= limit:
                    break
        return tuple(out)
