"""The storage interface every engine implements, the node identity it guards, its errors.

The core only ever asks for two things: make these records durable (`write`), and give
back what was made durable before a crash (`load`). Keeping the interface that small is
what lets the memory engine, SQLite and the simulator's disk be swapped freely, and
`DurableState.apply` defines what the records mean so recovery is the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..core.errors import ConfigError, PaxoiError
from ..core.records import DurableState, Record


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """Who a data directory belongs to.

    Stored when the directory is created and checked on every open, so a server pointed at
    another node's (or another cluster's) data fails loudly instead of impersonating it:
    an acceptor that adopts someone else's promises, or forgets its own, breaks safety.
    `config` is the cluster configuration the node was created with, as opaque bytes (the
    server decides the encoding; it must be deterministic for the comparison to mean
    anything).
    """

    cluster_id: str
    node_id: int
    config: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.cluster_id, str) or not self.cluster_id:
            raise ConfigError(f"cluster_id must be a non-empty string, not {self.cluster_id!r}")
        if type(self.node_id) is not int or self.node_id < 0:
            raise ConfigError(f"node_id must be an integer >= 0, not {self.node_id!r}")
        if not isinstance(self.config, bytes):
            raise ConfigError(f"config must be bytes, not {type(self.config).__name__}")

    def describe(self) -> str:
        """`cluster 'a' node 2`: how error messages name an identity."""
        return f"cluster {self.cluster_id!r} node {self.node_id}"


@runtime_checkable
class Storage(Protocol):
    """Durable storage of one node's records.

    Not thread-safe by contract: one thread at a time (the GroupCommitter's thread once it
    runs). Implementations may add a lock, but callers must not rely on concurrency.
    """

    identity: NodeIdentity

    def load(self) -> DurableState:
        """Everything written so far, folded as `DurableState.apply` folds it."""
        ...

    def write(self, records: Sequence[Record]) -> None:
        """Make `records` durable, all or none, in one transaction and one sync.

        When this returns the records survive a crash (unless the engine was opened
        without fsync). Writing many records at once is how group commit amortises the
        sync. Raises StorageError if they could not be made durable; the caller must then
        stop, since it cannot know what the disk holds.
        """
        ...

    def close(self) -> None:
        """Release the engine's resources (file handles, the data directory lock)."""
        ...


class StorageError(PaxoiError):
    """Base of storage failures. Every message names the path, the problem and a remedy."""


class DataDirLocked(StorageError):
    """Another process holds the data directory: two servers must never share one."""


class IdentityMismatch(StorageError):
    """The data directory belongs to another cluster or node (or another configuration)."""


class CorruptData(StorageError):
    """The database is damaged (truncated, overwritten, or holds rows that do not decode)."""


class DataDirUnusable(StorageError):
    """The data directory cannot be used: not a directory, no permission, missing, foreign."""
