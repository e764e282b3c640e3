"""check_history: split a history by key, search each key, report.

Before searching, each key's ops are trimmed of what cannot matter:

- a read of unknown outcome (it changed nothing and nobody saw its answer);
- a command that failed without a result (the store refused it: it did nothing);
- a write of unknown outcome whose value no other op of the key ever observed. If it
  took effect, the key held a value containing what it wrote until the next overwrite,
  and every op that looked at the key meanwhile would have seen it; since none did,
  dropping it changes no verdict. This keeps unknown writes that never happened from
  multiplying the search (each one left pending doubles the choices at every step), and
  it needs the written values to be distinct to help, as test workloads make them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from paxoi.client.history import Event, validate_history

from .explain import explain
from .model import (
    APPEND,
    APPEND_MAYBE,
    CAS_MAYBE,
    CAS_OK,
    CAS_READ,
    GET,
    PUT,
    Op,
    compile_op,
)
from .search import search

LINEARIZABLE = "linearizable"
NOT_LINEARIZABLE = "not-linearizable"
UNKNOWN = "unknown"
MODELS = ("kv",)


@dataclass
class KeyResult:
    """The verdict on one key. `order` (on success) is a witness linearization (op ids)."""

    key: str
    status: str
    operations: int
    checked: int
    configurations: int
    seconds: float
    explanation: str = ""
    order: list[int] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == LINEARIZABLE

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "status": self.status,
            "operations": self.operations,
            "checked": self.checked,
            "configurations": self.configurations,
            "seconds": round(self.seconds, 6),
            "explanation": self.explanation,
        }


@dataclass
class LinearResult:
    """The verdict on a history: "linearizable", "not-linearizable" or "unknown".

    Not linearizable as soon as one key is; unknown when no key is but some key could
    not be decided within the time budget. `counts` tallies completions (an op never
    completed counts as info); `explanation` covers every key that is not linearizable
    or unknown.
    """

    status: str
    keys: dict[str, KeyResult]
    counts: dict[str, int]
    seconds: float
    explanation: str

    @property
    def ok(self) -> bool:
        return self.status == LINEARIZABLE

    @property
    def operations(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "ok": self.ok,
            "operations": self.operations,
            "counts": dict(self.counts),
            "seconds": round(self.seconds, 6),
            "keys": {k: r.to_dict() for k, r in self.keys.items()},
            "explanation": self.explanation,
        }

    def render(self) -> str:
        c = self.counts
        summary = (
            f"{self.operations} operations ({c['ok']} ok, {c['fail']} fail, {c['info']} info) "
            f"on {len(self.keys)} key{'' if len(self.keys) == 1 else 's'}, "
            f"checked in {self.seconds:.2f} s"
        )
        if self.ok:
            return f"linearizable: {summary}"
        bad = [k for k, r in self.keys.items() if r.status == self.status]
        head = "NOT linearizable" if self.status == NOT_LINEARIZABLE else "UNKNOWN"
        return f"{head}: {summary}; key(s) {', '.join(map(repr, bad))}\n\n{self.explanation}"


def build_ops(events: list[Event]) -> tuple[dict[str, list[Op]], dict[str, int]]:
    """Pair invocations with completions; ops by key (in invocation order) and the counts."""
    order = sorted(range(len(events)), key=lambda i: events[i].time)
    rank = [0] * len(events)
    for r, i in enumerate(order):
        rank[i] = r
    invoked: dict[int, int] = {}
    completion: dict[int, int] = {}
    for i, e in enumerate(events):
        if e.type == "invoke":
            invoked[e.id] = i
        else:
            completion[e.id] = i
    counts = {"ok": 0, "fail": 0, "info": 0}
    by_key: dict[str, list[Op]] = {}
    for op_id, i in sorted(invoked.items(), key=lambda item: rank[item[1]]):
        inv = events[i]
        j = completion.get(op_id)
        done = events[j] if j is not None else None
        kind = done.type if done is not None else "info"
        counts[kind] += 1
        definite = done is not None and kind != "info"
        op = Op(
            id=op_id,
            process=inv.process,
            f=inv.f,
            key=inv.key,
            value=inv.value,
            expect=inv.expect,
            kind=kind,
            result=done.result if done is not None else None,
            call=rank[i],
            ret=rank[j] if definite and j is not None else None,
            call_time=inv.time,
            ret_time=done.time if done is not None else None,
        )
        by_key.setdefault(inv.key, []).append(op)
    return by_key, counts


def _observed(ops: list[Op]) -> str:
    """Every string some op of the key observed the value to be, or to contain."""
    seen: set[str] = set()
    for op in ops:
        if op.code in (GET, CAS_READ, CAS_OK, CAS_MAYBE) and isinstance(op.a, str):
            seen.add(op.a)
        if op.code == CAS_OK and isinstance(op.c, str):
            seen.add(op.c)
        if op.code == APPEND:
            seen.add(op.b)
    # An append-heavy key observes long values that are prefixes of one another; keep
    # only those that are not a prefix of another (in sorted order, such a prefix sits
    # right before a string it starts), so the joined text stays small.
    ordered = sorted(seen)
    kept = [
        s
        for i, s in enumerate(ordered)
        if i + 1 == len(ordered) or not ordered[i + 1].startswith(s)
    ]
    return "\x00".join(kept)


def prepare(ops: list[Op]) -> list[Op]:
    """The ops the search needs (see the module docstring), with their bits set."""
    useful = [op for op in ops if compile_op(op)]
    observed = _observed(useful)
    kept: list[Op] = []
    for op in useful:
        if op.optional:
            written = op.b if op.code == CAS_MAYBE else op.a
            assert op.code in (PUT, CAS_MAYBE, APPEND_MAYBE)
            if written and written not in observed:
                continue
        op.bit = 1 << len(kept)
        kept.append(op)
    return kept


def check_history(
    events: Iterable[Event], model: str = "kv", timeout: float | None = None
) -> LinearResult:
    """Check a history (events in the order they happened) for linearizability.

    `timeout` bounds the whole check in seconds: keys not decided in time are "unknown".
    Raises HistoryError if the events do not form a history, ValueError for an unknown model.
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}: known models are {', '.join(MODELS)}")
    started = time.monotonic()
    deadline = started + timeout if timeout is not None else None
    events = list(events)
    validate_history(events)
    origin = min((e.time for e in events), default=0)
    by_key, counts = build_ops(events)

    results: dict[str, KeyResult] = {}
    for key in sorted(by_key, key=lambda k: (len(by_key[k]), k)):
        t0 = time.monotonic()
        all_ops = by_key[key]
        ops = prepare(all_ops)
        if deadline is not None and t0 > deadline:
            results[key] = KeyResult(key, UNKNOWN, len(all_ops), len(ops), 0, 0.0,
                                     f"key {key!r}: not checked, the time budget ran out")  # fmt: skip
            continue
        found = search(ops, deadline)
        spent = time.monotonic() - t0
        r = KeyResult(key, found.status, len(all_ops), len(ops), found.configurations, spent)
        if found.status == LINEARIZABLE:
            r.order = found.order
        elif found.status == NOT_LINEARIZABLE:
            r.explanation = explain(key, ops, found, origin, len(all_ops))
        else:
            r.explanation = (
                f"key {key!r}: undecided when the time budget ran out, after "
                f"{found.configurations} configurations (the longest linearizable prefix "
                f"found has {len(found.prefix)} of {len(ops)} operations)"
            )
        results[key] = r

    statuses = {r.status for r in results.values()}
    status = (
        NOT_LINEARIZABLE
        if NOT_LINEARIZABLE in statuses
        else UNKNOWN
        if UNKNOWN in statuses
        else LINEARIZABLE
    )
    keys = dict(sorted(results.items()))
    explanation = "\n\n".join(
        r.explanation
        for wanted in (NOT_LINEARIZABLE, UNKNOWN)
        for r in keys.values()
        if r.status == wanted
    )
    return LinearResult(status, keys, counts, time.monotonic() - started, explanation)
