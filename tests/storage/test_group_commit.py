"""GroupCommitter: batching while a write is in flight, Ready ordering, and failure."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from paxoi.core.records import BallotRecord, DecidedRecord, DurableState, Record
from paxoi.core.types import Command
from paxoi.storage import (
    GroupCommitter,
    MemoryStorage,
    NodeIdentity,
    SqliteStorage,
    StorageError,
)

DEADLINE = 10.0


class GatedStorage(MemoryStorage):
    """A storage whose write() blocks until the test opens the gate: a slow fsync on demand."""

    def __init__(self, identity: NodeIdentity, *, fail_on: int | None = None) -> None:
        super().__init__(identity)
        self.calls: list[list[Record]] = []
        self.started = threading.Semaphore(0)  # released when a write() begins
        self.gate = threading.Semaphore(0)  # acquired by each write() before it "syncs"
        self.fail_on = fail_on

    def write(self, records: Sequence[Record]) -> None:
        self.calls.append(list(records))
        self.started.release()
        assert self.gate.acquire(timeout=DEADLINE), "the test never let the write finish"
        if self.fail_on == len(self.calls):
            raise StorageError("cannot write /x/data.db: I/O error (simulated)")
        super().write(records)

    def wait_started(self) -> None:
        assert self.started.acquire(timeout=DEADLINE), "no write() started"


class Loop:
    """Stands in for the event loop: notify() queues callbacks, run() executes them here."""

    def __init__(self) -> None:
        self.callbacks: queue.Queue[Callable[[], None]] = queue.Queue()
        self.done: list[str] = []

    def notify(self, callback: Callable[[], None]) -> None:
        self.callbacks.put(callback)

    def marker(self, name: str) -> Callable[[], None]:
        return lambda: self.done.append(name)

    def run(self, count: int) -> list[str]:
        """Run the next `count` callbacks, waiting for each at most DEADLINE seconds."""
        for _ in range(count):
            self.callbacks.get(timeout=DEADLINE)()
        return self.done

    def idle(self) -> bool:
        return self.callbacks.empty()


def rec(i: int) -> DecidedRecord:
    return DecidedRecord(i, (Command("c", i, b"v"),))


@pytest.fixture
def gated(identity: NodeIdentity) -> GatedStorage:
    return GatedStorage(identity)


@pytest.fixture
def loop() -> Loop:
    return Loop()


@pytest.fixture
def committer(gated: GatedStorage, loop: Loop) -> Iterator[GroupCommitter]:
    gc = GroupCommitter(gated, loop.notify)
    yield gc
    if not gc.failed:
        gated.gate.release(100)  # let any write the test left waiting finish
        gc.close(DEADLINE)


def test_submissions_during_a_write_go_together_in_the_next(
    gated: GatedStorage, loop: Loop, committer: GroupCommitter
) -> None:
    committer.submit([rec(0)], loop.marker("a"))
    gated.wait_started()  # "a" is being synced; everything below accumulates
    committer.submit([rec(1), rec(2)], loop.marker("b"))
    committer.submit([], loop.marker("c"))  # no records: still waits for a and b
    committer.submit([rec(3)], loop.marker("d"))
    assert loop.idle() and committer.pending == 4

    gated.gate.release()  # the first sync completes
    assert loop.run(1) == ["a"]
    gated.wait_started()
    assert gated.calls == [[rec(0)], [rec(1), rec(2), rec(3)]]  # one write for b, c, d
    assert loop.idle()  # b, c, d wait for their sync

    gated.gate.release()
    assert loop.run(3) == ["a", "b", "c", "d"]
    assert committer.flush(DEADLINE)
    assert committer.stats.syncs == 2
    assert committer.stats.records == 4
    assert committer.stats.batches == 4
    assert gated.load().decided.keys() == {0, 1, 2, 3}


def test_recordless_submission_waits_for_earlier_ones(
    gated: GatedStorage, loop: Loop, committer: GroupCommitter
) -> None:
    committer.submit([rec(0)], loop.marker("persist"))
    gated.wait_started()
    committer.submit([], loop.marker("empty"))
    assert loop.idle()  # the earlier records are not durable yet
    gated.gate.release()
    assert loop.run(2) == ["persist", "empty"]
    assert len(gated.calls) == 1  # the empty submission cost no write


def test_recordless_submission_when_idle_needs_no_write(
    gated: GatedStorage, loop: Loop, committer: GroupCommitter
) -> None:
    committer.submit([], loop.marker("now"))
    assert loop.run(1) == ["now"]
    assert gated.calls == [] and committer.stats.syncs == 0 and committer.stats.batches == 1


def test_close_flushes_what_is_queued(gated: GatedStorage, loop: Loop) -> None:
    gc = GroupCommitter(gated, loop.notify)
    for i in range(5):
        gc.submit([rec(i)], loop.marker(str(i)))
    gated.gate.release(5)
    gc.close(DEADLINE)
    assert loop.run(5) == ["0", "1", "2", "3", "4"]
    assert gated.load().decided.keys() == set(range(5))
    with pytest.raises(StorageError, match="closed"):
        gc.submit([rec(9)], loop.marker("late"))


def test_a_failed_write_stops_everything(identity: NodeIdentity, loop: Loop) -> None:
    storage = GatedStorage(identity, fail_on=2)
    errors: list[BaseException] = []
    gc = GroupCommitter(storage, loop.notify, on_error=errors.append)
    gc.submit([rec(0)], loop.marker("ok"))
    storage.wait_started()
    gc.submit([rec(1)], loop.marker("lost"))
    gc.submit([], loop.marker("after-lost"))
    storage.gate.release()
    storage.wait_started()
    storage.gate.release()  # the second write raises

    assert loop.run(2) == ["ok"]  # the first done, then on_error; never "lost"
    assert len(errors) == 1 and "I/O error" in str(errors[0])
    assert gc.failed and gc.error is errors[0]
    assert gc.flush(DEADLINE)
    with pytest.raises(StorageError, match="I/O error"):
        gc.submit([rec(2)], loop.marker("refused"))
    with pytest.raises(StorageError, match="I/O error"):
        gc.close(DEADLINE)
    assert loop.idle() and loop.done == ["ok"]
    assert storage.load().decided.keys() == {0}


def test_an_unexpected_exception_is_reported_as_a_storage_error(
    identity: NodeIdentity, loop: Loop
) -> None:
    class Broken(MemoryStorage):
        def write(self, records: Sequence[Record]) -> None:
            raise ValueError("bug in the engine")

    gc = GroupCommitter(Broken(identity), loop.notify)
    gc.submit([rec(0)], loop.marker("never"))
    assert gc.flush(DEADLINE) and gc.failed
    with pytest.raises(StorageError, match="bug in the engine") as info:
        gc.close(DEADLINE)
    assert isinstance(info.value.__cause__, ValueError)
    assert loop.done == []


def test_a_failing_notify_is_recorded(identity: NodeIdentity) -> None:
    def notify(callback: Callable[[], None]) -> None:
        raise RuntimeError("Event loop is closed")

    gc = GroupCommitter(MemoryStorage(identity), notify)
    gc.submit([rec(0)], lambda: None)
    assert gc.flush(DEADLINE) and gc.failed
    assert isinstance(gc.error, RuntimeError)


def test_synchronous_notify_may_submit_again(identity: NodeIdentity) -> None:
    """A callback that submits (as a shell stepping a self-addressed message would)."""
    storage = MemoryStorage(identity)
    order: list[int] = []
    gc = GroupCommitter(storage, lambda cb: cb())

    def chain(i: int) -> Callable[[], None]:
        def done() -> None:
            order.append(i)
            if i < 20:
                gc.submit([rec(i + 1)], chain(i + 1))

        return done

    gc.submit([rec(0)], chain(0))
    deadline_hit = not gc.flush(DEADLINE)
    gc.close(DEADLINE)
    assert not deadline_hit
    assert order == list(range(21))
    assert storage.load().decided.keys() == set(range(21))


def test_with_sqlite_many_submissions_share_syncs(tmp_path: Path, identity: NodeIdentity) -> None:
    storage = SqliteStorage.open(tmp_path, identity)
    loop = Loop()
    gc = GroupCommitter(storage, loop.notify)
    n = 300
    for i in range(n):
        gc.submit([rec(i)] if i % 3 else [], loop.marker(str(i)))
    gc.close(DEADLINE)
    storage.close()
    assert loop.run(n) == [str(i) for i in range(n)]
    assert gc.stats.batches == n and gc.stats.records == n - n // 3
    assert gc.stats.syncs < n - n // 3  # group commit did group
    expected = DurableState()
    for i in range(n):
        if i % 3:
            expected.apply(rec(i))
    with SqliteStorage.open(tmp_path, identity) as again:
        assert again.load() == expected


def test_ballot_record_round_trip_through_committer(identity: NodeIdentity, loop: Loop) -> None:
    storage = MemoryStorage(identity)
    gc = GroupCommitter(storage, loop.notify)
    gc.submit([BallotRecord(4)], loop.marker("b"))
    gc.close(DEADLINE)
    assert loop.run(1) == ["b"]
    assert storage.load().round_used == 4


@pytest.mark.parametrize(
    "big",
    [
        DecidedRecord(1, (Command("c", 1, b"12345"),)),  # over inline_bytes
        DecidedRecord(1, tuple(Command("c", i, b"") for i in range(3))),  # inline_commands
    ],
)
def test_an_idle_committer_writes_small_records_inline(
    gated: GatedStorage, loop: Loop, big: DecidedRecord
) -> None:
    """Idle and small: written on the caller's thread, done handed to `inline`; a big
    one goes to the thread, and while it is in flight the next submission queues."""
    inline = Loop()
    gc = GroupCommitter(gated, loop.notify, inline=inline.notify, inline_commands=2, inline_bytes=4)
    try:
        gated.gate.release()  # the inline write may complete
        gc.submit([rec(0)], inline.marker("inline"))  # returns once durable
        assert gated.load().decided.keys() == {0}
        assert inline.run(1) == ["inline"] and loop.idle()

        gc.submit([big], loop.marker("thread"))
        gated.wait_started()  # the inline write's start
        gated.wait_started()  # and the thread's: it holds `big` at the gate
        gc.submit([rec(2)], loop.marker("queued"))  # not idle: queued behind it
        assert gated.load().decided.keys() == {0}
        gated.gate.release(2)
        assert loop.run(2) == ["thread", "queued"] and inline.idle()
        assert gc.stats.syncs == 3 and gc.stats.batches == 3
    finally:
        gated.gate.release(100)
        gc.close(DEADLINE)


def test_a_failed_inline_write_fails_the_committer(identity: NodeIdentity, loop: Loop) -> None:
    storage = GatedStorage(identity, fail_on=1)
    storage.gate.release()
    errors: list[BaseException] = []
    gc = GroupCommitter(storage, loop.notify, on_error=errors.append, inline=loop.notify)
    with pytest.raises(StorageError, match="I/O error"):
        gc.submit([rec(0)], loop.marker("never"))
    loop.run(1)  # the on_error report
    assert gc.failed and len(errors) == 1 and loop.done == []
    with pytest.raises(StorageError):
        gc.submit([rec(1)], loop.marker("late"))
    with pytest.raises(StorageError):
        gc.close(DEADLINE)


def test_a_slow_disk_delays_every_write_and_none_goes_inline(
    identity: NodeIdentity, loop: Loop
) -> None:
    """faults.disk_delay: even a small record on an idle committer goes to the thread,
    and is not durable (nor its done handed over) until the delay has passed."""
    inline = Loop()
    storage = MemoryStorage(identity)
    gc = GroupCommitter(storage, loop.notify, inline=inline.notify, delay=0.2)
    try:
        began = time.monotonic()
        gc.submit([rec(0)], loop.marker("durable"))
        assert storage.load().decided == {}  # not written on the caller's thread
        assert loop.run(1) == ["durable"]
        assert time.monotonic() - began >= 0.2
        assert storage.load().decided.keys() == {0} and inline.idle()
    finally:
        gc.close(DEADLINE)
