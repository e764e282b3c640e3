"""The load process's closed loops against a fake session: what counts (only commands
answered inside the window), and that every loop ends (in time, and in count)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from paxoi.bench import worker
from paxoi.bench.worker import Recorder, Session, Window, WorkerSpec, result_of, run_clients
from paxoi.client import ClientClosed, SubmitTimeout

MS = 1_000_000
Callback = Callable[[bytes | None, BaseException | None], None]


class FakeSession:
    """Answers every command after `delay` seconds; every `fail_every`-th one times out."""

    def __init__(self, delay: float, fail_every: int = 0, hang: bool = False) -> None:
        self.delay = delay
        self.fail_every = fail_every
        self.hang = hang
        self.calls = 0
        self.closed = False
        self.payloads: set[bytes] = set()

    def submit_callback(self, payload: bytes, callback: Callback) -> None:
        self.calls += 1
        self.payloads.add(payload)
        if not self.hang:
            asyncio.get_running_loop().call_later(self.delay, self._answer, callback, self.calls)

    def _answer(self, callback: Callback, call: int) -> None:
        if self.closed:
            callback(None, ClientClosed("closed"))
        elif self.fail_every and call % self.fail_every == 0:
            callback(None, SubmitTimeout("no answer"))
        else:
            callback(b"1", None)

    async def submit(self, payload: bytes) -> bytes:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def done(result: bytes | None, error: BaseException | None) -> None:
            if error is not None:
                future.set_exception(error)
            else:
                assert result is not None
                future.set_result(result)

        self.submit_callback(payload, done)
        return await future

    async def close(self) -> None:
        self.closed = True


def spec(clients: int, outstanding: int, **kw: int) -> WorkerSpec:
    return WorkerSpec({0: ("127.0.0.1", 1)}, "paxoi", clients, outstanding, 32, **kw)


def window(warmup: float, duration: float) -> Window:
    now = time.perf_counter_ns()
    start = now + int(warmup * 1e9)
    end = start + int(duration * 1e9)
    return Window(start, end, end)


def test_only_commands_answered_in_the_window_count() -> None:
    sessions = [FakeSession(0.002), FakeSession(0.002)]
    w = window(0.1, 0.3)
    rec = asyncio.run(run_clients(spec(2, 3), w, list[Session](sessions)))
    assert time.perf_counter_ns() >= w.end
    assert rec.latencies, "nothing was answered in the window"
    assert sum(rec.per_second) == len(rec.latencies)
    assert rec.done > len(rec.latencies)  # the warm-up's commands were answered, not counted
    assert min(rec.latencies) >= 2 * MS  # latency covers the whole submit
    assert rec.errors == 0
    # 2 sessions x 3 lanes, each lane its own payload of the requested size
    assert all(len(p) == 32 for s in sessions for p in s.payloads)
    result = result_of(rec)
    assert result["committed"] == len(rec.latencies)
    assert result["histogram"]["count"] == len(rec.latencies)


def test_failures_in_the_window_are_counted_by_kind() -> None:
    rec = asyncio.run(run_clients(spec(1, 2), window(0.0, 0.2), [FakeSession(0.001, 5)]))
    assert rec.errors > 0
    assert rec.error_kinds == {"SubmitTimeout": rec.errors}
    assert rec.latencies


def test_a_lane_is_bounded_in_count() -> None:
    session = FakeSession(0.0)
    rec = asyncio.run(run_clients(spec(1, 4, max_commands_per_lane=3), window(0.0, 5.0), [session]))
    assert session.calls == 12
    assert rec.done == 12


def test_unanswered_commands_are_abandoned_after_the_drain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker, "DRAIN_SECONDS", 0.2)
    w = window(0.0, 0.1)
    began = time.monotonic()
    rec = asyncio.run(run_clients(spec(1, 2), w, [FakeSession(0.0, hang=True)]))
    assert time.monotonic() - began < 5.0
    assert rec.latencies == [] and rec.done == 0


def test_the_recorder_buckets_by_second() -> None:
    rec = Recorder(Window(0, 3_000_000_000, 3_000_000_000))
    assert rec.per_second == [0, 0, 0]
    rec.ok(0, 10)
    rec.ok(0, 1_500_000_000)
    rec.ok(0, 2_999_999_999)
    rec.ok(0, 3_000_000_000)  # at the end: outside
    assert rec.per_second == [1, 1, 1]
    assert rec.done == 4
