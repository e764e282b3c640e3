"""The interface a replicated application implements.

The replica calls `apply` for each decided command, strictly in slot order and at most
once per (client, seq); every replica must compute the same result from the same
sequence, so implementations must be deterministic (no clocks, no randomness, no I/O
whose outcome differs between replicas).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .types import Command, Slot


@runtime_checkable
class StateMachine(Protocol):
    def apply(self, slot: Slot, command: Command) -> bytes:
        """Apply one command decided at `slot` and return its result for the client."""
        ...

    def snapshot(self) -> bytes:
        """The whole state, serialized; restore(snapshot()) must give an equal machine.

        Called every `Limits.snapshot_every` applied slots (or `snapshot_commands`
        commands), and when a lagging peer needs the state; it must not change it."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the state with one produced by snapshot() (on this replica or another).

        Raise ValueError for data that is not such a snapshot, and then leave the state
        as it was: the replica goes on catching up another way."""
        ...


@runtime_checkable
class SegmentedStateMachine(StateMachine, Protocol):
    """Optional: a machine whose state is mostly an unchanging prefix (a log, a chat).

    Its snapshot comes in segments; paxoi checksums, stores and writes each segment
    object once, and a later snapshot that returns the same objects (or equal bytes)
    costs only its new segments, not the whole state again. A segment that will never
    change again is *sealed*; the replica hands each one to storage as it seals, so a
    snapshot's write holds only the segments after the last sealed one."""

    def snapshot_segments(self) -> Sequence[bytes]:
        """`snapshot()` as pieces whose concatenation it is; old pieces as the same
        objects each time. Called instead of snapshot() by the replica."""
        ...

    def sealed_segments(self, start: int) -> Sequence[bytes]:
        """The sealed segments from index `start` on: those of `snapshot_segments()`
        that every later snapshot will return unchanged (the same objects), until the
        next `restore`. Called after every applied batch, so it must be cheap (usually
        nothing new)."""
        ...


@runtime_checkable
class Queryable(Protocol):
    """Optional: a machine that can answer read-only queries (lease and stale reads)
    without going through the log. `query` must not change the state."""

    def query(self, query: bytes) -> bytes: ...
