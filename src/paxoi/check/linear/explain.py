"""Explaining a violation: where the search got stuck, in terms of the history.

The smallest useful account of a non-linearizable key is: the longest prefix of its
history the search could linearize (its last few ops, in order, and the state after
them), then the op whose completion the search could not get past and every op that was
a candidate to come next (invoked before that completion), each with the reason the model
refuses it, or, if the model would take it, the fact that every continuation from there
got stuck later. Times are seconds since the history's first event, so overlapping
intervals are visible at a glance.
"""

from __future__ import annotations

from .model import Op, describe, show, why_not
from .search import SearchResult

#: How many ops of the linearizable prefix to show before the stuck point.
PREFIX_TAIL = 8


def _interval(op: Op, origin: int) -> str:
    start = (op.call_time - origin) / 1e9
    if op.ret_time is None:
        return f"[{start:.6f}s, ...)"
    return f"[{start:.6f}s, {(op.ret_time - origin) / 1e9:.6f}s]"


def explain(key: str, ops: list[Op], found: SearchResult, origin: int, total: int) -> str:
    """A readable account of why `key`'s sub-history is not linearizable.

    `ops` are the ops the search worked on; `total` counts the key's ops before those
    that cannot matter were left out.
    """
    left_out = total - len(ops)
    note = f"; {left_out} that cannot matter left out" if left_out else ""
    lines = [f"key {key!r} is not linearizable ({total} operations{note})."]
    prefix = found.prefix
    if prefix:
        shown = prefix[-PREFIX_TAIL:]
        lines.append(
            f"The longest linearizable prefix found has {len(prefix)} operations"
            + (f"; its last {len(shown)}:" if len(shown) < len(prefix) else ":")
        )
        lines.extend(f"  {_interval(op, origin)} {describe(op)}" for op in shown)
        lines.append(f"After it the value is {show(found.prefix_state)}.")
    else:
        lines.append(
            f"Not even a first operation can be linearized (the value is "
            f"{show(found.prefix_state)} to begin with)."
        )

    blocked = found.blocked
    if blocked is None or blocked.ret is None:
        return "\n".join(lines)
    done = {op.id for op in prefix}
    candidates = sorted(
        (op for op in ops if op.id not in done and op.call < blocked.ret),
        key=lambda op: op.call,
    )
    when = (blocked.ret_time - origin) / 1e9 if blocked.ret_time is not None else 0.0
    lines.append(
        f"Then op {blocked.id} completed at {when:.6f}s, yet none of the {len(candidates)} "
        "operations that could come next leads to a linearization:"
    )
    for op in candidates:
        reason = why_not(op, found.prefix_state)
        if not reason:
            reason = (
                "could come next (its outcome is unknown), but that does not help"
                if op.optional
                else "could come next, but every continuation from there gets stuck later"
            )
        lines.append(f"  {_interval(op, origin)} {describe(op)}")
        lines.append(f"      -> {reason}")
    return "\n".join(lines)
