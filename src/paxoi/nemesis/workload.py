"""The clients of a nemesis run: concurrent key-value operations, each one recorded.

Two kinds of client run side by side, each one operation at a time (a Jepsen process):

- workers (`--clients`) read and write: on register keys (`r0`, `r1`, ...) get, put and
  compare-and-set, on list keys (`l0`, `l1`, ...) get and append. Every value written is
  unique in the run (`v17`; list elements `e17;`), so a read says which write it saw and
  a list says which appends it holds, in which order. After 100 appends a list key is
  retired and its slot goes on with a fresh one (`l0.1`, `l0.2`, ...), as Jepsen's
  append workload does: every read and append result holds the whole list, so unbounded
  lists would make the history grow with the square of the run's length.
- readers (`--readers`) only read. Reader i first contacts server i mod n and stays with
  whichever server answers it; it gives up on a silent server only after 4 s (workers:
  1 s). So a leader that is paused or cut off keeps being asked while it is, and as it
  wakes: exactly when a leader that trusts an expired lease, or a follower that answers
  on its own, would return a stale value.

Reads go through the log (`--reads log`: a get command), or are lease reads answered by
the leader (`lease`), or stale reads answered by any server (`stale`: not linearizable,
for showing that the checker notices).

An operation that gets no answer within the timeout has an unknown outcome (recorded as
`info`). A worker then carries on as a new process with a new client id, as Jepsen's
processes do: the replicas apply each client id's commands in sequence order, so after a
command that may never be chosen, that id's next command could wait for ever. (A lease or
stale read that timed out has no sequence number, so readers keep their client.)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
from dataclasses import dataclass, field

from ..apps import kv
from ..client import AsyncClient
from ..client.history import HistoryRecorder, KVError, ReadFn, RecordingKV
from ..core.types import NodeId
from ..server.config import PaxoiConfig
from ..transport.runloop import cancel_and_wait

WORKLOADS = ("register", "append", "mixed")
READ_MODES = ("log", "lease", "stale")
#: Readers move away from a silent server after twice this (seconds); workers sooner.
READER_RETRY_INTERVAL = 2.0
WORKER_RETRY_INTERVAL = 0.5


def key_names(workload: str, keys: int) -> tuple[list[str], list[str]]:
    """The register keys and the list keys of a workload with `keys` keys in all (a mixed
    workload has at least one of each)."""
    if workload == "register":
        return [f"r{i}" for i in range(keys)], []
    if workload == "append":
        return [], [f"l{i}" for i in range(keys)]
    lists = max(1, keys // 2)
    registers = max(1, keys - lists)
    return [f"r{i}" for i in range(registers)], [f"l{i}" for i in range(lists)]


def element(n: int) -> str:
    """The n-th list element: a token no other element contains (`e12;` is not inside
    `e112;`), so a list's value parses back into its elements."""
    return f"e{n};"


@dataclass
class WorkloadOptions:
    workload: str = "mixed"
    keys: int = 8
    clients: int = 8
    readers: int = 3
    reads: str = "lease"
    op_timeout: float = 1.0
    seed: int | str = 0
    #: Appends to one list key before its slot moves on to a fresh key.
    max_appends: int = 100


@dataclass
class WorkloadStats:
    """What the clients saw, beyond the history: client errors by type, new clients."""

    errors: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0

    def error(self, exc: BaseException) -> None:
        name = type(exc).__name__
        self.errors[name] = self.errors.get(name, 0) + 1


class Workload:
    """Runs the clients until `stop()`; every operation lands in `recorder`."""

    def __init__(
        self, config: PaxoiConfig, recorder: HistoryRecorder, options: WorkloadOptions
    ) -> None:
        self.config = config
        self.recorder = recorder
        self.options = options
        self.registers, lists = key_names(options.workload, options.keys)
        #: The list key each list slot appends to now; it moves to a fresh key after
        #: `max_appends` appends, so no list (nor any event holding it) grows without bound.
        self.lists = list(lists)
        self._appends = [0] * len(lists)
        self._rolls = [0] * len(lists)
        #: Every list key used in the run (each one is read and checked at the end).
        self.used_lists: list[str] = list(lists)
        self.nodes: list[NodeId] = sorted(config.servers)
        self.stats = WorkloadStats()
        self._values = itertools.count(1)
        self._stopping = False

    @property
    def keys(self) -> list[str]:
        """Every key used so far: registers, and every list key (old ones included)."""
        return self.registers + self.used_lists

    def _list_key(self, slot: int) -> str:
        """The key of list slot `slot` for the next append (rolling over when full)."""
        if self._appends[slot] >= self.options.max_appends:
            self._rolls[slot] += 1
            self._appends[slot] = 0
            self.lists[slot] = f"l{slot}.{self._rolls[slot]}"
            self.used_lists.append(self.lists[slot])
        self._appends[slot] += 1
        return self.lists[slot]

    def stop(self) -> None:
        """No worker starts another operation (those under way finish or time out)."""
        self._stopping = True

    async def run(self, duration: float) -> None:
        """Run the clients for `duration` seconds, then let the operations under way end
        (each within its timeout); whatever is still pending then is cancelled, which
        records it as unknown."""
        o = self.options
        tasks = [
            asyncio.create_task(self._client(i, reader=False), name=f"worker-{i}")
            for i in range(o.clients)
        ]
        tasks += [
            asyncio.create_task(self._client(i, reader=True), name=f"reader-{i}")
            for i in range(o.readers)
        ]
        try:
            await asyncio.sleep(duration)
        finally:
            self.stop()
            _, pending = await asyncio.wait(tasks, timeout=o.op_timeout * 2 + 2.0)
            for task in pending:
                task.cancel()
            for task in tasks:
                await cancel_and_wait(task)

    # ------------------------------------------------------------------ one client
    def _new_client(
        self,
        i: int,
        reader: bool,
        gen: int,
        avoid: NodeId | None = None,
        rng: random.Random | None = None,
    ) -> AsyncClient:
        role = "reader" if reader else "worker"
        client = AsyncClient.from_config(
            self.config,
            name=f"nemesis-{role}{i}-{gen}",
            timeout=self.options.op_timeout,
            retry_interval=READER_RETRY_INTERVAL if reader else WORKER_RETRY_INTERVAL,
            max_outstanding=1,
        )
        if reader:
            client.target = self.nodes[i % len(self.nodes)]
        elif avoid is not None and rng is not None and len(self.nodes) > 1:
            # Not the server that just left us without an answer (it may be down or asleep).
            client.target = rng.choice([n for n in self.nodes if n != avoid])
        return client

    async def _client(self, i: int, *, reader: bool) -> None:
        rng = random.Random(f"nemesis-client/{self.options.seed}/{int(reader)}/{i}")
        seen: dict[str, str | None] = {}
        gen = 0
        failed: NodeId | None = None
        while not self._stopping:
            client = self._new_client(i, reader, gen, failed, rng)
            process = f"{'r' if reader else 'c'}{i}" + (f".{gen}" if gen else "")
            read = None if self.options.reads == "log" else self._read_fn(client)
            rkv = RecordingKV(
                client, self.recorder, process=process, timeout=self.options.op_timeout, read=read
            )
            try:
                while not self._stopping:
                    if not await self._one(rkv, rng, reader, seen):
                        break
            finally:
                failed = client.target
                with contextlib.suppress(Exception):
                    await client.close()
            gen += 1
            self.stats.reconnects += 1

    def _read_fn(self, client: AsyncClient) -> ReadFn:
        mode = self.options.reads
        timeout = self.options.op_timeout

        async def read(key: str) -> str | None:
            raw = await client.read(kv.get(key), mode=mode, timeout=timeout)
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = None
            if not isinstance(doc, dict) or doc.get("ok") is not True:
                raise KVError(f"read {key!r}: unexpected reply {raw!r}")
            value = doc.get("value")
            if value is not None and not isinstance(value, str):
                raise KVError(f"read {key!r}: unexpected value {value!r}")
            return value

        return read

    async def _one(
        self, rkv: RecordingKV, rng: random.Random, reader: bool, seen: dict[str, str | None]
    ) -> bool:
        """One operation; False when its outcome is unknown and the client must be new."""
        current = self.registers + self.lists
        pick = rng.randrange(len(current))
        key = current[pick]
        is_list = pick >= len(self.registers)
        r = rng.random()
        through_log = self.options.reads == "log"
        try:
            if reader or (is_list and r < 0.3) or (not is_list and r < 0.4):
                seen[key] = await rkv.get(key)
            elif is_list:
                key = self._list_key(pick - len(self.registers))
                await rkv.append(key, element(next(self._values)))
            elif r < 0.7:
                value = f"v{next(self._values)}"
                await rkv.put(key, value)
                seen[key] = value
            else:
                value = f"v{next(self._values)}"
                result = await rkv.cas(key, seen.get(key), value)
                seen[key] = result.value
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.stats.error(e)
            wrote = not (reader or (is_list and r < 0.3) or (not is_list and r < 0.4))
            if wrote or through_log:
                return False
            await asyncio.sleep(0.01)  # a lease read refused or timed out: ask again
        return True


__all__ = [
    "READ_MODES",
    "WORKLOADS",
    "Workload",
    "WorkloadOptions",
    "WorkloadStats",
    "element",
    "key_names",
]
