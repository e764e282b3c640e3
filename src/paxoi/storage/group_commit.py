"""Group commit: make records durable on a background thread, many Readies per fsync.

An fsync takes milliseconds; the event loop must not wait for it, and one fsync per
Ready would cap a node at a few hundred Readies a second. So the loop hands each Ready's
records to `submit` and goes on. One thread writes: while it is inside `write()`
(transaction + fsync), later submissions pile up, and the next `write()` takes them all
at once. The busier the node, the more each sync covers, with no timer anywhere.

The ordering contract is the Ready one (see paxoi.core.ready): a submission's `done`
(which releases its `send_after_persist` messages) runs only once its records *and those
of every earlier submission* are durable, and callbacks run in submission order. A
submission without records still waits for all earlier ones, because its messages may
reveal state that an earlier Ready persisted.

An idle committer with a small write to do may do it on the caller's thread instead
(`inline`): at low load the hand-off to the writer thread and back (two thread wake-ups,
and the event loop's self-pipe) costs as much as the fsync itself, and nothing else is
waiting for the loop. Under load a Ready carries a batch of many commands, and those go
to the thread even when it is idle: the loop has other work to do meanwhile.

If a write fails the committer stops for good: what is on disk is then unknown (after a
failed fsync the kernel may have dropped the dirty pages), so the only safe move is to
stop the node. The error is kept in `error`, logged, passed to `on_error`, and raised by
`submit` and `close`; the `done` callbacks of unwritten submissions are never called, so
no message that depends on them ever leaves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..core.records import AcceptedRecord, DecidedRecord, Record, SegmentRecord, SnapshotRecord
from .base import Storage, StorageError

log = logging.getLogger(__name__)

Callback = Callable[[], None]
#: How a callback is handed back to the event loop: `loop.call_soon_threadsafe` in the
#: asyncio runtime, `lambda cb: cb()` in synchronous tests.
Notify = Callable[[Callback], object]


@dataclass
class CommitStats:
    """Counters for benchmarks: `batches / syncs` is the group-commit factor."""

    #: storage.write() calls, each one transaction and one fsync.
    syncs: int = 0
    #: Records made durable.
    records: int = 0
    #: Submissions completed (their `done` handed to notify), with or without records.
    batches: int = 0


class GroupCommitter:
    """Writes submitted records on one background thread; see the module docstring.

    `submit` is meant to be called from one thread (the event loop's); `close` from the
    same thread. The committer does not own `storage`: closing it is the caller's job,
    after `close()` here has returned.
    """

    def __init__(
        self,
        storage: Storage,
        notify: Notify,
        *,
        on_error: Callable[[BaseException], None] | None = None,
        name: str = "paxoi-group-commit",
        inline: Notify | None = None,
        inline_commands: int = 4,
        inline_bytes: int = 16 * 1024,
        delay: float = 0.0,
    ) -> None:
        """`inline`: write on the caller's thread when the committer is idle and the
        records hold at most `inline_commands` commands of at most `inline_bytes` in
        all (a snapshot never: it is the whole state), then hand `done` to this
        (the loop's `call_soon`) instead of `notify`. None: always on the thread.

        `delay` (seconds) plays a slow disk (fault injection, `faults.disk_delay`):
        every write waits this long first, on the thread (never inline). It widens the
        window in which a node has records on their way to disk, where only a bug
        would already have answered (the planted-bug tests need it to be wide)."""
        self.storage = storage
        self.delay = delay
        self.stats = CommitStats()
        #: The exception that stopped the committer, if one did.
        self.error: BaseException | None = None
        self._notify = notify
        self._inline = inline
        self._inline_commands = inline_commands
        self._inline_bytes = inline_bytes
        self._on_error = on_error
        # Reentrant, so a notify that runs callbacks synchronously may submit again.
        self._cond = threading.Condition(threading.RLock())
        self._queue: list[tuple[tuple[Record, ...], Callback]] = []
        self._in_flight = 0  # submissions taken by the thread and not yet notified
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def pending(self) -> int:
        """Submissions whose `done` has not been handed to notify yet."""
        with self._cond:
            return len(self._queue) + self._in_flight

    def submit(self, records: Sequence[Record], done: Callback) -> None:
        """Make `records` durable, then call `notify(done)` after every earlier `done`.

        Raises StorageError if the committer failed or was closed: the caller must not
        release anything that waits on these records.
        """
        with self._cond:
            self._check_accepting()
            if not records and not self._queue and not self._in_flight:
                # Nothing earlier is outstanding and every earlier done has already been
                # handed to notify, so order holds without a round trip to the thread.
                self.stats.batches += 1
                self._notify(done)
                return
            if (
                self._inline is not None
                and not self.delay
                and not self._queue
                and not self._in_flight
                and _small(records, self._inline_commands, self._inline_bytes)
            ):
                self._write(records)  # raises StorageError, after failing the committer
                self.stats.batches += 1
                self._inline(done)
                return
            self._queue.append((tuple(records), done))
            self._cond.notify()

    def _write(self, records: Sequence[Record]) -> None:
        """Write on the caller's thread, under the lock (the writer thread is idle)."""
        try:
            self.storage.write(records)
        except BaseException as e:
            self._fail(e)
            raise self._error_to_raise() from None
        self.stats.syncs += 1
        self.stats.records += len(records)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is durable and notified (or failed).

        Returns False on timeout. Does not raise; check `error`.
        """
        with self._cond:
            return self._cond.wait_for(
                lambda: self.error is not None or not (self._queue or self._in_flight),
                timeout,
            )

    def close(self, timeout: float | None = None) -> None:
        """Write what is queued, stop the thread, and raise the error if one occurred.

        Idempotent. Raises StorageError if the thread did not stop within `timeout`.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise StorageError(
                f"the storage thread did not finish within {timeout} s "
                f"({self.pending} submissions not yet durable); the disk may be hanging"
            )
        if self.error is not None:
            raise self._error_to_raise()

    # -- the writer thread --------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return  # closing, and everything submitted is done
                batch, self._queue = self._queue, []
                self._in_flight = len(batch)
            records = [r for recs, _ in batch for r in recs]
            try:
                if records:
                    if self.delay:
                        time.sleep(self.delay)
                    self.storage.write(records)
                    self.stats.syncs += 1
                    self.stats.records += len(records)
                for _, done in batch:
                    self._notify(done)
                    self.stats.batches += 1
            except BaseException as e:
                self._fail(e)
                return
            with self._cond:
                self._in_flight = 0
                self._cond.notify_all()

    def _fail(self, error: BaseException) -> None:
        with self._cond:
            self.error = error
            self._closing = True
            dropped = len(self._queue) + self._in_flight
            self._queue = []
            self._in_flight = 0
            self._cond.notify_all()
        log.error(
            "storage write failed; %d submissions are not durable and their messages will "
            "never be sent: %s",
            dropped,
            error,
        )
        if self._on_error is not None:
            on_error = self._on_error
            try:
                self._notify(lambda: on_error(error))
            except Exception:  # the loop may be gone; `error` still holds the failure
                log.exception("could not report the storage failure to the event loop")

    def _check_accepting(self) -> None:
        if self.error is not None:
            raise self._error_to_raise()
        if self._closing:
            raise StorageError("the group committer is closed; no more records are accepted")

    def _error_to_raise(self) -> StorageError:
        err = self.error
        if isinstance(err, StorageError):
            return err
        wrapped = StorageError(f"the storage thread failed: {err!r}")
        wrapped.__cause__ = err
        return wrapped

    def __repr__(self) -> str:
        state = "failed" if self.failed else "closing" if self._closing else "running"
        return f"GroupCommitter({self.storage!r}, {state}, {self.stats})"


def _small(records: Sequence[Record], commands: int, size: int) -> bool:
    """Whether `records` hold at most `commands` commands of at most `size` bytes of
    payload in all, and no snapshot or segment of one."""
    for r in records:
        if isinstance(r, (SnapshotRecord, SegmentRecord)):
            return False
        value = (
            r.pvalue.value if isinstance(r, AcceptedRecord)
            else r.value if isinstance(r, DecidedRecord)
            else ()
        )  # fmt: skip
        commands -= len(value)
        if commands < 0:
            return False  # a batch: decided without looking at its payloads
        size -= sum(len(c.payload) for c in value)
        if size < 0:
            return False
    return True
