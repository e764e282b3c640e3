"""Helpers shared by the storage tests (importable through tests/storage/conftest.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from paxoi.core.records import DurableState, Record
from paxoi.storage import DB_FILE


def folded(*batches: list[Record]) -> DurableState:
    """What DurableState.apply makes of the records: the reference every engine must match."""
    state = DurableState()
    for batch in batches:
        for r in batch:
            state.apply(r)
    return state


def execute(data_dir: Path, *sql: str) -> None:
    """Run `sql` on the node's database directly, in one transaction (to damage it, or
    to make it look like an older version)."""
    conn = sqlite3.connect(data_dir / DB_FILE)
    with conn:
        for statement in sql:
            conn.execute(statement)
    conn.close()
