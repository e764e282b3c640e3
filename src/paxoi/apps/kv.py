"""A replicated key-value store with get, put, compare-and-set and append.

Commands are JSON objects (build them with `get`, `put`, `cas` and `append`):

    {"op": "get" | "put" | "cas" | "append", "key": str, "value"?: str, "expect"?: str | null}

Results are JSON objects:

    get     {"ok": true, "value": <value or null>}
    put     {"ok": true}
    cas     {"ok": <swapped?>, "value": <the key's value after the command, or null>}
    append  {"ok": true, "value": <the new value>}

A malformed command is answered with {"ok": false, "error": "..."} and changes nothing:
a replicated state machine must be deterministic and never crash on a client's input.
`cas` with "expect": null (or no "expect") succeeds only when the key is absent.
"""

from __future__ import annotations

import json
from typing import Any

from paxoi.core.types import Command, Slot

from .jsondoc import load_versioned

_SNAPSHOT_VERSION = 1
_OPS = ("get", "put", "cas", "append")


def _dumps(doc: object) -> bytes:
    """Deterministic, ASCII-only JSON: equal documents give equal bytes on every replica."""
    return json.dumps(doc, ensure_ascii=True, sort_keys=True, separators=(",", ":")).encode("ascii")


# -- Command encoders ----------------------------------------------------------------------


def get(key: str) -> bytes:
    """The payload of a command reading `key`."""
    return _dumps({"op": "get", "key": key})


def put(key: str, value: str) -> bytes:
    """The payload of a command setting `key` to `value`."""
    return _dumps({"op": "put", "key": key, "value": value})


def cas(key: str, expect: str | None, value: str) -> bytes:
    """The payload of a command setting `key` to `value` if it is `expect` (None: absent)."""
    return _dumps({"op": "cas", "key": key, "expect": expect, "value": value})


def append(key: str, value: str) -> bytes:
    """The payload of a command appending `value` to `key` (an absent key counts as "")."""
    return _dumps({"op": "append", "key": key, "value": value})


class KVStore:
    """The key-value state machine: a dict from str to str."""

    def __init__(self) -> None:
        self._data: dict[str, str] = {}

    # -- StateMachine -------------------------------------------------------------------

    def apply(self, slot: Slot, command: Command) -> bytes:
        return _dumps(self.execute(command.payload))

    def snapshot(self) -> bytes:
        return _dumps({"version": _SNAPSHOT_VERSION, "data": self._data})

    def restore(self, data: bytes) -> None:
        raw = load_versioned(data, _SNAPSHOT_VERSION, "a kv snapshot").get("data")
        if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
            raise ValueError("not a kv snapshot: data must map strings to strings")
        self._data = dict(raw)

    def query(self, query: bytes) -> bytes:
        """A read-only command (a `get`) answered from the current state, for lease and
        stale reads; anything that would change the state is refused."""
        try:
            doc = json.loads(query.decode("utf-8"))
        except (ValueError, RecursionError):
            return _dumps(_error("payload is not UTF-8 JSON"))
        if not isinstance(doc, dict) or doc.get("op") != "get":
            return _dumps(_error("only get can be answered without the log"))
        return _dumps(self.execute(query))

    # -- Execution ----------------------------------------------------------------------

    def execute(self, payload: bytes) -> dict[str, Any]:
        """Run one command payload and return its result document. Never raises."""
        try:
            doc = json.loads(payload.decode("utf-8"))
        except (ValueError, RecursionError):
            return _error("payload is not UTF-8 JSON")
        if not isinstance(doc, dict):
            return _error("payload must be a JSON object")
        op = doc.get("op")
        if op not in _OPS:
            return _error(f"op must be one of {', '.join(_OPS)}")
        key = doc.get("key")
        if not isinstance(key, str):
            return _error("key must be a string")

        if op == "get":
            return {"ok": True, "value": self._data.get(key)}

        value = doc.get("value")
        if not isinstance(value, str):
            return _error("value must be a string")
        if op == "put":
            self._data[key] = value
            return {"ok": True}
        if op == "append":
            new = self._data.get(key, "") + value
            self._data[key] = new
            return {"ok": True, "value": new}

        # op == "cas"
        expect = doc.get("expect")
        if expect is not None and not isinstance(expect, str):
            return _error("expect must be a string or null")
        current = self._data.get(key)
        if current != expect:
            return {"ok": False, "value": current}
        self._data[key] = value
        return {"ok": True, "value": value}

    # -- Queries ------------------------------------------------------------------------

    def read(self, key: str) -> str | None:
        """The local value of `key` (not linearizable: for tests and inspection)."""
        return self._data.get(key)

    def items(self) -> dict[str, str]:
        """A copy of the whole store."""
        return dict(self._data)

    def __len__(self) -> int:
        return len(self._data)


def _error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}
