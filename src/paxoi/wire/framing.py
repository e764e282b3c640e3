"""Framing: how message payloads are delimited on a TCP byte stream.

A frame is a 4-byte big-endian unsigned length followed by that many bytes of payload
(one msgpack message, see `paxoi.wire.codec`). TCP delivers bytes, not messages, so the
receiver must reassemble frames from arbitrary splits; `FrameDecoder` does that
incrementally, without quadratic copying, and refuses a length prefix above its limit
*before* buffering the body, so a hostile "1 GiB follows" costs nothing.

A decoder that raised is dead: the stream has lost its framing and cannot be resynced,
so the transport closes the connection (and the server keeps running).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final

from .codec import Message, encode
from .values import DecodeError

#: The largest payload a peer may send: room for a full catch-up reply or a big batch,
#: small enough that one connection cannot make a server allocate without bound.
DEFAULT_MAX_FRAME: Final = 32 * 1024 * 1024

HEADER_SIZE: Final = 4
_HEADER: Final = struct.Struct(">I")
_MAX_LENGTH: Final = 0xFFFF_FFFF

#: Consumed bytes at the front of the buffer tolerated before compacting. Compacting
#: after every frame would copy the tail each time (quadratic for many small frames).
_COMPACT_AT: Final = 64 * 1024


class FrameTooLarge(DecodeError):
    """A length prefix above the decoder's maximum frame size."""


def frame(payload: bytes) -> bytes:
    """`payload` with its length prefix. Empty payloads are refused: no message is empty."""
    n = len(payload)
    if n == 0 or n > _MAX_LENGTH:
        raise ValueError(f"cannot frame a payload of {n} bytes")
    return _HEADER.pack(n) + payload


def encode_frame(msg: Message) -> bytes:
    """One message, encoded and framed."""
    return frame(encode(msg))


def encode_frames(msgs: Iterable[Message]) -> bytes:
    """Many messages as one bytes object, so a batch to one peer costs one write.

    Joins headers and payloads once instead of concatenating frame by frame.
    """
    parts: list[bytes] = []
    pack_header = _HEADER.pack
    for m in msgs:
        payload = encode(m)
        # encode() never returns an empty payload and a single msgpack payload is bounded
        # by its own limits, but a sender must not emit a frame its peers would refuse.
        if len(payload) > _MAX_LENGTH:
            raise ValueError(f"cannot frame a payload of {len(payload)} bytes")
        parts.append(pack_header(len(payload)))
        parts.append(payload)
    return b"".join(parts)


class FrameDecoder:
    """Reassembles frames from a byte stream fed in arbitrary pieces.

    `feed` returns the complete payloads it can, in order, and keeps the rest. The
    buffer is a bytearray read at an offset; consumed bytes are dropped only when the
    buffer is empty or the consumed prefix is large, so each byte is copied O(1) times.
    """

    __slots__ = ("_buf", "_dead", "_max", "_need", "_off")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if max_frame < 1:
            raise ValueError("max_frame must be at least 1")
        self._max = max_frame
        self._buf = bytearray()
        self._off = 0
        #: Length of the frame whose header was read but whose body is incomplete, or -1.
        self._need = -1
        self._dead: DecodeError | None = None

    @property
    def max_frame(self) -> int:
        return self._max

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame (at most one frame's worth)."""
        pending = len(self._buf) - self._off
        return pending + HEADER_SIZE if self._need >= 0 else pending

    def feed(self, data: bytes) -> list[bytes]:
        """Add `data`; return every frame it completes.

        Raises FrameTooLarge as soon as a length prefix exceeds the maximum and
        DecodeError on a zero-length frame; after either, every later feed raises too.
        """
        if self._dead is not None:
            raise self._dead
        buf = self._buf
        buf += data
        off = self._off
        need = self._need
        end = len(buf)
        out: list[bytes] = []
        # One copy per frame (a bytearray slice then bytes() would be two). The view must
        # be released before the buffer is resized, hence the finally.
        view = memoryview(buf)
        try:
            while True:
                if need < 0:
                    if end - off < HEADER_SIZE:
                        break
                    (need,) = _HEADER.unpack_from(buf, off)
                    if need > self._max:
                        raise FrameTooLarge(
                            f"frame of {need} bytes exceeds the maximum of {self._max}"
                        )
                    if need == 0:
                        raise DecodeError("zero-length frame")
                    off += HEADER_SIZE
                if end - off < need:
                    break
                out.append(view[off : off + need].tobytes())
                off += need
                need = -1
        except DecodeError as e:
            self._dead = e
            # Free what we hold: nothing more will be decoded from this stream.
            self._buf = bytearray()
            self._off = 0
            self._need = -1
            raise
        finally:
            view.release()
        if off == end:
            buf.clear()
            off = 0
        elif off >= _COMPACT_AT and off * 2 >= end:
            del buf[:off]
            off = 0
        self._off = off
        self._need = need
        return out


__all__ = [
    "DEFAULT_MAX_FRAME",
    "HEADER_SIZE",
    "FrameDecoder",
    "FrameTooLarge",
    "encode_frame",
    "encode_frames",
    "frame",
]
