from __future__ import annotations

import gc
import hashlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paxoi.apps import chat
from paxoi.apps.chat import ChatEntry, ChatLog, canonical_line, escape
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
        chat._SNAPSHOT_HEAD + b"\xc1",  # a byte msgpack never uses
        chat._SNAPSHOT_HEAD + msgpack.packb({"a": 1}),
        chat._SNAPSHOT_HEAD + msgpack.packb([[1]]),
        chat._SNAPSHOT_HEAD + msgpack.packb([[0, "a", 1, "x"]])[:-1],  # cut short
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
        # The quick test in front of the pattern clears no character the rule escapes.
        assert chat._plain(ch) == (not rule), hex(code)
        assert chat._plain(f"plain {ch} text") == (not rule), hex(code)


def _full_snapshot(log: ChatLog) -> bytes:
    """The snapshot's definition (version 2), encoded in one go."""
    rows = [[e.slot, e.sender, e.seq, e.message] for e in log.entries]
    n = chat._SEGMENT_ENTRIES
    chunks = [rows[i : i + n] for i in range(0, len(rows), n)]
    return msgpack.packb(["paxoi-chat", 2]) + b"".join(msgpack.packb(c) for c in chunks)


def test_incremental_snapshot_equals_the_whole_encoding(monkeypatch) -> None:
    """snapshot() encodes only the entries since the last full chunk; the bytes are the
    same as encoding everything, across many snapshots and restores."""
    monkeypatch.setattr(chat, "_SEGMENT_ENTRIES", 16)
    log = ChatLog()
    assert log.snapshot() == _full_snapshot(log)
    texts = ["hi", "h\u00e9", "\u5ba2\U0001f98a", 'q"\\\n\t\x00']
    for i in range(300):
        log.apply(i // 3, Command(f"c{i % 4}", i + 1, texts[i % len(texts)].encode()))
        if i % 3 == 0:
            assert log.snapshot() == _full_snapshot(log)
    copy = ChatLog()
    copy.restore(log.snapshot())
    assert copy.snapshot() == log.snapshot()
    copy.apply(500, Command("z", 1, b"after"))
    assert copy.snapshot() == _full_snapshot(copy)
    assert copy.entries[:-1] == log.entries


def test_snapshot_segments_reuse_the_sealed_chunks(monkeypatch) -> None:
    """A snapshot is the sealed chunks' bytes, the same objects each time (what storage
    skips rewriting), and the tail's; their concatenation is snapshot()."""
    monkeypatch.setattr(chat, "_SEGMENT_ENTRIES", 7)
    log = ChatLog()
    for i in range(30):
        log.apply(i, Command("c", i + 1, f"m{i}".encode()))
    first = log.snapshot_segments()
    assert len(first) == 1 + 4 + 1  # head, four chunks of 7, a tail of 2
    assert b"".join(first) == log.snapshot() == _full_snapshot(log)
    log.apply(30, Command("c", 31, b"more"))
    second = log.snapshot_segments()
    assert all(a is b for a, b in zip(first[:5], second[:5], strict=True))
    assert second[5] != first[5]
    # The sealed ones (all but the tail), from any index: what storage gets as they seal.
    for start in range(7):
        sealed = log.sealed_segments(start)
        assert len(sealed) == max(0, 5 - start)
        assert all(a is b for a, b in zip(sealed, second[start:5], strict=True))


def test_a_snapshot_of_another_chunking_restores_to_ours(monkeypatch) -> None:
    """Another writer's chunks (any sizes) are read, then chunked and encoded our way."""
    monkeypatch.setattr(chat, "_SEGMENT_ENTRIES", 3)
    rows = [[i, "a", i + 1, f"m{i}"] for i in range(8)]
    data = msgpack.packb(["paxoi-chat", 2]) + b"".join(
        msgpack.packb(rows[i:j]) for i, j in [(0, 1), (1, 5), (5, 5), (5, 8)]
    )
    log = ChatLog()
    log.restore(data)
    assert [e.message for e in log.entries] == [f"m{i}" for i in range(8)]
    assert log.snapshot() == _full_snapshot(log)
    assert log.since(2, 7) == log.entries[2:7]
    assert log.canonical_text(4) == "".join(canonical_line(e) for e in log.entries[4:])


def test_any_span_of_the_log_reads_as_the_same_span_of_its_entries(monkeypatch) -> None:
    """`since` and `canonical_text` slice the chunks that hold a span, across sealed
    chunks and the tail, with negative and out-of-range positions as list slices."""
    monkeypatch.setattr(chat, "_SEGMENT_ENTRIES", 4)
    log = ChatLog()
    for i in range(11):
        log.apply(i, Command("a", i + 1, f"m{i}".encode()))
    entries = log.entries
    positions = [None, *range(-13, 14)]
    for start in positions:
        for stop in positions:
            expected = entries[start:stop]
            assert log.since(start or 0, stop) == expected, (start, stop)
            text = "".join(canonical_line(e) for e in expected)
            assert log.canonical_text(start or 0, stop) == text, (start, stop)


def test_a_long_chat_gives_the_garbage_collector_nothing_to_walk() -> None:
    """A full collection walks every tracked object and every element of each; neither
    the chat's entries nor one list of all of them may be among that, or a long chat
    stalls the server's event loop on every full collection."""
    log = ChatLog()
    gc.collect()
    before = len(gc.get_objects())
    for i in range(20_000):
        log.apply(i, Command(f"c{i % 8}", i + 1, b"sixteen bytes!!!"))
    gc.collect()
    assert len(gc.get_objects()) - before < 100
    assert len(log) == 20_000
    # What a collection visits from the log: the elements of each tracked container.
    walked, seen, todo = 0, set(), list(vars(log).values())
    while todo:
        obj = todo.pop()
        if id(obj) in seen or not gc.is_tracked(obj):
            continue
        seen.add(id(obj))
        referents = gc.get_referents(obj)
        walked += len(referents)
        todo.extend(referents)
    assert walked < 2 * chat._SEGMENT_ENTRIES


@pytest.mark.parametrize(
    "data",
    [
        b'{"version":1,"entries":[[0,"a",1,"x"]],"note":[1]}',  # a key we do not write
        b'{"entries": [[0, "a", 1, "x"]], "version": 1}',  # another writer's layout
        b'{"version":1,"entries":[[0,"a",1,"x"]]}',  # ours, version 1
        msgpack.packb(["paxoi-chat", 2]) + msgpack.packb([[0, "a", 1, "x"]]),  # version 2
    ],
)
def test_snapshot_after_restore_is_canonical_whatever_was_restored(data: bytes) -> None:
    log = ChatLog()
    log.restore(data)
    assert log.snapshot() == _full_snapshot(log)
    log.apply(1, Command("b", 1, b"y"))
    assert log.snapshot() == _full_snapshot(log)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["alice", "bob\t2", "c\\d", "é", "e\x7f"]),
            st.text(alphabet=st.sampled_from("ab \t\n\\\x7f\x00é\u2028~"), max_size=8),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_the_fast_canonical_lines_are_the_escaped_ones(rows: list[tuple[str, str]]) -> None:
    """canonical_bytes formats plain ASCII rows in one go and checks them in one pass; any
    row that needs escaping (a tab, a newline, a backslash, a control, DEL) or is not
    ASCII must give exactly the lines `canonical_line` gives."""
    log = ChatLog()
    for seq, (sender, message) in enumerate(rows, start=1):
        log.apply(seq // 3, Command(sender, seq, message.encode("utf-8", "surrogatepass")))
    expected = "".join(canonical_line(e) for e in log.entries).encode("utf-8")
    assert log.canonical_bytes() == expected
    assert log.canonical() == expected
