"""Micro-benchmark of the wire codec's hot path: Accept (64 x 16-byte commands) and Accepted.

Run: `python bench/codec_bench.py [--runs 5] [--seconds 0.5]`. Each figure is the median
of the runs' ops/s; one run times a fixed iteration count sized to take about --seconds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from paxoi.core.messages import Accept, Accepted
from paxoi.core.types import Ballot, Command
from paxoi.wire.codec import decode, encode
from paxoi.wire.framing import FrameDecoder, encode_frames


def _rate(fn: Callable[[], object], runs: int, seconds: float) -> float:
    """Median ops/s of `fn` over `runs` runs of a calibrated iteration count."""
    n = 1
    while True:  # calibrate: double until one batch takes a tenth of the target
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - t0 > seconds / 10:
            break
        n *= 2
    n *= 10
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.5)
    args = ap.parse_args()

    batch = tuple(Command(f"client-{i % 8}", 1000 + i, bytes(16)) for i in range(64))
    accept = Accept(0, Ballot(4, 0), 123_456, batch)
    accepted = Accepted(2, Ballot(4, 0), 123_456)
    acc_bytes, ack_bytes = encode(accept), encode(accepted)
    assert decode(acc_bytes) == accept and decode(ack_bytes) == accepted

    stream = encode_frames([accepted] * 100)

    def framed_round_trip() -> None:
        for p in FrameDecoder().feed(stream):
            decode(p)

    cases: list[tuple[str, Callable[[], object], int]] = [
        ("Accept encode", lambda: encode(accept), len(acc_bytes)),
        ("Accept decode", lambda: decode(acc_bytes), len(acc_bytes)),
        ("Accept encode+decode", lambda: decode(encode(accept)), len(acc_bytes)),
        ("Accepted encode", lambda: encode(accepted), len(ack_bytes)),
        ("Accepted decode", lambda: decode(ack_bytes), len(ack_bytes)),
        ("Accepted encode+decode", lambda: decode(encode(accepted)), len(ack_bytes)),
        ("100 Accepted: frames+decode", framed_round_trip, len(stream)),
    ]
    print(f"median of {args.runs} runs; Accept = 64 commands x 16-byte payloads")
    for name, fn, size in cases:
        rate = _rate(fn, args.runs, args.seconds)
        print(f"{name:30s} {rate:12,.0f} ops/s   ({size} bytes)")


if __name__ == "__main__":
    main()
