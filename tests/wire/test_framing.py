"""Framing: frames survive any split of the stream; hostile lengths cost nothing."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_strategies import messages

from paxoi.core.messages import Accepted
from paxoi.core.types import Ballot
from paxoi.wire.codec import Message, decode, encode
from paxoi.wire.framing import (
    DEFAULT_MAX_FRAME,
    HEADER_SIZE,
    FrameDecoder,
    FrameTooLarge,
    encode_frame,
    encode_frames,
    frame,
)
from paxoi.wire.values import DecodeError

FAST = settings(max_examples=200, deadline=None)
GIB = 1 << 30


def test_frame_layout() -> None:
    assert frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert DEFAULT_MAX_FRAME == 32 * 1024 * 1024
    assert HEADER_SIZE == 4


def test_frame_refuses_empty_payload() -> None:
    with pytest.raises(ValueError):
        frame(b"")


def test_several_frames_in_one_feed_and_one_frame_over_many() -> None:
    d = FrameDecoder()
    assert d.feed(frame(b"a") + frame(b"bc") + frame(b"def")[:5]) == [b"a", b"bc"]
    assert d.buffered == 5
    assert d.feed(b"") == []
    assert d.feed(b"ef") == [b"def"]
    assert d.buffered == 0
    big = bytes(range(256)) * 4096
    stream = frame(big)
    got = []
    for i in range(0, len(stream), 1000):
        got += d.feed(stream[i : i + 1000])
    assert got == [big]


def test_encode_frames_is_the_concatenation_of_encode_frame() -> None:
    msgs = [Accepted(i, Ballot(4, 0), i) for i in range(10)]
    data = encode_frames(msgs)
    assert data == b"".join(encode_frame(m) for m in msgs)
    assert [decode(p) for p in FrameDecoder().feed(data)] == msgs
    assert encode_frames([]) == b""


def test_one_gib_length_prefix_is_refused_without_allocating() -> None:
    tracemalloc.start()
    try:
        d = FrameDecoder()
        with pytest.raises(FrameTooLarge):
            d.feed(GIB.to_bytes(4, "big"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024


def test_oversized_prefix_is_refused_as_soon_as_its_header_is_complete() -> None:
    d = FrameDecoder(max_frame=100)
    assert d.feed(frame(b"x" * 100)) == [b"x" * 100]  # exactly the maximum is fine
    assert d.feed(b"\x00\x00") == []
    with pytest.raises(FrameTooLarge):
        d.feed(b"\x00\x65")  # 101: refused before a single body byte arrives
    # The stream has lost its framing: the decoder stays dead.
    with pytest.raises(FrameTooLarge):
        d.feed(frame(b"ok"))
    assert d.buffered == 0


def test_largest_prefix_is_refused() -> None:
    with pytest.raises(FrameTooLarge):
        FrameDecoder().feed(b"\xff\xff\xff\xff" + b"x" * 100)


def test_zero_length_frame_is_refused() -> None:
    d = FrameDecoder()
    with pytest.raises(DecodeError) as e:
        d.feed(frame(b"a") + b"\x00\x00\x00\x00")
    assert not isinstance(e.value, FrameTooLarge)
    with pytest.raises(DecodeError):
        d.feed(b"")


def test_max_frame_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FrameDecoder(0)


def test_many_small_frames_in_small_pieces_do_not_grow_the_buffer() -> None:
    d = FrameDecoder()
    one = frame(b"m" * 37)
    stream = one * 20_000  # ~800 KB, fed in pieces that never align with frames
    n = 0
    for i in range(0, len(stream), 4093):
        n += len(d.feed(stream[i : i + 4093]))
        assert len(d._buf) < 256 * 1024  # compaction keeps the buffer bounded
    assert n == 20_000
    assert d.buffered == 0


@st.composite
def streams_and_splits(draw: st.DrawFn) -> tuple[list[bytes], list[bytes]]:
    payloads = draw(st.lists(st.binary(min_size=1, max_size=300), max_size=12))
    stream = b"".join(frame(p) for p in payloads)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    return payloads, pieces


@FAST
@given(streams_and_splits())
def test_any_split_yields_the_same_frames(case: tuple[list[bytes], list[bytes]]) -> None:
    payloads, pieces = case
    d = FrameDecoder(max_frame=300)
    got: list[bytes] = []
    for piece in pieces:
        got += d.feed(piece)
    assert got == payloads
    assert d.buffered == 0


@FAST
@given(st.lists(messages, max_size=8), st.data())
def test_messages_survive_framing_and_any_split(msgs: list[Message], data: st.DataObject) -> None:
    stream = encode_frames(msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10), label="cuts"))
    d = FrameDecoder()
    got = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += [decode(p) for p in d.feed(stream[a:b])]
    assert got == msgs
    assert [encode(m) for m in got] == [encode(m) for m in msgs]


@FAST
@given(
    st.lists(st.binary(max_size=64), max_size=10), st.sampled_from([1, 8, 300, DEFAULT_MAX_FRAME])
)
def test_arbitrary_bytes_raise_only_decode_errors(pieces: list[bytes], max_frame: int) -> None:
    d = FrameDecoder(max_frame)
    for piece in pieces:
        try:
            for payload in d.feed(piece):
                assert 0 < len(payload) <= max_frame
        except DecodeError:
            with pytest.raises(DecodeError):  # and it stays dead
                d.feed(b"\x00\x00\x00\x01x")
            return
    assert d.buffered < HEADER_SIZE + max_frame
