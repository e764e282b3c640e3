"""The Wing-Gong search with Lowe's memoization (as Porcupine and Knossos do it).

The events of one key's sub-history (calls and returns, in time order) form a doubly
linked list. In each configuration (the set of ops linearized so far, and the state),
the candidates to go next are the ops whose calls come before the first return still in
the list: the op returning there (the *blocker*) must be linearized before anything
called after that. The search takes a candidate the model allows, if the configuration
it leads to is new: it pushes the choice, lifts the op's call and return out of the list,
and expands the new configuration. When no candidate works, it backs up to the latest
configuration with an untried candidate. It succeeds when every op that completed is
linearized, and fails when there is nothing left to back up to.

Lowe's cache of visited configurations keeps the search from exploring the same
situation twice: the linearized ops (an int used as a bitset) and the state fully
determine what can happen next. States that no op can ever read are one state for the
cache (`model.state_key`). Ops of unknown outcome have no return event, so nothing ever
forces them in, and the search may leave them out.

Plain WGL tries candidates in call order, which on a busy register runs writes far
ahead of a pending read and then spends exponential time undoing them. Three rules,
each of which keeps the search complete, avoid that (proofs in the docstrings of
`_Frame` and `search`): legal reads are taken at once with no alternatives; a write
nobody can read (a dead put) is only ever placed just before another put, or alone when
it is the blocker; and the other writes are tried blocker-serving first, then earliest
deadline first.

The stack is a linked list of frames, so the deepest configuration the search reached
(the longest linearizable prefix) is kept at O(1) cost, for the explanation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .model import DEAD, PUT, Op, State, can_produce, needs, state_key, step


class _Entry:
    """A call or return event in the list. A call's `match` is its op's return, if any."""

    __slots__ = ("is_call", "match", "next", "op", "prev")

    def __init__(self, op: Op, is_call: bool) -> None:
        self.op = op
        self.is_call = is_call
        self.match: _Entry | None = None
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


#: One step of the search: the ops it linearizes, in order (usually one).
Batch = list[_Entry]


class _Frame:
    """One step on the stack: the batch linearized, and the state before it.

    `choices` are the alternatives the configuration before it offered, in the order
    tried, and `index` is this batch's place among them, so backing up resumes with the
    next one. A frame without choices was no choice: a read that was legal when taken.
    If any linearization continues from a configuration, one continues with such a read
    first (it changes no state, and nothing still pending had to come before it, or it
    would not be a candidate). So backing out of a read means backing out of the step
    before it too.
    """

    __slots__ = ("batch", "choices", "depth", "index", "parent", "state")

    def __init__(
        self,
        batch: Batch,
        state: State,
        parent: _Frame | None,
        depth: int,
        choices: list[Batch] | None,
        index: int,
    ) -> None:
        self.batch = batch
        self.state = state
        self.parent = parent
        self.depth = depth
        self.choices = choices
        self.index = index


@dataclass
class SearchResult:
    """What the search found for one key.

    status: "linearizable", "not-linearizable" or "unknown" (out of time).
    order: on success, the op ids in a valid linearization order.
    prefix, prefix_state, blocked: on failure (and on timeout, the best so far): the
    longest linearizable prefix found (ops in order), the state after it, and the op
    whose completion the search could not get past from there.
    """

    status: str
    configurations: int
    order: list[int]
    prefix: list[Op]
    prefix_state: State
    blocked: Op | None


#: The op of the list's head entry, which is never tried.
_SENTINEL = Op(-1, "", "", "", None, None, "info", None, -1, None, 0, None)

#: How many expanded configurations between two looks at the clock.
_CLOCK_EVERY = 1024

#: Sorts after every rank: the deadline of an op that never has to happen.
_NEVER = 1 << 62


def _deadline(entry: _Entry) -> int:
    ret = entry.op.ret
    return _NEVER if ret is None else ret


def _order(writes: list[_Entry], blocker: Op, state: State) -> list[_Entry] | None:
    """The (live) writes in the order to try them, or None if no order can work.

    If the blocker is one of the writes and legal, it goes first. Otherwise it needs
    another state (legal reads never block: they are taken at once), so the writes that
    would make it legal go first (the put of the value a blocked read returned); and if
    no write could ever produce a state it needs, the configuration is doomed. The rest
    follow earliest deadline first. This keeps a write from being taken long before it is
    needed, only to be undone at great cost when a read much later disagrees.
    """
    writes.sort(key=_deadline)
    wanted = needs(blocker)
    if wanted is None or state in wanted:
        for i, w in enumerate(writes):
            if w.op is blocker:
                writes.insert(0, writes.pop(i))
                break
        return writes
    if not any(can_produce(w.op, t) for w in writes if w.op is not blocker for t in wanted):
        return None
    first: list[_Entry] = []
    rest: list[_Entry] = []
    for w in writes:
        legal, after = step(w.op, state)
        (first if legal and after in wanted else rest).append(w)
    return first + rest


def search(ops: list[Op], deadline: float | None = None, initial: State = None) -> SearchResult:
    """Search for a linearization of `ops` (one key's); `deadline` is a time.monotonic().

    Each op's `bit` must be set and distinct; `ret` None marks an optional op.

    Dead puts (puts of a value no op can ever read, `model.state_key`) are batched: when
    a put W is taken, every dead put that is a candidate goes just before it, and a dead
    put is taken alone only when it is the blocker. This loses nothing. In a continuation
    from here, a dead put P must be followed by a put, another dead put, an append of
    unknown outcome (which only makes another dead state, and can be dropped), or the
    end. Moving P to just before a put taken now keeps every op legal (a put is legal
    anywhere, and whatever followed P was legal in a dead state, so in any state) and
    respects real time (P is a candidate, and moving it earlier only helps the ops that
    must follow it). If P's run is followed by a put that is not a candidate yet, the
    blocker is in that run, and taking it alone first covers that continuation.
    """
    events: list[tuple[int, _Entry]] = []
    for op in ops:
        call = _Entry(op, True)
        events.append((op.call, call))
        if op.ret is not None:
            ret = _Entry(op, False)
            call.match = ret
            events.append((op.ret, ret))
    events.sort(key=lambda pair: pair[0])
    head = _Entry(_SENTINEL, True)
    last = head
    for _, new in events:
        last.next = new
        new.prev = last
        last = new

    canon = state_key(ops)
    dead = {op.id for op in ops if op.code == PUT and op.ret is not None and canon(op.a) is DEAD}
    cache: set[tuple[int, object]] = set()
    linearized = 0
    state = initial
    remaining = sum(1 for op in ops if op.ret is not None)
    stack: _Frame | None = None
    depth = 0
    best: _Frame | None = None
    best_depth = -1
    best_state: State = initial
    blocked: Op | None = None

    def result(status: str) -> SearchResult:
        batches: list[Batch] = []
        frame = best if status != "linearizable" else stack
        while frame is not None:
            batches.append(frame.batch)
            frame = frame.parent
        prefix = [entry.op for batch in reversed(batches) for entry in batch]
        if status == "linearizable":
            return SearchResult(status, len(cache), [op.id for op in prefix], [], state, None)
        return SearchResult(status, len(cache), [], prefix, best_state, blocked)

    def push(batch: Batch, bits: int, after: State, choices: list[Batch] | None, i: int) -> None:
        nonlocal stack, depth, linearized, state, remaining
        depth += len(batch)
        stack = _Frame(batch, state, stack, depth, choices, i)
        linearized |= bits
        state = after
        for entry in batch:
            if entry.op.ret is not None:
                remaining -= 1
            _lift(entry)

    def try_from(choices: list[Batch], start: int) -> bool:
        """Take the first alternative from `start` on that is legal and unexplored."""
        for i in range(start, len(choices)):
            batch = choices[i]
            after = state
            bits = linearized
            for entry in batch:
                legal, after = step(entry.op, after)
                if not legal:
                    break
                bits |= entry.op.bit
            else:
                config = (bits, canon(after))
                if config not in cache:
                    cache.add(config)
                    push(batch, bits, after, choices, i)
                    return True
        return False

    expanded = 0
    while remaining:
        expanded += 1
        if deadline is not None and expanded % _CLOCK_EVERY == 0 and time.monotonic() > deadline:
            return result("unknown")

        # Expand this configuration: a legal read if there is one, else the writes.
        entry = head.next
        writes: list[_Entry] = []
        deads: list[_Entry] = []
        doomed = False
        while entry is not None and entry.is_call:
            op = entry.op
            if op.readonly:
                if step(op, state)[0]:
                    config = (linearized | op.bit, canon(state))
                    if config in cache:
                        doomed = True  # taking it was explored and failed
                        break
                    cache.add(config)
                    push([entry], linearized | op.bit, state, None, 0)
                    break
            elif op.id in dead:
                deads.append(entry)
            else:
                writes.append(entry)
            entry = entry.next
        else:
            assert entry is not None, "a pending op's return is always ahead"
            blocker = entry.op
            choices: list[Batch] = []
            if blocker.id in dead:
                choices.append([next(d for d in deads if d.op is blocker)])
            ordered = _order(writes, blocker, state)
            if ordered is not None:
                choices.extend([*deads, w] if w.op.code == PUT else [w] for w in ordered)
            if try_from(choices, 0):
                continue
            # Stuck: the blocker cannot be linearized from here.
            if depth > best_depth:
                best, best_depth, best_state, blocked = stack, depth, state, blocker
            doomed = True
        if not doomed:
            continue  # a read was taken

        # Back up to the latest configuration with an alternative left, and take it.
        while True:
            if stack is None:
                return result("not-linearizable")
            frame = stack
            stack = frame.parent
            depth = frame.depth - len(frame.batch)
            state = frame.state
            for entry in reversed(frame.batch):
                linearized &= ~entry.op.bit
                if entry.op.ret is not None:
                    remaining += 1
                _unlift(entry)
            if frame.choices is not None and try_from(frame.choices, frame.index + 1):
                break

    return result("linearizable")


def _lift(call: _Entry) -> None:
    """Take a call and its return out of the list (they stay linked to their neighbours)."""
    assert call.prev is not None
    call.prev.next = call.next
    if call.next is not None:
        call.next.prev = call.prev
    ret = call.match
    if ret is not None:
        assert ret.prev is not None
        ret.prev.next = ret.next
        if ret.next is not None:
            ret.next.prev = ret.prev


def _unlift(call: _Entry) -> None:
    """Undo `_lift` (the most recent one still in effect, as the stack guarantees)."""
    ret = call.match
    if ret is not None:
        assert ret.prev is not None
        ret.prev.next = ret
        if ret.next is not None:
            ret.next.prev = ret
    assert call.prev is not None
    call.prev.next = call
    if call.next is not None:
        call.next.prev = call
