"""Snapshots: a replica's whole state at one slot, so the log below it can be dropped.

A `Snapshot` is what a replica holds once it has applied every slot below `slot`: the
state machine's bytes and the client table. The client table is part of it because
exactly-once depends on it: a replica restored from the machine alone would apply again
a retry of a command that the snapshot already covers.

The machine's bytes come in segments (see `SegmentedStateMachine`): a chat's state is
the whole chat, and a snapshot that joined, checksummed and rewrote it all each time
stalled the leader for longer the longer the chat ran. So the image is a small *frame*
(slot, the segments' lengths and CRC-32s, the client table, its own CRC) followed by
the segments as they are: storage keeps the frame and the segments apart and writes
only the segments it does not hold yet, checksumming only those.

`encode_snapshot` gives a snapshot one byte form, shared by transfers between replicas
(split into `SnapshotChunk`s) and by the storage engines. It uses the standard library
only (struct, zlib.crc32) so it lives in the core, and `decode_snapshot` is strict: the
bytes come from peers and from disk, and anything but a well-formed image with matching
checksums raises `SnapshotError`.

Layout, version 2 (big-endian):

    frame:  "PXSN" | version u8 | slot u64 | segments u32 |
              per segment: length u64 | crc32 u32 |
            clients u32 |
              per client: id length u32 | last_seq u64 | results u32 | id (UTF-8) |
                per result: seq u64 | length u32 | result |
            crc32 of the frame before it u32
    then the segments, one after another

Version 1 (read only, from storage written by older paxoi): "PXSN" | 1 | slot u64 |
state length u64 | state | the client table as above | crc32 of everything before u32.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from .errors import PaxoiError
from .types import ClientId, Seq, Slot

#: One client's row of the client table: (client, last applied seq, ((seq, result), ...)),
#: results oldest first (the order a replica evicts them in).
ClientEntry: TypeAlias = tuple[ClientId, Seq, tuple[tuple[Seq, bytes], ...]]

MAGIC = b"PXSN"
VERSION = 2

_HEAD = struct.Struct(">4sBQI")
_SEGMENT = struct.Struct(">QI")
_HEAD_V1 = struct.Struct(">4sBQQ")
_COUNT = struct.Struct(">I")
_CLIENT = struct.Struct(">IQI")
_RESULT = struct.Struct(">QI")
_CRC = struct.Struct(">I")
#: Bytes per zlib.crc32 call in `crc32`: under zlib's 5 KiB threshold for releasing the GIL.
_CRC_SLICE = 4096


class SnapshotError(PaxoiError, ValueError):
    """A snapshot that cannot be used: bytes that are not an image, or a machine that
    cannot restore it."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A replica's state after applying every slot below `slot`."""

    slot: Slot
    #: The state machine's snapshot at that point, in the segments it gave (whose
    #: concatenation is `state`).
    segments: tuple[bytes, ...]
    #: The client table at that point, sorted by client id.
    clients: tuple[ClientEntry, ...] = ()

    @property
    def state(self) -> bytes:
        """The state machine's snapshot, whole (a copy of every segment but a lone one)."""
        segments = self.segments
        return segments[0] if len(segments) == 1 else b"".join(segments)


def crc32(data: bytes | memoryview) -> int:
    """zlib.crc32 of `data`, given it in slices too short for zlib to release the GIL.

    Why: above 5 KiB zlib.crc32 lets go of the GIL, and a thread that does so beside a
    busy event loop waits up to a switch interval (5 ms) to get it back. The storage
    thread checksummed 49 new chat segments in 240 ms that way (0.3 ms of actual work)
    while every accept waited behind it; in slices it holds the GIL for the work alone."""
    view = memoryview(data).cast("B")
    value = 0
    for start in range(0, len(view), _CRC_SLICE):
        value = zlib.crc32(view[start : start + _CRC_SLICE], value)
    return value


def segment_crcs(snap: Snapshot) -> list[int]:
    """The CRC-32 of each of `snap`'s segments (what a frame records)."""
    return [crc32(segment) for segment in snap.segments]


def encode_frame(snap: Snapshot, crcs: Sequence[int]) -> bytes:
    """The frame of `snap`'s image (see the module docstring), given its segments' CRCs:
    a caller that already knows most of them (storage) computes only the new ones."""
    if len(crcs) != len(snap.segments):
        raise ValueError(f"{len(crcs)} CRCs for {len(snap.segments)} segments")
    parts: list[bytes] = [_HEAD.pack(MAGIC, VERSION, snap.slot, len(snap.segments))]
    parts.extend(_SEGMENT.pack(len(s), crc) for s, crc in zip(snap.segments, crcs, strict=True))
    parts.append(_COUNT.pack(len(snap.clients)))
    for client, last_seq, results in snap.clients:
        cid = client.encode("utf-8")
        parts.append(_CLIENT.pack(len(cid), last_seq, len(results)))
        parts.append(cid)
        for seq, result in results:
            parts.append(_RESULT.pack(seq, len(result)))
            parts.append(result)
    frame = b"".join(parts)
    return frame + _CRC.pack(crc32(frame))


def encode_snapshot(snap: Snapshot) -> bytes:
    """The image of `snap` (see the module docstring): its frame, then its segments."""
    return b"".join([encode_frame(snap, segment_crcs(snap)), *snap.segments])


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded frame: everything of a snapshot but the segments' bytes."""

    slot: Slot
    #: (length, crc32) of each segment, in order.
    segments: tuple[tuple[int, int], ...]
    clients: tuple[ClientEntry, ...]
    #: The frame's length in bytes (where the segments start in an image).
    size: int


def decode_frame(data: bytes | memoryview) -> Frame:
    """The frame at the start of `data` (an image, or a frame alone); SnapshotError (and
    nothing else) if there is none, well-formed and with a matching checksum."""
    view = memoryview(data)
    n = len(view)
    if n < _HEAD.size + _COUNT.size + _CRC.size:
        raise SnapshotError(f"snapshot frame too short ({n} bytes)")
    magic, version, slot, count = _HEAD.unpack_from(view, 0)
    if magic != MAGIC:
        raise SnapshotError("not a snapshot image (bad magic)")
    if version != VERSION:
        raise SnapshotError(f"snapshot image version {version}, this paxoi reads {VERSION}")
    pos = _HEAD.size
    if count > (n - pos) // _SEGMENT.size:
        raise SnapshotError("snapshot frame: more segments than the frame can list")
    segments = tuple(_SEGMENT.unpack_from(view, pos + i * _SEGMENT.size) for i in range(count))
    pos += count * _SEGMENT.size
    clients, pos = _read_clients(view, pos, n)
    if pos + _CRC.size > n:
        raise SnapshotError("snapshot frame truncated")
    (crc,) = _CRC.unpack_from(view, pos)
    if crc32(view[:pos]) != crc:
        raise SnapshotError("snapshot frame checksum mismatch (damaged or truncated)")
    return Frame(slot, segments, clients, pos + _CRC.size)


def assemble_snapshot(frame: Frame, segments: Sequence[bytes]) -> Snapshot:
    """The snapshot of `frame` with `segments`, each checked against its length and CRC."""
    if len(segments) != len(frame.segments):
        raise SnapshotError(
            f"snapshot: {len(segments)} segments where the frame lists {len(frame.segments)}"
        )
    for i, (segment, (length, crc)) in enumerate(zip(segments, frame.segments, strict=True)):
        if len(segment) != length:
            raise SnapshotError(f"snapshot segment {i} is {len(segment)} bytes, not {length}")
        if crc32(segment) != crc:
            raise SnapshotError(f"snapshot segment {i} checksum mismatch (damaged)")
    return Snapshot(frame.slot, tuple(segments), frame.clients)


def decode_snapshot(data: bytes) -> Snapshot:
    """The snapshot `data` encodes (version 2, or 1 as older paxoi stored it);
    SnapshotError (and nothing else) if it is not one."""
    if data[4:5] == b"\x01" and data[:4] == MAGIC:
        return _decode_v1(data)
    frame = decode_frame(data)
    view = memoryview(data)
    pos = frame.size
    segments: list[bytes] = []
    for length, _ in frame.segments:
        if length > len(view) - pos:
            raise SnapshotError("snapshot image: a segment longer than the image")
        segments.append(bytes(view[pos : pos + length]))
        pos += length
    if pos != len(view):
        raise SnapshotError(f"snapshot image: {len(view) - pos} stray bytes at the end")
    return assemble_snapshot(frame, segments)


def _decode_v1(data: bytes) -> Snapshot:
    view = memoryview(data)
    n = len(view)
    if n < _HEAD_V1.size + _COUNT.size + _CRC.size:
        raise SnapshotError(f"snapshot image too short ({n} bytes)")
    (crc,) = _CRC.unpack_from(view, n - _CRC.size)
    end = n - _CRC.size
    if crc32(view[:end]) != crc:
        raise SnapshotError("snapshot image checksum mismatch (damaged or truncated)")
    _, _, slot, state_len = _HEAD_V1.unpack_from(view, 0)
    pos = _HEAD_V1.size
    if state_len > end - pos:
        raise SnapshotError("snapshot image: state longer than the image")
    state = bytes(view[pos : pos + state_len])
    clients, pos = _read_clients(view, pos + state_len, end)
    if pos != end:
        raise SnapshotError(f"snapshot image: {end - pos} stray bytes at the end")
    return Snapshot(slot, (state,), clients)


def _read_clients(view: memoryview, pos: int, end: int) -> tuple[tuple[ClientEntry, ...], int]:
    """The client table at `pos`, and where it ends."""
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
    return tuple(clients), pos


def _take(fmt: struct.Struct, view: memoryview, pos: int, end: int) -> tuple[tuple[int, ...], int]:
    if fmt.size > end - pos:
        raise SnapshotError("snapshot image truncated")
    return fmt.unpack_from(view, pos), pos + fmt.size
