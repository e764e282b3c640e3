"""One PySyncObj replica for `bench/compare_pysyncobj.py`, run as
`python -m paxoi.bench.pso_node` (needs `pysyncobj`, in the `bench` extra).

The replicated object is a chat room like paxoi's: `post(message)` appends the message
and returns how many there are. PySyncObj has no client protocol: its callers live in
the replica processes. So a driving replica issues the commands itself, `in_flight`
closed loops each re-issuing from the completion callback (which PySyncObj runs on its
tick thread), and measures each command with `perf_counter_ns` exactly as paxoi's load
processes do, inside the same kind of window. The asymmetry is PySyncObj's advantage: no
client connection, no client-side encode/decode, no extra process, no network hop for
commands issued on the leader.

Same JSON-lines protocol as `paxoi.bench.worker`: stdin gets `{"spec": ...}` then
`{"go": ...}` (or nothing, for a replica that does not drive), or `{"ask": "leader"}`;
stdout gets `ready` and `leader` (with the leader it knows of), `progress` and `result`. A closed stdin stops the replica.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from paxoi.bench.stats import LatencyHistogram
from paxoi.bench.worker import DRAIN_SECONDS, PROGRESS_EVERY, Recorder, Window, make_payload

#: PySyncObj's settings for speed on one machine, common to every profile below: a
#: short tick, large batches, socket buffers and commands queue, no dynamic membership,
#: no log compaction during a run. The log stays in memory: no journal file (and
#: PySyncObj's journal never fsyncs anyway).
FAST_CONF: dict[str, Any] = {
    "appendEntriesUseBatch": True,
    "appendEntriesPeriod": 0.002,
    "autoTickPeriod": 0.001,
    "raftMinTimeout": 0.4,
    "raftMaxTimeout": 1.0,
    "connectionTimeout": 3.5,
    "commandsQueueSize": 1_000_000,
    "appendEntriesBatchSizeBytes": 1 << 20,
    "sendBufferSize": 1 << 21,
    "recvBufferSize": 1 << 21,
    "dynamicMembershipChange": False,
    "logCompactionMinEntries": 1 << 40,
    "logCompactionMinTime": 1 << 30,
    "journalFile": None,
    "fullDumpFile": None,
}

#: No single setting is PySyncObj's fastest everywhere: unbatched AppendEntries (one
#: per command, sent at once) give the lowest latency at low load; batched ones, sent
#: every `appendEntriesPeriod`, the highest throughput at high load, the longer period
#: the deeper the load. The comparison runs each profile and keeps, per point, the one
#: with the highest throughput (in a closed loop with a fixed number of commands in
#: flight, that is also the lowest mean latency).
PROFILES: dict[str, dict[str, Any]] = {
    "nobatch": {"appendEntriesUseBatch": False},
    "batch2ms": {"appendEntriesUseBatch": True, "appendEntriesPeriod": 0.002},
    "batch10ms": {"appendEntriesUseBatch": True, "appendEntriesPeriod": 0.01},
}


@dataclass
class NodeSpec:
    self_addr: str
    partners: list[str]
    size: int = 16
    conf: dict[str, Any] = field(default_factory=dict)
    max_commands_per_lane: int = 50_000_000

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def make_room(spec: NodeSpec) -> Any:
    from pysyncobj import SyncObj, SyncObjConf, replicated

    class ChatRoom(SyncObj):
        def __init__(self) -> None:
            conf = SyncObjConf(**{**FAST_CONF, **spec.conf})
            super().__init__(spec.self_addr, spec.partners, conf)
            self.__messages: list[bytes] = []

        @replicated
        def post(self, message: bytes) -> int:
            self.__messages.append(message)
            return len(self.__messages)

    return ChatRoom()


def _emit(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class Driver:
    """`in_flight` closed loops on one replica, re-issued from completion callbacks."""

    def __init__(self, room: Any, spec: NodeSpec, in_flight: int, window: Window) -> None:
        self.room = room
        self.rec = Recorder(window)
        self.in_flight = in_flight
        self.limit = spec.max_commands_per_lane
        self.payloads = [make_payload(spec.size, f"p{i} ") for i in range(in_flight)]
        self.lock = threading.Lock()
        self.active = in_flight
        self.finished = threading.Event()

    def start(self) -> None:
        for lane in range(self.in_flight):
            self._issue(lane, 0)

    def _issue(self, lane: int, count: int) -> None:
        sent = time.perf_counter_ns()
        if sent >= self.rec.window.stop or count >= self.limit:
            with self.lock:
                self.active -= 1
                if self.active == 0:
                    self.finished.set()
            return
        self.room.post(self.payloads[lane], callback=self._callback(lane, count, sent))

    def _callback(self, lane: int, count: int, sent: int) -> Callable[[Any, int], None]:
        def done(result: Any, error: int) -> None:
            now = time.perf_counter_ns()
            with self.lock:
                if error == 0:
                    self.rec.ok(sent, now)
                else:
                    self.rec.failed(now, RuntimeError(f"FAIL_REASON {error}"))
            self._issue(lane, count + 1)

        return done


def main() -> int:
    line = sys.stdin.readline()
    if not line:
        return 2
    doc = json.loads(line)["spec"]
    spec = NodeSpec(**doc)
    room = make_room(spec)
    try:
        deadline = time.monotonic() + 60.0
        while not (room.isReady() and room._getLeader() is not None):
            if time.monotonic() > deadline:
                _emit({"type": "error", "message": "no PySyncObj leader within 60 s"})
                return 1
            time.sleep(0.01)
        # a first command through the whole path before the clock starts
        room.post(make_payload(spec.size, "prime "), sync=True, timeout=30)
        _emit({"type": "ready", "leader": _leader(room)})
        for line in sys.stdin:
            msg = json.loads(line)
            if "go" in msg:
                _drive(room, spec, msg["go"])
            elif msg.get("ask") == "leader":
                _emit({"type": "leader", "leader": _leader(room)})
        return 0
    finally:
        room.destroy()


def _leader(room: Any) -> str | None:
    """The address of the leader this replica knows of."""
    leader = room._getLeader()
    return None if leader is None else str(leader.address)


def _drive(room: Any, spec: NodeSpec, go: dict[str, Any]) -> None:
    offset = time.perf_counter_ns() - time.monotonic_ns()
    window = Window(go["start"] + offset, go["end"] + offset, go["end"] + offset)
    driver = Driver(room, spec, int(go["in_flight"]), window)
    driver.start()
    give_up = window.stop + int(DRAIN_SECONDS * 1e9)
    while not driver.finished.is_set() and time.perf_counter_ns() < give_up:
        with driver.lock:
            done = driver.rec.done
        _emit({"type": "progress", "done": done})
        driver.finished.wait(PROGRESS_EVERY)
    with driver.lock:
        rec = driver.rec
        _emit(
            {
                "type": "result",
                "committed": len(rec.latencies),
                "errors": rec.errors,
                "error_kinds": dict(rec.error_kinds),
                "per_second": list(rec.per_second),
                "histogram": LatencyHistogram.of(rec.latencies).to_json(),
            }
        )


if __name__ == "__main__":
    sys.exit(main())
