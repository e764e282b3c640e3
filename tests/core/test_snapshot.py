"""The snapshot image: one byte form for transfers and storage, decoded strictly."""

from __future__ import annotations

import contextlib
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paxoi.core import Snapshot, SnapshotError, decode_snapshot, encode_snapshot
from paxoi.core.snapshot import (
    assemble_snapshot,
    crc32,
    decode_frame,
    encode_frame,
    segment_crcs,
)

EXAMPLES = [
    Snapshot(0, ()),
    Snapshot(0, (b"",)),
    Snapshot(12, (b"state",), (("alice", 3, ((2, b"r2"), (3, b""))), ("bob", 0, ()))),
    Snapshot(7, (b"one", b"", b"three" * 100)),
    Snapshot(
        2**64 - 1, (bytes(range(256)) * 10,), (("Zoë-客户端", 2**64 - 1, ((1, b"x" * 1000),)),)
    ),
]


@pytest.mark.parametrize("snap", EXAMPLES, ids=range(len(EXAMPLES)))
def test_round_trip(snap: Snapshot) -> None:
    assert decode_snapshot(encode_snapshot(snap)) == snap


def test_the_image_is_the_frame_then_the_segments() -> None:
    """What storage relies on: the frame alone decodes, and with the segments (checked
    against their CRCs) gives the snapshot back."""
    snap = EXAMPLES[3]
    frame = encode_frame(snap, segment_crcs(snap))
    assert encode_snapshot(snap) == frame + b"".join(snap.segments)
    decoded = decode_frame(frame)
    assert (decoded.slot, decoded.size) == (7, len(frame))
    assert assemble_snapshot(decoded, snap.segments) == snap
    assert snap.state == b"one" + b"three" * 100
    with pytest.raises(SnapshotError, match="segment 2 checksum"):
        assemble_snapshot(decoded, [b"one", b"", b"threE" * 100])
    with pytest.raises(SnapshotError, match="segment 0 is 4 bytes"):
        assemble_snapshot(decoded, [b"one!", b"", b"three" * 100])
    with pytest.raises(SnapshotError, match="2 segments"):
        assemble_snapshot(decoded, [b"one", b""])


def test_version_1_images_still_decode() -> None:
    """As paxoi before segments stored them (storage upgrades read them)."""
    clients = EXAMPLES[2].clients
    body = struct.pack(">4sBQQ", b"PXSN", 1, 12, 5) + b"state" + struct.pack(">I", 2)
    body += struct.pack(">IQI", 5, 3, 2) + b"alice" + struct.pack(">QI", 2, 2) + b"r2"
    body += struct.pack(">QI", 3, 0) + struct.pack(">IQI", 3, 0, 0) + b"bob"
    assert decode_snapshot(_reseal(body)) == Snapshot(12, (b"state",), clients)
    with pytest.raises(SnapshotError, match="checksum"):
        decode_snapshot(_reseal(body)[:-1] + b"\x00")


def _reseal(body: bytes) -> bytes:
    """`body` with a valid checksum, so the structural checks are what refuses it."""
    return body + struct.pack(">I", zlib.crc32(body))


def _frame_body(snap: Snapshot) -> bytes:
    """`snap`'s frame without its checksum (to damage and reseal)."""
    return encode_frame(snap, segment_crcs(snap))[:-4]


GOOD = encode_snapshot(EXAMPLES[2])
BODY = _frame_body(EXAMPLES[2])
HEAD = struct.Struct(">4sBQI")
BAD = [
    ("empty", b""),
    ("short", GOOD[:10]),
    ("truncated", GOOD[:-1]),
    ("flipped bit in the frame", GOOD[:20] + bytes([GOOD[20] ^ 1]) + GOOD[21:]),
    ("flipped bit in a segment", GOOD[:-2] + bytes([GOOD[-2] ^ 1]) + GOOD[-1:]),
    ("bad magic", _reseal(b"XXXX" + BODY[4:]) + b"state"),
    ("unknown version", _reseal(BODY[:4] + b"\x09" + BODY[5:]) + b"state"),
    ("segment longer than image", _reseal(BODY) + b"stat"),
    ("stray bytes", GOOD + b"\x00"),
    (
        "segment count too high",
        _reseal(BODY[: HEAD.size - 4] + b"\x00\x00\x00\x09" + BODY[HEAD.size :]) + b"state",
    ),
    (
        "client id not UTF-8",
        _reseal(_frame_body(Snapshot(1, (), (("ab", 0, ()),))).replace(b"ab", b"\xff\xfe")),
    ),
    ("client twice", _reseal(_frame_body(Snapshot(1, (), (("a", 0, ()), ("a", 0, ())))))),
    ("result above last_seq", _reseal(_frame_body(Snapshot(1, (), (("a", 1, ((5, b""),)),))))),
]


@pytest.mark.parametrize("data", [d for _, d in BAD], ids=[n for n, _ in BAD])
def test_decode_refuses(data: bytes) -> None:
    with pytest.raises(SnapshotError):
        decode_snapshot(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_snapshot_error(data: bytes) -> None:
    for candidate in (
        data,
        _reseal(data),
        _reseal(b"PXSN\x01" + data),
        _reseal(b"PXSN\x02" + data),
        _reseal(b"PXSN\x02" + data) + data,
    ):
        with contextlib.suppress(SnapshotError):
            decode_snapshot(candidate)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=20_000))
def test_crc32_in_slices_equals_zlibs(data: bytes) -> None:
    """crc32 feeds zlib slices short enough to keep the GIL; the value is zlib's."""
    assert crc32(data) == zlib.crc32(data)
    assert crc32(memoryview(data)) == zlib.crc32(data)
