"""Linearizability checking of key-value histories (Wing-Gong search, Lowe's cache).

`check_history(events)` takes a history as recorded by `paxoi.client.history` (or read
back with `load_history`) and decides whether some order of its operations, respecting
real time, is legal for the key-value store. The parts:

- `model`: the register each key is, and what each kind of op requires of it;
- `search`: the search over one key's sub-history;
- `explain`: the account of a violation (the stuck point, the candidates, why each fails);
- `checker`: splitting by key, trimming what cannot matter, the time budget, the verdict;
- `generate`: random linearizable histories from a simulated store, for tests and figures.
"""

from .checker import (
    LINEARIZABLE,
    NOT_LINEARIZABLE,
    UNKNOWN,
    KeyResult,
    LinearResult,
    check_history,
)
from .generate import random_history

__all__ = [
    "LINEARIZABLE",
    "NOT_LINEARIZABLE",
    "UNKNOWN",
    "KeyResult",
    "LinearResult",
    "check_history",
    "random_history",
]
