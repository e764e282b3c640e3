"""Helpers for the real-process crash tests (issue 3): a cluster in a temporary directory,
a client load running in a background thread, and the end-of-test checks on the replicas'
chat logs.

Everything here talks to 127.0.0.1 only and signals only processes it started itself
(through LocalCluster, by PID).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paxoi.client import AsyncClient, ClientError
from paxoi.core.types import NodeId
from paxoi.server.config import PaxoiConfig, free_ports, local_config
from paxoi.server.local import LocalCluster
from paxoi.wire.messages import StatusReply

#: How long one command may take before the load gives up on it (outcome unknown) and
#: continues with a new client id. Long enough to ride out a leader's death.
SUBMIT_TIMEOUT = 8.0


# -- the cluster ---------------------------------------------------------------------------


def make_config(workdir: Path, cluster: str = "crash", **extra: Any) -> PaxoiConfig:
    return local_config(1, 0, workdir / "data", cluster=cluster, ports=free_ports(3), **extra)


@contextlib.contextmanager
def running_cluster(
    workdir: Path, *, cluster: str = "crash", start: bool = True
) -> Iterator[LocalCluster]:
    """A 3-server LocalCluster in `workdir`, stopped (by PID) however the test ends."""
    c = LocalCluster(make_config(workdir, cluster), workdir)
    try:
        if start:
            c.start()
            c.wait_leader(20)
        yield c
    finally:
        c.stop()


def log_tails(c: LocalCluster, lines: int = 15) -> str:
    """The end of every server's own log, to explain a failure."""
    out = []
    for node in sorted(c.config.servers):
        path = c.log_dir / f"node-{node}.log"
        text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
        out.append(f"--- node {node} ---\n" + "\n".join(text))
    return "\n".join(out)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def wait_answers(c: LocalCluster, node: NodeId, timeout: float = 15.0) -> None:
    """Until `node` answers status (it is listening and has loaded its state)."""
    wait_until(lambda: c.status(node, 0.5) is not None, timeout, f"node {node} to answer status")


def wait_converged(c: LocalCluster, at_least: int = 0, timeout: float = 30.0) -> int:
    """Until every server answers and all report the same applied count (>= at_least)."""
    seen: list[dict[NodeId, StatusReply | None]] = []

    def converged() -> bool:
        st = c.statuses(1.0)
        seen.append(st)
        applied = {s.applied for s in st.values() if s is not None}
        return None not in st.values() and len(applied) == 1 and applied.pop() >= at_least

    try:
        wait_until(converged, timeout, f"all servers to apply the same count >= {at_least}")
    except AssertionError as e:
        last = {n: (s.applied if s else None) for n, s in (seen[-1] if seen else {}).items()}
        raise AssertionError(f"{e}; last applied counts {last}\n{log_tails(c)}") from None
    return next(s.applied for s in seen[-1].values() if s is not None)


# -- the load ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    client: str
    seq: int
    message: str
    #: The slot the command's result names (where it landed), or None if unknown.
    slot: int | None = None


@dataclass
class Load:
    """`clients` AsyncClients with one command outstanding each, in a background thread.

    Each client's n-th submit carries seq n (one outstanding at a time), so every command
    is known as (client id, seq, message). A command that times out has an unknown
    outcome: it goes to `unknown`, and that worker goes on with a new client id (the
    replicas would skip a later seq of the same client forever). `stop()` lets every
    in-flight command finish (or time out), so a stopped load leaves nothing in flight.
    Bounded: at most `max_per_client` commands per worker and `max_seconds` in all.
    """

    config: PaxoiConfig
    clients: int = 3
    max_per_client: int = 100_000
    max_seconds: float = 90.0
    acked: list[Sent] = field(default_factory=list)
    unknown: list[Sent] = field(default_factory=list)
    #: Client errors (timeouts, refusals): possible under faults, reported.
    errors: list[str] = field(default_factory=list)
    #: Anything else a worker raised: a failure of the test's own machinery.
    crashes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="crash-load", daemon=True)

    def start(self) -> Load:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the load thread did not start")
        return self

    def stop(self, timeout: float = 20.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError("the load thread did not stop")

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def count(self) -> int:
        return len(self.acked)

    def wait_acked(self, n: int, timeout: float, what: str = "") -> None:
        """Until at least `n` commands are acknowledged in all: the load is progressing."""
        wait_until(
            lambda: self.count >= n or not self._thread.is_alive(),
            timeout,
            f"{n} acknowledged commands (have {self.count}) {what}".strip(),
        )
        if self.count < n:
            raise AssertionError(f"the load stopped at {self.count} < {n}: {self.errors}")

    # -- the thread ----------------------------------------------------------------------

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        workers = [asyncio.create_task(self._worker(k)) for k in range(self.clients)]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), self.max_seconds)
        self._stop.set()
        # Let each worker finish the command it has in flight, so that a stopped load
        # leaves nothing behind that could still be decided; cancel only stragglers.
        _, late = await asyncio.wait(workers, timeout=SUBMIT_TIMEOUT + 2)
        for w in late:
            w.cancel()
        for outcome in await asyncio.gather(*workers, return_exceptions=True):
            if isinstance(outcome, Exception):
                self.crashes.append(repr(outcome))

    async def _worker(self, k: int) -> None:
        assert self._stop is not None
        # Check the stop flag as well as relying on cancellation: on Python 3.11 a
        # wait_for (inside submit) can swallow a cancel that races with its result.
        done = 0
        while done < self.max_per_client and not self._stop.is_set():
            client = AsyncClient.from_config(
                self.config, name=f"load{k}", timeout=SUBMIT_TIMEOUT, retry_interval=0.3
            )
            try:
                seq = 0
                while done < self.max_per_client and not self._stop.is_set():
                    seq += 1
                    message = f"w{k} {seq} {client.id[-6:]}"
                    try:
                        result = await client.submit(message)
                    except asyncio.CancelledError:
                        self.unknown.append(Sent(client.id, seq, message))
                        raise
                    except ClientError as e:  # SubmitTimeout, ServerRefused, ClientClosed
                        self.unknown.append(Sent(client.id, seq, message))
                        self.errors.append(f"{type(e).__name__}: {e}")
                        break
                    slot = int(result) if result.isdigit() else None
                    self.acked.append(Sent(client.id, seq, message, slot))
                    done += 1
            finally:
                await client.close()


# -- the checks ----------------------------------------------------------------------------


def parse_log(data: bytes) -> list[tuple[int, str, int, str]]:
    """A chat.log as (slot, sender, seq, message) lines; fails on a malformed line."""
    entries = []
    for line in data.decode("utf-8").splitlines():
        slot, sender, seq, message = line.split("\t")
        entries.append((int(slot), sender, int(seq), message))
    return entries


def wait_logs_identical(c: LocalCluster, timeout: float = 15.0) -> bytes:
    """Until all replicas' chat.log files are byte-identical (the file is written just after
    the state a status reports, so poll); returns the common content."""
    logs: dict[NodeId, bytes] = {}

    def identical() -> bool:
        logs.update({n: c.chat_log(n) for n in c.config.servers})
        return len(set(logs.values())) == 1

    try:
        wait_until(identical, timeout, "identical chat logs")
    except AssertionError as e:
        sizes = {n: (len(b), b.count(b"\n")) for n, b in logs.items()}
        raise AssertionError(f"{e}: (bytes, lines) per node {sizes}") from None
    return next(iter(logs.values()))


def check_log(data: bytes, acked: list[Sent], unknown: list[Sent]) -> None:
    """Every acknowledged command exactly once, where its ack said; nothing twice."""
    entries = parse_log(data)
    assert entries, "the chat log is empty"
    slots = [e[0] for e in entries]
    assert slots == sorted(slots), "the chat log is not in slot order"
    where = {(sender, seq): (slot, msg) for slot, sender, seq, msg in entries}
    counts = Counter((sender, seq) for _, sender, seq, _ in entries)
    dups = {k: n for k, n in counts.items() if n > 1}
    assert not dups, f"commands applied more than once: {list(dups.items())[:10]}"

    missing = [a for a in acked if (a.client, a.seq) not in where]
    assert not missing, f"{len(missing)} acknowledged commands lost, e.g. {missing[:5]}"
    for a in acked:
        slot, msg = where[(a.client, a.seq)]
        assert msg == a.message, f"{a}: the log holds {msg!r} for it"
        if a.slot is not None:
            assert slot == a.slot, f"{a}: acknowledged at slot {a.slot}, logged at slot {slot}"
    # Everything in the log was submitted by someone (the load or the final probe).
    known = {(s.client, s.seq): s.message for s in [*acked, *unknown]}
    for _, sender, seq, msg in entries:
        if sender.startswith("load"):
            assert known.get((sender, seq)) == msg, f"unexpected entry {sender} {seq} {msg!r}"


def submit_one(config: PaxoiConfig, message: str, timeout: float = 15.0) -> Sent:
    """One command through a fresh client; fails the test if it is not acknowledged."""

    async def go() -> Sent:
        async with AsyncClient.from_config(config, name="probe", timeout=timeout) as client:
            result = await client.submit(message)
            return Sent(client.id, 1, message, int(result))

    return asyncio.run(go())


def final_check(c: LocalCluster, load: Load) -> None:
    """Restart whatever is down, wait for convergence, check every replica's log, and
    check that the cluster serves a new command that then reaches every log."""
    assert not load.crashes, load.crashes
    c.start()  # only the servers that are not running
    top = max((a.slot for a in load.acked if a.slot is not None), default=-1)
    applied = wait_converged(c, at_least=top + 1)
    data = wait_logs_identical(c)
    check_log(data, load.acked, load.unknown)
    for node in c.config.servers:
        assert c.alive(node), f"node {node} exited:\n{log_tails(c)}"
    probe = submit_one(c.config, "after the storm")
    assert probe.slot is not None and probe.slot >= applied, (probe, applied)
    wait_converged(c, at_least=probe.slot + 1)
    data = wait_logs_identical(c)
    check_log(data, [*load.acked, probe], load.unknown)
