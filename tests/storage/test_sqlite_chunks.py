"""SqliteStorage keeps the snapshot image in chunks and rewrites only those that change."""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from paxoi.core.records import SnapshotRecord
from paxoi.core.snapshot import Snapshot, encode_snapshot
from paxoi.storage import (
    DB_FILE,
    SCHEMA_VERSION,
    CorruptData,
    NodeIdentity,
    SqliteStorage,
    StorageError,
)

CHUNK = 64
#: Random, so that no two chunks of an image are alike by accident.
PREFIX = os.urandom(1000)


def snap(slot: int, state: bytes, base: int = 0) -> SnapshotRecord:
    return SnapshotRecord(Snapshot(slot, state, (("c", slot, ((slot, b"r"),)),)), base)


def changed_chunks(old: SnapshotRecord, new: SnapshotRecord) -> int:
    """How many of `new`'s chunks differ from `old`'s at the same index."""
    a, b = encode_snapshot(old.snapshot), encode_snapshot(new.snapshot)
    return sum(a[i : i + CHUNK] != b[i : i + CHUNK] for i in range(0, len(b), CHUNK))


def chunk_rows(data_dir: Path) -> list[int]:
    conn = sqlite3.connect(data_dir / DB_FILE)
    try:
        return [r[0] for r in conn.execute("SELECT idx FROM snapshot_chunk ORDER BY idx")]
    finally:
        conn.close()


def execute(data_dir: Path, *sql: str) -> None:
    conn = sqlite3.connect(data_dir / DB_FILE)
    with conn:
        for statement in sql:
            conn.execute(statement)
    conn.close()


def test_a_snapshot_sharing_a_prefix_writes_only_the_changed_chunks(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    first, second = snap(10, PREFIX), snap(20, PREFIX + b"appended" * 8)
    expected = changed_chunks(first, second)
    # The header (slot, state length) and the tail: 4 of 18 chunks.
    assert expected == 4 and len(encode_snapshot(second.snapshot)) > 17 * CHUNK
    with SqliteStorage.open(tmp_path, identity, chunk_size=CHUNK) as s:
        assert s._conn is not None
        s.write([first])
        assert s.chunks_written == len(chunk_rows(tmp_path)) == 17
        changes = s._conn.total_changes
        s.write([second])
        assert s.chunks_written == 17 + expected
        # SQLite agrees: the snapshot row and the changed chunks, nothing else.
        assert s._conn.total_changes - changes == 1 + expected
        assert s.load().snapshot == second.snapshot
    assert chunk_rows(tmp_path) == list(range(18))


def test_a_shrinking_image_deletes_the_trailing_chunks(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    with SqliteStorage.open(tmp_path, identity, chunk_size=CHUNK) as s:
        s.write([snap(10, PREFIX)])
        s.write([snap(20, PREFIX[:300])])
    size = len(encode_snapshot(snap(20, PREFIX[:300]).snapshot))
    assert chunk_rows(tmp_path) == list(range(-(-size // CHUNK)))
    with SqliteStorage.open(tmp_path, identity, chunk_size=CHUNK) as s:
        assert s.load().snapshot == snap(20, PREFIX[:300]).snapshot


def test_an_older_snapshot_writes_no_chunk(tmp_path: Path, identity: NodeIdentity) -> None:
    with SqliteStorage.open(tmp_path, identity, chunk_size=CHUNK) as s:
        s.write([snap(20, PREFIX)])
        written = s.chunks_written
        s.write([snap(10, b"older")])
        assert s.chunks_written == written
        assert s.load().snapshot == snap(20, PREFIX).snapshot


def test_a_restart_loads_the_same_snapshot_and_rebuilds_the_digests(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    first, second = snap(10, PREFIX, 4), snap(20, PREFIX + b"more", 12)
    with SqliteStorage.open(tmp_path, identity, chunk_size=CHUNK) as s:
        s.write([first])
    with SqliteStorage.open(tmp_path, identity, chunk_size=CHUNK) as s:
        state = s.load()
        assert (state.snapshot, state.base) == (first.snapshot, 4)
        s.write([second])
        assert s.chunks_written == changed_chunks(first, second) < 17
    with SqliteStorage.open(tmp_path, identity) as s:  # another chunk size reads it too
        state = s.load()
        assert (state.snapshot, state.base) == (second.snapshot, 12)


def test_without_digests_every_chunk_is_written(tmp_path: Path, identity: NodeIdentity) -> None:
    """Before load(), or after a failed write, nothing is known of the stored chunks."""
    with SqliteStorage.open(tmp_path, identity, chunk_size=CHUNK) as s:
        s.write([snap(10, PREFIX)])
    with SqliteStorage.open(tmp_path, identity, chunk_size=CHUNK) as s:
        assert s._conn is not None
        s.write([snap(20, PREFIX)])  # no load() first
        assert s.chunks_written == 17
        s._conn.set_authorizer(
            lambda action, table, *_: (
                sqlite3.SQLITE_DENY
                if action == sqlite3.SQLITE_DELETE and table == "snapshot_chunk"
                else sqlite3.SQLITE_OK
            )
        )
        with pytest.raises(StorageError, match="not authorized"):
            s.write([snap(30, PREFIX)])
        s._conn.set_authorizer(None)
        s.write([snap(40, PREFIX)])
        assert s.chunks_written == 17 + 17
        assert s.load().snapshot == snap(40, PREFIX).snapshot


def test_a_chunk_damaged_on_disk_is_reported_and_then_rewritten(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    """The digests are of what is on disk, not of what was written: a new image that
    equals the old one where the disk is damaged still rewrites that chunk."""
    with SqliteStorage.open(tmp_path, identity, chunk_size=CHUNK) as s:
        s.write([snap(10, PREFIX)])
    execute(tmp_path, "UPDATE snapshot_chunk SET data = zeroblob(length(data)) WHERE idx = 5")
    with SqliteStorage.open(tmp_path, identity, chunk_size=CHUNK) as s:
        with pytest.raises(CorruptData, match="checksum"):
            s.load()
        s.write([snap(20, PREFIX)])  # header and tail change, and chunk 5 is repaired
        assert s.chunks_written == changed_chunks(snap(10, PREFIX), snap(20, PREFIX)) + 1
        assert s.load().snapshot == snap(20, PREFIX).snapshot


@pytest.mark.parametrize(
    "sql,detail",
    [
        ("DELETE FROM snapshot_chunk WHERE idx = 3", "chunk 3 of 17 is missing"),
        ("DELETE FROM snapshot_chunk WHERE idx = 16", "chunk 16 of 17 is missing"),
        ("UPDATE snapshot_chunk SET data = x'00' WHERE idx = 3", "chunk 3 is 1 bytes long, not 64"),
        ("UPDATE snapshot SET size = size + 64", "chunk 17 of 18 is missing"),
        ("UPDATE snapshot SET chunk_size = 32", "chunk 17 of 34 is missing"),
    ],
)
def test_a_missing_or_wrong_chunk_is_a_clear_error(
    tmp_path: Path, identity: NodeIdentity, sql: str, detail: str
) -> None:
    with SqliteStorage.open(tmp_path, identity, chunk_size=CHUNK) as s:
        s.write([snap(10, PREFIX)])
    execute(tmp_path, sql)
    with SqliteStorage.open(tmp_path, identity) as s, pytest.raises(CorruptData) as info:
        s.load()
    assert detail in str(info.value) and str(tmp_path / DB_FILE) in str(info.value)


@pytest.mark.parametrize("with_snapshot", [True, False])
def test_version_2_database_is_upgraded_in_place(
    tmp_path: Path, identity: NodeIdentity, with_snapshot: bool
) -> None:
    """A version 2 database (the whole image in one row of table snapshot) is cut into
    chunks when opened, and loads the same snapshot."""
    with SqliteStorage.open(tmp_path, identity):
        pass
    image = encode_snapshot(snap(10, PREFIX).snapshot)
    execute(
        tmp_path,
        "DROP TABLE snapshot",
        "DROP TABLE snapshot_chunk",
        """CREATE TABLE snapshot (
            id INTEGER PRIMARY KEY CHECK (id = 0),
            slot INTEGER NOT NULL,
            base INTEGER NOT NULL,
            image BLOB NOT NULL)""",
        "UPDATE meta SET schema_version = 2",
        *([f"INSERT INTO snapshot VALUES (0, 10, 4, x'{image.hex()}')"] if with_snapshot else []),
    )
    with SqliteStorage.open(tmp_path, identity, chunk_size=CHUNK) as s:
        state = s.load()
        if not with_snapshot:
            assert state.snapshot is None and chunk_rows(tmp_path) == []
            return
        assert (state.snapshot, state.base) == (snap(10, PREFIX).snapshot, 4)
        assert chunk_rows(tmp_path) == list(range(17))
        s.write([snap(20, PREFIX + b"more")])  # the upgraded chunks are known by digest
        assert s.chunks_written == changed_chunks(snap(10, PREFIX), snap(20, PREFIX + b"more"))
    conn = sqlite3.connect(tmp_path / DB_FILE)
    assert conn.execute("SELECT schema_version FROM meta").fetchone()[0] == SCHEMA_VERSION == 3
    conn.close()


_WRITER = """
import os, sys
from paxoi.core.records import SnapshotRecord
from paxoi.core.snapshot import Snapshot
from paxoi.storage import NodeIdentity, SqliteStorage

def image(slot):
    return SnapshotRecord(Snapshot(slot, os.urandom(64) * 200 * (1 + slot % 3)), 0)

s = SqliteStorage.open(sys.argv[1], NodeIdentity("test-cluster", 1, b"config-v1"),
                       fsync=False, chunk_size=512)
for slot in range(1, 10**9):
    s.write([image(slot)])
    print(slot, flush=True)
"""


def test_a_crash_leaves_the_old_or_the_new_snapshot_complete(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    """SIGKILL a process that writes growing and shrinking snapshots (each in one
    transaction, changing every chunk): the directory holds one complete snapshot, at
    least as new as the last one the writer reported committed."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_WRITER), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    try:
        for _ in range(20):
            assert select.select([child.stdout], [], [], 15.0)[0], "the writer is stuck"
            last = int(child.stdout.readline())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    with SqliteStorage.open(tmp_path, identity) as s:
        snapshot = s.load().snapshot
    assert snapshot is not None and snapshot.slot >= last
    assert len(snapshot.state) == 64 * 200 * (1 + snapshot.slot % 3)
