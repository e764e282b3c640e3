"""SqliteStorage keeps a snapshot as its frame and its segments, keyed by index and CRC
(files listed in table segment), and writes only the segments it does not hold already:
sealed ones may come ahead of the snapshot that refers to them (SegmentRecord)."""

from __future__ import annotations

import errno
import os
import select
import signal
import sqlite3
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from storage_helpers import execute

from paxoi.core.records import SegmentRecord, SnapshotRecord
from paxoi.core.snapshot import Snapshot
from paxoi.storage import (
    DB_FILE,
    SCHEMA_VERSION,
    SEGMENTS_DIR,
    CorruptData,
    NodeIdentity,
    SqliteStorage,
    StorageError,
)
from paxoi.storage.segment_files import SegmentFiles

#: Random, so that no two segments are alike by accident.
SEGMENTS = tuple(os.urandom(100 + i) for i in range(10))


def snap(slot: int, segments: tuple[bytes, ...], base: int = 0) -> SnapshotRecord:
    return SnapshotRecord(Snapshot(slot, segments, (("c", slot, ((slot, b"r"),)),)), base)


def stored_keys(data_dir: Path) -> list[tuple[int, int]]:
    """(index, CRC) of every stored segment: the rows, which the files must match."""
    conn = sqlite3.connect(data_dir / DB_FILE)
    try:
        rows = [tuple(r) for r in conn.execute("SELECT idx, crc FROM segment ORDER BY idx, crc")]
    finally:
        conn.close()
    folder = data_dir / SEGMENTS_DIR
    names = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    assert names == sorted(f"{i}-{crc:08x}.seg" for i, crc in rows)
    return rows


def deny(conn: sqlite3.Connection, action: int, table: str) -> None:
    """Make SQLite refuse `action` on `table`: a write that fails halfway."""
    conn.set_authorizer(
        lambda act, tab, *_: (
            sqlite3.SQLITE_DENY if (act, tab) == (action, table) else sqlite3.SQLITE_OK
        )
    )


def keys_of(*segments: tuple[int, bytes]) -> list[tuple[int, int]]:
    """The keys of `segments` (index, bytes)."""
    return sorted((i, zlib.crc32(data)) for i, data in segments)


def segment_file(data_dir: Path, idx: int) -> Path:
    """The file of the one stored segment at `idx`."""
    (path,) = (data_dir / SEGMENTS_DIR).glob(f"{idx}-*.seg")
    return path


def test_a_snapshot_sharing_segments_writes_only_the_new_ones(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    first = snap(10, SEGMENTS)
    second = snap(20, (*SEGMENTS[:9], SEGMENTS[9] + b"grown" * 5, b"appended" * 10))
    with SqliteStorage.open(tmp_path, identity) as s:
        assert s._conn is not None
        s.write([first])
        assert s.segments_written == len(stored_keys(tmp_path)) == 10
        changes = s._conn.total_changes
        s.write([second])
        # The grown last segment and the new one: nothing before them.
        assert s.segments_written == 10 + 2
        # SQLite agrees: their rows, the snapshot row, the old last segment's row
        # dropped; nothing else.
        assert s._conn.total_changes - changes == 2 + 1 + 1
        assert s.load().snapshot == second.snapshot
    assert stored_keys(tmp_path) == keys_of(*enumerate(second.snapshot.segments))


def test_unchanged_segments_are_not_even_checksummed(
    tmp_path: Path, identity: NodeIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same segment objects as stored cost nothing: not a CRC, not a comparison."""
    from paxoi.storage import segments

    summed: list[int] = []
    real = segments.crc32

    def crc32(data: bytes | memoryview) -> int:
        summed.append(len(data))
        return real(data)

    with SqliteStorage.open(tmp_path, identity) as s:
        s.write([snap(10, SEGMENTS)])
        monkeypatch.setattr(segments, "crc32", crc32)
        s.write([snap(20, (*SEGMENTS, b"new"))])
    assert summed == [3]


def test_a_snapshot_write_runs_no_statement_that_changes_nothing(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    """Every statement costs the writer thread a GIL hand-off: a snapshot that only
    grows, over a base already compacted, is one INSERT of all its new segments, the
    snapshot row, and COMMIT (a shrinking one adds the delete of the segments it no
    longer has, its compaction the two of rows below the base)."""
    statements: list[str] = []
    with SqliteStorage.open(tmp_path, identity) as s:
        assert s._conn is not None
        s.write([snap(10, SEGMENTS, base=4)])
        s._conn.set_trace_callback(statements.append)
        s.write([snap(20, (*SEGMENTS, b"a" * 300, b"b"), base=4)])  # 2 segments, one INSERT
        growing = [st.split()[0] for st in statements]
        statements.clear()
        s.write([snap(30, SEGMENTS[:2], base=9)])
        shrinking = [st.split()[0] for st in statements]
    assert growing == ["BEGIN", "INSERT", "INSERT", "COMMIT"]
    assert shrinking == ["BEGIN", "INSERT", "DELETE", "DELETE", "DELETE", "COMMIT"]


def test_a_shrinking_snapshot_deletes_the_trailing_segments(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    with SqliteStorage.open(tmp_path, identity) as s:
        s.write([snap(10, SEGMENTS)])
        s.write([snap(20, SEGMENTS[:3])])
    assert stored_keys(tmp_path) == keys_of(*enumerate(SEGMENTS[:3]))
    with SqliteStorage.open(tmp_path, identity) as s:
        assert s.load().snapshot == snap(20, SEGMENTS[:3]).snapshot


def test_an_older_snapshot_writes_no_segment(tmp_path: Path, identity: NodeIdentity) -> None:
    with SqliteStorage.open(tmp_path, identity) as s:
        s.write([snap(20, SEGMENTS)])
        written = s.segments_written
        s.write([snap(10, (b"older",))])
        assert s.segments_written == written
        assert s.load().snapshot == snap(20, SEGMENTS).snapshot


def test_a_restart_loads_the_same_snapshot_and_knows_its_segments(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    """After load(), equal segments (other objects: the machine restored its own) are
    recognised by comparison and not written again."""
    first, second = snap(10, SEGMENTS, 4), snap(20, (*[bytes(s) for s in SEGMENTS], b"+"), 12)
    with SqliteStorage.open(tmp_path, identity) as s:
        s.write([first])
    with SqliteStorage.open(tmp_path, identity) as s:
        state = s.load()
        assert (state.snapshot, state.base) == (first.snapshot, 4)
        s.write([second])
        assert s.segments_written == 1
    with SqliteStorage.open(tmp_path, identity) as s:
        state = s.load()
        assert (state.snapshot, state.base) == (second.snapshot, 12)
        s.write([snap(30, second.snapshot.segments)])  # the same bytes: nothing to write
        assert s.segments_written == 0
        assert s.load().snapshot == snap(30, second.snapshot.segments).snapshot


def test_without_knowing_the_stored_segments_every_one_is_written(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    """Before load(), or after a failed write, only the stored keys are known, not the
    bytes: every segment is written again (and what the new frame does not list goes)."""
    with SqliteStorage.open(tmp_path, identity) as s:
        s.write([snap(10, SEGMENTS)])
    with SqliteStorage.open(tmp_path, identity) as s:
        assert s._conn is not None
        s.write([snap(20, SEGMENTS)])  # no load() first
        assert s.segments_written == 10
        deny(s._conn, sqlite3.SQLITE_DELETE, "segment")
        with pytest.raises(StorageError, match="not authorized"):
            s.write([snap(30, SEGMENTS[:5])])  # shrinking: drops segments
        s._conn.set_authorizer(None)
        s.write([snap(40, SEGMENTS)])
        assert s.segments_written == 10 + 10
        assert s.load().snapshot == snap(40, SEGMENTS).snapshot
    assert stored_keys(tmp_path) == keys_of(*enumerate(SEGMENTS))


def test_a_segment_damaged_on_disk_is_reported_and_then_rewritten(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    """What load() remembers is what is on disk: a damaged segment is reported, and the
    next snapshot rewrites everything (load kept nothing of a snapshot that failed)."""
    with SqliteStorage.open(tmp_path, identity) as s:
        s.write([snap(10, SEGMENTS)])
    _zero(segment_file(tmp_path, 2))
    with SqliteStorage.open(tmp_path, identity) as s:
        with pytest.raises(CorruptData, match="segment 2 checksum"):
            s.load()
        s.write([snap(20, SEGMENTS)])
        assert s.segments_written == 10
        assert s.load().snapshot == snap(20, SEGMENTS).snapshot


def _zero(path: Path) -> None:
    path.write_bytes(bytes(path.stat().st_size))


def _damage(tmp_path: Path, how: str) -> None:
    """`how`: SQL to run, or "zero N", "cut N", "remove N" for segment N's file."""
    verb, _, idx = how.partition(" ")
    if verb not in ("zero", "cut", "remove"):
        execute(tmp_path, how)
        return
    path = segment_file(tmp_path, int(idx))
    if verb == "zero":
        _zero(path)
    elif verb == "cut":
        path.write_bytes(path.read_bytes()[:40])
    else:
        path.unlink()


@pytest.mark.parametrize(
    "how,detail",
    [
        ("remove 3", "segment 3 (CRC 0x"),
        ("remove 3", "has no file segments/3-"),
        ("cut 3", "is 40 bytes on disk, not 103"),
        ("DELETE FROM segment WHERE idx = 9", "of 10 is missing"),
        ("UPDATE segment SET idx = 10 WHERE idx = 9", "of 10 is missing"),
        ("UPDATE segment SET length = 104 WHERE idx = 3", "is 103 bytes on disk, not 104"),
        ("UPDATE snapshot SET frame = x'00'", "snapshot frame too short"),
        ("UPDATE snapshot SET slot = 11", "the frame is of slot 10, not 11"),
    ],
)
def test_a_missing_or_wrong_segment_is_a_clear_error(
    tmp_path: Path, identity: NodeIdentity, how: str, detail: str
) -> None:
    with SqliteStorage.open(tmp_path, identity) as s:
        s.write([snap(10, SEGMENTS)])
    _damage(tmp_path, how)
    with SqliteStorage.open(tmp_path, identity) as s, pytest.raises(CorruptData) as info:
        s.load()
    assert detail in str(info.value) and str(tmp_path / DB_FILE) in str(info.value)


@pytest.mark.parametrize(
    "how,why", [("zero 5", "checksum"), ("cut 5", "40 bytes on disk"), ("remove 5", "no file")]
)
def test_a_damaged_segment_sealed_after_the_snapshot_is_left_out_and_written_again(
    tmp_path: Path, identity: NodeIdentity, caplog: pytest.LogCaptureFixture, how: str, why: str
) -> None:
    """A segment no stored snapshot lists yet is a head start that the log's replay
    seals again: damaged, it is reported and left out, not a reason to stop the node,
    and the snapshot that next needs it writes it again."""
    with SqliteStorage.open(tmp_path, identity) as s:
        s.write([snap(10, SEGMENTS[:5])])
        s.write([SegmentRecord(5, SEGMENTS[5])])
    _damage(tmp_path, how)
    with SqliteStorage.open(tmp_path, identity) as s:
        assert s.load().snapshot == snap(10, SEGMENTS[:5]).snapshot
        assert "segment 5" in caplog.text and why in caplog.text
        s.write([snap(20, SEGMENTS[:6])])
        assert s.segments_written == 1  # segment 5 again; 0-4 are stored
    with SqliteStorage.open(tmp_path, identity) as s:
        assert s.load().snapshot == snap(20, SEGMENTS[:6]).snapshot
    assert stored_keys(tmp_path) == keys_of(*enumerate(SEGMENTS[:6]))


def test_a_file_no_row_lists_is_removed_at_load(tmp_path: Path, identity: NodeIdentity) -> None:
    """A crash between a segment file's write and its transaction's commit, or between
    a commit that drops a row and the removal of its file, or in the middle of a file,
    leaves a file no row lists: the next load removes it (and leaves alone files not
    named like segments)."""
    with SqliteStorage.open(tmp_path, identity) as s:
        s.write([snap(10, SEGMENTS[:3])])
    folder = tmp_path / SEGMENTS_DIR
    (folder / "7-0badc0de.seg").write_bytes(b"orphan")
    (folder / "1-0badc0de.seg.tmp").write_bytes(b"half written")
    (folder / "notes.txt").write_bytes(b"mine")
    with SqliteStorage.open(tmp_path, identity) as s:
        assert s.load().snapshot == snap(10, SEGMENTS[:3]).snapshot
    assert not (folder / "7-0badc0de.seg").exists()
    assert not (folder / "1-0badc0de.seg.tmp").exists()
    (folder / "notes.txt").unlink()
    assert stored_keys(tmp_path) == keys_of(*enumerate(SEGMENTS[:3]))


def test_a_failed_transaction_leaves_no_row_for_its_file(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    """Files go first, rows in the transaction: a write that fails after the files
    leaves files no row lists, never a row without its file."""
    with SqliteStorage.open(tmp_path, identity) as s:
        assert s._conn is not None
        s.write([snap(10, SEGMENTS[:3])])
        deny(s._conn, sqlite3.SQLITE_UPDATE, "snapshot")
        with pytest.raises(StorageError, match="not authorized"):
            s.write([snap(20, SEGMENTS[:5])])
        assert len(list((tmp_path / SEGMENTS_DIR).iterdir())) == 5
    with SqliteStorage.open(tmp_path, identity) as s:
        assert s.load().snapshot == snap(10, SEGMENTS[:3]).snapshot
    assert stored_keys(tmp_path) == keys_of(*enumerate(SEGMENTS[:3]))


def test_a_full_disk_on_a_segment_file_is_a_clear_error_and_loses_nothing(
    tmp_path: Path, identity: NodeIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    from paxoi.storage import segment_files

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with SqliteStorage.open(tmp_path, identity) as s:
        s.write([snap(10, SEGMENTS[:1])])
        with monkeypatch.context() as m:
            m.setattr(segment_files.os, "write", full)
            with pytest.raises(StorageError, match=r"segments in .*: the disk is full"):
                s.write([snap(20, SEGMENTS[:2])])
        assert s.load().snapshot == snap(10, SEGMENTS[:1]).snapshot
        s.write([snap(20, SEGMENTS[:2])])
        assert s.load().snapshot == snap(20, SEGMENTS[:2]).snapshot
    assert stored_keys(tmp_path) == keys_of(*enumerate(SEGMENTS[:2]))


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
    table snapshot_chunk) are stored as frame and segments when opened, and load the
    same snapshot."""
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
        "DROP TABLE segment",
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
    with SqliteStorage.open(tmp_path, identity) as s:
        state = s.load()
        if not with_snapshot:
            assert state.snapshot is None and stored_keys(tmp_path) == []
        else:
            want = Snapshot(10, (b"".join(SEGMENTS),))
            assert (state.snapshot, state.base) == (want, 4)
            assert stored_keys(tmp_path) == keys_of((0, want.state))
    assert tables_and_version(tmp_path) == ({*CURRENT_TABLES}, SCHEMA_VERSION)


CURRENT_TABLES = (
    "meta", "promised", "accepted", "decided", "proposer", "snapshot", "segment"
)  # fmt: skip


def tables_and_version(data_dir: Path) -> tuple[set[str], int]:
    conn = sqlite3.connect(data_dir / DB_FILE)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return tables, conn.execute("SELECT schema_version FROM meta").fetchone()[0]
    finally:
        conn.close()


def as_version(data_dir: Path, version: int, segments: tuple[bytes, ...], piece: int) -> None:
    """Turn a current directory into one of `version` 4, 5 or 6: table snapshot with a
    piece_size column; the segments in parts of `piece` bytes in the database (numbered
    across segments in table snapshot_piece before 6, per segment in snapshot_segment),
    no files."""
    pieces = [
        (i, zlib.crc32(data), part, data[start : start + piece])
        for i, data in enumerate(segments)
        for part, start in enumerate(range(0, len(data), piece))
    ]
    if version == 6:
        table = """CREATE TABLE snapshot_segment (idx INTEGER NOT NULL, crc INTEGER NOT NULL,
            part INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (idx, crc, part))"""
        rows = [f"INSERT INTO snapshot_segment VALUES ({i}, {c}, {p}, x'{d.hex()}')"
                for i, c, p, d in pieces]  # fmt: skip
    else:
        table = "CREATE TABLE snapshot_piece (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)"
        rows = [f"INSERT INTO snapshot_piece VALUES ({n}, x'{d.hex()}')"
                for n, (_, _, _, d) in enumerate(pieces)]  # fmt: skip
    execute(
        data_dir,
        "ALTER TABLE snapshot RENAME TO snapshot_now",
        """CREATE TABLE snapshot (id INTEGER PRIMARY KEY CHECK (id = 0), slot INTEGER NOT NULL,
            base INTEGER NOT NULL, frame BLOB NOT NULL, piece_size INTEGER NOT NULL)""",
        f"INSERT INTO snapshot SELECT id, slot, base, frame, {piece} FROM snapshot_now",
        "DROP TABLE snapshot_now",
        "DROP TABLE segment",
        table,
        *rows,
        f"UPDATE meta SET schema_version = {version}",
    )
    for path in (data_dir / SEGMENTS_DIR).iterdir():
        path.unlink()


@pytest.mark.parametrize("version", [4, 5, 6])
def test_versions_4_to_6_are_upgraded_in_place(
    tmp_path: Path, identity: NodeIdentity, version: int
) -> None:
    """Versions 4 and 5 keep the segments one after another in table snapshot_piece, in
    pieces numbered across segments, 6 in table snapshot_segment, in parts per segment;
    they become files listed in table segment, and a segment sealed after the snapshot
    (6) stays for the next one."""
    record = snap(10, SEGMENTS[:9], base=4)
    with SqliteStorage.open(tmp_path, identity) as s:
        s.write([record])
    as_version(tmp_path, version, SEGMENTS[:9], 64)
    if version == 6:
        staged = SEGMENTS[9]
        execute(
            tmp_path,
            *(f"INSERT INTO snapshot_segment VALUES (9, {zlib.crc32(staged)}, {p}, "
              f"x'{staged[p * 64 : p * 64 + 64].hex()}')" for p in range(2)),
        )  # fmt: skip
    with SqliteStorage.open(tmp_path, identity) as s:
        state = s.load()
        assert (state.snapshot, state.base) == (record.snapshot, 4)
        if version == 6:
            s.write([snap(20, SEGMENTS)])
            assert s.segments_written == 0  # segment 9 was moved to its file
    stored = SEGMENTS if version == 6 else SEGMENTS[:9]
    assert stored_keys(tmp_path) == keys_of(*enumerate(stored))
    assert tables_and_version(tmp_path) == ({*CURRENT_TABLES}, SCHEMA_VERSION)


def test_sealed_segments_written_ahead_leave_the_snapshot_only_its_tail(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    """Segments handed over as they seal (in the ordinary writes) are not written again
    by the snapshot that refers to them: its transaction holds only the tail's parts."""
    tail = b"tail" * 10
    with SqliteStorage.open(tmp_path, identity) as s:
        assert s._conn is not None
        for i, segment in enumerate(SEGMENTS[:9]):
            s.write([SegmentRecord(i, segment)])
        assert s.segments_written == 9
        changes = s._conn.total_changes
        s.write([snap(10, (*SEGMENTS[:9], tail))])
        assert s.segments_written == 9 + 1
        assert s._conn.total_changes - changes == 1 + 1  # the tail's row, the snapshot's
        assert s.load().snapshot == snap(10, (*SEGMENTS[:9], tail)).snapshot


def test_a_segment_sealed_where_the_stored_tail_is_keeps_both_until_the_next_snapshot(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    """The sealed segment at the stored snapshot's last index does not replace its tail
    (the stored snapshot still needs it, even across a restart); the next snapshot
    drops the old tail and writes only its own new tail."""
    tail, tail2 = b"tail" * 10, b"next" * 10
    first = snap(10, (*SEGMENTS[:5], tail))
    second = snap(20, (*(bytes(x) for x in SEGMENTS[:6]), tail2))
    with SqliteStorage.open(tmp_path, identity) as s:
        s.write([*(SegmentRecord(i, x) for i, x in enumerate(SEGMENTS[:5])), first])
        s.write([SegmentRecord(5, SEGMENTS[5])])
    assert stored_keys(tmp_path) == keys_of(*enumerate(SEGMENTS[:6]), (5, tail))
    with SqliteStorage.open(tmp_path, identity) as s:
        assert s.load().snapshot == first.snapshot
        s.write([second])
        assert s.segments_written == 1  # the new tail: segment 5 is known by its bytes
        assert s.load().snapshot == second.snapshot
    assert stored_keys(tmp_path) == keys_of(*enumerate(second.snapshot.segments))


def test_a_segment_sealed_after_the_snapshot_in_the_same_write_is_kept(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    """Group commit puts later Readies' records in the same write: a segment that sealed
    after the snapshot (its record comes after the snapshot's) is the newest at its
    index and stays for the next snapshot, which then writes only its tail."""
    tail = b"tail" * 10
    with SqliteStorage.open(tmp_path, identity) as s:
        s.write([snap(10, (*SEGMENTS[:3], tail)), SegmentRecord(3, SEGMENTS[3])])
        assert stored_keys(tmp_path) == keys_of(*enumerate(SEGMENTS[:4]), (3, tail))
        written = s.segments_written
        s.write([snap(20, (*SEGMENTS[:4], tail))])
        assert s.segments_written == written + 1
    assert stored_keys(tmp_path) == keys_of(*enumerate(SEGMENTS[:4]), (4, tail))


def test_random_segment_and_snapshot_writes_load_the_newest_snapshot(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    """Segments sealed, snapshots of growing and (installed) smaller states, restarts:
    load() always gives the newest snapshot written, and the table holds its segments
    and at most one other segment at any index (the newest there)."""
    import random

    rng = random.Random(8)
    state: list[bytes] = []  # the sealed segments of the machine now
    newest: SnapshotRecord | None = None
    s = SqliteStorage.open(tmp_path, identity)
    try:
        for slot in range(1, 200):
            what = rng.random()
            if what < 0.5:
                state.append(os.urandom(rng.randrange(1, 200)))
                s.write([SegmentRecord(len(state) - 1, state[-1])])
            elif what < 0.8:
                newest = snap(slot, (*state, os.urandom(rng.randrange(0, 90))))
                s.write([newest])
            elif what < 0.9:  # a smaller state installed
                state = state[: rng.randrange(0, len(state) + 1)]
                newest = snap(slot, tuple(state))
                s.write([newest])
            else:
                s.close()
                s = SqliteStorage.open(tmp_path, identity)
                assert s.load().snapshot == (newest.snapshot if newest else None)
                if rng.random() < 0.5:  # the machine restored: equal bytes, other objects
                    state = [bytes(x) for x in state]
        assert newest is not None
        assert s.load().snapshot == newest.snapshot
        rows = set(stored_keys(tmp_path))
        listed = {(i, zlib.crc32(x)) for i, x in enumerate(newest.snapshot.segments)}
        others = rows - listed
        assert listed <= rows and len({i for i, _ in others}) == len(others)
    finally:
        s.close()


_WRITER = """
import os, sys
from paxoi.core.records import SnapshotRecord
from paxoi.core.snapshot import Snapshot
from paxoi.storage import NodeIdentity, SqliteStorage

def image(slot):
    return SnapshotRecord(Snapshot(slot, (os.urandom(64) * 200 * (1 + slot % 3),)), 0)

s = SqliteStorage.open(sys.argv[1], NodeIdentity("test-cluster", 1, b"config-v1"),
                       fsync=False)
for slot in range(1, 10**9):
    s.write([image(slot)])
    print(slot, flush=True)
"""


def test_a_crash_leaves_the_old_or_the_new_snapshot_complete(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    """SIGKILL a process that writes growing and shrinking snapshots (each in one
    transaction, changing every segment): the directory holds one complete snapshot, at
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


def test_a_chat_learner_persisting_through_sqlite_restarts_to_the_same_chat(
    tmp_path: Path, identity: NodeIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The core and the engine together: a learner applies a chat of many segments,
    its Readies' records (durable and lazy, segments and snapshots) go to SQLite in
    group-commit-sized writes, and a restart from the directory restores the same chat;
    the snapshot transactions wrote only tails, the segments having gone ahead."""
    import random

    from paxoi.apps import chat
    from paxoi.apps.chat import ChatLog
    from paxoi.core import ClusterConfig, Command, Decide, Limits, Node

    monkeypatch.setattr(chat, "_SEGMENT_ENTRIES", 16)
    cfg = ClusterConfig.separate(1, 3, 1, limits=Limits(snapshot_every=25, log_keep=5))
    machine = ChatLog()
    node = Node(4, cfg, random.Random(0), machine, None)
    with SqliteStorage.open(tmp_path, identity, fsync=False) as s:
        pending: list = []
        for slot in range(300):
            batch = tuple(Command(f"c{k}", slot + 1, f"m{slot}.{k}".encode()) for k in range(3))
            node.step(Decide(0, slot, batch))
            ready = node.take_ready()
            pending += ready.persist_lazy + ready.persist
            if slot % 4 == 3:  # a group commit of four Readies
                snapshots_before = s.segments_written
                s.write(pending)
                if any(isinstance(r, SnapshotRecord) for r in pending):
                    assert s.segments_written - snapshots_before <= 2  # a tail, a sealed one
                pending = []
        s.write(pending)
    with SqliteStorage.open(tmp_path, identity, fsync=False) as s:
        durable = s.load()
    assert durable.snapshot is not None and durable.snapshot.slot >= 275
    again = ChatLog()
    Node(4, cfg, random.Random(0), again, durable)
    assert again.entries == machine.entries and len(again.entries) == 900


def _fsync_spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(thread name, file name) of every fsync of segment_files from now on."""
    from paxoi.storage import segment_files

    calls: list[tuple[str, str]] = []
    real = segment_files.os.fsync

    def fsync(fd: int) -> None:
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        calls.append((threading.current_thread().name, name))
        real(fd)

    monkeypatch.setattr(segment_files.os, "fsync", fsync)
    return calls


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.005)


def test_segments_sealed_ahead_are_synced_behind_not_by_the_write(
    tmp_path: Path, identity: NodeIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sealed segment's file is fsynced by the syncing thread, never by the write
    that carries it (the group-commit thread, where every accept waits)."""
    with SqliteStorage.open(tmp_path, identity) as s:
        calls = _fsync_spy(monkeypatch)
        s.write([SegmentRecord(i, x) for i, x in enumerate(SEGMENTS[:4])])
        wait_until(lambda: not s._files.unsynced)
        names = {f"{i}-{crc:08x}.seg" for i, crc in keys_of(*enumerate(SEGMENTS[:4]))}
        assert {name for thread, name in calls if thread == "paxoi-segment-sync"} >= names
        assert not {name for thread, name in calls if thread != "paxoi-segment-sync"} & names


def test_a_snapshot_syncs_the_segments_it_lists_before_it_commits(
    tmp_path: Path, identity: NodeIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the syncing thread has not reached, the snapshot's write syncs before
    COMMIT (here there is no such thread); after a restart, the segments no snapshot
    lists count as not synced."""
    with SqliteStorage.open(tmp_path, identity) as s:
        assert s._conn is not None
        s._files = SegmentFiles(tmp_path, fsync=True, behind=False)
        calls = _fsync_spy(monkeypatch)
        s.write([SegmentRecord(i, x) for i, x in enumerate(SEGMENTS[:4])])
        assert [name for _, name in calls] == [tmp_path.name]  # segments/ made: its entry
        assert s._files.unsynced == set(keys_of(*enumerate(SEGMENTS[:4])))
        at_commit: list[set[tuple[int, int]]] = []
        s._conn.set_trace_callback(
            lambda sql: at_commit.append(s._files.unsynced) if sql == "COMMIT" else None
        )
        calls.clear()
        s.write([snap(10, (*SEGMENTS[:4], b"tail"))])
        assert at_commit == [set()]
        assert len(calls) == 2 + 4 + 1  # the tail and the directory, then 4 and it again
        s._conn.set_trace_callback(None)
        s.write([SegmentRecord(4, SEGMENTS[4])])
        assert s._files.unsynced == set(keys_of((4, SEGMENTS[4])))
    with SqliteStorage.open(tmp_path, identity) as s:
        s._files.close()
        s._files = SegmentFiles(tmp_path, fsync=True, behind=False)
        s.load()
        assert s._files.unsynced == set(keys_of((4, SEGMENTS[4])))
        calls.clear()
        s.write([snap(20, SEGMENTS[:5])])
        assert len(calls) == 1 + 1  # segment 4 and the directory; nothing written anew
        assert s._files.unsynced == set()
        assert s.load().snapshot == snap(20, SEGMENTS[:5]).snapshot


def test_a_segment_that_failed_to_sync_fails_the_snapshot_that_lists_it(
    tmp_path: Path, identity: NodeIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a failed fsync the kernel may have dropped the pages, and a second fsync
    would succeed on nothing: the snapshot that lists the file fails its write."""
    from paxoi.storage import segment_files

    real = segment_files.os.fsync

    def fsync(fd: int) -> None:
        if threading.current_thread().name == "paxoi-segment-sync":
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(fd)

    with SqliteStorage.open(tmp_path, identity) as s:
        monkeypatch.setattr(segment_files.os, "fsync", fsync)
        s.write([SegmentRecord(0, SEGMENTS[0])])
        wait_until(lambda: bool(s._files._failed))
        with pytest.raises(StorageError, match="Input/output error"):
            s.write([snap(10, SEGMENTS[:2])])
