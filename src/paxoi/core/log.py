"""The decisions a node knows: slot -> chosen batch, with the contiguous prefix tracked.

One log per node, shared by its proposer (to know where phase 1 must start and to
serve catch-up) and its replica (to apply in order), so a decision is stored once.
"""

from __future__ import annotations

from .errors import InvariantViolation
from .types import Batch, Slot


class DecisionLog:
    def __init__(self, decided: dict[Slot, Batch] | None = None) -> None:
        self._values: dict[Slot, Batch] = dict(decided or {})
        #: Every slot below `floor` is decided (and known here).
        self.floor: Slot = 0
        #: One above the highest decided slot known here (0 if none).
        self.top: Slot = max(self._values, default=-1) + 1
        self._advance()

    def _advance(self) -> None:
        while self.floor in self._values:
            self.floor += 1

    def __contains__(self, slot: Slot) -> bool:
        return slot in self._values

    def __len__(self) -> int:
        return len(self._values)

    def get(self, slot: Slot) -> Batch | None:
        return self._values.get(slot)

    def add(self, slot: Slot, value: Batch) -> bool:
        """Record a decision; True if it is new. A different value for a known slot breaks R1."""
        old = self._values.get(slot)
        if old is not None:
            if old != value:
                raise InvariantViolation(
                    f"R1: slot {slot} decided twice with different values: {old!r} and {value!r}"
                )
            return False
        self._values[slot] = value
        if slot >= self.top:
            self.top = slot + 1
        if slot == self.floor:
            self._advance()
        return True

    def span(
        self, start: Slot, stop: Slot, limit: int, budget: int | None = None
    ) -> tuple[tuple[Slot, Batch], ...]:
        """Known decisions in [start, stop), in slot order: at most `limit` slots and, if
        `budget` is given, at most that many commands in all (but always the first)."""
        out: list[tuple[Slot, Batch]] = []
        commands = 0
        for slot in range(max(start, 0), stop):
            value = self._values.get(slot)
            if value is not None:
                commands += len(value)
                if out and budget is not None and commands > budget:
                    break
                out.append((slot, value))
                if len(out) >= limit:
                    break
        return tuple(out)
