from __future__ import annotations

import json
from typing import Any

import pytest

from paxoi.apps import kv
from paxoi.apps.kv import KVStore
from paxoi.core.statemachine import StateMachine
from paxoi.core.types import Command


class Client:
    """Applies payloads to a store at increasing slots, decoding the results."""

    def __init__(self, store: KVStore) -> None:
        self.store = store
        self.slot = 0

    def __call__(self, payload: bytes) -> Any:
        self.slot += 1
        raw = self.store.apply(self.slot, Command("c", self.slot, payload))
        assert isinstance(raw, bytes)
        return json.loads(raw)


def test_implements_state_machine_protocol() -> None:
    assert isinstance(KVStore(), StateMachine)


def test_get_put() -> None:
    run = Client(KVStore())
    assert run(kv.get("x")) == {"ok": True, "value": None}
    assert run(kv.put("x", "1")) == {"ok": True}
    assert run(kv.get("x")) == {"ok": True, "value": "1"}
    assert run(kv.put("x", "2")) == {"ok": True}
    assert run(kv.get("x")) == {"ok": True, "value": "2"}


def test_cas() -> None:
    store = KVStore()
    run = Client(store)
    assert run(kv.cas("k", None, "a")) == {"ok": True, "value": "a"}
    assert run(kv.cas("k", None, "b")) == {"ok": False, "value": "a"}
    assert run(kv.cas("k", "wrong", "b")) == {"ok": False, "value": "a"}
    assert store.read("k") == "a"
    assert run(kv.cas("k", "a", "b")) == {"ok": True, "value": "b"}
    assert store.read("k") == "b"
    # A missing "expect" means "expect absent".
    assert run(b'{"op":"cas","key":"new","value":"v"}') == {"ok": True, "value": "v"}


def test_append() -> None:
    run = Client(KVStore())
    assert run(kv.append("log", "a")) == {"ok": True, "value": "a"}
    assert run(kv.append("log", "bc")) == {"ok": True, "value": "abc"}
    assert run(kv.get("log")) == {"ok": True, "value": "abc"}


def test_unicode_keys_and_values() -> None:
    run = Client(KVStore())
    assert run(kv.put("cl\u00e9", "\u2603\n\t")) == {"ok": True}
    assert run(kv.get("cl\u00e9")) == {"ok": True, "value": "\u2603\n\t"}


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xff\xfe",
        b"not json",
        b"[1, 2]",
        b'"get"',
        b"null",
        b"{}",
        b'{"op": "delete", "key": "x"}',
        b'{"op": 3, "key": "x"}',
        b'{"op": "get"}',
        b'{"op": "get", "key": 1}',
        b'{"op": "put", "key": "x"}',
        b'{"op": "put", "key": "x", "value": 5}',
        b'{"op": "append", "key": "x", "value": null}',
        b'{"op": "cas", "key": "x", "value": "v", "expect": 1}',
        b'{"op": "cas", "key": "x", "expect": "v"}',
        b"[" * 100_000,
        b'{"op": "put", "key": "x", "value": "' + b"9" * 10 + b'"',
        b'{"op": "put", "key": "x", "value": ' + b"9" * 10_000 + b"}",
    ],
)
def test_malformed_payloads_are_answered_not_raised(payload: bytes) -> None:
    store = KVStore()
    store.apply(0, Command("c", 1, kv.put("x", "orig")))
    before = store.snapshot()
    raw = store.apply(1, Command("c", 2, payload))
    result = json.loads(raw)
    assert result["ok"] is False
    assert isinstance(result["error"], str) and result["error"]
    assert store.snapshot() == before


def test_results_are_deterministic_bytes() -> None:
    a, b = KVStore(), KVStore()
    payloads = [kv.put("b", "2"), kv.put("a", "1"), kv.append("a", "x"), kv.cas("b", "2", "3")]
    for i, p in enumerate(payloads):
        assert a.apply(i, Command("c", i + 1, p)) == b.apply(i, Command("c", i + 1, p))
    assert a.snapshot() == b.snapshot()


def test_snapshot_restore_round_trip() -> None:
    store = KVStore()
    run = Client(store)
    run(kv.put("a", "1"))
    run(kv.put("\u00fcber", "\u2603"))
    run(kv.append("a", "2"))
    snap = store.snapshot()
    copy = KVStore()
    copy.restore(snap)
    assert copy.items() == {"a": "12", "\u00fcber": "\u2603"}
    assert copy.snapshot() == snap
    # Independent after restore.
    Client(copy)(kv.put("a", "changed"))
    assert store.read("a") == "12"


def test_restore_replaces_state() -> None:
    store = KVStore()
    store.apply(0, Command("c", 1, kv.put("gone", "1")))
    store.restore(KVStore().snapshot())
    assert store.items() == {}


@pytest.mark.parametrize(
    "data",
    [b"", b"nope", b"{}", b'{"version": 1, "data": []}', b'{"version": 1, "data": {"k": 1}}'],
)
def test_restore_rejects_garbage(data: bytes) -> None:
    store = KVStore()
    store.apply(0, Command("c", 1, kv.put("k", "v")))
    with pytest.raises(ValueError):
        store.restore(data)
    assert store.items() == {"k": "v"}


def test_encoders_produce_valid_commands() -> None:
    assert json.loads(kv.get("k")) == {"op": "get", "key": "k"}
    assert json.loads(kv.put("k", "v")) == {"op": "put", "key": "k", "value": "v"}
    assert json.loads(kv.cas("k", None, "v")) == {
        "op": "cas",
        "key": "k",
        "expect": None,
        "value": "v",
    }
    assert json.loads(kv.append("k", "v")) == {"op": "append", "key": "k", "value": "v"}
