"""SqliteStorage keeps a snapshot as its frame and its segments' pieces, and writes only
the segments it does not hold already."""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest
from storage_helpers import execute

from paxoi.core.records import SnapshotRecord
from paxoi.core.snapshot import Snapshot
from paxoi.storage import (
    DB_FILE,
    SCHEMA_VERSION,
    CorruptData,
    NodeIdentity,
    SqliteStorage,
    StorageError,
)

PIECE = 64
#: Random, so that no two segments are alike by accident.
SEGMENTS = tuple(os.urandom(100 + i) for i in range(10))  # 2 pieces each


def snap(slot: int, segments: tuple[bytes, ...], base: int = 0) -> SnapshotRecord:
    return SnapshotRecord(Snapshot(slot, segments, (("c", slot, ((slot, b"r"),)),)), base)


def piece_rows(data_dir: Path) -> list[int]:
    conn = sqlite3.connect(data_dir / DB_FILE)
    try:
        return [r[0] for r in conn.execute("SELECT idx FROM snapshot_piece ORDER BY idx")]
    finally:
        conn.close()


def test_a_snapshot_sharing_segments_writes_only_the_new_ones(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    first = snap(10, SEGMENTS)
    second = snap(20, (*SEGMENTS[:9], SEGMENTS[9] + b"grown" * 5, b"appended" * 10))
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        assert s._conn is not None
        s.write([first])
        assert s.pieces_written == len(piece_rows(tmp_path)) == 20
        changes = s._conn.total_changes
        s.write([second])
        # The grown last segment (3 pieces) and the new one (2): nothing before them.
        assert s.pieces_written == 20 + 5
        # SQLite agrees: the snapshot row and those pieces, nothing else.
        assert s._conn.total_changes - changes == 1 + 5
        assert s.load().snapshot == second.snapshot
    assert piece_rows(tmp_path) == list(range(23))


def test_unchanged_segments_are_not_even_checksummed(
    tmp_path: Path, identity: NodeIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same segment objects as stored cost nothing: not a CRC, not a comparison."""
    from paxoi.storage import sqlite

    summed: list[int] = []
    real = sqlite.crc32

    def crc32(data: bytes | memoryview) -> int:
        summed.append(len(data))
        return real(data)

    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        s.write([snap(10, SEGMENTS)])
        monkeypatch.setattr(sqlite, "crc32", crc32)
        s.write([snap(20, (*SEGMENTS, b"new"))])
    assert summed == [3]


def test_a_snapshot_write_runs_no_statement_that_changes_nothing(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    """Every statement costs the writer thread a GIL hand-off: a snapshot that only
    grows, over a base already compacted, is the snapshot row, one INSERT of all its new
    pieces, and COMMIT (the next snapshot's compaction adds the two deletes)."""
    statements: list[str] = []
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        assert s._conn is not None
        s.write([snap(10, SEGMENTS, base=4)])
        s._conn.set_trace_callback(statements.append)
        s.write([snap(20, (*SEGMENTS, b"a" * 300, b"b"), base=4)])  # 6 pieces, one INSERT
        growing = [st.split()[0] for st in statements]
        statements.clear()
        s.write([snap(30, SEGMENTS[:2], base=9)])
        shrinking = [st.split()[0] for st in statements]
    assert growing == ["BEGIN", "INSERT", "INSERT", "COMMIT"]
    assert shrinking == ["BEGIN", "INSERT", "DELETE", "DELETE", "DELETE", "COMMIT"]


def test_a_shrinking_snapshot_deletes_the_trailing_pieces(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        s.write([snap(10, SEGMENTS)])
        s.write([snap(20, SEGMENTS[:3])])
    assert piece_rows(tmp_path) == list(range(6))
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        assert s.load().snapshot == snap(20, SEGMENTS[:3]).snapshot


def test_an_older_snapshot_writes_no_piece(tmp_path: Path, identity: NodeIdentity) -> None:
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        s.write([snap(20, SEGMENTS)])
        written = s.pieces_written
        s.write([snap(10, (b"older",))])
        assert s.pieces_written == written
        assert s.load().snapshot == snap(20, SEGMENTS).snapshot


def test_a_restart_loads_the_same_snapshot_and_knows_its_segments(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    """After load(), equal segments (other objects: the machine restored its own) are
    recognised by comparison and not written again."""
    first, second = snap(10, SEGMENTS, 4), snap(20, (*[bytes(s) for s in SEGMENTS], b"+"), 12)
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        s.write([first])
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        state = s.load()
        assert (state.snapshot, state.base) == (first.snapshot, 4)
        s.write([second])
        assert s.pieces_written == 1
    with SqliteStorage.open(tmp_path, identity) as s:  # another piece size reads it too
        state = s.load()
        assert (state.snapshot, state.base) == (second.snapshot, 12)
        s.write([snap(30, second.snapshot.segments)])  # stored in other pieces: all again
        assert s.pieces_written == 11
        assert s.load().snapshot == snap(30, second.snapshot.segments).snapshot


def test_without_knowing_the_stored_segments_every_one_is_written(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    """Before load(), or after a failed write, nothing is known of the stored pieces."""
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        s.write([snap(10, SEGMENTS)])
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        assert s._conn is not None
        s.write([snap(20, SEGMENTS)])  # no load() first
        assert s.pieces_written == 20
        s._conn.set_authorizer(
            lambda action, table, *_: (
                sqlite3.SQLITE_DENY
                if action == sqlite3.SQLITE_DELETE and table == "snapshot_piece"
                else sqlite3.SQLITE_OK
            )
        )
        with pytest.raises(StorageError, match="not authorized"):
            s.write([snap(30, SEGMENTS[:5])])  # shrinking: drops pieces
        s._conn.set_authorizer(None)
        s.write([snap(40, SEGMENTS)])
        assert s.pieces_written == 20 + 20
        assert s.load().snapshot == snap(40, SEGMENTS).snapshot


def test_a_piece_damaged_on_disk_is_reported_and_then_rewritten(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    """What load() remembers is what is on disk: a damaged piece is reported, and the
    next snapshot rewrites everything (load kept nothing of a snapshot that failed)."""
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        s.write([snap(10, SEGMENTS)])
    execute(tmp_path, "UPDATE snapshot_piece SET data = zeroblob(length(data)) WHERE idx = 5")
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        with pytest.raises(CorruptData, match="segment 2 checksum"):
            s.load()
        s.write([snap(20, SEGMENTS)])
        assert s.pieces_written == 20
        assert s.load().snapshot == snap(20, SEGMENTS).snapshot


@pytest.mark.parametrize(
    "sql,detail",
    [
        ("DELETE FROM snapshot_piece WHERE idx = 3", "piece 3 of 20 is missing"),
        ("DELETE FROM snapshot_piece WHERE idx = 19", "piece 19 of 20 is missing"),
        ("INSERT INTO snapshot_piece VALUES (20, x'00')", "pieces beyond the snapshot's 20"),
        ("UPDATE snapshot_piece SET data = x'00' WHERE idx = 3", "piece 3 is not a blob of 37"),
        ("UPDATE snapshot SET piece_size = 32", "piece 20 of 40 is missing"),
        ("UPDATE snapshot SET frame = x'00'", "snapshot frame too short"),
        ("UPDATE snapshot SET slot = 11", "the frame is of slot 10, not 11"),
    ],
)
def test_a_missing_or_wrong_piece_is_a_clear_error(
    tmp_path: Path, identity: NodeIdentity, sql: str, detail: str
) -> None:
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        s.write([snap(10, SEGMENTS)])
    execute(tmp_path, sql)
    with SqliteStorage.open(tmp_path, identity) as s, pytest.raises(CorruptData) as info:
        s.load()
    assert detail in str(info.value) and str(tmp_path / DB_FILE) in str(info.value)


def _v1_image(slot: int, state: bytes) -> bytes:
    """A snapshot image as paxoi before segments encoded it (version 1), no clients."""
    body = struct.pack(">4sBQQ", b"PXSN", 1, slot, len(state)) + state + struct.pack(">I", 0)
    return body + struct.pack(">I", zlib.crc32(body))


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("with_snapshot", [True, False])
def test_older_databases_are_upgraded_in_place(
    tmp_path: Path, identity: NodeIdentity, version: int, with_snapshot: bool
) -> None:
    """Version 2 (the whole image in one row of table snapshot) and 3 (the image in
    table snapshot_chunk) are stored as frame and pieces when opened, and load the same
    snapshot."""
    with SqliteStorage.open(tmp_path, identity):
        pass
    image = _v1_image(10, b"".join(SEGMENTS))
    if version == 2:
        tables = ["image BLOB NOT NULL"]
        rows = [f"INSERT INTO snapshot VALUES (0, 10, 4, x'{image.hex()}')"]
    else:
        tables = ["size INTEGER NOT NULL", "chunk_size INTEGER NOT NULL"]
        rows = [f"INSERT INTO snapshot VALUES (0, 10, 4, {len(image)}, 100)"] + [
            f"INSERT INTO snapshot_chunk VALUES ({i}, x'{image[i * 100 : i * 100 + 100].hex()}')"
            for i in range(-(-len(image) // 100))
        ]
    execute(
        tmp_path,
        "DROP TABLE snapshot",
        "DROP TABLE snapshot_piece",
        f"""CREATE TABLE snapshot (
            id INTEGER PRIMARY KEY CHECK (id = 0),
            slot INTEGER NOT NULL,
            base INTEGER NOT NULL,
            {", ".join(tables)})""",
        *(
            ["CREATE TABLE snapshot_chunk (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)"]
            if version == 3
            else []
        ),
        f"UPDATE meta SET schema_version = {version}",
        *(rows if with_snapshot else []),
    )
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        state = s.load()
        if not with_snapshot:
            assert state.snapshot is None and piece_rows(tmp_path) == []
        else:
            want = Snapshot(10, (b"".join(SEGMENTS),))
            assert (state.snapshot, state.base) == (want, 4)
            assert piece_rows(tmp_path) == list(range(-(-len(want.state) // PIECE)))
    conn = sqlite3.connect(tmp_path / DB_FILE)
    tables_now = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert conn.execute("SELECT schema_version FROM meta").fetchone()[0] == SCHEMA_VERSION == 5
    conn.close()
    assert "snapshot_chunk" not in tables_now and "snapshot_piece" in tables_now


_WRITER = """
import os, sys
from paxoi.core.records import SnapshotRecord
from paxoi.core.snapshot import Snapshot
from paxoi.storage import NodeIdentity, SqliteStorage

def image(slot):
    return SnapshotRecord(Snapshot(slot, (os.urandom(64) * 200 * (1 + slot % 3),)), 0)

s = SqliteStorage.open(sys.argv[1], NodeIdentity("test-cluster", 1, b"config-v1"),
                       fsync=False, piece_size=512)
for slot in range(1, 10**9):
    s.write([image(slot)])
    print(slot, flush=True)
"""


def test_a_crash_leaves_the_old_or_the_new_snapshot_complete(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    """SIGKILL a process that writes growing and shrinking snapshots (each in one
    transaction, changing every piece): the directory holds one complete snapshot, at
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
