"""The driver's side of the load: P worker processes, their lines, their results.

`LoadProcesses` starts `python -m paxoi.bench.worker` P times (subprocess, so the load
generator never shares an interpreter with the driver or the servers), hands each its
share of the clients, waits until every one is connected, starts them together on a
CLOCK_MONOTONIC schedule, relays their progress and collects their results. Each
process is its own child, known by PID; `close` ends only those.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from paxoi.bench.stats import LatencyHistogram, add_series
from paxoi.bench.worker import WorkerSpec


class LoadError(RuntimeError):
    """A load process failed or did not answer in time."""


def split_clients(clients: int, processes: int) -> list[int]:
    """`clients` spread over at most `processes` processes, as evenly as possible."""
    processes = max(1, min(processes, clients))
    base, extra = divmod(clients, processes)
    return [base + (1 if i < extra else 0) for i in range(processes)]


@dataclass
class _Worker:
    proc: subprocess.Popen[bytes]
    stdin: IO[bytes]
    buffer: bytes = b""
    ready: bool = False
    ready_doc: dict[str, Any] = field(default_factory=dict)
    going: bool = False
    done: int = 0
    result: dict[str, Any] | None = None
    error: str | None = None
    eof: bool = False
    log: Path | None = None


@dataclass
class LoadResult:
    committed: int
    errors: int
    error_kinds: dict[str, int]
    per_second: list[int]
    histogram: LatencyHistogram
    cpu_seconds: list[float | None] = field(default_factory=list)


class LoadProcesses:
    def __init__(
        self,
        specs: list[WorkerSpec] | list[dict[str, Any]],
        log_dir: Path | None = None,
        module: str = "paxoi.bench.worker",
        name: str = "load",
    ) -> None:
        """One process of `python -m <module>` per spec (a WorkerSpec, or the JSON spec of
        another module speaking the same protocol, such as `paxoi.bench.pso_node`)."""
        self.specs = specs
        self.log_dir = log_dir
        self.module = module
        self.name = name
        self.workers: list[_Worker] = []
        self._sel = selectors.DefaultSelector()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        for i, spec in enumerate(self.specs):
            log = None
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                log = self.log_dir / f"{self.name}-{i}.log"
            stderr = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-m", self.module],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    start_new_session=True,  # Ctrl-C reaches the driver, which stops us
                )
            finally:
                if not isinstance(stderr, int):
                    stderr.close()
            assert proc.stdin is not None and proc.stdout is not None
            worker = _Worker(proc, proc.stdin, log=log)
            self.workers.append(worker)
            os.set_blocking(proc.stdout.fileno(), False)
            self._sel.register(proc.stdout, selectors.EVENT_READ, worker)
            doc = spec.to_json() if isinstance(spec, WorkerSpec) else spec
            self._send(worker, {"spec": doc})

    def send_all(self, doc: dict[str, Any]) -> None:
        """One line to every process (a request its module understands)."""
        for w in self.workers:
            self._send(w, doc)

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers]

    def close(self) -> None:
        """Close their stdin (they stop), then SIGTERM, then SIGKILL: only our own PIDs."""
        for w in self.workers:
            with contextlib.suppress(OSError):
                w.stdin.close()
        deadline = time.monotonic() + 5.0
        for w in self.workers:
            try:
                w.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.terminate()
                try:
                    w.proc.wait(2.0)
                except subprocess.TimeoutExpired:
                    w.proc.kill()
                    w.proc.wait(5.0)
        for w in self.workers:
            if w.proc.stdout is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._sel.unregister(w.proc.stdout)
                w.proc.stdout.close()
        self._sel.close()

    def __enter__(self) -> LoadProcesses:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ protocol
    def _send(self, worker: _Worker, doc: dict[str, Any]) -> None:
        try:
            worker.stdin.write((json.dumps(doc) + "\n").encode())
            worker.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            worker.error = worker.error or f"cannot write to load process: {e}"

    def poll(self, timeout: float) -> None:
        """Read whatever the processes wrote within `timeout` seconds."""
        for key, _ in self._sel.select(max(0.0, timeout)):
            worker: _Worker = key.data
            stream = worker.proc.stdout
            assert stream is not None
            try:
                chunk = os.read(stream.fileno(), 1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                worker.eof = True
                self._sel.unregister(stream)
                continue
            worker.buffer += chunk
            *lines, worker.buffer = worker.buffer.split(b"\n")
            for line in lines:
                self._on_line(worker, line)

    def _on_line(self, worker: _Worker, line: bytes) -> None:
        try:
            doc = json.loads(line)
        except ValueError:
            return  # not ours (a stray print): ignored
        kind = doc.get("type")
        if kind == "ready":
            worker.ready = True
            worker.ready_doc = doc
        elif kind == "leader":
            worker.ready_doc = {**worker.ready_doc, "leader": doc.get("leader")}
        elif kind == "progress":
            worker.done = int(doc["done"])
        elif kind == "result":
            worker.result = doc
        elif kind == "error":
            worker.error = str(doc.get("message"))

    def check(self, what: str) -> None:
        """Raise LoadError if a process reported an error or exited before its result."""
        for w in self.workers:
            if w.error is not None:
                raise LoadError(f"load process {w.proc.pid}: {w.error}{self._log_hint(w)}")
            if w.eof and w.result is None:
                raise LoadError(
                    f"load process {w.proc.pid} exited (status {w.proc.poll()}) {what}"
                    f"{self._log_hint(w)}"
                )

    @staticmethod
    def _log_hint(w: _Worker) -> str:
        if w.log is None or not w.log.exists():
            return ""
        tail = w.log.read_text(errors="replace").strip().splitlines()[-3:]
        return f" ({w.log}: {' | '.join(tail)})" if tail else f" (log: {w.log})"

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(w.ready for w in self.workers):
            self.check("before it was ready")
            if time.monotonic() > deadline:
                raise LoadError(f"the load processes were not connected within {timeout:.0f} s")
            self.poll(min(0.1, deadline - time.monotonic()))

    def go(
        self, start: float, end: float, extra: list[dict[str, Any] | None] | None = None
    ) -> None:
        """Start the processes: measure from `start` to `end` (time.monotonic() values).

        `extra[i]` is added to process i's `go`; a None there leaves that process idle.
        A process may be started again after its result was collected.
        """
        for i, w in enumerate(self.workers):
            more = extra[i] if extra is not None else {}
            if more is None:
                w.going = False
                continue
            w.going, w.result, w.done = True, None, 0
            self._send(w, {"go": {"start": int(start * 1e9), "end": int(end * 1e9), **more}})

    def done(self) -> int:
        """Commands answered so far, warm-up included (for the progress line)."""
        return sum(w.done for w in self.workers if w.going)

    def cpu_seconds(self) -> list[float | None]:
        from paxoi.bench.cluster import proc_usage

        out: list[float | None] = []
        for w in self.workers:
            usage = proc_usage(w.proc.pid)
            out.append(usage[0] if usage else None)
        return out

    def collect(self, timeout: float) -> LoadResult:
        deadline = time.monotonic() + timeout
        going = [w for w in self.workers if w.going]
        while not all(w.result is not None for w in going):
            self.check("before it reported")
            if time.monotonic() > deadline:
                raise LoadError(f"the load processes did not report within {timeout:.0f} s")
            self.poll(min(0.1, deadline - time.monotonic()))
        results = [w.result for w in going if w.result is not None]
        hist = LatencyHistogram()
        kinds: dict[str, int] = {}
        for r in results:
            hist.merge(LatencyHistogram.from_json(r["histogram"]))
            for k, v in r["error_kinds"].items():
                kinds[k] = kinds.get(k, 0) + int(v)
        return LoadResult(
            committed=sum(int(r["committed"]) for r in results),
            errors=sum(int(r["errors"]) for r in results),
            error_kinds=kinds,
            per_second=add_series(r["per_second"] for r in results),
            histogram=hist,
        )
