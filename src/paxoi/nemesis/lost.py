"""Was an acknowledged write lost? The final value of every key against the history.

Linearizability (`paxoi.check.linear`) already forbids losing a write the final reads
should see; this check says it in the plainest terms, key by key, from the final value
each key was read to have (through the log, after the cluster recovered):

Register keys (put and cas):
- the final value was written by some put or cas (ok, or of unknown outcome), or the key
  is absent and no write to it was acknowledged;
- no acknowledged write began after the one whose value is final had completed (it would
  have overwritten it: that write was lost).

List keys (append; elements are unique tokens like `e17;`):
- the final value is a sequence of elements, each appended by some operation, each once;
- every acknowledged append is in it; appends of unknown outcome may or may not be;
- their order respects real time: an append that completed before another began comes
  first;
- every acknowledged append's result, and every read of the key, is a prefix of it
  (appends only ever extend a list).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..client.history import Event

ELEMENT = re.compile(r"e\d+;")
_LIST = re.compile(r"(?:e\d+;)*")
#: Examples listed per kind of problem and key.
EXAMPLES = 3


@dataclass
class _Op:
    id: int
    process: str
    f: str
    key: str
    value: str | None
    expect: str | None
    kind: str  # ok | fail | info (also: never completed)
    result: Any
    invoke: int
    complete: float  # math.inf when the outcome is unknown

    def show(self) -> str:
        what = f"{self.f} {self.value!r}" if self.value is not None else self.f
        return f"op {self.id} ({self.process} {what}, {self.kind})"


@dataclass
class LostReport:
    """Problems found (empty: nothing lost) and what was checked."""

    problems: list[str] = field(default_factory=list)
    #: Acknowledged writes (ok put, swapped cas, ok append) on the keys checked.
    acknowledged: int = 0
    keys: int = 0
    #: Elements in the final lists, and how many of them had an unknown outcome.
    elements: int = 0
    unknown_elements: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": list(self.problems),
            "acknowledged": self.acknowledged,
            "keys": self.keys,
            "elements": self.elements,
            "unknown_elements": self.unknown_elements,
        }


def pair(events: Iterable[Event]) -> list[_Op]:
    """Operations from a history's events (invocations paired with their completions)."""
    ops: dict[int, _Op] = {}
    for e in events:
        if e.type == "invoke":
            ops[e.id] = _Op(
                e.id, e.process, e.f, e.key, e.value, e.expect, "info", None, e.time, math.inf
            )
            continue
        op = ops.get(e.id)
        if op is None:
            continue
        op.kind, op.result = e.type, e.result
        if e.type != "info":
            op.complete = e.time
    return list(ops.values())


def check_lost(events: Iterable[Event], final: Mapping[str, str | None]) -> LostReport:
    """Check every key of `final` (key -> the value read at the end)."""
    by_key: dict[str, list[_Op]] = {}
    for op in pair(events):
        by_key.setdefault(op.key, []).append(op)
    report = LostReport()
    for key in sorted(final):
        ops = by_key.get(key, [])
        report.keys += 1
        if any(op.f == "append" for op in ops):
            _check_list(key, ops, final[key], report)
        else:
            _check_register(key, ops, final[key], report)
    return report


def _examples(ops: list[_Op]) -> str:
    shown = ", ".join(op.show() for op in ops[:EXAMPLES])
    more = f" and {len(ops) - EXAMPLES} more" if len(ops) > EXAMPLES else ""
    return shown + more


def _check_register(key: str, ops: list[_Op], value: str | None, report: LostReport) -> None:
    writes = [op for op in ops if op.f in ("put", "cas") and op.kind in ("ok", "info")]
    acked = [op for op in writes if op.kind == "ok"]
    report.acknowledged += len(acked)
    if value is None:
        if acked:
            report.problems.append(
                f"key {key!r}: absent at the end, but {len(acked)} write(s) to it were "
                f"acknowledged: {_examples(acked)}"
            )
        return
    writers = [op for op in writes if op.value == value]
    if not writers:
        report.problems.append(
            f"key {key!r}: the final value {value!r} was never written (no put or cas of it "
            "that could have taken effect)"
        )
        return
    last = writers[0]
    later = [op for op in acked if op is not last and op.invoke > last.complete]
    if later:
        report.problems.append(
            f"key {key!r}: acknowledged write(s) lost: {_examples(later)} began after "
            f"{last.show()} completed, yet the final value is {value!r}, written by it"
        )


def _check_list(key: str, ops: list[_Op], value: str | None, report: LostReport) -> None:
    text = value or ""
    appends = {op.value: op for op in ops if op.f == "append" and op.kind in ("ok", "info")}
    acked = [op for op in appends.values() if op.kind == "ok"]
    report.acknowledged += len(acked)
    if not _LIST.fullmatch(text):
        report.problems.append(f"key {key!r}: the final value {text!r} is not a list of elements")
        return
    elements = ELEMENT.findall(text)
    report.elements += len(elements)
    counts = Counter(elements)
    twice = sorted(e for e, n in counts.items() if n > 1)
    if twice:
        report.problems.append(
            f"key {key!r}: element(s) appended once but present more than once: "
            f"{', '.join(twice[:EXAMPLES])}"
        )
    strangers = [e for e in counts if e not in appends]
    if strangers:
        report.problems.append(
            f"key {key!r}: element(s) no append could have added: {', '.join(strangers[:EXAMPLES])}"
        )
    present = set(elements)
    missing = [op for op in acked if op.value not in present]
    if missing:
        missing.sort(key=lambda op: op.invoke)
        report.problems.append(
            f"key {key!r}: {len(missing)} acknowledged append(s) lost (not in the final "
            f"list of {len(elements)}): {_examples(missing)}"
        )
    report.unknown_elements += sum(1 for e in present if e in appends and appends[e].kind == "info")
    # Real-time order: scanning from the end, the earliest completion among the
    # elements after position j must not precede the start of element j.
    earliest: tuple[float, _Op | None] = (math.inf, None)
    for e in reversed(elements):
        op = appends.get(e)
        if op is None:
            continue
        if earliest[1] is not None and earliest[0] < op.invoke:
            report.problems.append(
                f"key {key!r}: appends out of order: {earliest[1].show()} completed before "
                f"{op.show()} began, but comes after it in the final list"
            )
            break
        if op.complete < earliest[0]:
            earliest = (op.complete, op)
    not_prefix = [
        op
        for op in ops
        if op.kind == "ok"
        and op.f in ("append", "get")
        and not text.startswith(op.result if isinstance(op.result, str) else "")
    ]
    if not_prefix:
        report.problems.append(
            f"key {key!r}: {len(not_prefix)} acknowledged result(s) are not a prefix of the "
            f"final list: {_examples(not_prefix)}"
        )


__all__ = ["ELEMENT", "LostReport", "check_lost", "pair"]
