from __future__ import annotations

import gc
import hashlib
import json

import pytest

from paxoi.apps import chat
from paxoi.apps.chat import ChatEntry, ChatLog, escape
from paxoi.core.statemachine import StateMachine
from paxoi.core.types import Command


def make_log(*messages: tuple[int, str, int, bytes]) -> ChatLog:
    log = ChatLog()
    for slot, client, seq, payload in messages:
        log.apply(slot, Command(client, seq, payload))
    return log


def test_implements_state_machine_protocol() -> None:
    assert isinstance(ChatLog(), StateMachine)


def test_apply_records_entry_and_returns_slot() -> None:
    log = ChatLog()
    assert log.apply(7, Command("alice", 1, b"hello")) == b"7"
    assert log.apply(12, Command("bob", 3, "h\u00e9".encode())) == b"12"
    assert log.entries == [
        ChatEntry(slot=7, sender="alice", seq=1, message="hello"),
        ChatEntry(slot=12, sender="bob", seq=3, message="h\u00e9"),
    ]
    assert len(log) == 2


def test_entries_are_frozen_and_a_copy() -> None:
    log = make_log((0, "a", 1, b"x"))
    entries = log.entries
    entries.clear()
    assert len(log.entries) == 1
    with pytest.raises(AttributeError):
        log.entries[0].message = "changed"  # type: ignore[misc]


def test_invalid_utf8_is_replaced_not_raised() -> None:
    log = make_log((0, "a", 1, b"ok\xff\xfe"))
    assert log.entries[0].message == "ok\ufffd\ufffd"


def test_batch_entries_share_a_slot_in_order() -> None:
    log = make_log((4, "a", 1, b"first"), (4, "b", 1, b"second"))
    assert [(e.slot, e.message) for e in log.entries] == [(4, "first"), (4, "second")]


def test_canonical_format_and_digest() -> None:
    log = make_log((0, "alice", 1, b"hi"), (1, "bob", 2, b"yo"))
    assert log.canonical() == b"0\talice\t1\thi\n1\tbob\t2\tyo\n"
    assert log.digest() == hashlib.sha256(log.canonical()).hexdigest()
    assert ChatLog().canonical() == b""


def test_canonical_keeps_one_line_per_entry() -> None:
    nasty = "tab\there\nnew\rline\\slash\u2028sep\x00nul\x85nel"
    log = make_log((0, "al\tice", 1, nasty.encode()), (1, "bob", 1, b"plain"))
    text = log.canonical().decode("utf-8")
    lines = text.splitlines()
    assert len(lines) == 2
    assert lines[0].split("\t") == ["0", "al\\tice", "1", escape(nasty)]
    assert escape(nasty) == "tab\\there\\nnew\\rline\\\\slash\\u2028sep\\x00nul\\x85nel"
    # Escaping is injective on these: a literal backslash-n differs from a newline.
    assert escape("a\\nb") != escape("a\nb")


def test_equal_logs_have_equal_digests() -> None:
    msgs = [(0, "a", 1, b"one"), (1, "b", 1, b"two"), (2, "a", 2, b"three")]
    assert make_log(*msgs).digest() == make_log(*msgs).digest()


@pytest.mark.parametrize(
    "other",
    [
        [(0, "a", 1, b"one"), (1, "b", 1, b"TWO")],  # different message
        [(0, "a", 1, b"one"), (1, "c", 1, b"two")],  # different sender
        [(0, "a", 1, b"one"), (1, "b", 2, b"two")],  # different seq
        [(0, "a", 1, b"one"), (2, "b", 1, b"two")],  # different slot
        [(1, "b", 1, b"two"), (0, "a", 1, b"one")],  # different order
        [(0, "a", 1, b"one")],  # missing entry
        [(0, "a", 1, b"one\n1\tb\t1\ttwo")],  # one message that looks like two lines
    ],
)
def test_different_logs_have_different_digests(other: list[tuple[int, str, int, bytes]]) -> None:
    base = make_log((0, "a", 1, b"one"), (1, "b", 1, b"two"))
    assert make_log(*other).digest() != base.digest()


def test_snapshot_restore_round_trip() -> None:
    log = make_log(
        (0, "alice", 1, b"hello"),
        (0, "bob", 5, "caf\u00e9 \u2603".encode()),
        (3, "carol", 2, b"tabs\tand\nnewlines"),
        (9, "dave", 1, b"\xff"),
    )
    snap = log.snapshot()
    copy = ChatLog()
    copy.restore(snap)
    assert copy.entries == log.entries
    assert copy.digest() == log.digest()
    assert copy.snapshot() == snap
    # The copy keeps working independently.
    copy.apply(10, Command("erin", 1, b"later"))
    assert len(copy) == 5 and len(log) == 4


def test_restore_replaces_state() -> None:
    log = make_log((0, "a", 1, b"old"))
    log.restore(ChatLog().snapshot())
    assert log.entries == []


def test_render() -> None:
    log = make_log((0, "alice", 1, b"hi"), (1, "bob", 1, b"two\nlines"))
    assert log.render() == "0 alice: hi\n1 bob: two\\nlines\n"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[]",
        b'{"version": 99, "entries": []}',
        b'{"version": 1, "entries": [[1]]}',
    ],
)
def test_restore_rejects_garbage(data: bytes) -> None:
    log = make_log((0, "a", 1, b"kept"))
    with pytest.raises(ValueError):
        log.restore(data)
    assert [e.message for e in log.entries] == ["kept"]


def test_escape_pattern_agrees_with_the_rule_on_every_code_point() -> None:
    """escape() finds what to escape with one regular expression (a character loop was
    slow on long messages); it must match exactly the characters the rule escapes."""
    import unicodedata

    from paxoi.apps import chat

    for code in range(0x110000):
        ch = chr(code)
        rule = ch in chat._ESCAPES or unicodedata.category(ch) in chat._ESCAPED_CATEGORIES
        assert (chat._NEEDS_ESCAPE.search(ch) is not None) == rule, hex(code)


def _full_snapshot(log: ChatLog) -> bytes:
    """The snapshot's definition, encoded in one go."""
    doc = {"version": 1, "entries": [[e.slot, e.sender, e.seq, e.message] for e in log.entries]}
    return json.dumps(doc, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def test_incremental_snapshot_equals_the_whole_encoding() -> None:
    """snapshot() encodes only what was applied since the last one; the bytes are the
    same as encoding everything, across many snapshots, segments merged, and restores."""
    log = ChatLog()
    assert log.snapshot() == _full_snapshot(log)
    texts = ["hi", "h\u00e9", "\u5ba2\U0001f98a", 'q"\\\n\t\x00']
    for i in range(300):
        log.apply(i // 3, Command(f"c{i % 4}", i + 1, texts[i % len(texts)].encode()))
        if i % 3 == 0:
            assert log.snapshot() == _full_snapshot(log)
    copy = ChatLog()
    copy.restore(log.snapshot())
    copy.apply(500, Command("z", 1, b"after"))
    assert copy.snapshot() == _full_snapshot(copy)
    assert copy.entries[:-1] == log.entries


def test_snapshot_encoded_as_applied_equals_the_whole_encoding(monkeypatch) -> None:
    """Entries are encoded in segments as they are applied (so no snapshot encodes a
    hundred thousand at once); segments merge; the bytes stay those of one encoding."""
    monkeypatch.setattr(chat, "_SEGMENT_ENTRIES", 7)
    monkeypatch.setattr(chat, "_MAX_SEGMENTS", 3)
    log = ChatLog()
    for i in range(100):
        log.apply(i, Command("c", i + 1, f"m{i}".encode()))
        if i % 23 == 0:
            assert log.snapshot() == _full_snapshot(log)
    assert log.snapshot() == _full_snapshot(log)


def test_a_long_chat_gives_the_garbage_collector_nothing_to_walk() -> None:
    """A full collection walks every tracked object; the chat's entries must not be
    among them, or a long chat stalls the server's event loop on every one."""
    log = ChatLog()
    gc.collect()
    before = len(gc.get_objects())
    for i in range(20_000):
        log.apply(i, Command(f"c{i % 8}", i + 1, b"sixteen bytes!!!"))
    gc.collect()
    assert len(gc.get_objects()) - before < 100
    assert len(log) == 20_000


@pytest.mark.parametrize(
    "data",
    [
        b'{"version":1,"entries":[[0,"a",1,"x"]],"note":[1]}',  # a key we do not write
        b'{"entries": [[0, "a", 1, "x"]], "version": 1}',  # another writer's layout
        b'{"version":1,"entries":[[0,"a",1,"x"]]}',  # ours
    ],
)
def test_snapshot_after_restore_is_canonical_whatever_was_restored(data: bytes) -> None:
    log = ChatLog()
    log.restore(data)
    assert log.snapshot() == _full_snapshot(log)
    log.apply(1, Command("b", 1, b"y"))
    assert log.snapshot() == _full_snapshot(log)
