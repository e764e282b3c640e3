"""SqliteStorage: round trips, DurableState.apply semantics, and every bad data directory."""

from __future__ import annotations

import os
import random
import re
import select
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from storage_helpers import folded

from paxoi.core.records import (
    AcceptedRecord,
    BallotRecord,
    DecidedRecord,
    DurableState,
    PromisedRecord,
    Record,
    SnapshotRecord,
)
from paxoi.core.snapshot import Snapshot
from paxoi.core.types import BOTTOM, Ballot, Command, PValue
from paxoi.storage import (
    DB_FILE,
    LOCK_FILE,
    SCHEMA_VERSION,
    SEGMENTS_DIR,
    CorruptData,
    DataDirLocked,
    DataDirUnusable,
    IdentityMismatch,
    NodeIdentity,
    SqliteStorage,
    StorageError,
)

DEADLINE = 15.0  # seconds any subprocess step may take before the test fails


def fill(data_dir: Path, identity: NodeIdentity, slots: int = 2000) -> None:
    """A database of several pages, so truncating it really cuts into its B-trees."""
    with SqliteStorage.open(data_dir, identity, fsync=False) as s:
        s.write([DecidedRecord(i, (Command("c", i, os.urandom(40)),)) for i in range(slots)])


# -- round trips ---------------------------------------------------------------------------


def test_fresh_directory_loads_empty_state(tmp_path: Path, identity: NodeIdentity) -> None:
    with SqliteStorage.open(tmp_path / "node", identity) as s:
        assert s.load() == DurableState()
        assert s.load().promised == BOTTOM
        assert s.identity == identity
    assert sorted(os.listdir(tmp_path / "node")) == [LOCK_FILE, DB_FILE]


def test_every_record_kind_survives_reopen(
    tmp_path: Path, identity: NodeIdentity, every_kind: list[Record]
) -> None:
    with SqliteStorage.open(tmp_path, identity) as s:
        s.write(every_kind)
        assert s.load() == folded(every_kind)
    with SqliteStorage.open(tmp_path, identity, create=False) as s:
        state = s.load()
    assert state == folded(every_kind)
    assert state.promised == Ballot(4, 0)  # raised by the accept, above the promise
    assert state.decided[6] == ()
    assert state.round_used == 11


def test_accepted_replacement_follows_durable_state(tmp_path: Path, identity: NodeIdentity) -> None:
    a, b, c = (Command("x", 1, b"a"),), (Command("x", 2, b"b"),), (Command("x", 3, b"c"),)
    steps: list[list[Record]] = [
        [AcceptedRecord(PValue(Ballot(5, 1), 0, a))],
        [AcceptedRecord(PValue(Ballot(4, 9), 0, b))],  # lower ballot: ignored
        [AcceptedRecord(PValue(Ballot(5, 1), 0, c))],  # equal ballot: replaces, as apply does
        [AcceptedRecord(PValue(Ballot(5, 0), 1, a)), AcceptedRecord(PValue(Ballot(6, 0), 1, b))],
        [PromisedRecord(Ballot(2, 0)), BallotRecord(3), BallotRecord(1)],  # neither goes back
    ]
    with SqliteStorage.open(tmp_path, identity) as s:
        for step in steps:
            s.write(step)
    with SqliteStorage.open(tmp_path, identity) as s:
        state = s.load()
    assert state == folded(*steps)
    assert state.accepted[0].value == c
    assert state.accepted[1].ballot == Ballot(6, 0)
    assert state.promised == Ballot(6, 0)
    assert state.round_used == 3


def test_empty_write_is_a_no_op(tmp_path: Path, identity: NodeIdentity) -> None:
    with SqliteStorage.open(tmp_path, identity) as s:
        s.write([])
        assert s.load() == DurableState()


def _ballots() -> st.SearchStrategy[Ballot]:
    return st.builds(Ballot, st.integers(0, 4), st.integers(0, 2))


def _batches() -> st.SearchStrategy[tuple[Command, ...]]:
    command = st.builds(Command, st.sampled_from("ab"), st.integers(1, 3), st.binary(max_size=4))
    return st.lists(command, max_size=2).map(tuple)


def _snapshot_records() -> st.SearchStrategy[SnapshotRecord]:
    table = st.lists(
        st.tuples(st.sampled_from("ab"), st.integers(0, 3), st.just(())), max_size=2
    ).map(lambda rows: tuple({r[0]: r for r in rows}.values()))
    return st.builds(
        lambda slot, cut, segments, clients: SnapshotRecord(
            Snapshot(slot, tuple(segments), clients), min(cut, slot)
        ),
        st.integers(0, 4),
        st.integers(0, 4),
        st.lists(st.binary(max_size=4), max_size=3),
        table,
    )


_records: st.SearchStrategy[Record] = st.one_of(
    _snapshot_records(),
    st.builds(PromisedRecord, _ballots()),
    st.builds(AcceptedRecord, st.builds(PValue, _ballots(), st.integers(0, 3), _batches())),
    st.builds(DecidedRecord, st.integers(0, 3), _batches()),
    st.builds(BallotRecord, st.integers(-1, 5)),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(_records, max_size=6), max_size=5))
def test_any_record_sequence_folds_like_durable_state(batches: list[list[Record]]) -> None:
    """However records are split into writes, the database folds them as apply does."""
    with tempfile.TemporaryDirectory() as d:
        identity = NodeIdentity("c", 0)
        with SqliteStorage.open(d, identity, fsync=False) as s:
            for batch in batches:
                s.write(batch)
        with SqliteStorage.open(d, identity, fsync=False) as s:
            assert s.load() == folded(*batches)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(_records, max_size=6), max_size=5))
def test_folds_the_same_when_loaded_between_writes(batches: list[list[Record]]) -> None:
    """load() tells the storage the promised ballot on disk, and later writes skip the
    update that would not raise it: the fold must not change."""
    with tempfile.TemporaryDirectory() as d:
        identity = NodeIdentity("c", 0)
        with SqliteStorage.open(d, identity, fsync=False) as s:
            s.load()
            for i, batch in enumerate(batches):
                s.write(batch)
                assert s.load() == folded(*batches[: i + 1])
        with SqliteStorage.open(d, identity, fsync=False) as s:
            assert s.load() == folded(*batches)


def test_many_rows_in_one_write(tmp_path: Path, identity: NodeIdentity) -> None:
    """Rows go many to a statement; a write of more rows than one statement takes (and
    a slot twice, in two statements) lands exactly as apply folds it."""
    records: list[Record] = [
        AcceptedRecord(PValue(Ballot(1, 0), slot, (Command("c", slot + 1, b"v"),)))
        for slot in range(150)
    ]
    records += [DecidedRecord(slot, (Command("c", slot + 1, b"d"),)) for slot in range(130)]
    records.append(AcceptedRecord(PValue(Ballot(2, 1), 3, ())))  # the 151st row: slot 3 again
    with SqliteStorage.open(tmp_path, identity) as s:
        s.write(records)
    with SqliteStorage.open(tmp_path, identity) as s:
        state = s.load()
    assert state == folded(records)
    assert len(state.accepted) == 150 and len(state.decided) == 130
    assert state.accepted[3] == PValue(Ballot(2, 1), 3, ())


def test_no_fsync_mode_works(
    tmp_path: Path, identity: NodeIdentity, every_kind: list[Record]
) -> None:
    with SqliteStorage.open(tmp_path, identity, fsync=False) as s:
        assert s.fsync is False
        assert s._conn is not None
        assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 0  # OFF
        s.write(every_kind)
    with SqliteStorage.open(tmp_path, identity) as s:
        assert s._conn is not None
        assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s.load() == folded(every_kind)


def test_closed_storage_refuses_work(tmp_path: Path, identity: NodeIdentity) -> None:
    s = SqliteStorage.open(tmp_path, identity)
    s.close()
    s.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        s.write([BallotRecord(1)])
    with pytest.raises(StorageError, match="closed"):
        s.load()


def test_leftover_of_an_interrupted_creation_is_ignored(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    (tmp_path / "data.db.creating").write_bytes(b"half a database")
    with SqliteStorage.open(tmp_path, identity) as s:
        assert s.load() == DurableState()
    assert not (tmp_path / "data.db.creating").exists()


# -- identity ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        (NodeIdentity("other-cluster", 1, b"config-v1"), "cluster 'other-cluster' node 1"),
        (NodeIdentity("test-cluster", 2, b"config-v1"), "cluster 'test-cluster' node 2"),
        (NodeIdentity("test-cluster", 1, b"config-v2"), "another cluster configuration"),
    ],
)
def test_identity_mismatch(
    tmp_path: Path, identity: NodeIdentity, other: NodeIdentity, expected: str
) -> None:
    with SqliteStorage.open(tmp_path, identity) as s:
        s.write([PromisedRecord(Ballot(1, 1))])
    with pytest.raises(IdentityMismatch) as info:
        SqliteStorage.open(tmp_path, other)
    message = str(info.value)
    assert str(tmp_path) in message and expected in message and "--data-dir" in message
    # Nothing was reset: the right identity still finds its promise.
    with SqliteStorage.open(tmp_path, identity) as s:
        assert s.load().promised == Ballot(1, 1)


# -- the lock ------------------------------------------------------------------------------

_HOLDER = """
import sys
from paxoi.storage import NodeIdentity, SqliteStorage
s = SqliteStorage.open(sys.argv[1], NodeIdentity("test-cluster", 1, b"config-v1"))
print("ready", flush=True)
sys.stdin.read()
s.close()
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Another process that has opened tmp_path and keeps it open until its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], DEADLINE)
        assert ready, f"the holder process did not open the storage within {DEADLINE} s"
        assert proc.stdout.readline() == b"ready\n"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(DEADLINE)


def test_lock_held_by_another_process(
    tmp_path: Path, identity: NodeIdentity, holder: subprocess.Popen[bytes]
) -> None:
    with pytest.raises(DataDirLocked) as info:
        SqliteStorage.open(tmp_path, identity)
    message = str(info.value)
    assert str(tmp_path) in message and f"pid {holder.pid}" in message
    assert holder.stdin is not None
    holder.stdin.close()  # a clean close releases the lock
    assert holder.wait(DEADLINE) == 0
    with SqliteStorage.open(tmp_path, identity) as s:
        assert s.load() == DurableState()


def test_lock_is_released_when_the_holder_is_killed(
    tmp_path: Path, identity: NodeIdentity, holder: subprocess.Popen[bytes]
) -> None:
    holder.kill()  # SIGKILL: no cleanup runs, the kernel drops the flock
    holder.wait(DEADLINE)
    with SqliteStorage.open(tmp_path, identity) as s:
        assert s.load() == DurableState()


def test_lock_also_excludes_a_second_open_in_one_process(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    with SqliteStorage.open(tmp_path, identity), pytest.raises(DataDirLocked):
        SqliteStorage.open(tmp_path, identity)


# -- damaged databases ---------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0.5, 0.1, 50 / 8192, 0.0])
def test_truncated_database(tmp_path: Path, identity: NodeIdentity, keep: float) -> None:
    fill(tmp_path, identity)
    db = tmp_path / DB_FILE
    size = db.stat().st_size
    assert size > 8192
    os.truncate(db, int(size * keep))
    with pytest.raises(CorruptData) as info, SqliteStorage.open(tmp_path, identity) as s:
        s.load()  # some truncations only show when the rows are read
    assert str(db) in str(info.value) and "backup" in str(info.value)


def test_garbage_database(tmp_path: Path, identity: NodeIdentity) -> None:
    fill(tmp_path, identity, slots=10)
    (tmp_path / DB_FILE).write_bytes(random.Random(1).randbytes(20_000))
    with pytest.raises(CorruptData, match=re.escape(str(tmp_path / DB_FILE))):
        SqliteStorage.open(tmp_path, identity)


def test_overwritten_pages(tmp_path: Path, identity: NodeIdentity) -> None:
    fill(tmp_path, identity)
    db = tmp_path / DB_FILE
    with open(db, "r+b") as f:  # keep the header, scribble over the B-tree pages
        f.seek(4096)
        f.write(random.Random(2).randbytes(16_384))
    with pytest.raises(CorruptData), SqliteStorage.open(tmp_path, identity) as s:
        s.load()


@pytest.mark.parametrize(
    ("sql", "where"),
    [
        ("UPDATE decided SET value = x'c1' WHERE slot = 3", "table decided, slot 3"),
        ("UPDATE decided SET value = x'92a17801' WHERE slot = 4", "table decided, slot 4"),
        ("UPDATE decided SET value = 'text' WHERE slot = 5", "table decided, slot 5"),
        ("INSERT INTO accepted VALUES (9, 1, 0, x'91c0')", "table accepted, slot 9"),
        ("INSERT INTO accepted VALUES (9, 'one', 0, x'90')", "table accepted, slot 9"),
        ("UPDATE promised SET round = 1.5", "table promised"),
    ],
)
def test_row_that_does_not_decode(
    tmp_path: Path, identity: NodeIdentity, sql: str, where: str
) -> None:
    fill(tmp_path, identity, slots=10)
    message = load_error_after(tmp_path, identity, sql)
    assert where in message and str(tmp_path / DB_FILE) in message


def load_error_after(tmp_path: Path, identity: NodeIdentity, sql: str) -> str:
    """Run `sql` on the stored database, then the CorruptData message load() gives."""
    conn = sqlite3.connect(tmp_path / DB_FILE)
    with conn:
        conn.execute(sql)
    conn.close()
    with SqliteStorage.open(tmp_path, identity) as s, pytest.raises(CorruptData) as info:
        s.load()
    return str(info.value)


def test_database_file_missing_but_wal_present(tmp_path: Path, identity: NodeIdentity) -> None:
    (tmp_path / "data.db-wal").write_bytes(b"frames of a lost database")
    with pytest.raises(CorruptData, match=r"no data\.db"):
        SqliteStorage.open(tmp_path, identity)


def test_other_sqlite_database_is_refused(tmp_path: Path, identity: NodeIdentity) -> None:
    conn = sqlite3.connect(tmp_path / DB_FILE)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(DataDirUnusable, match="not a paxoi one"):
        SqliteStorage.open(tmp_path, identity)


def test_newer_schema_is_refused(tmp_path: Path, identity: NodeIdentity) -> None:
    fill(tmp_path, identity, slots=1)
    conn = sqlite3.connect(tmp_path / DB_FILE)
    with conn:
        conn.execute("UPDATE meta SET schema_version = 99")
    conn.close()
    with pytest.raises(DataDirUnusable, match="schema version 99"):
        SqliteStorage.open(tmp_path, identity)


# -- unusable directories ------------------------------------------------------------------


def test_path_is_a_regular_file(tmp_path: Path, identity: NodeIdentity) -> None:
    path = tmp_path / "file"
    path.write_text("not a directory")
    with pytest.raises(DataDirUnusable, match=re.escape(f"{path} is a regular file")):
        SqliteStorage.open(path, identity)
    with pytest.raises(DataDirUnusable, match="not a directory"):
        SqliteStorage.open(path / "below", identity)


def test_foreign_files_are_never_initialised(tmp_path: Path, identity: NodeIdentity) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DataDirUnusable, match=r"not empty \(notes.txt\)"):
        SqliteStorage.open(tmp_path, identity)


def test_create_false_needs_an_existing_node(tmp_path: Path, identity: NodeIdentity) -> None:
    with pytest.raises(DataDirUnusable, match="does not exist"):
        SqliteStorage.open(tmp_path / "missing", identity, create=False)
    with pytest.raises(DataDirUnusable, match="holds no paxoi database"):
        SqliteStorage.open(tmp_path, identity, create=False)
    assert not (tmp_path / DB_FILE).exists()


def _try_open(path: Path) -> tuple[int, str]:
    try:
        SqliteStorage.open(path, NodeIdentity("test-cluster", 1, b"config-v1")).close()
    except StorageError as e:
        return 3, f"{type(e).__name__}: {e}"
    return 0, "opened"


def _open_as_unprivileged(path: Path) -> tuple[int, str]:
    """Open `path` as uid/gid 65534 would; returns (3 if StorageError else 0, message).

    As root, a forked child drops its privileges and opens the directory. Forking rather
    than running `python -c` with a preexec_fn, because the interpreter may live where
    uid 65534 cannot execute it (here: under /root); the forked child needs no exec.
    """
    if os.geteuid() != 0:  # already unprivileged: the directory's mode is enough
        return _try_open(path)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            os.close(read_end)
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            except OSError as e:
                os.write(write_end, f"SETUID-FAILED: {e}".encode())
                code = 2
            else:
                code, out = _try_open(path)
                os.write(write_end, out.encode())
        except BaseException as e:
            os.write(write_end, f"child failed: {e!r}".encode())
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], DEADLINE)
        assert ready, f"the unprivileged child did not answer within {DEADLINE} s"
        chunks = []
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    out = b"".join(chunks).decode()
    code = os.waitstatus_to_exitcode(status)
    if code == 2:
        pytest.skip(f"cannot drop privileges to uid 65534 to test permissions: {out}")
    return code, out


@pytest.fixture
def shared_dir(identity: NodeIdentity) -> Iterator[Path]:
    """A directory other users can reach but not write (pytest's tmp_path is 0700)."""
    base = Path(tempfile.mkdtemp(prefix="paxoi-perm-"))
    try:
        base.chmod(0o755)
        yield base
    finally:
        for p in (base, *base.rglob("*")):
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(base)


def test_permission_denied_on_existing_node(shared_dir: Path, identity: NodeIdentity) -> None:
    node = shared_dir / "node"
    with SqliteStorage.open(node, identity) as s:
        s.write([PromisedRecord(Ballot(1, 1))])
    node.chmod(0o555)  # unwritable by anyone but root
    code, out = _open_as_unprivileged(node)
    assert code == 3, out
    assert out.startswith("DataDirUnusable: ") and str(node) in out and "permission denied" in out
    assert "Traceback" not in out


def test_permission_denied_creating_a_node(shared_dir: Path) -> None:
    shared_dir.chmod(0o555)
    code, out = _open_as_unprivileged(shared_dir / "node")
    assert code == 3, out
    assert out.startswith("DataDirUnusable: cannot create data directory")
    assert "permission denied" in out and "Traceback" not in out


def test_open_is_quick(tmp_path: Path, identity: NodeIdentity) -> None:
    """A guard against an accidental O(n^2) on open; the real figure is in bench/."""
    fill(tmp_path, identity, slots=5000)
    start = time.perf_counter()
    with SqliteStorage.open(tmp_path, identity) as s:
        assert len(s.load().decided) == 5000
    assert time.perf_counter() - start < 2.0


# -- snapshots and compaction --------------------------------------------------------------


def snap(slot: int, base: int, state: bytes = b"S") -> SnapshotRecord:
    return SnapshotRecord(Snapshot(slot, (state + str(slot).encode(),), (("c", slot, ()),)), base)


def log_records(slots: range) -> list[Record]:
    out: list[Record] = []
    for i in slots:
        value = (Command("c", i + 1, b"v" * 100),)
        out += [AcceptedRecord(PValue(Ballot(1, 0), i, value)), DecidedRecord(i, value)]
    return out


def rows(path: Path, table: str) -> list[int]:
    conn = sqlite3.connect(path / DB_FILE)
    try:
        return [r[0] for r in conn.execute(f"SELECT slot FROM {table} ORDER BY slot")]
    finally:
        conn.close()


def test_snapshot_deletes_the_rows_below_its_base(tmp_path: Path, identity: NodeIdentity) -> None:
    records = [*log_records(range(10)), snap(8, 6)]
    with SqliteStorage.open(tmp_path, identity) as s:
        s.write(records)
    assert rows(tmp_path, "decided") == rows(tmp_path, "accepted") == [6, 7, 8, 9]
    with SqliteStorage.open(tmp_path, identity) as s:
        state = s.load()
    assert state == folded(records)
    assert state.snapshot == snap(8, 6).snapshot and state.base == 6


@pytest.mark.parametrize(
    "batches,slot,base",
    [
        ([[snap(10, 8)], [snap(5, 5)]], 10, 8),  # an older snapshot never replaces a newer
        ([[snap(5, 5), snap(10, 2)]], 10, 5),  # the base only grows
        ([[snap(3, 3)], [snap(7, 6)]], 7, 6),
    ],
)
def test_newest_snapshot_wins(
    tmp_path: Path, identity: NodeIdentity, batches: list[list[Record]], slot: int, base: int
) -> None:
    with SqliteStorage.open(tmp_path, identity) as s:
        for batch in batches:
            s.write(batch)
        state = s.load()
    assert state.snapshot is not None and (state.snapshot.slot, state.base) == (slot, base)
    assert state == folded(*batches)


def test_rows_below_the_base_written_later_are_not_resurrected(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    batches = [[snap(8, 6)], log_records(range(4, 9))]
    with SqliteStorage.open(tmp_path, identity) as s:
        for batch in batches:
            s.write(batch)
    assert rows(tmp_path, "decided") == [6, 7, 8]
    with SqliteStorage.open(tmp_path, identity) as s:
        assert s.load() == folded(*batches)


@pytest.mark.parametrize("compact", [True, False])
def test_the_database_stops_growing_with_snapshots(
    tmp_path: Path, identity: NodeIdentity, compact: bool
) -> None:
    """Pages freed by compaction are reused: the database's size levels off. (Its WAL is
    checkpointed every 1000 pages, SQLite's default, and cut back to 64 MiB after.)"""
    pages = []
    with SqliteStorage.open(tmp_path, identity, fsync=False) as s:
        assert s._conn is not None
        for round_ in range(12):
            slots = range(round_ * 300, (round_ + 1) * 300)
            for i in range(0, 300, 50):
                s.write(log_records(slots[i : i + 50]))
            if compact:
                s.write([snap(slots[-1] + 1, slots[-1] + 1 - 50)])
            pages.append(s._conn.execute("PRAGMA page_count").fetchone()[0])
    if compact:
        assert len(rows(tmp_path, "decided")) == 50
        assert pages[-1] == pages[3], pages
    else:
        assert pages[-1] > 2 * pages[3], pages


def test_compaction_writes_no_zeros_over_what_it_frees(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    """Deleting the rows below a snapshot's base frees their pages; overwriting them
    with zeros (SQLite's SECURE_DELETE, on in Debian's build) would write every freed
    byte to the WAL while every accept waits. Only the pages that change are written."""
    value = (Command("c", 1, os.urandom(8000)),)
    with SqliteStorage.open(tmp_path, identity) as s:
        assert s._conn is not None
        s.write([AcceptedRecord(PValue(Ballot(1, 0), i, value)) for i in range(200)])
        s._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        s.write([snap(200, 200)])  # frees 200 rows of 8 KB: 400 overflow pages and more
        assert len(rows(tmp_path, "accepted")) == 0
        wal = os.path.getsize(f"{tmp_path / DB_FILE}-wal")
    assert wal < 40 * 4096, wal


def only_segment_file(tmp_path: Path) -> Path:
    (path,) = (tmp_path / SEGMENTS_DIR).iterdir()
    return path


def _zero_segment(tmp_path: Path) -> None:
    path = only_segment_file(tmp_path)
    path.write_bytes(bytes(path.stat().st_size))


def _cut_segment(tmp_path: Path) -> None:
    path = only_segment_file(tmp_path)
    path.write_bytes(path.read_bytes()[:-1])


def _grow_segment(tmp_path: Path) -> None:
    path = only_segment_file(tmp_path)
    path.write_bytes(path.read_bytes() + b"x")


def _remove_segment(tmp_path: Path) -> None:
    only_segment_file(tmp_path).unlink()


@pytest.mark.parametrize(
    "damage,detail",
    [
        (_zero_segment, "segment 0 checksum"),
        (_cut_segment, "segment 0 (CRC 0x"),
        (_cut_segment, "is 1 bytes on disk, not 2"),
        (_grow_segment, "is 3+ bytes on disk, not 2"),
        (_remove_segment, "has no file segments/0-"),
        ("DELETE FROM segment", "segment 0 (CRC 0x"),
        ("UPDATE segment SET crc = crc + 1", "segment 0 (CRC 0x"),
        ("UPDATE segment SET length = 'x'", "the row of segment 0 does not fit"),
        ("UPDATE snapshot SET slot = 9", "the frame is of slot 8, not 9"),
        ("UPDATE snapshot SET base = 9", "do not fit"),
        ("UPDATE snapshot SET base = -1", "do not fit"),
        ("UPDATE snapshot SET frame = 'text'", "the frame is a str"),
        ("UPDATE snapshot SET frame = substr(frame, 1, length(frame) - 1)", "frame"),
    ],
)
def test_damaged_snapshot_is_a_clear_error(
    tmp_path: Path, identity: NodeIdentity, damage: str | Callable[[Path], None], detail: str
) -> None:
    with SqliteStorage.open(tmp_path, identity) as s:
        s.write([*log_records(range(10)), snap(8, 6)])
    files = sorted((tmp_path / SEGMENTS_DIR).iterdir())
    if isinstance(damage, str):
        message = load_error_after(tmp_path, identity, damage)
    else:
        damage(tmp_path)
        with SqliteStorage.open(tmp_path, identity) as s, pytest.raises(CorruptData) as info:
            s.load()
        message = str(info.value)
    assert detail in message and str(tmp_path / DB_FILE) in message
    if damage != _remove_segment:  # a damaged node's files stay as they were
        assert sorted((tmp_path / SEGMENTS_DIR).iterdir()) == files


def test_version_1_database_is_upgraded_in_place(tmp_path: Path, identity: NodeIdentity) -> None:
    with SqliteStorage.open(tmp_path, identity) as s:
        s.write(log_records(range(3)))
    conn = sqlite3.connect(tmp_path / DB_FILE)
    with conn:
        conn.execute("DROP TABLE snapshot")
        conn.execute("UPDATE meta SET schema_version = 1")
    conn.close()
    with SqliteStorage.open(tmp_path, identity) as s:
        assert sorted(s.load().decided) == [0, 1, 2]
        s.write([snap(2, 1)])
    conn = sqlite3.connect(tmp_path / DB_FILE)
    assert conn.execute("SELECT schema_version FROM meta").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    with SqliteStorage.open(tmp_path, identity) as s:
        assert s.load().base == 1
