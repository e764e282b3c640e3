"""A decided row whose value is its slot's accepted value refers to it instead of
holding a second copy; everything loads as DurableState.apply says it should."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from storage_helpers import execute, folded

from paxoi.core.records import AcceptedRecord, DecidedRecord, Record
from paxoi.core.types import Ballot, Command, PValue
from paxoi.storage import DB_FILE, CorruptData, NodeIdentity, SqliteStorage

V = (Command("c", 1, b"chosen" * 50),)
W = (Command("d", 1, b"other" * 50),)


def accepted(slot: int, value: tuple[Command, ...], rnd: int = 1) -> AcceptedRecord:
    return AcceptedRecord(PValue(Ballot(rnd, 0), slot, value))


def decided_values(path: Path) -> dict[int, bytes]:
    conn = sqlite3.connect(path / DB_FILE)
    try:
        return dict(conn.execute("SELECT slot, value FROM decided"))
    finally:
        conn.close()


def test_a_decision_of_the_accepted_value_refers_to_it(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    batches: list[list[Record]] = [
        [accepted(0, V), accepted(1, W), accepted(2, V)],
        [DecidedRecord(0, V), DecidedRecord(1, V)],  # slot 1: accepted W, never chosen
        [DecidedRecord(2, (Command("c", 1, b"chosen" * 50),))],  # equal, not the same object
        [DecidedRecord(3, V)],  # learned without accepting
    ]
    with SqliteStorage.open(tmp_path, identity) as s:
        for batch in batches:
            s.write(batch)
    stored = decided_values(tmp_path)
    assert stored[0] == stored[2] == b"" and stored[1] != b"" and stored[3] != b""
    with SqliteStorage.open(tmp_path, identity) as s:
        assert s.load() == folded(*batches)
        s.write([DecidedRecord(4, V), accepted(4, V)])  # both in one write, either order
    assert decided_values(tmp_path)[4] == b""


def test_after_a_restart_decisions_refer_to_the_loaded_accepted_rows(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    with SqliteStorage.open(tmp_path, identity) as s:
        s.write([accepted(0, V)])
    with SqliteStorage.open(tmp_path, identity) as s:
        s.load()
        s.write([DecidedRecord(0, V)])
        assert s.load() == folded([accepted(0, V), DecidedRecord(0, V)])
    assert decided_values(tmp_path)[0] == b""


def test_a_referenced_accepted_row_that_changes_writes_the_decision_out(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    """Paxos never accepts another value in a decided slot, but the disk does not rely
    on it: the decided row gets its own copy before the accepted row changes."""
    batches: list[list[Record]] = [
        [accepted(0, V)],
        [DecidedRecord(0, V)],
        [accepted(0, W, rnd=2)],
    ]
    with SqliteStorage.open(tmp_path, identity) as s:
        for batch in batches:
            s.write(batch)
        assert decided_values(tmp_path)[0] != b""
        assert s.load() == folded(*batches)
        s.write([accepted(0, V, rnd=3)])  # no reference any more: nothing to do
    with SqliteStorage.open(tmp_path, identity) as s:
        state = s.load()
    assert state.decided[0] == V and state.accepted[0].value == V


def test_a_reference_to_a_missing_accepted_row_is_a_clear_error(
    tmp_path: Path, identity: NodeIdentity
) -> None:
    with SqliteStorage.open(tmp_path, identity) as s:
        s.write([accepted(7, V), DecidedRecord(7, V)])
    execute(tmp_path, "DELETE FROM accepted WHERE slot = 7")
    with SqliteStorage.open(tmp_path, identity) as s, pytest.raises(CorruptData) as info:
        s.load()
    assert "slot 7: refers to an accepted row that is missing" in str(info.value)


def test_a_version_4_database_is_upgraded_in_place(tmp_path: Path, identity: NodeIdentity) -> None:
    """Version 4's decided rows all hold their value; version 5 on reads them as they
    are and marks the database, so that an older paxoi refuses references it cannot
    read."""
    from paxoi.storage import SCHEMA_VERSION

    records: list[Record] = [accepted(0, V), accepted(1, W), DecidedRecord(1, W)]
    with SqliteStorage.open(tmp_path, identity) as s:
        s.write(records)
    execute(
        tmp_path,
        "UPDATE decided SET value = (SELECT value FROM accepted WHERE slot = 1)",
        "CREATE TABLE snapshot_piece (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)",
        "DROP TABLE segment",
        "UPDATE meta SET schema_version = 4",
    )
    with SqliteStorage.open(tmp_path, identity) as s:
        assert s.load() == folded(records)
    conn = sqlite3.connect(tmp_path / DB_FILE)
    assert conn.execute("SELECT schema_version FROM meta").fetchone()[0] == SCHEMA_VERSION == 7
    conn.close()


def test_what_it_remembers_stays_bounded(tmp_path: Path, identity: NodeIdentity) -> None:
    """Accepted rows are remembered only until decided, references only above the base:
    a learner's memory for this follows its snapshot period, not the log's length."""
    from paxoi.core.records import SnapshotRecord
    from paxoi.core.snapshot import Snapshot

    with SqliteStorage.open(tmp_path, identity, fsync=False) as s:
        for slot in range(300):
            value = (Command("c", slot + 1, b"x"),)
            s.write([accepted(slot, value)])
            s.write([DecidedRecord(slot, value)])
        assert s._accepted == {} and len(s._refs) == 300
        s.write([SnapshotRecord(Snapshot(300, (b"state",)), 250)])
        assert sorted(s._refs) == list(range(250, 300))
