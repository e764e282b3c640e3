"""The fault schedule: which faults strike when, drawn from a seeded generator.

A schedule is a list of `FaultSpec`s, each a fault kind with its variant, a start and an
end (seconds from the start of the workload), and the number of servers it may take out
of the quorum (`units`). The generator keeps two promises, which the unit tests check:

- bounded: every fault starts after `warmup` and ends by `duration`; there are at most
  `max_faults` of them;
- liveness budget: at every instant, the units of the faults active then add up to at
  most f (a majority stays up and connected, so the cluster can make progress). At most
  one fault that cuts links (a partition, an isolated pause) is active at a time.

Which servers a fault strikes is decided when it strikes (`paxoi.nemesis.faults`): "the
leader" is only known then, and a server already down is not struck twice. The units
are what the schedule reserves for it.

Kinds and variants:

    kill       any | leader     SIGKILL, restarted at the end
    pause      any | leader | isolated
                                SIGSTOP, SIGCONT at the end; isolated: the leader, and
                                while it sleeps its peers cut it off (so it wakes with
                                client requests waiting and no news of a successor)
    restart    any | leader     SIGTERM (a clean stop) and start again at once
    partition  majority | leader | bridge
                                majority: a minority of 1..f servers cut off from the rest;
                                leader: the leader alone; bridge: two halves that do not
                                hear each other, and one server that hears both
    clock      skew             one server's protocol clock runs fast or slow (`rate`
                                percent of real time) until the end
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

KINDS: tuple[str, ...] = ("kill", "pause", "partition", "restart", "clock")
VARIANTS: dict[str, tuple[str, ...]] = {
    "kill": ("any", "leader"),
    "pause": ("any", "leader", "isolated"),
    "restart": ("any", "leader"),
    "partition": ("majority", "leader", "bridge"),
    "clock": ("skew",),
}
#: How long each kind lasts (seconds, drawn uniformly). A pause is often short: a paused
#: leader that wakes within an election timeout must find its lease and its state intact,
#: and one that wakes after a successor took over must not serve what it had.
DURATIONS: dict[str, tuple[float, float]] = {
    "kill": (1.0, 4.0),
    "pause": (0.3, 3.0),
    "restart": (1.0, 2.0),
    "partition": (1.0, 5.0),
    "clock": (2.0, 6.0),
}
#: Seconds between the starts of consecutive faults (drawn uniformly).
GAP: tuple[float, float] = (0.4, 2.0)


class ScheduleError(ValueError):
    """A fault list that cannot be parsed (unknown kind or variant)."""


@dataclass(frozen=True)
class FaultSpec:
    """One fault of the schedule. `rate` is the clock rate (percent) for clock faults,
    `minority` the size of the cut-off side for majority partitions (else 0)."""

    kind: str
    variant: str
    start: float
    end: float
    units: int
    rate: int = 100
    minority: int = 0

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.variant}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FaultSet:
    """The faults a run may inject: kind -> allowed variants (empty: no faults)."""

    variants: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def kinds(self) -> list[str]:
        return [k for k in KINDS if k in self.variants]

    def describe(self) -> str:
        if not self.variants:
            return "none"
        parts = []
        for kind in self.kinds:
            chosen = self.variants[kind]
            parts.append(kind if chosen == VARIANTS[kind] else f"{kind}:{'|'.join(chosen)}")
        return ",".join(parts)


def parse_faults(text: str) -> FaultSet:
    """`kill,pause,partition,restart,clock`, `all` or `none`; a kind may name one variant
    (`partition:leader`, `pause:leader`). ScheduleError says what is wrong."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ScheduleError("--faults: empty (use none for no faults)")
    if items == ["none"]:
        return FaultSet()
    chosen: dict[str, list[str]] = {}
    for item in items:
        if item == "all":
            for kind in KINDS:
                chosen[kind] = list(VARIANTS[kind])
            continue
        if item == "none":
            raise ScheduleError("--faults: none cannot be combined with other faults")
        kind, _, variant = item.partition(":")
        if kind not in VARIANTS:
            raise ScheduleError(
                f"--faults: unknown fault {kind!r}; known: {', '.join(KINDS)}, all, none"
            )
        if not variant:
            chosen[kind] = list(VARIANTS[kind])
            continue
        if variant not in VARIANTS[kind]:
            raise ScheduleError(
                f"--faults: {kind} has no variant {variant!r}; known: {', '.join(VARIANTS[kind])}"
            )
        have = chosen.setdefault(kind, [])
        if variant not in have:
            have.append(variant)
    return FaultSet({k: tuple(v) for k, v in chosen.items()})


def clock_band(drift_percent: int) -> int:
    """The largest skew h (percent) such that rates 100-h and 100+h differ by less than
    the drift bound: (100+h)/(100-h) < 1 + drift/100. Any two servers whose rates lie in
    [100-h, 100+h] then stay within the lease's clock assumption."""
    h = 0
    while h < 99 and (100 + h + 1) * 100 < (100 + drift_percent) * (100 - h - 1):
        h += 1
    return h


def clock_rates(drift_percent: int, beyond_bound: bool) -> tuple[int, ...]:
    """The clock rates a clock fault may set. Within the bound: the band's edges and
    halfway (never 100). Beyond it (opt-in): rates that void the lease assumption."""
    if beyond_bound:
        return (50, 70, 140, 200)
    h = clock_band(drift_percent)
    if h == 0:
        return ()
    rates = {100 - h, 100 + h, 100 - max(1, h // 2), 100 + max(1, h // 2)}
    return tuple(sorted(rates))


def units_of(kind: str, variant: str, minority: int) -> int:
    """Servers a fault may take out of the quorum."""
    if kind == "clock":
        return 0
    if kind == "partition" and variant == "majority":
        return minority
    # partition:bridge: the bridge must stay up (the halves hear each other only through
    # it); it is reserved as one unit, and other faults never strike it.
    return 1


def generate_schedule(
    seed: int | str,
    duration: float,
    faults: FaultSet,
    servers: int,
    *,
    warmup: float = 1.0,
    drift_percent: int = 10,
    clock_beyond_bound: bool = False,
    max_faults: int = 10_000,
    gap: tuple[float, float] = GAP,
) -> list[FaultSpec]:
    """The faults of a run, in start order (deterministic for a seed). See the module
    docstring for the guarantees."""
    if servers < 1 or servers % 2 == 0:
        raise ValueError("servers must be odd and positive")
    f = (servers - 1) // 2
    rng = random.Random(f"nemesis-schedule/{seed}")
    kinds = faults.kinds
    rates = clock_rates(drift_percent, clock_beyond_bound)
    if "clock" in kinds and not rates:
        kinds = [k for k in kinds if k != "clock"]
    out: list[FaultSpec] = []
    if not kinds or f == 0:
        return out
    t = min(warmup, duration)
    while t < duration and len(out) < max_faults:
        kind = rng.choice(kinds)
        variant = rng.choice(faults.variants[kind])
        lo, hi = DURATIONS[kind]
        length = rng.uniform(lo, hi)
        end = min(duration, t + length)
        minority = rng.randint(1, f) if kind == "partition" and variant == "majority" else 0
        units = units_of(kind, variant, minority)
        rate = rng.choice(rates) if kind == "clock" else 100
        if end - t >= min(lo, 0.3) and _fits(out, t, end, units, kind, variant, f):
            out.append(FaultSpec(kind, variant, round(t, 3), round(end, 3), units, rate, minority))
        t += rng.uniform(*gap)
    return out


def cuts_links(kind: str, variant: str) -> bool:
    """Partitions and isolated pauses set the servers' blocked sets: one at a time."""
    return kind == "partition" or (kind == "pause" and variant == "isolated")


def _fits(
    done: Sequence[FaultSpec],
    start: float,
    end: float,
    units: int,
    kind: str,
    variant: str,
    f: int,
) -> bool:
    overlapping = [s for s in done if s.start < end and start < s.end]
    if cuts_links(kind, variant) and any(cuts_links(s.kind, s.variant) for s in overlapping):
        return False
    if units == 0:
        return True
    # The load only rises at starts: check at our start and at each overlapping start.
    for t in [start, *(s.start for s in overlapping if s.start > start)]:
        if units + sum(s.units for s in overlapping if s.start <= t < s.end) > f:
            return False
    return True


def max_units(schedule: Iterable[FaultSpec]) -> int:
    """The most units active at any instant (the unit tests' check of the budget)."""
    specs = list(schedule)
    best = 0
    for s in specs:
        t = s.start
        best = max(best, sum(x.units for x in specs if x.start <= t < x.end))
    return best


def count_by_kind(schedule: Iterable[FaultSpec]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in schedule:
        counts[s.kind] = counts.get(s.kind, 0) + 1
    return counts


__all__ = [
    "DURATIONS",
    "KINDS",
    "VARIANTS",
    "FaultSet",
    "FaultSpec",
    "ScheduleError",
    "clock_band",
    "clock_rates",
    "count_by_kind",
    "cuts_links",
    "generate_schedule",
    "max_units",
    "parse_faults",
    "units_of",
]
