"""Coverage-guided fuzzing of the frame decoder (paxoi.wire.framing.FrameDecoder).

    python fuzz/fuzz_frames.py fuzz/corpus/frames -max_total_time=600 -rss_limit_mb=512

Each input is a max_frame and a stream cut into pieces. The decoder must return exactly
what a simple reference parser finds (up to the piece holding a bad header), hold at
most one frame's worth of bytes, and raise nothing but DecodeError; once it raised, it
must stay dead. See fuzz/README.md.
"""

from __future__ import annotations

import struct
import sys

import atheris

with atheris.instrument_imports():
    from paxoi.wire.framing import HEADER_SIZE, FrameDecoder
    from paxoi.wire.values import DecodeError


def reference(stream: bytes, max_frame: int) -> tuple[list[bytes], bool]:
    """The frames of `stream`, and whether it goes bad (too large or zero length)."""
    frames: list[bytes] = []
    i = 0
    while len(stream) - i >= HEADER_SIZE:
        (n,) = struct.unpack_from(">I", stream, i)
        if n > max_frame or n == 0:
            return frames, True
        if len(stream) - i - HEADER_SIZE < n:
            break
        frames.append(stream[i + HEADER_SIZE : i + HEADER_SIZE + n])
        i += HEADER_SIZE + n
    return frames, False


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    max_frame = fdp.ConsumeIntInRange(1, 1 << 12) if fdp.ConsumeBool() else 32 << 20
    pieces = []
    while fdp.remaining_bytes():
        pieces.append(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300)))
    want, bad = reference(b"".join(pieces), max_frame)

    decoder = FrameDecoder(max_frame)
    got: list[bytes] = []
    failed = False
    for piece in pieces:
        try:
            got += decoder.feed(piece)
        except DecodeError:
            failed = True
            break
        if decoder.buffered > max_frame + HEADER_SIZE:
            raise AssertionError(f"holds {decoder.buffered} bytes, max_frame {max_frame}")
    if failed != bad:
        raise AssertionError(f"decoder failed={failed}, reference bad={bad}")
    if failed:
        if got != want[: len(got)]:
            raise AssertionError("frames before the error differ from the reference")
        try:
            decoder.feed(b"\x00\x00\x00\x01x")
        except DecodeError:
            pass
        else:
            raise AssertionError("a dead decoder accepted more input")
    elif got != want:
        raise AssertionError("frames differ from the reference")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
