"""MemoryStorage: the in-memory engine folds records exactly as DurableState.apply does."""

from __future__ import annotations

import pytest

from paxoi.core.errors import ConfigError
from paxoi.core.records import BallotRecord, DurableState, Record
from paxoi.storage import MemoryStorage, NodeIdentity, Storage, StorageError


def test_folds_like_durable_state(identity: NodeIdentity, every_kind: list[Record]) -> None:
    storage = MemoryStorage(identity)
    assert isinstance(storage, Storage)
    storage.write(every_kind[:2])
    storage.write(every_kind[2:])
    storage.write([])
    expected = DurableState()
    for r in every_kind:
        expected.apply(r)
    assert storage.load() == expected
    assert storage.writes == 2


def test_load_returns_a_copy(identity: NodeIdentity, every_kind: list[Record]) -> None:
    storage = MemoryStorage(identity)
    storage.write(every_kind)
    state = storage.load()
    state.decided.clear()
    state.round_used = 99
    assert storage.load().decided and storage.load().round_used == 11


def test_closed(identity: NodeIdentity) -> None:
    storage = MemoryStorage(identity)
    storage.close()
    with pytest.raises(StorageError, match="closed"):
        storage.write([BallotRecord(1)])


@pytest.mark.parametrize(
    ("args", "field"),
    [(("", 1), "cluster_id"), (("c", -1), "node_id"), (("c", True), "node_id")],
)
def test_identity_is_validated(args: tuple[str, int], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        NodeIdentity(*args)
