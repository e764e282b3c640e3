"""Snapshots: a replica's whole state at one slot, so the log below it can be dropped.

A `Snapshot` is what a replica holds once it has applied every slot below `slot`: the
state machine's bytes and the client table. The client table is part of it because
exactly-once depends on it: a replica restored from the machine alone would apply again
a retry of a command that the snapshot already covers.

`encode_snapshot` gives a snapshot one byte form, shared by transfers between replicas
(split into `SnapshotChunk`s) and by the storage engines. It uses the standard library
only (struct, zlib.crc32) so it lives in the core, and `decode_snapshot` is strict: the
bytes come from peers and from disk, and anything but a well-formed image with a
matching checksum raises `SnapshotError`.

Layout (big-endian):

    "PXSN" | version u8 | slot u64 | state length u64 | state | clients u32 |
      per client: id length u32 | last_seq u64 | results u32 | id (UTF-8) |
        per result: seq u64 | length u32 | result |
    crc32 of everything before u32
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import TypeAlias

from .errors import PaxoiError
from .types import ClientId, Seq, Slot

#: One client's row of the client table: (client, last applied seq, ((seq, result), ...)),
#: results oldest first (the order a replica evicts them in).
ClientEntry: TypeAlias = tuple[ClientId, Seq, tuple[tuple[Seq, bytes], ...]]

MAGIC = b"PXSN"
VERSION = 1

_HEAD = struct.Struct(">4sBQQ")
_COUNT = struct.Struct(">I")
_CLIENT = struct.Struct(">IQI")
_RESULT = struct.Struct(">QI")
_CRC = struct.Struct(">I")


class SnapshotError(PaxoiError, ValueError):
    """A snapshot that cannot be used: bytes that are not an image, or a machine that
    cannot restore it."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A replica's state after applying every slot below `slot`."""

    slot: Slot
    #: `StateMachine.snapshot()` at that point.
    state: bytes
    #: The client table at that point, sorted by client id.
    clients: tuple[ClientEntry, ...] = ()


def encode_snapshot(snap: Snapshot) -> bytes:
    """The image of `snap` (see the module docstring)."""
    parts: list[bytes] = [
        _HEAD.pack(MAGIC, VERSION, snap.slot, len(snap.state)),
        snap.state,
        _COUNT.pack(len(snap.clients)),
    ]
    for client, last_seq, results in snap.clients:
        cid = client.encode("utf-8")
        parts.append(_CLIENT.pack(len(cid), last_seq, len(results)))
        parts.append(cid)
        for seq, result in results:
            parts.append(_RESULT.pack(seq, len(result)))
            parts.append(result)
    crc = 0
    for part in parts:  # one copy of the state, not two: it may be the whole chat
        crc = zlib.crc32(part, crc)
    parts.append(_CRC.pack(crc))
    return b"".join(parts)


def decode_snapshot(data: bytes) -> Snapshot:
    """The snapshot `data` encodes; SnapshotError (and nothing else) if it is not one."""
    view = memoryview(data)
    n = len(view)
    if n < _HEAD.size + _COUNT.size + _CRC.size:
        raise SnapshotError(f"snapshot image too short ({n} bytes)")
    (crc,) = _CRC.unpack_from(view, n - _CRC.size)
    end = n - _CRC.size
    if zlib.crc32(view[:end]) != crc:
        raise SnapshotError("snapshot image checksum mismatch (damaged or truncated)")
    magic, version, slot, state_len = _HEAD.unpack_from(view, 0)
    if magic != MAGIC:
        raise SnapshotError("not a snapshot image (bad magic)")
    if version != VERSION:
        raise SnapshotError(f"snapshot image version {version}, this paxoi reads {VERSION}")
    pos = _HEAD.size
    if state_len > end - pos:
        raise SnapshotError("snapshot image: state longer than the image")
    state = bytes(view[pos : pos + state_len])
    pos += state_len
    count, pos = _take(_COUNT, view, pos, end)
    clients: list[ClientEntry] = []
    seen: set[str] = set()
    for _ in range(count[0]):
        (cid_len, last_seq, n_results), pos = _take(_CLIENT, view, pos, end)
        if cid_len > end - pos:
            raise SnapshotError("snapshot image: client id longer than the image")
        try:
            client = str(view[pos : pos + cid_len], "utf-8")
        except UnicodeDecodeError:
            raise SnapshotError("snapshot image: a client id is not UTF-8") from None
        pos += cid_len
        if client in seen:
            raise SnapshotError(f"snapshot image: client {client!r} twice")
        seen.add(client)
        results: list[tuple[Seq, bytes]] = []
        seqs: set[int] = set()
        for _ in range(n_results):
            (seq, length), pos = _take(_RESULT, view, pos, end)
            if length > end - pos:
                raise SnapshotError("snapshot image: a result longer than the image")
            if seq in seqs or seq > last_seq:
                raise SnapshotError(f"snapshot image: bad result seq {seq} of {client!r}")
            seqs.add(seq)
            results.append((seq, bytes(view[pos : pos + length])))
            pos += length
        clients.append((client, last_seq, tuple(results)))
    if pos != end:
        raise SnapshotError(f"snapshot image: {end - pos} stray bytes at the end")
    return Snapshot(slot, state, tuple(clients))


def _take(fmt: struct.Struct, view: memoryview, pos: int, end: int) -> tuple[tuple[int, ...], int]:
    if fmt.size > end - pos:
        raise SnapshotError("snapshot image truncated")
    return fmt.unpack_from(view, pos), pos + fmt.size
