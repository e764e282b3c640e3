"""The simulated disk: group commit with latency; a crash loses whatever was not synced.

Writes queue up while a sync is in flight and go together in the next one, which is
exactly the batching the real storage does. Messages that had to wait for the disk
are released, in order, when the sync covering their records completes.

Lazy records (`Ready.persist_lazy`) ride along with the next sync; they start one of
their own only once `LAZY_SYNC_AT` of them wait. A crash loses those not yet synced,
so runs exercise learners that come back missing decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.messages import PeerMessage
from ..core.records import DurableState, Record
from ..core.types import NodeId

Outgoing = list[tuple[NodeId, PeerMessage]]

LAZY_SYNC_AT = 8


@dataclass
class SimDisk:
    durable: DurableState = field(default_factory=DurableState)
    _queued: list[tuple[list[Record], Outgoing]] = field(default_factory=list)
    _syncing: list[tuple[list[Record], Outgoing]] | None = None
    _lazy: list[Record] = field(default_factory=list)
    syncs: int = 0

    @property
    def busy(self) -> bool:
        return self._syncing is not None

    def write(
        self, records: list[Record], after: Outgoing, lazy: list[Record] | None = None
    ) -> tuple[bool, Outgoing]:
        """Queue a Ready's records and the messages waiting on them.

        Returns (start_a_sync_now, messages_free_to_go_now). Messages with nothing
        to wait for (no records here or earlier) go at once.
        """
        if lazy:
            self._lazy.extend(lazy)
        if not records and self._syncing is None and not self._queued:
            if len(self._lazy) >= LAZY_SYNC_AT:
                self._start([])
                return True, after
            return False, after
        self._queued.append((records, after))
        if self._syncing is None:
            self._start(self._queued)
            self._queued = []
            return True, []
        return False, []

    def _start(self, batch: list[tuple[list[Record], Outgoing]]) -> None:
        """A sync begins: it covers `batch` and every lazy record written so far."""
        if self._lazy:
            batch = [(self._lazy, []), *batch]
            self._lazy = []
        self._syncing = batch

    def sync_done(self) -> tuple[bool, Outgoing]:
        """The sync in flight finished: fold its records in, release its messages.
        Returns (start_another_sync, released_messages)."""
        assert self._syncing is not None
        released: Outgoing = []
        for records, after in self._syncing:
            for r in records:
                self.durable.apply(r)
            released.extend(after)
        self.syncs += 1
        self._syncing = None
        if self._queued:
            self._start(self._queued)
            self._queued = []
            return True, released
        return False, released

    def crash(self) -> None:
        """Power loss: everything not yet synced is gone."""
        self._queued = []
        self._syncing = None
        self._lazy = []
