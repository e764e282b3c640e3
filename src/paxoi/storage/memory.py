"""In-memory storage: the `Storage` contract with nothing on disk.

For tests and for the server's in-memory mode, where a process crash loses everything
(the node comes back as a new, empty acceptor, which is only safe for throwaway clusters).
Folding with `DurableState.apply` keeps its meaning identical to the durable engines.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..core.records import DurableState, Record
from .base import NodeIdentity, StorageError


class MemoryStorage:
    """Keeps a `DurableState` in memory; `write` is "durable" for the process's lifetime."""

    def __init__(self, identity: NodeIdentity) -> None:
        self.identity = identity
        self._state = DurableState()
        self._closed = False
        #: Number of write() calls that carried records (what a disk engine would sync).
        self.writes = 0

    def load(self) -> DurableState:
        """A copy, so the caller's changes never leak back into what is "stored"."""
        self._check_open()
        return self._state.copy()

    def write(self, records: Sequence[Record]) -> None:
        self._check_open()
        for record in records:
            self._state.apply(record)
        if records:
            self.writes += 1

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"in-memory storage of {self.identity.describe()} is closed")

    def __repr__(self) -> str:
        return f"MemoryStorage({self.identity.describe()})"
