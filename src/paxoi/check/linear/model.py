"""The sequential model the checker linearizes against: one register per key.

The key-value store is a map of independent registers, so a history is linearizable iff
each key's sub-history is (linearizability is local), and the checker searches key by key.
A register's state is its value, a string, or None while the key is absent; `step` is
`KVStore.execute` restated on that state (append to an absent key starts from "").

Each operation is compiled once into a `code` and up to three arguments, so the search's inner
loop is a few comparisons, not a re-interpretation of the event:

    GET       a=value read                  legal iff state == a
    PUT       a=value written               always legal; state := a
    CAS_OK    a=expect, b=value, c=reported legal iff state == a and c == b; state := b
    CAS_READ  a=value found, b=expect       legal iff state == a != b (a refused cas reads)
    CAS_MAYBE a=expect, b=value             legal iff state == a; state := b (outcome unknown)
    APPEND    a=value, b=new value          legal iff (state or "") + a == b; state := b
    APPEND_MAYBE a=value                    always legal; state := (state or "") + a

An operation whose outcome is unknown (`info`, or never completed) is optional: the search
may place it anywhere after its invocation, or leave it out. A cas of unknown outcome only
matters if it swapped (else it changed nothing), so it is modelled as "swapped, if at all".
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

State = str | None

GET, PUT, CAS_OK, CAS_READ, CAS_MAYBE, APPEND, APPEND_MAYBE = range(7)


@dataclass(slots=True)
class Op:
    """One operation of one key's sub-history, ready for the search.

    `call` and `ret` are ranks in the history's global event order (time, then position
    in the file); `ret` is None when the outcome is unknown (the op may take effect at any
    time after its call). `bit` is 1 << its index within the key.
    """

    id: int
    process: str
    f: str
    key: str
    value: str | None
    expect: str | None
    kind: str  # "ok" | "fail" | "info" ("info" also for never completed)
    result: Any
    call: int
    ret: int | None
    call_time: int
    ret_time: int | None
    code: int = 0
    a: Any = None
    b: Any = None
    c: Any = None
    bit: int = 0
    readonly: bool = False  # a legal read may always be linearized at once (see search)

    @property
    def optional(self) -> bool:
        return self.ret is None


def compile_op(op: Op) -> bool:
    """Set op.code and its arguments; False if the op cannot affect the check at all
    (a read of unknown outcome, a refused command), so the caller drops it."""
    f, kind = op.f, op.kind
    if kind == "info":
        if f == "get":
            return False  # a read changes nothing, and its answer was never seen
        if f == "put":
            op.code, op.a = PUT, op.value
        elif f == "cas":
            op.code, op.a, op.b = CAS_MAYBE, op.expect, op.value
        else:
            op.code, op.a = APPEND_MAYBE, op.value
        return True
    if kind == "fail":
        if f == "cas" and op.result is not None:
            op.code, op.a, op.b = CAS_READ, op.result["value"], op.expect
            op.readonly = True
            return True
        return False  # surely did nothing
    op.readonly = f == "get"
    if f == "get":
        op.code, op.a = GET, op.result
    elif f == "put":
        op.code, op.a = PUT, op.value
    elif f == "cas":
        op.code, op.a, op.b, op.c = CAS_OK, op.expect, op.value, op.result["value"]
    else:
        op.code, op.a, op.b = APPEND, op.value, op.result
    return True


def step(op: Op, state: State) -> tuple[bool, State]:
    """Whether `op` may come next in state `state`, and the state after it."""
    code = op.code
    if code == GET:
        return state == op.a, state
    if code == PUT:
        return True, op.a
    if code == APPEND:
        return (state or "") + op.a == op.b, op.b
    if code == CAS_OK:
        return state == op.a and op.c == op.b, op.b
    if code == CAS_READ:
        return state == op.a and state != op.b, state
    if code == CAS_MAYBE:
        return state == op.a, op.b
    return True, (state or "") + op.a  # APPEND_MAYBE


def needs(op: Op) -> tuple[State, ...] | None:
    """The states in which `op` is legal: None if any will do, () if none will."""
    code = op.code
    if code in (GET, CAS_MAYBE):
        return (op.a,)
    if code == CAS_OK:
        return (op.a,) if op.c == op.b else ()
    if code == CAS_READ:
        return () if op.a == op.b else (op.a,)
    if code == APPEND:
        if not op.b.endswith(op.a):
            return ()
        before = op.b[: len(op.b) - len(op.a)]
        return (before,) if before else (None, "")  # appending to absent starts from ""
    return None


def can_produce(op: Op, target: State) -> bool:
    """Whether the state after `op` could be `target` (from some state before it)."""
    code = op.code
    if code == PUT:
        return op.a == target
    if code in (CAS_OK, CAS_MAYBE):
        return op.b == target
    if code == APPEND:
        return op.b == target
    if code == APPEND_MAYBE:
        return isinstance(target, str) and target.endswith(op.a)
    return False  # reads change nothing


#: The one stand-in for every state no op can ever read (see `state_key`).
DEAD = ("dead",)


def state_key(ops: list[Op]) -> Callable[[State], object]:
    """The state as the search's cache should see it: every *dead* state becomes DEAD.

    A state is dead when no op of the key could ever read it: no op requires it (a get
    reading it, a cas expecting or finding it, an append extending it to its result),
    and no op requires a value it could grow into by appends (a string it is a prefix
    of). From a dead state the only legal steps are writes (the same from every dead
    state) and appends of unknown outcome (to another dead state), so all dead states
    have the same futures, and configurations differing only in which dead state they
    hold are one. Unread writes are common, so this merges many configurations.
    """
    needed: set[str] = set()
    for op in ops:
        if op.code in (GET, CAS_OK, CAS_READ, CAS_MAYBE) and isinstance(op.a, str):
            needed.add(op.a)
        elif op.code == APPEND and op.b.endswith(op.a):
            needed.add(op.b[: len(op.b) - len(op.a)])
    ordered = sorted(needed)
    memo: dict[str, object] = {}

    def key(state: State) -> object:
        if state is None:
            return None
        found = memo.get(state)
        if found is None:
            i = bisect_left(ordered, state)
            alive = i < len(ordered) and ordered[i].startswith(state)
            found = memo[state] = state if alive else DEAD
        return found

    return key


def why_not(op: Op, state: State) -> str:
    """In words, why `op` cannot come next in `state` ("" if it can)."""
    ok, _ = step(op, state)
    if ok:
        return ""
    s = show(state)
    code = op.code
    if code == GET:
        return f"read {show(op.a)} but the value is {s}"
    if code == APPEND:
        return f"returned {show(op.b)} but the value is {s}, so it would be {show((state or '') + op.a)}"
    if code == CAS_OK:
        if op.c != op.b:
            return f"reported the new value {show(op.c)} but wrote {show(op.b)}"
        return f"swapped, expecting {show(op.a)}, but the value is {s}"
    if code == CAS_READ:
        if op.a == op.b:
            return f"refused, finding {show(op.a)}, which is what it expected"
        return f"refused, finding {show(op.a)}, but the value is {s}"
    if code == CAS_MAYBE:
        return f"could only have swapped from {show(op.a)}, but the value is {s}"
    return "?"


def show(value: State, limit: int = 40) -> str:
    """A value for humans: quoted, None as 'absent', long values cut in the middle."""
    if value is None:
        return "absent"
    text = repr(value)
    if len(text) > limit:
        keep = (limit - 5) // 2
        text = f"{text[:keep]}...{text[-keep:]} ({len(value)} chars)"
    return text


def describe(op: Op) -> str:
    """One operation in words: 'op 12 c1 cas x 'a'->'b' = swapped'."""
    f = op.f
    if f == "get":
        what = "get"
    elif f == "cas":
        what = f"cas {show(op.expect)}->{show(op.value)}"
    else:
        what = f"{f} {show(op.value)}"
    if op.kind == "info":
        out = "unknown outcome"
    elif op.kind == "fail":
        out = f"refused, found {show(op.result['value'])}" if op.result is not None else "failed"
    elif f == "get":
        out = f"read {show(op.result)}"
    elif f == "cas":
        out = "swapped"
    elif f == "append":
        out = f"now {show(op.result)}"
    else:
        out = "ok"
    return f"op {op.id} ({op.process}) {what}: {out}"
