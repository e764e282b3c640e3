"""Random linearizable histories, from a simulated concurrent key-value store.

Simulated clients each run one operation at a time against a real `KVStore`: an operation
is invoked, takes effect atomically at a random instant inside its interval (so
concurrent operations overlap and interleave), and completes with the store's answer,
mapped to a history event by `paxoi.client.history.outcome` exactly as `RecordingKV`
maps a real reply. Some operations end `info`: half of those never take effect, the other
half take effect at a random instant that may fall after the client gave up (the client
then carries on as a new process, as Jepsen's do). Written values are distinct, as a
test workload's should be. Every history produced is linearizable by construction; the
tests and the performance figures use them, and mutate them to get violations.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Sequence
from dataclasses import dataclass

from paxoi.apps import kv
from paxoi.apps.kv import KVStore
from paxoi.client.history import Event, Function, HistoryRecorder, outcome

#: The default mix of operations: mostly reads and writes, some cas and appends.
DEFAULT_MIX: dict[Function, float] = {"get": 0.4, "put": 0.25, "cas": 0.2, "append": 0.15}


@dataclass
class _Op:
    id: int
    f: Function
    key: str
    value: str | None
    expect: str | None
    info: bool
    type: str = "info"
    result: object = None


def random_history(
    operations: int = 1000,
    keys: int = 10,
    clients: int = 5,
    *,
    seed: int = 0,
    info_rate: float = 0.02,
    mix: dict[Function, float] | None = None,
    max_duration_us: int = 200,
    max_think_us: int = 20,
) -> list[Event]:
    """A linearizable history of `operations` ops by `clients` concurrent clients."""
    rng = random.Random(seed)
    mix = mix or DEFAULT_MIX
    functions: Sequence[Function] = list(mix)
    weights = [mix[f] for f in functions]
    key_names = [f"k{i}" for i in range(keys)]
    store = KVStore()
    written: dict[str, list[str]] = {k: [] for k in key_names}
    now = 0
    recorder = HistoryRecorder(clock=lambda: 1_000_000_000 + now * 1000)
    process = [f"c{c}" for c in range(clients)]
    restarts = [0] * clients

    # (time in us, tie-break, what, client, op id)
    queue: list[tuple[int, int, str, int, int]] = []
    seq = 0
    ops: dict[int, _Op] = {}
    invoked = 0

    def push(t: int, what: str, client: int, op_id: int) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(queue, (t, seq, what, client, op_id))

    for c in range(clients):
        push(rng.randint(0, max_think_us), "invoke", c, -1)

    while queue:
        now, _, what, c, op_id = heapq.heappop(queue)
        if what == "invoke":
            if invoked >= operations:
                continue
            invoked += 1
            key = rng.choice(key_names)
            f = rng.choices(functions, weights)[0]
            value = expect = None
            if f != "get":
                value = f"{len(ops)}." if f == "append" else f"v{len(ops)}"
            if f == "cas":
                history = written[key]
                r = rng.random()
                if r < 0.6:
                    expect = store.read(key)
                elif r < 0.9 and history:
                    expect = rng.choice(history)
            new_id = recorder.invoke(process[c], f, key, value, expect)
            op = ops[new_id] = _Op(new_id, f, key, value, expect, rng.random() < info_rate)
            duration = rng.randint(1, max_duration_us)
            if not op.info:
                push(now + rng.randint(0, duration), "apply", c, new_id)
            elif rng.random() < 0.5:
                push(now + rng.randint(0, 3 * duration), "apply", c, new_id)
            push(now + duration, "complete", c, new_id)
        elif what == "apply":
            op = ops[op_id]
            if op.f == "get":
                payload = kv.get(op.key)
            elif op.f == "put":
                payload = kv.put(op.key, op.value or "")
            elif op.f == "cas":
                payload = kv.cas(op.key, op.expect, op.value or "")
            else:
                payload = kv.append(op.key, op.value or "")
            op.type, op.result = outcome(op.f, store.execute(payload))
            if op.f != "get" and (op.f != "cas" or op.type == "ok"):
                current = store.read(op.key)
                assert current is not None
                written[op.key].append(current)
        else:  # complete
            op = ops[op_id]
            if op.info:
                recorder.info(op_id)
                restarts[c] += 1
                process[c] = f"c{c}.{restarts[c]}"  # a new process, as after a crash
            elif op.type == "ok":
                recorder.ok(op_id, op.result)
            else:
                recorder.fail(op_id, op.result)
            push(now + rng.randint(0, max_think_us), "invoke", c, -1)
    return recorder.events
