"""One load process of `paxoi bench`: its share of the closed-loop clients.

Run as `python -m paxoi.bench.worker` by the driver (`paxoi.bench.load`), never by hand.
It speaks JSON lines: on stdin it reads the spec, then `go` with the measuring window;
on stdout it writes `ready`, `progress` (about 4 times a second) and finally `result`.
It stops at the end of the window whatever happens (every loop is bounded in time and in
count), and at once when its stdin closes (the driver is gone).

Each client is one session with `outstanding` commands in flight: `outstanding` lanes,
each sending its next command when the previous one is answered. A lane is a chain of
the client's result callbacks (`submit_callback`): no future, no task, and no trip
through the event loop per command (a future per command, answered through its done
callback, cost a load process about 15-20% more CPU). A command's latency is
`perf_counter_ns` from the submit to the answer's callback; commands completed inside
the window count, others (warm-up, drain) do not.

`open_session` is the only place that touches the client library: switch it to a
batched submit path or another wire protocol there and nothing else changes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from paxoi.apps import kv
from paxoi.bench.stats import LatencyHistogram
from paxoi.transport import runloop

#: A command still unanswered this long after the window closed is abandoned.
DRAIN_SECONDS = 5.0
#: Hard bound on commands per lane, besides the time bound.
MAX_COMMANDS_PER_LANE = 50_000_000
#: Seconds between progress lines.
PROGRESS_EVERY = 0.25
#: Printable ASCII without the backslash, cycled to fill payloads: valid chat text that
#: the chat log stores as it is (a backslash would send every message down its escaping
#: path, which is not what a benchmark of the common case should measure).
_PRINTABLE = bytes(b for b in range(0x21, 0x7F) if b != 0x5C)


@dataclass
class WorkerSpec:
    """What one load process does: `clients` sessions of `outstanding` lanes each."""

    servers: dict[int, tuple[str, int]]
    cluster: str
    clients: int
    outstanding: int
    size: int
    index: int = 0
    #: The servers' application: "chat" (messages) or "kv" (a put of one key per client).
    app: str = "chat"
    #: Seconds before a command counts as failed (the client library's timeout).
    timeout: float = 10.0
    max_commands_per_lane: int = MAX_COMMANDS_PER_LANE

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["servers"] = {str(k): list(v) for k, v in self.servers.items()}
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> WorkerSpec:
        doc = dict(doc)
        doc["servers"] = {int(k): (str(h), int(p)) for k, (h, p) in doc["servers"].items()}
        return cls(**doc)


class Session(Protocol):
    """What a lane needs from a client: send one command, its outcome to a callback
    (result, None) or (None, error); and close."""

    def submit_callback(
        self, payload: bytes, callback: Callable[[bytes | None, BaseException | None], None]
    ) -> None: ...

    async def submit(self, payload: bytes) -> bytes: ...

    async def close(self) -> None: ...


def open_session(spec: WorkerSpec, client: int) -> Session:
    """The one place that creates a client of the library under test."""
    from paxoi.client import AsyncClient

    return AsyncClient(
        spec.servers,
        cluster=spec.cluster,
        name=f"bench{spec.index}.{client}",
        max_outstanding=spec.outstanding,
        timeout=spec.timeout,
    )


def make_payload(size: int, tag: str = "") -> bytes:
    """`size` bytes of printable ASCII, no backslash, starting with `tag` (its printable
    ASCII characters but the backslash, truncated to fit)."""
    if size < 1:
        raise ValueError("a command has at least 1 byte")
    head = bytes(b for b in tag.encode("ascii", "ignore") if 0x20 <= b < 0x7F and b != 0x5C)
    head = head[:size]
    fill = size - len(head)
    body = (_PRINTABLE * (fill // len(_PRINTABLE) + 1))[:fill]
    return head + body


def command_payload(app: str, size: int, tag: str) -> bytes:
    """A lane's command. For "kv", a put of key `tag` padded towards `size` bytes (never
    under the JSON it needs): the store's state stays one key per client, so memory
    measures the servers, not a growing application state."""
    if app != "kv":
        return make_payload(size, tag)
    key = tag.strip()
    bare = len(kv.put(key, ""))
    return kv.put(key, "x" * max(0, size - bare))  # "x": nothing for JSON to escape


@dataclass
class Window:
    """The measuring window, in this process's perf_counter_ns clock."""

    start: int
    end: int
    stop: int  # lanes send nothing new after this (== end)


@dataclass
class Recorder:
    """What the lanes of one process saw."""

    window: Window
    latencies: list[int] = field(default_factory=list)
    per_second: list[int] = field(default_factory=list)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    done: int = 0  # every answered command, warm-up included (progress)

    def __post_init__(self) -> None:
        seconds = -(-(self.window.end - self.window.start) // 1_000_000_000)
        self.per_second = [0] * max(1, seconds)

    def ok(self, sent: int, answered: int) -> None:
        self.done += 1
        w = self.window
        if w.start <= answered < w.end:
            self.latencies.append(answered - sent)
            self.per_second[(answered - w.start) // 1_000_000_000] += 1

    def failed(self, answered: int, error: BaseException) -> None:
        if self.window.start <= answered < self.window.end:
            self.errors += 1
            kind = type(error).__name__
            self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


class Lane:
    """One closed loop: send, and on the answer record it and send again, until the
    window ends or `limit` commands were sent. `finished` completes when it stops."""

    def __init__(self, session: Session, payload: bytes, rec: Recorder, limit: int) -> None:
        self.session = session
        self.payload = payload
        self.rec = rec
        self.left = limit
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        #: When the command in flight was sent (perf_counter_ns).
        self._sent = 0

    def send(self) -> None:
        sent = time.perf_counter_ns()
        if sent >= self.rec.window.stop or self.left <= 0 or self.finished.done():
            self._finish()
            return
        self.left -= 1
        self._sent = sent
        try:
            self.session.submit_callback(self.payload, self._answered)
        except Exception as e:
            self._failed(e)

    def _answered(self, result: bytes | None, error: BaseException | None) -> None:
        if self.finished.done():
            return  # abandoned: a late answer
        if error is None:
            self.rec.ok(self._sent, time.perf_counter_ns())
            self.send()
        else:
            self._failed(error)

    def _failed(self, error: BaseException) -> None:
        from paxoi.client import ClientClosed, ClientError

        if isinstance(error, ClientClosed) or not isinstance(error, ClientError):
            self._finish(None if isinstance(error, ClientClosed) else error)
            return
        self.rec.failed(time.perf_counter_ns(), error)
        # A refusal or timeout: do not spin.
        asyncio.get_running_loop().call_later(0.01, self.send)

    def _finish(self, error: BaseException | None = None) -> None:
        if self.finished.done():
            return
        if error is None:
            self.finished.set_result(None)
        else:
            self.finished.set_exception(error)

    def abandon(self) -> None:
        """Stop now, leaving the command in flight unanswered (its answer is ignored)."""
        self._finish()


async def run_clients(
    spec: WorkerSpec,
    window: Window,
    sessions: list[Session],
    report: Callable[[Recorder], None] | None = None,
) -> Recorder:
    """Every lane of every session until the window ends, then a bounded drain."""
    rec = Recorder(window)
    lanes = [
        Lane(
            s,
            command_payload(spec.app, spec.size, f"b{spec.index}.{i} "),
            rec,
            spec.max_commands_per_lane,
        )
        for i, s in enumerate(sessions)
        for _ in range(spec.outstanding)
    ]
    for one in lanes:
        one.send()
    ticker: asyncio.Task[None] | None = None
    if report is not None:
        ticker = asyncio.ensure_future(_tick(rec, report, window.end))
    remaining = (window.stop - time.perf_counter_ns()) / 1e9 + DRAIN_SECONDS
    await asyncio.wait([one.finished for one in lanes], timeout=max(0.0, remaining))
    for one in lanes:
        one.abandon()
    if ticker is not None:
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
    for one in lanes:
        one.finished.result()  # a lane's unexpected error surfaces here
    return rec


async def _tick(rec: Recorder, report: Callable[[Recorder], None], end: int) -> None:
    while time.perf_counter_ns() < end + int(DRAIN_SECONDS * 1e9):
        report(rec)
        await asyncio.sleep(PROGRESS_EVERY)


def result_of(rec: Recorder) -> dict[str, Any]:
    return {
        "type": "result",
        "committed": len(rec.latencies),
        "errors": rec.errors,
        "error_kinds": rec.error_kinds,
        "per_second": rec.per_second,
        "histogram": LatencyHistogram.of(rec.latencies).to_json(),
    }


# ---------------------------------------------------------------------- the process


def _emit(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class _Control:
    """Reads the driver's lines on a thread; EOF (the driver is gone) stops the work."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.go: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.gone = asyncio.Event()
        threading.Thread(target=self._read, name="bench-control", daemon=True).start()

    def _read(self) -> None:
        for line in sys.stdin:
            doc = json.loads(line)
            if "go" in doc:
                self.loop.call_soon_threadsafe(self._set_go, doc["go"])
        self.loop.call_soon_threadsafe(self.gone.set)

    def _set_go(self, go: dict[str, Any]) -> None:
        if not self.go.done():
            self.go.set_result(go)


async def _main(spec: WorkerSpec) -> int:
    loop = asyncio.get_running_loop()
    control = _Control(loop)
    sessions = [open_session(spec, i) for i in range(spec.clients)]
    try:
        # One command per session first: connections are up and the leader is found
        # before the driver starts the clock.
        prime = command_payload(spec.app, spec.size, f"b{spec.index}.prime")
        await asyncio.gather(*(s.submit(prime) for s in sessions))
        _emit({"type": "ready", "pid": os.getpid()})
        gone: asyncio.Future[Any] = asyncio.ensure_future(control.gone.wait())
        first: list[asyncio.Future[Any]] = [control.go, gone]
        await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
        if not control.go.done():
            return 1
        go = control.go.result()
        # The driver's times are CLOCK_MONOTONIC (shared by all processes on the
        # machine); the lanes use perf_counter_ns.
        offset = time.perf_counter_ns() - time.monotonic_ns()
        window = Window(go["start"] + offset, go["end"] + offset, go["end"] + offset)

        def report(rec: Recorder) -> None:
            _emit({"type": "progress", "done": rec.done})

        work = asyncio.ensure_future(run_clients(spec, window, list(sessions), report))
        second: list[asyncio.Future[Any]] = [work, gone]
        await asyncio.wait(second, return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if not work.done():
            work.cancel()
            return 1
        _emit(result_of(work.result()))
        return 0
    finally:
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)


def main() -> int:
    line = sys.stdin.readline()
    if not line:
        return 2
    spec = WorkerSpec.from_json(json.loads(line)["spec"])
    try:
        return runloop.run(_main(spec))
    except Exception as e:  # reported to the driver, which prints it
        _emit({"type": "error", "message": f"{type(e).__name__}: {e}"})
        return 1


if __name__ == "__main__":
    sys.exit(main())
