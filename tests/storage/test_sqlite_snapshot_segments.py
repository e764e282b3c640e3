"""SqliteStorage keeps a snapshot as its frame and its segments, keyed by index and CRC,
and writes only the segments it does not hold already: sealed ones may come ahead of
the snapshot that refers to them (SegmentRecord)."""

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

from paxoi.core.records import SegmentRecord, SnapshotRecord
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
SEGMENTS = tuple(os.urandom(100 + i) for i in range(10))  # 2 parts each


def snap(slot: int, segments: tuple[bytes, ...], base: int = 0) -> SnapshotRecord:
    return SnapshotRecord(Snapshot(slot, segments, (("c", slot, ((slot, b"r"),)),)), base)


def part_rows(data_dir: Path) -> list[tuple[int, int, int]]:
    """(index, CRC, part) of every stored row."""
    conn = sqlite3.connect(data_dir / DB_FILE)
    try:
        rows = conn.execute("SELECT idx, crc, part FROM snapshot_segment ORDER BY idx, crc, part")
        return [tuple(r) for r in rows]
    finally:
        conn.close()


def parts_of(*segments: tuple[int, bytes]) -> list[tuple[int, int, int]]:
    """The rows that hold `segments` (index, bytes) in parts of PIECE bytes."""
    return sorted(
        (i, zlib.crc32(data), part)
        for i, data in segments
        for part in range(-(-len(data) // PIECE))
    )


def test_a_snapshot_sharing_segments_writes_only_the_new_ones(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    first = snap(10, SEGMENTS)
    second = snap(20, (*SEGMENTS[:9], SEGMENTS[9] + b"grown" * 5, b"appended" * 10))
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        assert s._conn is not None
        s.write([first])
        assert s.pieces_written == len(part_rows(tmp_path)) == 20
        changes = s._conn.total_changes
        s.write([second])
        # The grown last segment (3 parts) and the new one (2): nothing before them.
        assert s.pieces_written == 20 + 5
        # SQLite agrees: those parts, the snapshot row, the old last segment's 2 parts
        # dropped; nothing else.
        assert s._conn.total_changes - changes == 5 + 1 + 2
        assert s.load().snapshot == second.snapshot
    assert part_rows(tmp_path) == parts_of(*enumerate(second.snapshot.segments))


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

    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        s.write([snap(10, SEGMENTS)])
        monkeypatch.setattr(segments, "crc32", crc32)
        s.write([snap(20, (*SEGMENTS, b"new"))])
    assert summed == [3]


def test_a_snapshot_write_runs_no_statement_that_changes_nothing(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    """Every statement costs the writer thread a GIL hand-off: a snapshot that only
    grows, over a base already compacted, is one INSERT of all its new parts, the
    snapshot row, and COMMIT (a shrinking one adds the delete of the segments it no
    longer has, its compaction the two of rows below the base)."""
    statements: list[str] = []
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        assert s._conn is not None
        s.write([snap(10, SEGMENTS, base=4)])
        s._conn.set_trace_callback(statements.append)
        s.write([snap(20, (*SEGMENTS, b"a" * 300, b"b"), base=4)])  # 6 parts, one INSERT
        growing = [st.split()[0] for st in statements]
        statements.clear()
        s.write([snap(30, SEGMENTS[:2], base=9)])
        shrinking = [st.split()[0] for st in statements]
    assert growing == ["BEGIN", "INSERT", "INSERT", "COMMIT"]
    assert shrinking == ["BEGIN", "INSERT", "DELETE", "DELETE", "DELETE", "COMMIT"]


def test_a_shrinking_snapshot_deletes_the_trailing_segments(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        s.write([snap(10, SEGMENTS)])
        s.write([snap(20, SEGMENTS[:3])])
    assert part_rows(tmp_path) == parts_of(*enumerate(SEGMENTS[:3]))
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        assert s.load().snapshot == snap(20, SEGMENTS[:3]).snapshot


def test_an_older_snapshot_writes_no_segment(tmp_path: Path, identity: NodeIdentity) -> None:
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
    with SqliteStorage.open(tmp_path, identity) as s:  # another part size reads it too
        state = s.load()
        assert (state.snapshot, state.base) == (second.snapshot, 12)
        s.write([snap(30, second.snapshot.segments)])  # the same bytes: nothing to write
        assert s.pieces_written == 0
        assert s.load().snapshot == snap(30, second.snapshot.segments).snapshot


def test_without_knowing_the_stored_segments_every_one_is_written(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    """Before load(), or after a failed write, only the stored keys are known, not the
    bytes: every segment is written again (and what the new frame does not list goes)."""
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        s.write([snap(10, SEGMENTS)])
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        assert s._conn is not None
        s.write([snap(20, SEGMENTS)])  # no load() first
        assert s.pieces_written == 20
        s._conn.set_authorizer(
            lambda action, table, *_: (
                sqlite3.SQLITE_DENY
                if action == sqlite3.SQLITE_DELETE and table == "snapshot_segment"
                else sqlite3.SQLITE_OK
            )
        )
        with pytest.raises(StorageError, match="not authorized"):
            s.write([snap(30, SEGMENTS[:5])])  # shrinking: drops segments
        s._conn.set_authorizer(None)
        s.write([snap(40, SEGMENTS)])
        assert s.pieces_written == 20 + 20
        assert s.load().snapshot == snap(40, SEGMENTS).snapshot
    assert part_rows(tmp_path) == parts_of(*enumerate(SEGMENTS))


def test_a_segment_damaged_on_disk_is_reported_and_then_rewritten(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    """What load() remembers is what is on disk: a damaged segment is reported, and the
    next snapshot rewrites everything (load kept nothing of a snapshot that failed)."""
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        s.write([snap(10, SEGMENTS)])
    execute(
        tmp_path,
        "UPDATE snapshot_segment SET data = zeroblob(length(data)) WHERE idx = 2 AND part = 1",
    )
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        with pytest.raises(CorruptData, match="segment 2 checksum"):
            s.load()
        s.write([snap(20, SEGMENTS)])
        assert s.pieces_written == 20
        assert s.load().snapshot == snap(20, SEGMENTS).snapshot


@pytest.mark.parametrize(
    "sql,detail",
    [
        ("DELETE FROM snapshot_segment WHERE idx = 3 AND part = 0", "lacks part 0"),
        ("DELETE FROM snapshot_segment WHERE idx = 3 AND part = 1", "3 is 64 bytes, not 103"),
        ("DELETE FROM snapshot_segment WHERE idx = 9", "of 10 is missing"),
        ("UPDATE snapshot_segment SET idx = 10 WHERE idx = 9", "of 10 is missing"),
        ("UPDATE snapshot_segment SET data = x'00' WHERE idx = 3 AND part = 0", "3 is 40 bytes"),
        ("UPDATE snapshot_segment SET part = 'x' WHERE idx = 3 AND part = 1", "lacks part 1"),
        ("UPDATE snapshot SET frame = x'00'", "snapshot frame too short"),
        ("UPDATE snapshot SET slot = 11", "the frame is of slot 10, not 11"),
    ],
)
def test_a_missing_or_wrong_segment_is_a_clear_error(
    tmp_path: Path, identity: NodeIdentity, sql: str, detail: str
) -> None:
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        s.write([snap(10, SEGMENTS)])
    execute(tmp_path, sql)
    with SqliteStorage.open(tmp_path, identity) as s, pytest.raises(CorruptData) as info:
        s.load()
    assert detail in str(info.value) and str(tmp_path / DB_FILE) in str(info.value)


@pytest.mark.parametrize(
    "sql,why",
    [
        ("UPDATE snapshot_segment SET data = zeroblob(length(data)) WHERE idx = 5", "checksum"),
        ("DELETE FROM snapshot_segment WHERE idx = 5 AND part = 0", "lacks part 0"),
    ],
)
def test_a_damaged_segment_sealed_after_the_snapshot_is_left_out_and_written_again(
    tmp_path: Path, identity: NodeIdentity, caplog: pytest.LogCaptureFixture, sql: str, why: str
) -> None:
    """A segment no stored snapshot lists yet is a head start that the log's replay
    seals again: damaged, it is reported and left out, not a reason to stop the node,
    and the snapshot that next needs it writes it again."""
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        s.write([snap(10, SEGMENTS[:5])])
        s.write([SegmentRecord(5, SEGMENTS[5])])
    execute(tmp_path, sql)
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        assert s.load().snapshot == snap(10, SEGMENTS[:5]).snapshot
        assert "segment 5" in caplog.text and why in caplog.text
        s.write([snap(20, SEGMENTS[:6])])
        assert s.pieces_written == 2  # segment 5 again; 0-4 are stored
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        assert s.load().snapshot == snap(20, SEGMENTS[:6]).snapshot


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
        "DROP TABLE snapshot_segment",
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
            assert state.snapshot is None and part_rows(tmp_path) == []
        else:
            want = Snapshot(10, (b"".join(SEGMENTS),))
            assert (state.snapshot, state.base) == (want, 4)
            assert part_rows(tmp_path) == parts_of((0, want.state))
    assert tables_and_version(tmp_path) == ({*CURRENT_TABLES}, SCHEMA_VERSION)


CURRENT_TABLES = (
    "meta", "promised", "accepted", "decided", "proposer", "snapshot", "snapshot_segment"
)  # fmt: skip


def tables_and_version(data_dir: Path) -> tuple[set[str], int]:
    conn = sqlite3.connect(data_dir / DB_FILE)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return tables, conn.execute("SELECT schema_version FROM meta").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize("version", [4, 5])
def test_versions_4_and_5_are_upgraded_in_place(
    tmp_path: Path, identity: NodeIdentity, version: int
) -> None:
    """Versions 4 and 5 keep the segments one after another in table snapshot_piece, in
    pieces numbered across segments; they become rows of table snapshot_segment."""
    record = snap(10, SEGMENTS, base=4)
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        s.write([record])
    execute(
        tmp_path,
        "CREATE TABLE snapshot_piece (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)",
        "INSERT INTO snapshot_piece SELECT row_number() OVER (ORDER BY idx, part) - 1, data "
        "FROM snapshot_segment",
        "DROP TABLE snapshot_segment",
        f"UPDATE meta SET schema_version = {version}",
    )
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        state = s.load()
        assert (state.snapshot, state.base) == (record.snapshot, 4)
    assert part_rows(tmp_path) == parts_of(*enumerate(SEGMENTS))
    assert tables_and_version(tmp_path) == ({*CURRENT_TABLES}, SCHEMA_VERSION)


def test_sealed_segments_written_ahead_leave_the_snapshot_only_its_tail(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    """Segments handed over as they seal (in the ordinary writes) are not written again
    by the snapshot that refers to them: its transaction holds only the tail's parts."""
    tail = b"tail" * 10
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        assert s._conn is not None
        for i, segment in enumerate(SEGMENTS[:9]):
            s.write([SegmentRecord(i, segment)])
        assert s.pieces_written == 18
        changes = s._conn.total_changes
        s.write([snap(10, (*SEGMENTS[:9], tail))])
        assert s.pieces_written == 18 + 1
        assert s._conn.total_changes - changes == 1 + 1  # the tail's one part, the row
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
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        s.write([*(SegmentRecord(i, x) for i, x in enumerate(SEGMENTS[:5])), first])
        s.write([SegmentRecord(5, SEGMENTS[5])])
    assert part_rows(tmp_path) == parts_of(*enumerate(SEGMENTS[:6]), (5, tail))
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        assert s.load().snapshot == first.snapshot
        s.write([second])
        assert s.pieces_written == 1  # the new tail: segment 5 is known by its bytes
        assert s.load().snapshot == second.snapshot
    assert part_rows(tmp_path) == parts_of(*enumerate(second.snapshot.segments))


def test_a_segment_sealed_after_the_snapshot_in_the_same_write_is_kept(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    """Group commit puts later Readies' records in the same write: a segment that sealed
    after the snapshot (its record comes after the snapshot's) is the newest at its
    index and stays for the next snapshot, which then writes only its tail."""
    tail = b"tail" * 10
    with SqliteStorage.open(tmp_path, identity, piece_size=PIECE) as s:
        s.write([snap(10, (*SEGMENTS[:3], tail)), SegmentRecord(3, SEGMENTS[3])])
        assert part_rows(tmp_path) == parts_of(*enumerate(SEGMENTS[:4]), (3, tail))
        written = s.pieces_written
        s.write([snap(20, (*SEGMENTS[:4], tail))])
        assert s.pieces_written == written + 1
    assert part_rows(tmp_path) == parts_of(*enumerate(SEGMENTS[:4]), (4, tail))


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
    s = SqliteStorage.open(tmp_path, identity, piece_size=PIECE)
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
                s = SqliteStorage.open(tmp_path, identity, piece_size=PIECE)
                assert s.load().snapshot == (newest.snapshot if newest else None)
                if rng.random() < 0.5:  # the machine restored: equal bytes, other objects
                    state = [bytes(x) for x in state]
        assert newest is not None
        assert s.load().snapshot == newest.snapshot
        rows = {(i, crc) for i, crc, _ in part_rows(tmp_path)}
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
                snapshots_before = s.pieces_written
                s.write(pending)
                if any(isinstance(r, SnapshotRecord) for r in pending):
                    assert s.pieces_written - snapshots_before <= 2  # a tail, a sealed one
                pending = []
        s.write(pending)
    with SqliteStorage.open(tmp_path, identity, fsync=False) as s:
        durable = s.load()
    assert durable.snapshot is not None and durable.snapshot.slot >= 275
    again = ChatLog()
    Node(4, cfg, random.Random(0), again, durable)
    assert again.entries == machine.entries and len(again.entries) == 900
