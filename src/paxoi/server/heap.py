"""Keeping the garbage collector's full collections short.

Most of a busy server's heap is long-lived and acyclic: the decided log, the accepted
values, the client table, the application's state. CPython's full (generation 2)
collection walks every object the collector tracks, and it runs each time the number
of survivors has grown by a quarter: with a few hundred thousand commands held, every
one stalled the event loop for 50-250 ms, about once a second at full load. A stalled
leader sends no heartbeats and a stalled follower answers nothing, so those stalls
were the tail latency and, once they passed the election timeout, leader changes.

`gc.freeze()` moves every tracked object into a permanent generation that collections
skip; the objects are still freed by reference counting when dropped, as the log's
commands are when it is compacted. The server freezes its heap after recovery and
again every `FREEZE_EVERY` applied commands, so a full collection only ever walks what
was allocated since. What freezing costs is cycles: a frozen object that later becomes
part of unreachable cycle (a closed connection's objects) is reclaimed only once it
is unfrozen. So every `RECLAIM_EVERY` freezes the heap is unfrozen and collected in
full, once: a bounded pause (the log is compacted to `limits.log_keep_commands`) every
few hundred thousand commands, instead of a growing one every second. And no more often
than every `RECLAIM_SECONDS`: at full load that was a 25-35 ms stall of the event loop
every 2.5 s, and with it (and the log's compaction, core/log.py) p99 latency at 8 x 64
was 36-40 ms instead of 24-25, while in steady state it collected nothing at all. A
server with few commands and many short connections still reclaims every few hundred
thousand commands, as before.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

#: Applied commands between freezes.
FREEZE_EVERY = 10_000
#: Freezes between full collections of the whole heap...
RECLAIM_EVERY = 10
#: ... and seconds, at least.
RECLAIM_SECONDS = 60.0


class HeapKeeper:
    """Counts applied commands and freezes (or reclaims, then freezes) the heap."""

    def __init__(
        self,
        freeze_every: int = FREEZE_EVERY,
        reclaim_every: int = RECLAIM_EVERY,
        reclaim_seconds: float = RECLAIM_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._freeze_every = freeze_every
        self._reclaim_every = reclaim_every
        self._reclaim_seconds = reclaim_seconds
        self._clock = clock
        self._reclaimed_at = clock()
        self._applied = 0
        self._freezes = 0
        #: Full collections run by `reclaim` (for tests and the status line).
        self.reclaims = 0

    def started(self) -> None:
        """After recovery: what the replay built is there to stay."""
        gc.collect()
        gc.freeze()

    def applied(self, commands: int) -> None:
        self._applied += commands
        if self._applied < self._freeze_every:
            return
        self._applied = 0
        self._freezes += 1
        if (
            self._freezes >= self._reclaim_every
            and self._clock() - self._reclaimed_at >= self._reclaim_seconds
        ):
            self._freezes = 0
            self.reclaim()
        gc.freeze()

    def reclaim(self) -> None:
        """Collect the whole heap, frozen part included (cycles that died frozen)."""
        gc.unfreeze()
        gc.collect()
        self.reclaims += 1
        self._reclaimed_at = self._clock()

    def stop(self) -> None:
        """Hand the heap back to the collector (a process that runs several servers in
        turn, as tests do, must not keep the stopped ones' cycles for ever)."""
        gc.unfreeze()
