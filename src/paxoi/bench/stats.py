"""Latency and throughput aggregation for the benchmarks: a log-linear histogram.

`LatencyHistogram` is HdrHistogram-like: values below 2**BITS are counted exactly, and
every power-of-two range above is split into 2**BITS equal sub-buckets, so a reported
value is within 1/2**(BITS+1) (0.4 % with BITS = 7) of a value that was recorded. It
merges by adding counts, so each load process histograms its own latencies and the driver
adds them up; it travels as JSON (`to_json` / `from_json`).

Percentiles use the nearest-rank definition: the p-th percentile is the smallest
recorded value v such that at least p % of all values are <= v. The exact `min` and `max`
are kept besides the buckets, and percentiles are clipped to them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

#: Sub-bucket bits: 2**BITS linear sub-buckets per power of two (relative error < 0.4 %).
BITS = 7
_SUB = 1 << BITS

#: The percentiles every summary reports.
PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)


def bucket_index(value: int) -> int:
    """The bucket of a non-negative integer value (monotonic in `value`)."""
    if value < _SUB:
        return max(0, value)
    shift = value.bit_length() - (BITS + 1)
    return (shift << BITS) + (value >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """The lowest and highest value that fall in bucket `index`."""
    if index < _SUB:
        return index, index
    shift = (index >> BITS) - 1
    sub = index - (shift << BITS)
    # sub is in [2**BITS, 2**(BITS+1)): the top bits of the value.
    low = sub << shift
    return low, low + (1 << shift) - 1


class LatencyHistogram:
    """Counts of integer values (nanoseconds, by convention) in log-linear buckets."""

    __slots__ = ("count", "counts", "max", "min", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.count = 0
        self.total = 0
        self.min: int | None = None
        self.max: int | None = None

    @classmethod
    def of(cls, values: Iterable[int]) -> LatencyHistogram:
        hist = cls()
        hist.record_all(values)
        return hist

    def record(self, value: int) -> None:
        self.record_all((value,))

    def record_all(self, values: Iterable[int]) -> None:
        counts = self.counts
        lo, hi = self.min, self.max
        n = total = 0
        for v in values:
            if v < 0:
                raise ValueError(f"a latency cannot be negative: {v}")
            i = bucket_index(v)
            counts[i] = counts.get(i, 0) + 1
            n += 1
            total += v
            if lo is None or v < lo:
                lo = v
            if hi is None or v > hi:
                hi = v
        self.count += n
        self.total += total
        self.min, self.max = lo, hi

    def merge(self, other: LatencyHistogram) -> None:
        for i, c in other.counts.items():
            self.counts[i] = self.counts.get(i, 0) + c
        self.count += other.count
        self.total += other.total
        if other.min is not None and (self.min is None or other.min < self.min):
            self.min = other.min
        if other.max is not None and (self.max is None or other.max > self.max):
            self.max = other.max

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def _representative(self, index: int) -> int:
        low, high = bucket_bounds(index)
        value = (low + high) // 2
        assert self.min is not None and self.max is not None
        return min(max(value, self.min), self.max)

    def percentile(self, p: float) -> int | None:
        """The nearest-rank p-th percentile (0 < p <= 100), or None when empty."""
        if not 0.0 < p <= 100.0:
            raise ValueError(f"a percentile is in (0, 100]: {p}")
        if self.count == 0:
            return None
        if p == 100.0:
            return self.max
        rank = max(1, math.ceil(p / 100.0 * self.count))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return self._representative(index)
        return self.max  # unreachable: the counts add up to self.count

    def buckets(self) -> Iterator[tuple[int, int, int]]:
        """(low, high, count) of every non-empty bucket, in increasing order."""
        for index in sorted(self.counts):
            low, high = bucket_bounds(index)
            yield low, high, self.counts[index]

    def cdf(self) -> list[tuple[int, float]]:
        """(value, fraction of values <= it) at each non-empty bucket's top."""
        out: list[tuple[int, float]] = []
        seen = 0
        for _, high, c in self.buckets():
            seen += c
            out.append((high, seen / self.count))
        return out

    def summary_ms(self) -> dict[str, float | None]:
        """min, mean, p50, p90, p99, p99.9, max in milliseconds (values in ns)."""

        def ms(v: float | None) -> float | None:
            return None if v is None else round(v / 1e6, 4)

        out: dict[str, float | None] = {"min": ms(self.min), "mean": ms(self.mean)}
        for p in PERCENTILES:
            out[percentile_key(p)] = ms(self.percentile(p))
        out["max"] = ms(self.max)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": "ns",
            "sub_bucket_bits": BITS,
            "count": self.count,
            "total": self.total,
            "min": self.min,
            "max": self.max,
            # [bucket index, count]; bucket_bounds(index) gives its value range.
            "counts": [[i, self.counts[i]] for i in sorted(self.counts)],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> LatencyHistogram:
        if doc.get("sub_bucket_bits", BITS) != BITS:
            raise ValueError(f"histogram with {doc['sub_bucket_bits']} sub-bucket bits, not {BITS}")
        hist = cls()
        hist.counts = {int(i): int(c) for i, c in doc["counts"]}
        hist.count = int(doc["count"])
        hist.total = int(doc["total"])
        hist.min = None if doc["min"] is None else int(doc["min"])
        hist.max = None if doc["max"] is None else int(doc["max"])
        if sum(hist.counts.values()) != hist.count:
            raise ValueError("histogram counts do not add up to its count")
        return hist


def percentile_key(p: float) -> str:
    """50.0 -> "p50", 99.9 -> "p99.9"."""
    return f"p{p:g}"


def exact_percentile(sorted_values: Sequence[int], p: float) -> int:
    """Nearest-rank percentile of an already sorted, non-empty sequence (the reference)."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def add_series(series: Iterable[Sequence[int]]) -> list[int]:
    """Element-wise sum of per-second counts of unequal length."""
    out: list[int] = []
    for s in series:
        if len(s) > len(out):
            out.extend([0] * (len(s) - len(out)))
        for i, v in enumerate(s):
            out[i] += v
    return out
