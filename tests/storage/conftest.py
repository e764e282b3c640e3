"""Fixtures shared by the storage tests: an identity and one record of every kind.

Also makes `storage_helpers` importable (pytest runs in importlib mode, which does not
put test folders on sys.path; the name is unique to this folder)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from paxoi.core.records import (
    AcceptedRecord,
    BallotRecord,
    DecidedRecord,
    PromisedRecord,
    Record,
    SnapshotRecord,
)
from paxoi.core.snapshot import Snapshot
from paxoi.core.types import Ballot, Command, PValue
from paxoi.storage import NodeIdentity

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture
def identity() -> NodeIdentity:
    return NodeIdentity("test-cluster", 1, b"config-v1")


def _cmd(client: str, seq: int, payload: bytes = b"x") -> Command:
    return Command(client, seq, payload)


@pytest.fixture
def every_kind() -> list[Record]:
    """One record of each kind, plus a no-op decision (the empty batch). The snapshot's
    base is 0, so it drops nothing; the compaction tests have their own records."""
    return [
        SnapshotRecord(
            Snapshot(4, (b"state\x00", b"", b"more"), (("a", 1, ((1, b"r"),)), ("b", 0, ()))), 0
        ),
        PromisedRecord(Ballot(3, 2)),
        AcceptedRecord(PValue(Ballot(4, 0), 7, (_cmd("a", 1, b"hello"), _cmd("b", 9, b"")))),
        DecidedRecord(5, (_cmd("a", 1, b"\x00\xff" * 8),)),
        DecidedRecord(6, ()),
        BallotRecord(11),
    ]
