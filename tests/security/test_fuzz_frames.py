"""Property-based fuzzing of the frame decoder: hostile byte streams, in hostile pieces.

The contract (paxoi.wire.framing): whatever bytes arrive, in whatever pieces, the
decoder returns exactly the frames a simple reference parser finds (up to the piece
that holds a bad header, if any), or raises
DecodeError (FrameTooLarge for an oversized length) as soon as the bad header is
complete, and never anything else; it never holds more than one frame's worth of bytes;
once it raised, it stays dead. The coverage-guided counterpart is fuzz/fuzz_frames.py.
"""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paxoi.wire.framing import HEADER_SIZE, FrameDecoder, FrameTooLarge, frame
from paxoi.wire.values import DecodeError

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GIB = 1 << 30


def reference(stream: bytes, max_frame: int) -> tuple[list[bytes], str | None]:
    """The frames in `stream` and, if it goes bad, why: the obvious, slow parser."""
    frames: list[bytes] = []
    i = 0
    while len(stream) - i >= HEADER_SIZE:
        (n,) = struct.unpack_from(">I", stream, i)
        if n > max_frame:
            return frames, "too-large"
        if n == 0:
            return frames, "zero"
        if len(stream) - i - HEADER_SIZE < n:
            break
        frames.append(stream[i + HEADER_SIZE : i + HEADER_SIZE + n])
        i += HEADER_SIZE + n
    return frames, None


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in [*points, len(data)]:
        out.append(data[last:p])
        last = p
    return out


def feed_all(decoder: FrameDecoder, pieces: list[bytes]) -> tuple[list[bytes], DecodeError | None]:
    got: list[bytes] = []
    for piece in pieces:
        try:
            got += decoder.feed(piece)
        except DecodeError as e:  # the only exception allowed
            return got, e
        # Never more than one frame (and its header) held back.
        assert decoder.buffered <= decoder.max_frame + HEADER_SIZE
    return got, None


#: Streams that look like frames: valid frames, oversized and zero lengths, and junk.
frame_parts = st.one_of(
    st.binary(min_size=1, max_size=40).map(frame),
    st.integers(0, 2**32 - 1).map(lambda n: struct.pack(">I", n)),
    st.binary(max_size=12),
)
streams = st.lists(frame_parts, max_size=12).map(b"".join)


@FAST
@given(st.one_of(streams, st.binary(max_size=300)), st.lists(st.integers(0, 400)), st.data())
def test_any_stream_in_any_pieces_matches_the_reference(
    stream: bytes, cuts: list[int], data: st.DataObject
) -> None:
    max_frame = data.draw(st.sampled_from([1, 7, 64, 1024, 2**32 - 1]), label="max_frame")
    want, bad = reference(stream, max_frame)
    decoder = FrameDecoder(max_frame)
    got, error = feed_all(decoder, splits(stream, cuts))
    if bad is None:
        assert error is None
        assert got == want
    else:
        # Frames of the piece that held the bad header are dropped with it (the
        # connection is closed anyway); nothing is ever returned that is not a frame.
        assert error is not None
        assert got == want[: len(got)]
        assert isinstance(error, FrameTooLarge) == (bad == "too-large")
        with pytest.raises(DecodeError):  # dead for good
            decoder.feed(frame(b"valid"))
        assert decoder.buffered == 0  # and it let go of what it held


@FAST
@given(
    st.lists(st.binary(min_size=1, max_size=30), max_size=5),
    st.integers(1025, 2**32 - 1),
    st.integers(1, 4),
)
def test_an_oversized_length_is_refused_as_its_header_completes(
    before: list[bytes], length: int, piece: int
) -> None:
    decoder = FrameDecoder(1024)
    stream = b"".join(frame(p) for p in before)
    assert decoder.feed(stream) == before
    header = struct.pack(">I", length)
    chunks = [header[i : i + piece] for i in range(0, HEADER_SIZE, piece)]
    for chunk in chunks[:-1]:
        assert decoder.feed(chunk) == []
    with pytest.raises(FrameTooLarge):
        decoder.feed(chunks[-1])


@pytest.mark.parametrize("piece", [1, 2, 4, 64 * 1024])
def test_one_gib_length_prefix_costs_nothing(piece: int) -> None:
    body = struct.pack(">I", GIB) + b"\x00" * (64 * 1024)
    tracemalloc.start()
    try:
        decoder = FrameDecoder()  # the 32 MiB default
        with pytest.raises(FrameTooLarge, match="1073741824"):
            for i in range(0, len(body), piece):
                decoder.feed(body[i : i + piece])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024
    assert decoder.buffered == 0


@FAST
@given(st.binary(min_size=2, max_size=2000))
def test_a_frame_at_the_limit_is_taken_and_one_byte_more_is_not(payload: bytes) -> None:
    assert FrameDecoder(len(payload)).feed(frame(payload)) == [payload]
    with pytest.raises(FrameTooLarge):
        FrameDecoder(len(payload) - 1).feed(frame(payload)[:HEADER_SIZE])


def test_a_slow_stream_of_tiny_frames_keeps_the_buffer_small() -> None:
    decoder = FrameDecoder(1024)
    data = frame(b"x") * 50_000
    high = 0
    for i in range(0, len(data), 3):
        assert len(decoder.feed(data[i : i + 3])) <= 1
        high = max(high, decoder.buffered)
    assert high < 2 * HEADER_SIZE
