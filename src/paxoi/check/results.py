"""Judge a finished run from its files alone: what clients proposed, what learners learned.

The simulator's checker (`paxoi.sim.checker`) sees every message; a run of real
processes leaves only files behind. This module decides from those files whether the
run was safe and live, so the same verdict can come from the scenario runner, from
`paxoi check DIR` after the fact, and from other harnesses that write the same layout.

A results directory holds:

- `proposed/<client>.jsonl` (chat layout): one JSON object per command a client submitted,
  `{"client": id, "seq": n, "value": message, "acked": bool}`. Or `proposed/<name>.txt`
  (plain layout, the USI atomic-broadcast harness): one value per line; values may repeat.
- `learned/<learner>.txt`: what one learner learned, in order. Either a copy of a
  replica's `chat.log` (`slot<TAB>sender<TAB>seq<TAB>message`, escaped as in
  `paxoi.apps.chat`), or one value per line; the format is recognised from the content.
  `.log` files are always chat logs.
- `crashed/<learner>.txt` (optional): learners that stopped early (killed and not
  restarted). Their logs must agree with the others and hold only proposed values, but
  they are not expected to have learned everything.

The checks are pure functions over parsed data (`check_integrity`, `check_agreement`,
`check_duplicates`, `check_termination`, and `check` for all four), so they are
unit-tested without processes; `load_results` is the only part that reads files.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INTEGRITY = "integrity"
AGREEMENT = "agreement"
TERMINATION = "termination"
DUPLICATES = "duplicates"
CHECKS = (INTEGRITY, AGREEMENT, TERMINATION, DUPLICATES)

CHAT = "chat"
PLAIN = "plain"
MIXED = "mixed"

#: At most this many problems of one kind are listed in a report; the rest are counted.
SHOWN_PER_CHECK = 10


class ResultsError(ValueError):
    """The results directory cannot be read as results (a missing folder, a bad line)."""


# -- the data -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Proposal:
    """One value a client proposed.

    In the chat layout a command is known by (client id, seq), and `acked` says whether
    the client was told it was applied. In the plain layout there is neither: `client`
    is the file's name, `seq` and `acked` are None."""

    client: str
    seq: int | None
    value: str
    acked: bool | None = None

    @property
    def key(self) -> tuple[str, int] | None:
        return None if self.seq is None else (self.client, self.seq)


@dataclass(frozen=True, slots=True)
class Learned:
    """One entry of a learner's log: a chat-log line, or a bare value (plain layout)."""

    value: str
    slot: int | None = None
    client: str | None = None
    seq: int | None = None

    @property
    def key(self) -> tuple[str, int] | None:
        if self.client is None or self.seq is None:
            return None
        return (self.client, self.seq)

    def describe(self) -> str:
        where = f"slot {self.slot} " if self.slot is not None else ""
        who = f"({self.client}, {self.seq}) " if self.key is not None else ""
        return f"{where}{who}{_short(self.value)}"


@dataclass(frozen=True)
class Results:
    """Everything a results directory holds, parsed."""

    #: proposer file name -> its proposals, in file order
    proposed: Mapping[str, Sequence[Proposal]]
    #: learner name -> what it learned, in order
    learners: Mapping[str, Sequence[Learned]]
    #: learners that stopped early: checked for agreement and integrity only
    crashed: Mapping[str, Sequence[Learned]] = field(default_factory=dict)

    @property
    def layout(self) -> str:
        kinds = {p.seq is not None for ps in self.proposed.values() for p in ps}
        if kinds == {True}:
            return CHAT
        if kinds == {False}:
            return PLAIN
        return MIXED if kinds else CHAT

    def all_proposals(self) -> list[Proposal]:
        return [p for ps in self.proposed.values() for p in ps]


@dataclass(frozen=True, slots=True)
class Problem:
    """One violation: which check, which learner (if one), what was seen."""

    check: str
    detail: str
    learner: str | None = None

    def __str__(self) -> str:
        who = f"{self.learner}: " if self.learner is not None else ""
        return f"{self.check}: {who}{self.detail}"


@dataclass(frozen=True)
class LearnerSummary:
    name: str
    entries: int
    #: the highest slot it learned (None in the plain layout, or if empty)
    top_slot: int | None
    #: slots below `top_slot` that hold no entry: no-ops (or only retries already applied)
    empty_slots: tuple[int, ...]
    crashed: bool = False


@dataclass(frozen=True)
class Termination:
    #: distinct proposed commands (chat: (client, seq); plain: values)
    proposed: int
    #: of those, how many every learner learned
    learned_by_all: int
    #: chat layout: acknowledged commands, and how many of them every learner learned
    acked: int | None
    acked_learned_by_all: int | None

    @property
    def percent(self) -> float:
        return 100.0 if self.proposed == 0 else 100.0 * self.learned_by_all / self.proposed


@dataclass(frozen=True)
class Report:
    layout: str
    learners: tuple[LearnerSummary, ...]
    termination: Termination
    problems: tuple[Problem, ...]
    #: things worth saying that are not violations (e.g. termination not required)
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def problems_of(self, check: str) -> list[Problem]:
        return [p for p in self.problems if p.check == check]

    def verdict(self) -> str:
        """One line: OK, or VIOLATION with what was broken and how often."""
        t = self.termination
        live = sum(not s.crashed for s in self.learners)
        if self.ok:
            return (
                f"OK: integrity, agreement, no duplicates; termination {t.percent:.1f}% "
                f"({t.learned_by_all} of {t.proposed} proposed learned by "
                + (f"all {live} learners" if live != 1 else "the only learner")
                + _acked_part(t)
                + ")"
            )
        counts = Counter(p.check for p in self.problems)
        broken = ", ".join(f"{c} ({counts[c]})" for c in CHECKS if counts[c])
        return f"VIOLATION: {broken}; termination {t.percent:.1f}%"

    def render(self, learners: bool = True) -> str:
        """The human-readable report: per learner (unless `learners` is off: the scenario
        runner prints its own table), per check, then the verdict line."""
        t = self.termination
        lines = [f"layout: {self.layout}"] if learners else []
        for s in self.learners if learners else ():
            tag = " (crashed: agreement and integrity only)" if s.crashed else ""
            slots = ""
            if s.top_slot is not None:
                slots = f", slots up to {s.top_slot}, empty slots: {format_slots(s.empty_slots)}"
            lines.append(f"learner {s.name}: {s.entries} entries{slots}{tag}")
        for check in CHECKS:
            found = self.problems_of(check)
            if check == TERMINATION:
                acked = (
                    f"; {t.acked_learned_by_all} of {t.acked} acknowledged learned by all"
                    if t.acked is not None
                    else ""
                )
                state = (
                    f"{t.percent:.1f}% ({t.learned_by_all} of {t.proposed} proposed "
                    f"learned by all{acked})"
                )
            else:
                state = "ok" if not found else f"{len(found)} violation(s)"
            lines.append(f"{check}: {state}")
            for p in found[:SHOWN_PER_CHECK]:
                who = f"{p.learner}: " if p.learner is not None else ""
                lines.append(f"  - {who}{p.detail}")
            if len(found) > SHOWN_PER_CHECK:
                lines.append(f"  ... and {len(found) - SHOWN_PER_CHECK} more")
        lines.extend(f"note: {n}" for n in self.notes)
        lines.append(self.verdict())
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        t = self.termination
        return {
            "ok": self.ok,
            "verdict": self.verdict(),
            "layout": self.layout,
            "learners": [
                {
                    "name": s.name,
                    "entries": s.entries,
                    "top_slot": s.top_slot,
                    "empty_slots": list(s.empty_slots),
                    "crashed": s.crashed,
                }
                for s in self.learners
            ],
            "termination": {
                "percent": round(t.percent, 3),
                "proposed": t.proposed,
                "learned_by_all": t.learned_by_all,
                "acked": t.acked,
                "acked_learned_by_all": t.acked_learned_by_all,
            },
            "problems": {
                check: [{"learner": p.learner, "detail": p.detail} for p in self.problems_of(check)]
                for check in CHECKS
            },
            "notes": list(self.notes),
        }


# -- the checks -----------------------------------------------------------------------------


def check_integrity(
    proposals: Iterable[Proposal], learners: Mapping[str, Sequence[Learned]]
) -> list[Problem]:
    """Every learned value was proposed. A chat entry must match the command its
    (client, seq) names, value included; a bare value must be among the proposed values."""
    props = list(proposals)
    by_key = {p.key: p.value for p in props if p.key is not None}
    values = {p.value for p in props}
    problems = []
    for name, entries in learners.items():
        for i, e in enumerate(entries):
            key = e.key
            if key is not None and by_key:
                if key not in by_key:
                    problems.append(
                        Problem(INTEGRITY, f"learned {e.describe()}, never proposed", name)
                    )
                elif by_key[key] != e.value:
                    problems.append(
                        Problem(
                            INTEGRITY,
                            f"learned {e.describe()}, but ({key[0]}, {key[1]}) was proposed "
                            f"as {_short(by_key[key])}",
                            name,
                        )
                    )
            elif e.value not in values:
                where = f"slot {e.slot}" if e.slot is not None else f"line {i + 1}"
                problems.append(
                    Problem(
                        INTEGRITY, f"learned {_short(e.value)} at {where}, never proposed", name
                    )
                )
    return problems


def check_agreement(learners: Mapping[str, Sequence[Learned]]) -> list[Problem]:
    """No two learners differ at any position: each log is a prefix of the longest one.

    Replicas apply strictly in slot order, so any two correct logs are prefixes of one
    another; the first position where one is not is reported with both entries. A log
    whose slots go backwards is reported too (a replica applied out of order)."""
    problems = []
    for name, entries in learners.items():
        last = None
        for i, e in enumerate(entries):
            if e.slot is not None:
                if last is not None and e.slot < last:
                    problems.append(
                        Problem(
                            AGREEMENT,
                            f"entry {i + 1} is at slot {e.slot}, after slot {last}: "
                            "applied out of slot order",
                            name,
                        )
                    )
                    break
                last = e.slot
    if len(learners) < 2:
        return problems
    longest_name = max(learners, key=lambda n: (len(learners[n]), n))
    longest = learners[longest_name]
    for name, entries in sorted(learners.items()):
        if name == longest_name:
            continue
        for i, (mine, theirs) in enumerate(zip(entries, longest, strict=False)):
            if _identity(mine) != _identity(theirs):
                problems.append(
                    Problem(
                        AGREEMENT,
                        f"differs from {longest_name} at entry {i + 1}: "
                        f"{mine.describe()} vs {theirs.describe()}",
                        name,
                    )
                )
                break
    return problems


def check_duplicates(
    proposals: Iterable[Proposal], learners: Mapping[str, Sequence[Learned]]
) -> list[Problem]:
    """Nothing is learned twice by one learner: a (client, seq) at most once; a bare
    value no more often than it was proposed (values may repeat in the plain layout)."""
    proposed_values = Counter(p.value for p in proposals)
    problems = []
    for name, entries in learners.items():
        slots_of: dict[tuple[str, int], list[int | None]] = {}
        bare: Counter[str] = Counter()
        for e in entries:
            key = e.key
            if key is not None:
                slots_of.setdefault(key, []).append(e.slot)
            else:
                bare[e.value] += 1
        for key, slots in slots_of.items():
            if len(slots) > 1:
                where = ", ".join(str(s) for s in slots)
                problems.append(
                    Problem(
                        DUPLICATES,
                        f"({key[0]}, {key[1]}) learned {len(slots)} times (slots {where})",
                        name,
                    )
                )
        for value, n in bare.items():
            if n > proposed_values[value]:
                problems.append(
                    Problem(
                        DUPLICATES,
                        f"{_short(value)} learned {n} times, proposed {proposed_values[value]}",
                        name,
                    )
                )
    return problems


def check_termination(
    proposals: Iterable[Proposal],
    learners: Mapping[str, Sequence[Learned]],
    *,
    require_acked: bool = True,
    min_percent: float | None = None,
) -> tuple[Termination, list[Problem]]:
    """How much of what was proposed every learner learned.

    Chat layout: every acknowledged command must be learned by every learner (the
    replicas told the client it was applied, so losing it is a violation), unless
    `require_acked` is off (no majority was left to learn anything). Commands never
    acknowledged may or may not have been applied. Plain layout: no acks exist, so the
    percentage of distinct proposed values learned by all learners is compared with
    `min_percent` if given."""
    props = list(proposals)
    keyed = [p for p in props if p.key is not None]
    problems: list[Problem] = []
    if keyed:
        learned_keys = {n: {e.key for e in es if e.key is not None} for n, es in learners.items()}
        distinct = {k: p for p in keyed if (k := p.key) is not None}
        by_all = {k for k in distinct if learners and all(k in s for s in learned_keys.values())}
        # a command acked in any of its records counts as acked
        acked = {k for p in keyed if p.acked and (k := p.key) is not None}
        missing: dict[tuple[str, int], list[str]] = {}
        for k in sorted(acked):
            lacking = sorted(n for n, s in learned_keys.items() if k not in s)
            if lacking or not learners:
                missing[k] = lacking
        if require_acked:
            for k, lacking in missing.items():
                who = ", ".join(lacking) if lacking else "(there are no learners)"
                problems.append(
                    Problem(
                        TERMINATION,
                        f"acknowledged ({k[0]}, {k[1]}) {_short(distinct[k].value)} "
                        f"missing at {who}",
                    )
                )
        term = Termination(len(distinct), len(by_all), len(acked), len(acked) - len(missing))
    else:
        learned_values = {n: {e.value for e in es} for n, es in learners.items()}
        values = {p.value for p in props}
        by_all_values = {
            v for v in values if learners and all(v in s for s in learned_values.values())
        }
        term = Termination(len(values), len(by_all_values), None, None)
    if min_percent is not None and term.percent < min_percent:
        problems.append(
            Problem(
                TERMINATION,
                f"only {term.percent:.1f}% of proposed values learned by every learner "
                f"({term.learned_by_all} of {term.proposed}; {min_percent:g}% required)",
            )
        )
    return term, problems


def check(
    results: Results, *, require_acked: bool = True, min_termination: float | None = None
) -> Report:
    """All four checks. `min_termination` (a percentage) defaults to 100 for the plain
    layout, where no acknowledgements say what must have been learned, and to none for
    the chat layout, where the acknowledged commands must be."""
    proposals = results.all_proposals()
    layout = results.layout
    if min_termination is None and layout == PLAIN:
        min_termination = 100.0
    everyone: dict[str, Sequence[Learned]] = {**results.learners}
    for name, entries in results.crashed.items():
        everyone[f"{name} (crashed)" if name in everyone else name] = entries
    problems = [
        *check_integrity(proposals, everyone),
        *check_agreement(everyone),
        *check_duplicates(proposals, everyone),
    ]
    term, missing = check_termination(
        proposals, results.learners, require_acked=require_acked, min_percent=min_termination
    )
    problems.extend(missing)
    notes = []
    if not results.learners:
        notes.append("no learners: nothing to judge termination by")
    if not require_acked and term.acked is not None and term.acked_learned_by_all != term.acked:
        notes.append(
            f"{term.acked - (term.acked_learned_by_all or 0)} acknowledged command(s) not "
            "learned by every live learner; not required, since no majority was left"
        )
    summaries = [summarize(n, es) for n, es in sorted(results.learners.items())]
    summaries += [summarize(n, es, crashed=True) for n, es in sorted(results.crashed.items())]
    return Report(layout, tuple(summaries), term, tuple(problems), tuple(notes))


def summarize(name: str, entries: Sequence[Learned], crashed: bool = False) -> LearnerSummary:
    return LearnerSummary(name, len(entries), top_slot(entries), empty_slots(entries), crashed)


def top_slot(entries: Sequence[Learned]) -> int | None:
    slots = [e.slot for e in entries if e.slot is not None]
    return max(slots) if slots else None


def empty_slots(entries: Sequence[Learned]) -> tuple[int, ...]:
    """Slots below the highest one that hold no entry.

    A chat log lists applied commands only, so a slot decided as a no-op (the hole a dead
    leader left) shows as a gap. So does a slot whose batch held only retries of commands
    already applied, which the client table skipped: to a reader of the log, both are
    slots in which nothing happened."""
    present = {e.slot for e in entries if e.slot is not None}
    if not present:
        return ()
    return tuple(s for s in range(max(present)) if s not in present)


# -- parsing --------------------------------------------------------------------------------

_ESCAPE_RE = re.compile(r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|(.))", re.DOTALL)
_SIMPLE = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
_CHAT_LINE = re.compile(r"^-?\d+\t[^\t]*\t-?\d+\t")


def unescape(text: str) -> str:
    """The inverse of `paxoi.apps.chat.escape`: a chat-log field back to its text."""

    def one(m: re.Match[str]) -> str:
        hex2, hex4, ch = m.groups()
        if hex2 is not None or hex4 is not None:
            return chr(int(hex2 or hex4, 16))
        if ch in _SIMPLE:
            return _SIMPLE[ch]
        raise ValueError(f"unknown escape \\{ch}")

    if "\\" not in text:
        return text
    if text.endswith("\\") and not text.endswith("\\\\"):
        raise ValueError("dangling backslash")
    return _ESCAPE_RE.sub(one, text)


def parse_chat_log(text: str, source: str = "chat log") -> list[Learned]:
    """A replica's chat.log: `slot<TAB>sender<TAB>seq<TAB>message` lines, escaped."""
    entries = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        parts = line.split("\t")
        if len(parts) != 4:
            raise ResultsError(
                f"{source}:{n}: expected 4 tab-separated fields (slot, sender, seq, message), "
                f"found {len(parts)}"
            )
        try:
            slot, seq = int(parts[0]), int(parts[2])
            sender, message = unescape(parts[1]), unescape(parts[3])
        except ValueError as e:
            raise ResultsError(f"{source}:{n}: {e}") from None
        entries.append(Learned(message, slot, sender, seq))
    return entries


def parse_values(text: str) -> list[str]:
    """One value per line (plain layout); surrounding white space and blank lines ignored."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def parse_learned(text: str, source: str = "learned", chat: bool | None = None) -> list[Learned]:
    """A learner's file: a chat log if `chat`, plain values if not, and if None, whichever
    its first non-blank line looks like (a chat line starts `<int>TAB...TAB<int>TAB`)."""
    if chat is None:
        first = next((line for line in text.splitlines() if line.strip()), "")
        chat = bool(_CHAT_LINE.match(first))
    if chat:
        return parse_chat_log(text, source)
    return [Learned(v) for v in parse_values(text)]


def parse_proposals_jsonl(text: str, source: str = "proposals") -> list[Proposal]:
    """One JSON object per line: {"client": str, "seq": int, "value": str, "acked": bool}."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise ResultsError(f"{source}:{n}: not valid JSON: {e}") from None
        if not isinstance(obj, dict):
            raise ResultsError(f"{source}:{n}: expected a JSON object")
        client, seq, value, acked = (obj.get(k) for k in ("client", "seq", "value", "acked"))
        if not isinstance(client, str) or not client:
            raise ResultsError(f"{source}:{n}: 'client' must be a non-empty string")
        if type(seq) is not int:
            raise ResultsError(f"{source}:{n}: 'seq' must be an integer")
        if not isinstance(value, str):
            raise ResultsError(f"{source}:{n}: 'value' must be a string")
        if not isinstance(acked, bool):
            raise ResultsError(f"{source}:{n}: 'acked' must be true or false")
        out.append(Proposal(client, seq, value, acked))
    return out


def parse_proposals_plain(text: str, name: str) -> list[Proposal]:
    return [Proposal(name, None, v, None) for v in parse_values(text)]


def load_results(directory: Path | str) -> Results:
    """Read a results directory (see the module docstring); ResultsError says what is wrong."""
    root = Path(directory)
    if not root.is_dir():
        raise ResultsError(f"{root}: no such directory")
    proposed_dir, learned_dir = root / "proposed", root / "learned"
    for d in (proposed_dir, learned_dir):
        if not d.is_dir():
            raise ResultsError(f"{d}: missing (expected proposed/ and learned/ in {root})")
    proposed: dict[str, list[Proposal]] = {}
    for path in sorted(proposed_dir.iterdir()):
        text = _read(path)
        if path.suffix == ".jsonl":
            proposed[path.stem] = parse_proposals_jsonl(text, str(path))
        elif path.suffix == ".txt":
            proposed[path.stem] = parse_proposals_plain(text, path.stem)
    _check_consistent(proposed)
    learners = _load_learners(learned_dir)
    crashed = _load_learners(root / "crashed") if (root / "crashed").is_dir() else {}
    if not proposed and not learners:
        raise ResultsError(f"{root}: no proposed/*.jsonl|*.txt and no learned/*.txt files")
    return Results(proposed, learners, crashed)


def _load_learners(directory: Path) -> dict[str, list[Learned]]:
    out = {}
    for path in sorted(directory.iterdir()):
        if path.suffix in (".txt", ".log"):
            out[path.stem] = parse_learned(
                _read(path), str(path), chat=True if path.suffix == ".log" else None
            )
    return out


def _check_consistent(proposed: Mapping[str, Sequence[Proposal]]) -> None:
    """One (client, seq) may be recorded more than once (say, sent then acked), but
    always with the same value: two values under one key is a broken input file."""
    seen: dict[tuple[str, int], str] = {}
    for name, props in proposed.items():
        for p in props:
            if p.key is None:
                continue
            old = seen.setdefault(p.key, p.value)
            if old != p.value:
                raise ResultsError(
                    f"proposed/{name}: ({p.client}, {p.seq}) recorded with two values "
                    f"({_short(old)} and {_short(p.value)})"
                )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ResultsError(f"{path}: not UTF-8 text: {e}") from None
    except OSError as e:
        raise ResultsError(f"{path}: cannot read: {e.strerror}") from None


def _identity(e: Learned) -> tuple[object, ...]:
    return (e.slot, e.client, e.seq, e.value)


def _short(value: str, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 4] + "...'"


def _acked_part(t: Termination) -> str:
    if t.acked is None:
        return ""
    if t.acked_learned_by_all == t.acked:
        return f"; all {t.acked} acknowledged"
    return f"; {t.acked_learned_by_all} of {t.acked} acknowledged"


def format_slots(slots: Sequence[int]) -> str:
    """[3, 5, 6, 7] -> "3, 5-7"; "none" when empty."""
    if not slots:
        return "none"
    parts = []
    start = prev = slots[0]
    for s in [*slots[1:], None]:
        if s is not None and s == prev + 1:
            prev = s
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if s is not None:
            start = prev = s
    return ", ".join(parts)
