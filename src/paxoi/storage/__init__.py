"""paxoi.storage: a node's durable state (SQLite or memory) and the group committer.

`SqliteStorage.open(data_dir, identity)` is the real engine, `MemoryStorage(identity)` the
in-memory one; both fold records as `paxoi.core.records.DurableState.apply` does.
`GroupCommitter` keeps fsyncs off the event loop and batches them. See docs/storage.md.
"""

from .base import (
    CorruptData,
    DataDirLocked,
    DataDirUnusable,
    IdentityMismatch,
    NodeIdentity,
    Storage,
    StorageError,
)
from .group_commit import CommitStats, GroupCommitter, Notify
from .memory import MemoryStorage
from .segment_files import SEGMENTS_DIR
from .sqlite import DB_FILE, LOCK_FILE, SCHEMA_VERSION, SqliteStorage

__all__ = [
    "DB_FILE",
    "LOCK_FILE",
    "SCHEMA_VERSION",
    "SEGMENTS_DIR",
    "CommitStats",
    "CorruptData",
    "DataDirLocked",
    "DataDirUnusable",
    "GroupCommitter",
    "IdentityMismatch",
    "MemoryStorage",
    "NodeIdentity",
    "Notify",
    "SqliteStorage",
    "Storage",
    "StorageError",
]
