"""The snapshot image: one byte form for transfers and storage, decoded strictly."""

from __future__ import annotations

import contextlib
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paxoi.core import Snapshot, SnapshotError, decode_snapshot, encode_snapshot

EXAMPLES = [
    Snapshot(0, b""),
    Snapshot(12, b"state", (("alice", 3, ((2, b"r2"), (3, b""))), ("bob", 0, ()))),
    Snapshot(2**64 - 1, bytes(range(256)) * 10, (("Zoë-客户端", 2**64 - 1, ((1, b"x" * 1000),)),)),
]


@pytest.mark.parametrize("snap", EXAMPLES, ids=range(len(EXAMPLES)))
def test_round_trip(snap: Snapshot) -> None:
    assert decode_snapshot(encode_snapshot(snap)) == snap


def _reseal(body: bytes) -> bytes:
    """`body` with a valid checksum, so the structural checks are what refuses it."""
    return body + struct.pack(">I", zlib.crc32(body))


GOOD = encode_snapshot(EXAMPLES[1])
BODY = GOOD[:-4]
HEAD = struct.Struct(">4sBQQ")
BAD = [
    ("empty", b""),
    ("short", GOOD[:10]),
    ("truncated", GOOD[:-1]),
    ("flipped bit", GOOD[:20] + bytes([GOOD[20] ^ 1]) + GOOD[21:]),
    ("bad magic", _reseal(b"XXXX" + BODY[4:])),
    ("unknown version", _reseal(BODY[:4] + b"\x09" + BODY[5:])),
    ("state longer than image", _reseal(HEAD.pack(b"PXSN", 1, 1, 10**6) + BODY[HEAD.size :])),
    ("stray bytes", _reseal(BODY + b"\x00")),
    (
        "client count too high",
        _reseal(BODY[: HEAD.size + 5] + b"\x00\x00\x00\x09" + BODY[HEAD.size + 9 :]),
    ),
    (
        "client id not UTF-8",
        _reseal(
            encode_snapshot(Snapshot(1, b"", (("ab", 0, ()),)))[:-4].replace(b"ab", b"\xff\xfe")
        ),
    ),
    ("client twice", _reseal(encode_snapshot(Snapshot(1, b"", (("a", 0, ()), ("a", 0, ()))))[:-4])),
    (
        "result above last_seq",
        _reseal(encode_snapshot(Snapshot(1, b"", (("a", 1, ((5, b""),)),)))[:-4]),
    ),
]


@pytest.mark.parametrize("data", [d for _, d in BAD], ids=[n for n, _ in BAD])
def test_decode_refuses(data: bytes) -> None:
    with pytest.raises(SnapshotError):
        decode_snapshot(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_snapshot_error(data: bytes) -> None:
    for candidate in (data, _reseal(data), _reseal(b"PXSN\x01" + data)):
        with contextlib.suppress(SnapshotError):
            decode_snapshot(candidate)
