"""The durable engine: SQLite (stdlib sqlite3) in one data directory per node.

Why SQLite rather than a hand-written log: its atomic commit and recovery are among the
most tested code there is, and a node's whole state fits in seven small tables.

Snapshots: a `SnapshotRecord` replaces the one row of table `snapshot` (the newest
snapshot wins) and, in the same transaction, deletes the decided and accepted rows
below its `base`, so the database stops growing with the log (freed pages are reused).
The row holds the image's frame (slot, segment lengths and CRCs, client table; see
core/snapshot.py); the segments are files of their own in `segments/`, one per index and
CRC, listed in table `segment` (see storage/segment_files.py for why files, and the
order of file and transaction that keeps the two in step). A segment that seals reaches
storage before any snapshot refers to it (`SegmentRecord`, in the ordinary writes), so
a snapshot's own transaction writes only its frame and the segments that changed since
(a chat's tail): rewriting the whole chat, 100s of MB, or even the 100 MB of one period's
new 1 KiB messages, would stall every promise and accept queued behind it on the
group-commit thread. What a write stores and drops is decided in storage/segments.py.

WAL mode with `synchronous=FULL` makes each commit one append and one fsync of the WAL,
so one `write()` (one transaction) costs one sync however many records it carries: that
is what group commit amortises.

Layout of a data directory:

    LOCK      flock()ed for the lifetime of the storage; holds the owner's pid
    data.db   the database (plus data.db-wal and data.db-shm while open)
    segments/ the snapshot segments, `<index>-<crc>.seg`

Safety rules enforced on open, because each failure mode would otherwise make a node
silently forget promises it made (which breaks Paxos): the lock (two processes never
share a directory), the stored identity (never another node's state), `quick_check` and
strict decoding (never a damaged database), and no silent re-creation (a directory with
files in it but no database is refused, not initialised).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from ..core.records import (
    AcceptedRecord,
    BallotRecord,
    DecidedRecord,
    DurableState,
    PromisedRecord,
    Record,
    SegmentRecord,
    SnapshotRecord,
)
from ..core.snapshot import (
    Snapshot,
    SnapshotError,
    assemble_snapshot,
    crc32,
    decode_frame,
    decode_snapshot,
    encode_frame,
)
from ..core.types import BOTTOM, Ballot, Batch, PValue, Slot
from ..wire.values import DecodeError, decode_batch, encode_batch
from .base import (
    CorruptData,
    DataDirLocked,
    DataDirUnusable,
    IdentityMismatch,
    NodeIdentity,
    StorageError,
)
from .segment_files import SegmentFiles, fsync_path
from .segments import Key, SegmentIndex, SegmentPlan, plan_segments

log = logging.getLogger("paxoi.storage")

DB_FILE = "data.db"
LOCK_FILE = "LOCK"
#: A database is built under this name and renamed into place only when complete, so a
#: crash during creation never leaves a `data.db` that looks initialised but is not.
CREATING_FILE = "data.db.creating"
#: Bumped on any incompatible change of the tables below; older paxoi refuses newer data.
#: 2: table snapshot. 3: the snapshot's image in table snapshot_chunk. 4: its frame in
#: table snapshot, its segments in table snapshot_piece. 5: a decided row's value may be
#: empty, meaning the accepted row's (`_REFERS`). 6: segments in table snapshot_segment,
#: keyed by index and CRC (stored ahead of the snapshot that refers to them). 7: the
#: segments in files, listed in table segment; table snapshot without piece_size. Older
#: versions are upgraded in place when opened.
SCHEMA_VERSION = 7
#: UPSERT (ON CONFLICT DO UPDATE) arrived in 3.24; row values in 3.15.
MIN_SQLITE = (3, 24, 0)
#: `PRAGMA application_id` ("pxoi"): tells a paxoi database from any other SQLite file.
APPLICATION_ID = 0x70786F69

_TABLES = {
    "meta": """CREATE TABLE meta (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        schema_version INTEGER NOT NULL,
        cluster_id TEXT NOT NULL,
        node_id INTEGER NOT NULL,
        config BLOB NOT NULL)""",
    "promised": """CREATE TABLE promised (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        round INTEGER NOT NULL,
        node INTEGER NOT NULL)""",
    "accepted": """CREATE TABLE accepted (
        slot INTEGER PRIMARY KEY,
        round INTEGER NOT NULL,
        node INTEGER NOT NULL,
        value BLOB NOT NULL)""",
    "decided": """CREATE TABLE decided (
        slot INTEGER PRIMARY KEY,
        value BLOB NOT NULL)""",
    "proposer": """CREATE TABLE proposer (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        round_used INTEGER NOT NULL)""",
    # Segment k of the frame, of CRC c, is the rows (k, c, part) in part order; rows
    # the frame does not list are segments sealed since, for the next snapshot.
    "snapshot": """CREATE TABLE snapshot (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        slot INTEGER NOT NULL,
        base INTEGER NOT NULL,
        frame BLOB NOT NULL)""",
    "segment": """CREATE TABLE segment (
        idx INTEGER NOT NULL,
        crc INTEGER NOT NULL,
        length INTEGER NOT NULL,
        PRIMARY KEY (idx, crc))""",
}
#: Tables each schema version must have of those the current one keeps (an older
#: version is upgraded by creating the rest; versions 2 to 6 hold their snapshot in
#: other tables, converted).
_TABLES_OF = {
    1: set(_TABLES) - {"snapshot", "segment"},
    2: set(_TABLES) - {"snapshot", "segment"},
    3: set(_TABLES) - {"snapshot", "segment"},
    4: set(_TABLES) - {"segment"},
    5: set(_TABLES) - {"segment"},
    6: set(_TABLES) - {"segment"},
    7: set(_TABLES),
}
#: SQLite keeps a WAL file at its largest size unless told otherwise; a snapshot makes
#: one big transaction, so let the WAL shrink back after checkpoints.
_JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024

# The statements below encode DurableState.apply, one per record kind. Row-value
# comparisons are lexicographic, exactly like Ballot's ordering.
_RAISE_PROMISED = (
    "UPDATE promised SET round = ?1, node = ?2 WHERE id = 0 AND (round, node) < (?1, ?2)"
)
# Rows go in one statement of many VALUES each (see `_insert_rows`), not executemany.
_UPSERT_ACCEPTED = (
    "INSERT INTO accepted (slot, round, node, value) VALUES ",
    "(?, ?, ?, ?)",
    """ ON CONFLICT (slot) DO UPDATE
    SET round = excluded.round, node = excluded.node, value = excluded.value
    WHERE (excluded.round, excluded.node) >= (accepted.round, accepted.node)""",
)
_PUT_DECIDED = ("INSERT OR REPLACE INTO decided (slot, value) VALUES ", "(?, ?)", "")
#: A decided row's value when it is the value of the accepted row of its slot: most
#: decisions are what this node's acceptor accepted, and a second copy of the batch
#: doubled what SQLite writes, checkpoints and, at compaction, deletes. (An encoded
#: batch is never empty: the no-op is msgpack's empty array.)
_REFERS = b""
#: Rows per statement in `_insert_rows` (SQLite's limit: 32,766 parameters).
_ROWS_PER_STATEMENT = 64
_RAISE_ROUND = "UPDATE proposer SET round_used = ?1 WHERE id = 0 AND round_used < ?1"
# The newest snapshot wins (write() knows which is newer, and checks: the upsert changes
# the row only then); the base only grows; rows below the base go.
_PUT_SNAPSHOT = """INSERT INTO snapshot (id, slot, base, frame) VALUES (0, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE
    SET slot = excluded.slot, base = max(base, excluded.base), frame = excluded.frame
    WHERE excluded.slot > snapshot.slot"""
_PUT_SEGMENTS = ("INSERT OR REPLACE INTO segment (idx, crc, length) VALUES ", "(?, ?, ?)", "")
_DROP_SEGMENTS = ("DELETE FROM segment WHERE (idx, crc) IN (VALUES ", "(?, ?)", ")")
_RAISE_BASE = "UPDATE snapshot SET base = ?1 WHERE id = 0 AND base < ?1"
_DROP_DECIDED = "DELETE FROM decided WHERE slot < ?"
_DROP_ACCEPTED = "DELETE FROM accepted WHERE slot < ?"

# SQLite primary result codes (the low byte of an extended code).
_SQLITE_PERM = 3
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_AUTH = 23
_SQLITE_NOTADB = 26

#: Files a directory may hold and still count as empty (ready for a new database).
_IGNORABLE = {LOCK_FILE, "lost+found"} | {
    CREATING_FILE + s for s in ("", "-wal", "-shm", "-journal")
}


class SqliteStorage:
    """A node's durable state in `<data_dir>/data.db`; see the module docstring.

    Use `SqliteStorage.open`. Safe to hand from one thread to another (the GroupCommitter
    writes from its own thread); an internal lock serialises calls.
    """

    def __init__(
        self,
        *,
        data_dir: Path,
        identity: NodeIdentity,
        conn: sqlite3.Connection,
        lock_fd: int,
        fsync: bool,
        base: int = 0,
        snapshot_slot: int = -1,
        keys: Sequence[Key] = (),
    ) -> None:
        self.data_dir = data_dir
        self.db_path = data_dir / DB_FILE
        self.identity = identity
        self.fsync = fsync
        self._files = SegmentFiles(data_dir, fsync)
        #: Snapshot segments written so far (unchanged ones are not): for tests and
        #: metrics.
        self.segments_written = 0
        self._conn: sqlite3.Connection | None = conn
        self._lock_fd = lock_fd
        self._mutex = threading.Lock()
        #: Decided and accepted rows below this are covered by the stored snapshot.
        self._base = base
        #: The stored segments (see storage/segments.py) and the stored snapshot's slot
        #: (-1: none), as last committed; None after a failed write, when what is on
        #: disk is read again (keys only) by the next write.
        self._segments: SegmentIndex | None = SegmentIndex.of_keys(keys)
        self._snapshot_slot: int | None = snapshot_slot
        #: The promised ballot on disk, when known (load() reads it, each write() that
        #: commits may raise it): a write skips the UPDATE that would not raise it. Every
        #: statement costs the writer thread the GIL twice, and under load each time it
        #: may wait a switch interval (5 ms) for the event loop's thread to let go.
        self._promised: Ballot | None = None
        #: The accepted row on disk of each undecided slot (from the base), as the upsert
        #: keeps it, and the slots whose decided row refers to theirs (`_REFERS`), with
        #: that value: what write() decides references by. Both bounded by the snapshot
        #: period on a learner. Set by load() and after each COMMIT; emptied when a write
        #: fails (nothing refers until accepted rows are written again).
        self._accepted: dict[Slot, PValue] = {}
        self._refs: dict[Slot, Batch] = {}

    # -- opening ------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        data_dir: Path | str,
        identity: NodeIdentity,
        *,
        fsync: bool = True,
        create: bool = True,
    ) -> SqliteStorage:
        """Open (or, if `create` and the directory is new or empty, create) a data directory.

        `fsync=False` sets `synchronous=OFF`: writes reach the OS but are not synced, so
        a power loss or kernel crash can lose acknowledged promises. Only for throwaway
        tests (`--no-fsync`). With `create=False` a missing database is an error, which
        protects a node from starting afresh on, say, an unmounted volume.

        Raises DataDirUnusable, DataDirLocked, IdentityMismatch or CorruptData, each with
        a message that names the path and says what to do.
        """
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StorageError(
                f"paxoi needs SQLite >= {'.'.join(map(str, MIN_SQLITE))} (for UPSERT), but "
                f"Python is linked with {sqlite3.sqlite_version}; use a newer Python build"
            )
        data_dir = Path(os.path.abspath(data_dir))
        _prepare_dir(data_dir, create)
        lock_fd = _acquire_lock(data_dir)
        try:
            db = data_dir / DB_FILE
            if not os.path.lexists(db):
                if not create:
                    raise DataDirUnusable(
                        f"data directory {data_dir} holds no paxoi database ({DB_FILE}); "
                        "pass the directory this node was created in, or allow creating a "
                        "new node there"
                    )
                _check_empty(data_dir)
                _create_db(data_dir, identity, fsync)
            conn = _connect(db, fsync)
            try:
                stored, version = _check_db(conn, db)
                _check_identity(data_dir, stored, identity)
                if version < SCHEMA_VERSION:
                    _upgrade(conn, db, version, SegmentFiles(data_dir, fsync, behind=False))
                base, snapshot_slot, keys = _stored_layout(conn, db)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(
            data_dir=data_dir,
            identity=stored,
            conn=conn,
            lock_fd=lock_fd,
            fsync=fsync,
            base=base,
            snapshot_slot=snapshot_slot,
            keys=keys,
        )

    # -- the Storage interface ----------------------------------------------------------

    def load(self) -> DurableState:
        """Rebuild the DurableState; a row that does not decode raises CorruptData.

        Also remembers the stored segments, which write() compares new ones with."""
        with self._mutex:
            conn = self._open_conn()
            try:
                conn.execute("BEGIN")  # one snapshot for all four tables
                try:
                    promised_rows = conn.execute("SELECT round, node FROM promised").fetchall()
                    round_rows = conn.execute("SELECT round_used FROM proposer").fetchall()
                    accepted_rows = conn.execute(
                        "SELECT slot, round, node, value FROM accepted"
                    ).fetchall()
                    decided_rows = conn.execute("SELECT slot, value FROM decided").fetchall()
                    snapshot_rows = conn.execute(
                        "SELECT slot, base, frame FROM snapshot"
                    ).fetchall()
                    segment_rows = conn.execute(
                        "SELECT idx, crc, length FROM segment ORDER BY idx, crc"
                    ).fetchall()
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as e:
                raise _db_error(e, self.db_path, "read") from e
            if len(snapshot_rows) > 1:
                raise self._corrupt("table snapshot holds more than one row")
            stored, damaged = self._segment_bytes(segment_rows)
            snapshot = base = None
            listed: set[Key] = set()
            for slot, base, frame in snapshot_rows:
                snapshot, crcs = self._snapshot(slot, base, frame, stored, damaged)
                listed.update(enumerate(crcs))
            # Only once the snapshot is whole: a damaged database loses nothing more.
            try:
                orphans = self._files.remove_orphans([*stored, *damaged])
            except OSError as e:
                raise _file_error(e, self._files.path, "clean up") from e
            for name in orphans:
                log.info("%s: removed %s, a segment no row lists", self.data_dir, name)
            # The rows no frame lists are segments sealed after the stored snapshot: the
            # newest at their index (any other was dropped by the snapshot's write). They
            # are a head start, not state: the replay of the log seals them again. So
            # one that is damaged is left out (and written again when it seals) rather
            # than stop the node; and its CRC is checked now, or the next snapshot
            # would take it in unread and fail the restart after that.
            for key, why in damaged.items():
                if key not in listed:
                    self._drop_staged(key, why)
            for key, data in list(stored.items()):
                if key not in listed and crc32(data) != key[1]:
                    self._drop_staged(key, f"checksum is {crc32(data):#x}")
                    del stored[key]
            # Synced before the snapshot that lists them committed; the others may not be.
            self._files.found(key for key in stored if key not in listed)
            index = SegmentIndex(dict(stored))
            index.latest.update((i, (stored[i, crc], crc)) for i, crc in listed)
            for (i, crc), data in stored.items():
                if (i, crc) not in listed:
                    index.latest[i] = (data, crc)
            # Under the mutex, so no write() changes the segments between the read and this.
            self._segments = index
            self._snapshot_slot = snapshot.slot if snapshot is not None else -1

        state = DurableState()
        if len(promised_rows) != 1 or len(round_rows) != 1:
            raise self._corrupt("table promised or proposer does not hold exactly one row")
        state.promised = self._promised = self._ballot(promised_rows[0], "promised")
        round_used = round_rows[0][0]
        if type(round_used) is not int:
            raise self._corrupt(f"table proposer: round_used is {round_used!r}, not an integer")
        state.round_used = round_used
        if snapshot is not None:
            assert type(base) is int  # checked by _snapshot
            state.snapshot, state.base = snapshot, base
        accepted = state.accepted
        for slot, rnd, node, value in accepted_rows:
            ballot = self._ballot((rnd, node), f"accepted, slot {slot}")
            if ballot > state.promised:  # as DurableState.apply does; write() keeps this true
                state.promised = ballot
            if slot >= state.base:  # write() deletes those below; never resurrect them
                accepted[slot] = PValue(ballot, slot, self._batch(value, "accepted", slot))
        decided = state.decided
        refs: dict[Slot, Batch] = {}
        for slot, value in decided_rows:
            if slot < state.base:
                continue
            if value == _REFERS:
                pv = accepted.get(slot)
                if pv is None:
                    raise self._corrupt(
                        f"table decided, slot {slot}: refers to an accepted row that is missing"
                    )
                decided[slot] = refs[slot] = pv.value
            else:
                decided[slot] = self._batch(value, "decided", slot)
        with self._mutex:
            self._accepted = {slot: pv for slot, pv in accepted.items() if slot not in decided}
            self._refs = refs
        return state

    def write(self, records: Sequence[Record]) -> None:
        """One transaction (one fsync) for all of `records`; see `Storage.write`."""
        if not records:
            return
        promised: Ballot | None = None
        round_used: int | None = None
        accepted_rows: list[tuple[int, int, int, bytes]] = []
        accepted_pvs: list[PValue] = []
        decisions: dict[Slot, Batch] = {}
        snapshot: SnapshotRecord | None = None
        #: Segment and snapshot records in order: it says which segment is newest where.
        steps: list[SegmentRecord | SnapshotRecord] = []
        base = self._base
        for r in records:
            if isinstance(r, DecidedRecord):
                decisions[r.slot] = r.value  # the last wins, as INSERT OR REPLACE would
            elif isinstance(r, AcceptedRecord):
                pv = r.pvalue
                b = pv.ballot
                accepted_rows.append((pv.slot, b.round, b.node, encode_batch(pv.value)))
                accepted_pvs.append(pv)
                if promised is None or b > promised:
                    promised = b
            elif isinstance(r, SegmentRecord):
                steps.append(r)
            elif isinstance(r, SnapshotRecord):
                if snapshot is None or r.snapshot.slot > snapshot.snapshot.slot:
                    snapshot = r
                base = max(base, r.base)
                steps.append(r)
            elif isinstance(r, PromisedRecord):
                if promised is None or r.ballot > promised:
                    promised = r.ballot
            elif isinstance(r, BallotRecord):
                if round_used is None or r.round > round_used:
                    round_used = r.round
            else:
                raise TypeError(f"not a record: {r!r}")
        if base:
            # What the snapshot covers is deleted, not written (as DurableState.apply).
            accepted_rows = [row for row in accepted_rows if row[0] >= base]
            accepted_pvs = [pv for pv in accepted_pvs if pv.slot >= base]
            decisions = {slot: v for slot, v in decisions.items() if slot >= base}

        with self._mutex:
            conn = self._open_conn()
            # What is on disk is unknown until COMMIT returns; if it raises, the next
            # write reads what is there again.
            index, self._segments = self._segments, None
            stored_slot, self._snapshot_slot = self._snapshot_slot, None
            old_base = self._base
            known, self._promised = self._promised, None
            on_disk, self._accepted = self._accepted, {}
            refs, self._refs = self._refs, {}
            accepted_now, decided_rows, new_refs = _decided_rows(
                on_disk, refs, accepted_pvs, decisions
            )
            newer: SnapshotRecord | None = None
            plan: SegmentPlan | None = None
            written = 0
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if steps and (index is None or stored_slot is None):
                        _, stored_slot, keys = _stored_layout(conn, self.db_path)
                        index = SegmentIndex.of_keys(keys)
                    if steps:
                        assert index is not None and stored_slot is not None
                        if snapshot is not None and snapshot.snapshot.slot > stored_slot:
                            newer = snapshot
                        plan = plan_segments(index, _segment_steps(steps, newer))
                        written = _insert_segments(
                            conn, self._files, plan.writes, sync=newer is not None
                        )
                    if promised is not None and (known is None or promised > known):
                        conn.execute(_RAISE_PROMISED, (promised.round, promised.node))
                    if accepted_rows:
                        _insert_rows(conn, _UPSERT_ACCEPTED, accepted_rows)
                    if decided_rows:
                        _insert_rows(conn, _PUT_DECIDED, decided_rows)
                    if round_used is not None:
                        conn.execute(_RAISE_ROUND, (round_used,))
                    if snapshot is not None:
                        # Each statement costs a GIL hand-off (see `_promised`), so none
                        # that would change nothing: the upsert raises the base when
                        # newer, and the rows below the old base are gone already.
                        if newer is not None and plan is not None and plan.crcs is not None:
                            # Its segments sealed ahead were not synced when written.
                            self._files.sync(enumerate(plan.crcs))
                            frame = encode_frame(newer.snapshot, plan.crcs)
                            row = (newer.snapshot.slot, base, frame)
                            if conn.execute(_PUT_SNAPSHOT, row).rowcount != 1:
                                raise self._corrupt("table snapshot changed under this node")
                            if plan.drops:
                                _insert_rows(conn, _DROP_SEGMENTS, plan.drops)
                        else:
                            conn.execute(_RAISE_BASE, (base,))
                        if base > old_base:
                            conn.execute(_DROP_DECIDED, (base,))
                            conn.execute(_DROP_ACCEPTED, (base,))
                    conn.execute("COMMIT")  # the fsync happens here
                except BaseException:
                    if conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise _db_error(e, self.db_path, "write") from e
            except OSError as e:
                raise _file_error(e, self._files.path, "write") from e
            if plan is not None and plan.drops:
                try:
                    self._files.remove(plan.drops)  # no row names them any more
                except OSError as e:  # committed all the same: the next load removes them
                    log.warning("%s: could not remove dropped segments: %s", self.data_dir, e)
            on_disk.update(accepted_now)
            for slot in decisions:  # kept only while a decision may come to refer to it:
                on_disk.pop(slot, None)  # so it stays small on a learner
            refs.update(new_refs)
            if base > old_base:  # the rows below are gone
                on_disk = {slot: pv for slot, pv in on_disk.items() if slot >= base}
                refs = {slot: v for slot, v in refs.items() if slot >= base}
            self._accepted, self._refs = on_disk, refs
            self._base = base
            self._segments = plan.after if plan is not None else index
            self._snapshot_slot = newer.snapshot.slot if newer is not None else stored_slot
            self.segments_written += written
            if known is not None and promised is not None and promised > known:
                known = promised
            self._promised = known

    def close(self) -> None:
        """Close the database (SQLite checkpoints the WAL) and release the lock. Idempotent."""
        with self._mutex:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            try:
                self._files.close()
                conn.close()
            except sqlite3.Error as e:
                raise _db_error(e, self.db_path, "close") from e
            finally:
                os.close(self._lock_fd)

    @property
    def closed(self) -> bool:
        return self._conn is None

    def __enter__(self) -> SqliteStorage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"SqliteStorage({str(self.data_dir)!r}, {self.identity.describe()}, {state})"

    # -- helpers ------------------------------------------------------------------------

    def _open_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError(f"storage in {self.data_dir} is closed")
        return self._conn

    def _corrupt(self, detail: str) -> CorruptData:
        return CorruptData(_corrupt_message(self.db_path, detail))

    def _ballot(self, row: tuple[object, object], where: str) -> Ballot:
        rnd, node = row
        if type(rnd) is not int or type(node) is not int:
            raise self._corrupt(f"table {where}: ballot ({rnd!r}, {node!r}) is not two integers")
        if (rnd, node) == (BOTTOM.round, BOTTOM.node):
            return BOTTOM
        return Ballot(rnd, node)

    def _segment_bytes(
        self, segment_rows: list[tuple[object, ...]]
    ) -> tuple[dict[Key, bytes], dict[Key, str]]:
        """Each listed segment's bytes, read from its file, and why each segment whose
        file cannot be read whole is damaged."""
        stored: dict[Key, bytes] = {}
        damaged: dict[Key, str] = {}
        for idx, crc, length in segment_rows:
            if type(idx) is not int or type(crc) is not int or type(length) is not int:
                raise self._corrupt(f"table segment: the row of segment {idx!r} does not fit")
            try:
                data = self._files.read((idx, crc), length)
            except OSError as e:
                raise _file_error(e, self._files.path, "read") from e
            if isinstance(data, str):
                damaged[idx, crc] = data
            else:
                stored[idx, crc] = data
        return stored, damaged

    def _drop_staged(self, key: Key, why: str) -> None:
        log.warning(
            "%s: segment %d (CRC %#x), sealed after the snapshot, "
            "%s: left out; it is written again when the log's replay seals it",
            self.db_path, key[0], key[1], why,
        )  # fmt: skip

    def _snapshot(
        self,
        slot: object,
        base: object,
        frame: object,
        stored: dict[Key, bytes],
        damaged: dict[Key, str],
    ) -> tuple[Snapshot, list[int]]:
        """Reassemble the snapshot from its frame and segments (all there, each of the
        right length and matching its CRC), and its segments' CRCs."""
        if type(slot) is not int or type(base) is not int or not 0 <= base <= slot:
            raise self._corrupt(f"table snapshot: slot {slot!r} and base {base!r} do not fit")
        if type(frame) is not bytes:
            raise self._corrupt(f"table snapshot: the frame is a {type(frame).__name__}")
        try:
            decoded = decode_frame(frame)
        except SnapshotError as e:
            raise self._corrupt(f"table snapshot, slot {slot}: {e}") from None
        if decoded.slot != slot:
            raise self._corrupt(f"table snapshot: the frame is of slot {decoded.slot}, not {slot}")
        segments: list[bytes] = []
        for i, (_, crc) in enumerate(decoded.segments):
            segment = stored.get((i, crc))
            if (i, crc) in damaged:
                raise self._corrupt(f"segment {i} (CRC {crc:#x}) {damaged[i, crc]}")
            if segment is None:
                raise self._corrupt(
                    f"table segment: segment {i} (CRC {crc:#x}) of "
                    f"{len(decoded.segments)} is missing"
                )
            segments.append(segment)
        try:
            snap = assemble_snapshot(decoded, segments)
        except SnapshotError as e:
            raise self._corrupt(f"table snapshot, slot {slot}: {e}") from None
        return snap, [crc for _, crc in decoded.segments]

    def _batch(self, value: object, table: str, slot: Slot) -> Batch:
        if type(value) is not bytes:
            raise self._corrupt(f"table {table}, slot {slot}: value is not a blob")
        try:
            return decode_batch(value)
        except DecodeError as e:
            raise self._corrupt(f"table {table}, slot {slot}: {e}") from None


# -- opening, step by step -----------------------------------------------------------------


def _who() -> str:
    """The user paxoi runs as, for permission messages."""
    uid = os.geteuid()
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _permission_message(path: Path, what: str) -> str:
    return (
        f"{what} {path}: permission denied for {_who()}; make it readable and writable by "
        "the user running paxoi (e.g. chown), or use another --data-dir"
    )


def _prepare_dir(data_dir: Path, create: bool) -> None:
    """The data directory exists (created if allowed), is a directory, and is ours to use."""
    try:
        st = os.stat(data_dir)
    except FileNotFoundError:
        if not create:
            raise DataDirUnusable(
                f"data directory {data_dir} does not exist; pass the directory this node was "
                "created in (is its volume mounted?), or allow creating a new node there"
            ) from None
        try:
            os.makedirs(data_dir, exist_ok=True)
        except PermissionError:
            raise DataDirUnusable(
                _permission_message(data_dir.parent, f"cannot create data directory {data_dir} in")
            ) from None
        except OSError as e:
            raise DataDirUnusable(
                f"cannot create data directory {data_dir}: {e.strerror}; "
                "pass a path whose parent is a writable directory to --data-dir"
            ) from None
        fsync_path(data_dir.parent)
        return
    except NotADirectoryError:
        raise DataDirUnusable(
            f"data directory {data_dir} is not usable: a component of its path is not a "
            "directory; pass a directory path to --data-dir"
        ) from None
    except PermissionError:
        raise DataDirUnusable(
            _permission_message(data_dir, "cannot reach data directory")
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        kind = "a regular file" if stat.S_ISREG(st.st_mode) else "not a directory"
        raise DataDirUnusable(
            f"data directory {data_dir} is {kind}, not a directory; pass a directory to "
            "--data-dir (paxoi creates it if it does not exist)"
        )
    if not os.access(data_dir, os.R_OK | os.W_OK | os.X_OK):
        raise DataDirUnusable(_permission_message(data_dir, "cannot use data directory"))


def _acquire_lock(data_dir: Path) -> int:
    """flock the LOCK file; the kernel drops it when the process dies, even by SIGKILL."""
    path = data_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:
        raise DataDirUnusable(_permission_message(path, "cannot open lock file")) from None
    except OSError as e:
        raise DataDirUnusable(
            f"cannot open lock file {path}: {e.strerror}; check the data directory"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = "another process"
        with contextlib.suppress(OSError, ValueError):
            pid = int(os.pread(fd, 32, 0).decode("ascii").strip())
            holder = "this process (opened twice)" if pid == os.getpid() else f"pid {pid}"
        os.close(fd)
        raise DataDirLocked(
            f"data directory {data_dir} is in use by {holder}; stop the paxoi server that "
            "uses it first, or give this one its own --data-dir"
        ) from None
    except OSError as e:
        os.close(fd)
        raise DataDirUnusable(
            f"cannot lock {path}: {e.strerror}; put the data directory on a local file "
            "system that supports flock()"
        ) from None
    with contextlib.suppress(OSError):  # the pid is only for the message above
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _check_empty(data_dir: Path) -> None:
    """Refuse to create a database next to foreign files, or next to a lone WAL."""
    try:
        names = sorted(set(os.listdir(data_dir)) - _IGNORABLE)
    except OSError as e:
        raise DataDirUnusable(f"cannot list data directory {data_dir}: {e.strerror}") from None
    if not names:
        return
    if any(n.startswith(DB_FILE + "-") for n in names):
        raise CorruptData(
            f"data directory {data_dir} holds {', '.join(names)} but no {DB_FILE}: the "
            "database file is missing. paxoi will not start afresh here, since this node "
            "would forget what it promised; restore the directory from a backup "
            "(docs/storage.md), or use a new --data-dir"
        )
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    raise DataDirUnusable(
        f"data directory {data_dir} is not empty ({shown}) and holds no paxoi database; "
        "use an empty or new directory for --data-dir"
    )


def _create_db(data_dir: Path, identity: NodeIdentity, fsync: bool) -> None:
    """Build a complete database under a temporary name, then rename it into place."""
    tmp = data_dir / CREATING_FILE
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    try:
        conn = sqlite3.connect(_uri(tmp, "rwc"), uri=True, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file
            conn.execute(f"PRAGMA synchronous = {'FULL' if fsync else 'OFF'}")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            for ddl in _TABLES.values():
                conn.execute(ddl)
            conn.execute(
                "INSERT INTO meta (id, schema_version, cluster_id, node_id, config) "
                "VALUES (0, ?, ?, ?, ?)",
                (SCHEMA_VERSION, identity.cluster_id, identity.node_id, identity.config),
            )
            conn.execute(
                "INSERT INTO promised (id, round, node) VALUES (0, ?, ?)",
                (BOTTOM.round, BOTTOM.node),
            )
            conn.execute("INSERT INTO proposer (id, round_used) VALUES (0, -1)")
            conn.execute("COMMIT")
        finally:
            conn.close()  # checkpoints the WAL into the file and removes it
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.rename(tmp, data_dir / DB_FILE)
        if fsync:
            fsync_path(data_dir)
    except sqlite3.Error as e:
        raise _db_error(e, tmp, "create") from e
    except OSError as e:
        raise DataDirUnusable(
            f"cannot create the database in {data_dir}: {e.strerror}; check the directory's "
            "permissions and free space"
        ) from None


def _connect(db: Path, fsync: bool) -> sqlite3.Connection:
    try:
        if not os.access(db, os.R_OK | os.W_OK):
            raise DataDirUnusable(_permission_message(db, "cannot open database"))
        conn = sqlite3.connect(
            _uri(db, "rw"), uri=True, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as e:
        raise _db_error(e, db, "open") from e
    try:
        # Nothing may write to a file we have not checked: SQLite would give a zero-length
        # "database" a fresh header the moment WAL mode is set.
        if db.stat().st_size == 0:
            conn.close()
            raise CorruptData(_corrupt_message(db, "the database file is empty"))
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {'FULL' if fsync else 'OFF'}")
        conn.execute(f"PRAGMA journal_size_limit = {_JOURNAL_SIZE_LIMIT}")
        # Debian's SQLite (and so many Pythons) is built with SECURE_DELETE: every page
        # a delete frees is overwritten with zeros, through the WAL and again by the
        # checkpoint. A snapshot's compaction frees megabytes of accepted values, and
        # their zeros made its transaction 20-40 ms of disk writes behind which every
        # accept waited. Nothing here is secret from whoever can read the data directory.
        conn.execute("PRAGMA secure_delete = OFF")
    except sqlite3.Error as e:
        conn.close()
        raise _db_error(e, db, "open") from e
    return conn


def _check_db(conn: sqlite3.Connection, db: Path) -> tuple[NodeIdentity, int]:
    """quick_check, the paxoi markers and the schema; the stored identity and version."""
    try:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            # One line: a problem may span several ("*** in database main ***\nPage 6...").
            detail = "; ".join(" ".join(str(p).split()) for p in problems)
            raise CorruptData(_corrupt_message(db, detail))
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:  # what a file truncated to nothing looks like to SQLite
            raise CorruptData(_corrupt_message(db, "the database is empty"))
        if app_id != APPLICATION_ID:
            raise DataDirUnusable(
                f"{db} is an SQLite database but not a paxoi one (application_id "
                f"{app_id:#x}); move it out of the data directory, or use another --data-dir"
            )
        if "meta" not in tables:
            raise CorruptData(_corrupt_message(db, "table meta is missing"))
        meta = conn.execute(
            "SELECT schema_version, cluster_id, node_id, config FROM meta"
        ).fetchall()
    except sqlite3.Error as e:
        raise _db_error(e, db, "check") from e
    if len(meta) != 1:
        raise CorruptData(_corrupt_message(db, f"table meta holds {len(meta)} rows, not 1"))
    version, cluster_id, node_id, config = meta[0]
    if type(version) is not int:
        raise CorruptData(_corrupt_message(db, f"schema version {version!r} is not an integer"))
    if version not in _TABLES_OF:
        raise DataDirUnusable(
            f"{db} has schema version {version}, but this paxoi reads version "
            f"{SCHEMA_VERSION}; run the paxoi release that created it"
        )
    missing = sorted(_TABLES_OF[version] - tables)
    if missing:
        raise CorruptData(_corrupt_message(db, f"table(s) {', '.join(missing)} missing"))
    if type(cluster_id) is not str or type(node_id) is not int or type(config) is not bytes:
        raise CorruptData(_corrupt_message(db, "table meta holds values of the wrong type"))
    try:
        return NodeIdentity(cluster_id, node_id, config), version
    except ValueError as e:
        raise CorruptData(_corrupt_message(db, f"stored identity is invalid: {e}")) from None


def _upgrade(conn: sqlite3.Connection, db: Path, version: int, files: SegmentFiles) -> None:
    """Bring an older schema up to SCHEMA_VERSION, in one transaction: create the tables
    it lacks, and store the snapshot of version 2 (its whole image in table snapshot),
    3 (the image in table snapshot_chunk) or 4 and 5 (a frame in table snapshot, the
    segments one after another in table snapshot_piece) as a frame and segments, and
    the segments of 6 (in parts in table snapshot_segment) as files. (5 added decided
    rows that refer to the accepted row, which 4 cannot read.) The files are written and
    synced before the transaction commits; should it not, they are orphans, removed at
    the next load."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            old: list[tuple[object, object, object]] = []
            if version == 2:
                old = conn.execute("SELECT slot, base, image FROM snapshot").fetchall()
            elif version in (3, 4, 5):
                table = "snapshot_chunk" if version == 3 else "snapshot_piece"
                chunks = conn.execute(f"SELECT data FROM {table} ORDER BY idx").fetchall()
                joined = b"".join(c for (c,) in chunks if type(c) is bytes)
                what = "base, frame" if version > 3 else "base, x''"
                rows = conn.execute(f"SELECT slot, {what} FROM snapshot").fetchall()
                old = [
                    (slot, base, head + joined if type(head) is bytes else head)
                    for slot, base, head in rows
                ]
                conn.execute(f"DROP TABLE {table}")
            moved: list[tuple[Key, bytes]] = []
            frames: list[tuple[object, object, object]] = []
            if version == 6:
                parts: dict[Key, list[bytes]] = {}
                for idx, crc, data in conn.execute(
                    "SELECT idx, crc, data FROM snapshot_segment ORDER BY idx, crc, part"
                ):
                    if type(idx) is not int or type(crc) is not int or type(data) is not bytes:
                        raise CorruptData(
                            _corrupt_message(db, f"table snapshot_segment: segment {idx!r}")
                        )
                    parts.setdefault((idx, crc), []).append(data)
                moved = [(key, b"".join(p)) for key, p in parts.items()]
                frames = conn.execute("SELECT slot, base, frame FROM snapshot").fetchall()
                conn.execute("DROP TABLE snapshot_segment")
            if version in (2, 3, 4, 5, 6):
                conn.execute("DROP TABLE snapshot")
            existing = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            for name in sorted(_TABLES_OF[SCHEMA_VERSION] - existing):
                conn.execute(_TABLES[name])
            for slot, base, image in old:
                if type(image) is not bytes:
                    raise CorruptData(_corrupt_message(db, "table snapshot: image is not a blob"))
                try:
                    snap = decode_snapshot(image)
                except SnapshotError as e:
                    raise CorruptData(_corrupt_message(db, f"table snapshot: {e}")) from None
                plan = plan_segments(SegmentIndex(), [snap])
                assert plan.crcs is not None
                frame = encode_frame(snap, plan.crcs)
                conn.execute(_PUT_SNAPSHOT, (slot, base, frame))
                _insert_segments(conn, files, plan.writes, sync=True)
            for row in frames:
                conn.execute(_PUT_SNAPSHOT, row)
            _insert_segments(conn, files, moved, sync=True)
            conn.execute("UPDATE meta SET schema_version = ? WHERE id = 0", (SCHEMA_VERSION,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as e:
        raise _db_error(e, db, "upgrade") from e
    except OSError as e:
        raise _file_error(e, files.path, "upgrade") from e


def _stored_layout(conn: sqlite3.Connection, db: Path) -> tuple[int, int, list[Key]]:
    """The stored snapshot's base (0 without one) and slot (-1 without one), and the
    keys of the stored segments; bad values are reported by load()."""
    try:
        row = conn.execute("SELECT base, slot FROM snapshot WHERE id = 0").fetchone()
        keys = conn.execute("SELECT idx, crc FROM segment").fetchall()
    except sqlite3.Error as e:
        raise _db_error(e, db, "read") from e
    base, slot = row if row is not None else (0, -1)
    return (
        base if type(base) is int and base >= 0 else 0,
        slot if type(slot) is int else -1,
        [(idx, crc) for idx, crc in keys],
    )


def _check_identity(data_dir: Path, stored: NodeIdentity, wanted: NodeIdentity) -> None:
    if (stored.cluster_id, stored.node_id) != (wanted.cluster_id, wanted.node_id):
        raise IdentityMismatch(
            f"data directory {data_dir} belongs to {stored.describe()}, not "
            f"{wanted.describe()}; use the right --data-dir or a new one"
        )
    if stored.config != wanted.config:
        raise IdentityMismatch(
            f"data directory {data_dir} ({stored.describe()}) was created with another "
            "cluster configuration than the one given; start the node with the configuration "
            "it was created with (membership changes are not supported), or use a new "
            "--data-dir for a new cluster"
        )


# -- small utilities -----------------------------------------------------------------------


def _insert_rows(
    conn: sqlite3.Connection,
    statement: tuple[str, str, str],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    """`statement` (head, one row's placeholders, tail) for all `rows`, many rows per
    statement: executemany would step once per row, and each step releases the GIL and
    must win it back (see SqliteStorage._promised)."""
    head, one, tail = statement
    for i in range(0, len(rows), _ROWS_PER_STATEMENT):
        part = rows[i : i + _ROWS_PER_STATEMENT]
        sql = head + ", ".join([one] * len(part)) + tail
        conn.execute(sql, [v for row in part for v in row])


def _decided_rows(
    on_disk: dict[Slot, PValue],
    refs: dict[Slot, Batch],
    accepted: list[PValue],
    decisions: dict[Slot, Batch],
) -> tuple[dict[Slot, PValue], list[tuple[int, bytes]], dict[Slot, Batch]]:
    """The decided rows to write for `decisions`, given the accepted rows on disk and
    the references to them (`refs`), and `accepted`, written in the same transaction.

    Returns the accepted rows as they stand after it (for the slots it touches), the
    decided rows, and the new references. A decision whose value is its slot's accepted
    value (the same object, as a rule, or equal) refers to it (`_REFERS`) instead of
    holding a copy. And an accepted row that a reference depends on never changes
    under it: should one be replaced by another value (Paxos never does that to a
    decided slot, but the disk must not depend on it), the decided row is written out
    in full in the same transaction."""
    now: dict[Slot, PValue] = {}
    for pv in accepted:  # the upsert's rule: an equal or higher ballot replaces
        old = now.get(pv.slot) or on_disk.get(pv.slot)
        if old is None or pv.ballot >= old.ballot:
            now[pv.slot] = pv
    rows: list[tuple[int, bytes]] = []
    new_refs: dict[Slot, Batch] = {}
    for slot, pv in now.items():
        held = refs.get(slot)
        if held is not None and slot not in decisions and not _same(pv.value, held):
            rows.append((slot, encode_batch(held)))
            refs.pop(slot)
    for slot, value in decisions.items():
        row = now.get(slot) or on_disk.get(slot)
        if row is not None and _same(row.value, value):
            rows.append((slot, _REFERS))
            new_refs[slot] = value
        else:
            rows.append((slot, encode_batch(value)))
            refs.pop(slot, None)
    return now, rows, new_refs


def _same(a: Batch, b: Batch) -> bool:
    return a is b or a == b


def _segment_steps(
    steps: list[SegmentRecord | SnapshotRecord], newer: SnapshotRecord | None
) -> list[SegmentRecord | Snapshot]:
    """The segment records, and the one snapshot to write where it came (the others are
    not newer than what is stored: their segments are not written)."""
    return [
        step if isinstance(step, SegmentRecord) else step.snapshot
        for step in steps
        if isinstance(step, SegmentRecord) or step is newer
    ]


def _insert_segments(
    conn: sqlite3.Connection,
    files: SegmentFiles,
    segments: list[tuple[Key, bytes]],
    sync: bool,
) -> int:
    """Write `segments`' files (synced if `sync`) and their rows, in the open
    transaction: a row never commits before its file is written. The number written."""
    if not segments:
        return 0
    files.write(segments, sync)
    _insert_rows(conn, _PUT_SEGMENTS, [(idx, crc, len(data)) for (idx, crc), data in segments])
    return len(segments)


def _uri(path: Path, mode: str) -> str:
    """A file: URI, so `mode=rw` can forbid SQLite from creating a missing database."""
    return f"{path.as_uri()}?mode={mode}"


def _corrupt_message(db: Path, detail: str) -> str:
    return (
        f"the database {db} is damaged ({detail}). paxoi will not start on it, since this "
        "node could forget what it promised; restore the data directory from a backup of "
        f"this node's latest state (docs/storage.md), or inspect it with "
        f"`sqlite3 {db} 'PRAGMA integrity_check'`"
    )


def _db_error(e: sqlite3.Error, db: Path, doing: str) -> StorageError:
    """Map a sqlite3 error to the StorageError a user can act on."""
    code = getattr(e, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(e)
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or (
        primary is None and ("malformed" in text or "not a database" in text)
    ):
        return CorruptData(_corrupt_message(db, text))
    if primary in (_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_CANTOPEN, _SQLITE_AUTH):
        return DataDirUnusable(_unusable_message(f"{doing} database {db}", text))
    if primary == _SQLITE_FULL:
        return StorageError(_full_message(f"{doing} {db}"))
    if primary == _SQLITE_IOERR:
        return StorageError(
            f"cannot {doing} {db}: I/O error ({text}); the disk may be failing (see the "
            "kernel log); restart the node only once the device is healthy"
        )
    return StorageError(f"cannot {doing} {db}: {text}")


def _file_error(e: OSError, path: Path, doing: str) -> StorageError:
    """Map an OSError on a segment file to the StorageError a user can act on, in the
    words `_db_error` uses for the database."""
    what = f"{doing} snapshot segments in {path}"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return DataDirUnusable(_unusable_message(what, e.strerror or str(e)))
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageError(_full_message(what))
    return StorageError(f"cannot {what}: {e}")


def _unusable_message(what: str, detail: str) -> str:
    return (
        f"cannot {what} ({detail}) as {_who()}; make the data directory and its files "
        "readable and writable by the user running paxoi, or use another --data-dir"
    )


def _full_message(what: str) -> str:
    return (
        f"cannot {what}: the disk is full; free space on the device that holds the data "
        "directory, then restart the node"
    )
