"""The linearizability checker: known verdicts, explanations, random and mutated histories,
a brute-force cross-check, the time budget, and `paxoi check-linear`."""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from paxoi.apps import kv
from paxoi.apps.kv import KVStore
from paxoi.check.linear import check_history, random_history
from paxoi.check.linear import search as search_module
from paxoi.check.linear.checker import build_ops, prepare
from paxoi.check.linear.search import search
from paxoi.cli.main import main
from paxoi.client.history import Event, HistoryError, outcome


class H:
    """A history written by hand: each op with its interval [start, end] in ticks."""

    def __init__(self) -> None:
        self._events: list[tuple[int, int, Event]] = []
        self._ids = itertools.count()

    def op(
        self,
        f: str,
        key: str,
        start: int,
        end: int | None,
        *,
        value: str | None = None,
        expect: str | None = None,
        result: Any = None,
        type: str = "ok",
        process: str = "p",
    ) -> int:
        """Add one op; `end` None leaves it without completion (pending forever)."""
        op_id = next(self._ids)
        inv = Event("invoke", op_id, process, f, key, value, expect, None, start)  # type: ignore[arg-type]
        self._events.append((start, len(self._events), inv))
        if end is not None:
            done = dataclasses.replace(inv, type=type, result=result, time=end)  # type: ignore[arg-type]
            self._events.append((end, len(self._events), done))
        return op_id

    def get(self, key: str, start: int, end: int | None, result: str | None, **kw: Any) -> int:
        return self.op("get", key, start, end, result=result, **kw)

    def put(self, key: str, value: str, start: int, end: int | None, **kw: Any) -> int:
        return self.op("put", key, start, end, value=value, **kw)

    def append(
        self, key: str, value: str, start: int, end: int | None, result: Any, **kw: Any
    ) -> int:
        return self.op("append", key, start, end, value=value, result=result, **kw)

    def cas(
        self, key: str, expect: str | None, value: str, start: int, end: int | None,
        *, swapped: bool = True, found: str | None = None, **kw: Any,
    ) -> int:  # fmt: skip
        if kw.get("type") == "info":
            return self.op("cas", key, start, end, value=value, expect=expect, **kw)
        if swapped:
            result = {"swapped": True, "value": value}
            return self.op("cas", key, start, end, value=value, expect=expect, result=result, **kw)
        result = {"swapped": False, "value": found}
        return self.op("cas", key, start, end, value=value, expect=expect, result=result,
                       type="fail", **kw)  # fmt: skip

    def events(self) -> list[Event]:
        return [e for _, _, e in sorted(self._events, key=lambda x: (x[0], x[1]))]


def replay_ok(events: list[Event], order: list[int]) -> bool:
    """Whether `order` (op ids) is a legal linearization: replayed through a real KVStore,
    every op that completed definitely gives its recorded outcome, and real time holds."""
    inv = {e.id: e for e in events if e.type == "invoke"}
    done = {e.id: e for e in events if e.type != "invoke"}
    store = KVStore()
    placed: set[int] = set()
    for op_id in order:
        e = inv[op_id]
        for other, d in done.items():  # every op that returned before this call is placed
            definite = d.type == "ok" or (d.type == "fail" and d.result is not None)
            if definite and d.time < e.time and other not in placed:
                return False
        placed.add(op_id)
        got = outcome(e.f, store.execute(_payload(e)))
        completion = done.get(op_id)
        expected = None if completion is None else (completion.type, completion.result)
        if expected is not None and expected[0] != "info" and got != expected:
            return False
    required = {i for i, d in done.items() if d.type == "ok" or (d.type == "fail" and d.result)}
    return required <= placed


def _payload(e: Event) -> bytes:
    if e.f == "get":
        return kv.get(e.key)
    if e.f == "put":
        return kv.put(e.key, e.value or "")
    if e.f == "cas":
        return kv.cas(e.key, e.expect, e.value or "")
    return kv.append(e.key, e.value or "")


# -- Linearizable histories ------------------------------------------------------------------


def test_sequential_history_is_linearizable_with_a_valid_witness() -> None:
    h = H()
    h.get("x", 0, 1, None)
    h.put("x", "a", 2, 3)
    h.get("x", 4, 5, "a")
    h.cas("x", "a", "b", 6, 7)
    h.cas("x", "a", "c", 8, 9, swapped=False, found="b")
    h.append("x", "1", 10, 11, "b1")
    h.append("y", "z", 12, 13, "z")
    h.get("y", 14, 15, "z")
    events = h.events()
    r = check_history(events)
    assert r.ok and r.status == "linearizable"
    assert r.counts == {"ok": 7, "fail": 1, "info": 0}
    assert set(r.keys) == {"x", "y"}
    for key_result in r.keys.values():
        mine = [e for e in events if e.key == key_result.key]
        assert replay_ok(mine, key_result.order)
        assert not replay_ok(mine, key_result.order[::-1])  # the replay can say no


def test_concurrent_writes_may_take_effect_in_either_order() -> None:
    h = H()
    h.put("x", "a", 0, 10)
    h.put("x", "b", 1, 11)
    h.get("x", 2, 3, "b")  # b took effect first ...
    h.get("x", 4, 5, "a")  # ... then a, both inside their intervals
    h.get("x", 12, 13, "a")
    assert check_history(h.events()).ok


def test_a_read_overlapping_a_write_may_see_either_value() -> None:
    for seen in (None, "a"):
        h = H()
        h.put("x", "a", 0, 10)
        h.get("x", 5, 6, seen)
        assert check_history(h.events()).ok


def test_unknown_write_that_took_effect_late() -> None:
    h = H()
    h.put("x", "a", 0, 1)
    h.put("x", "b", 2, 3, type="info")  # timed out ...
    h.get("x", 4, 5, "a")
    h.get("x", 6, 7, "b")  # ... and took effect after the client gave up
    assert check_history(h.events()).ok


def test_unknown_write_that_never_happened() -> None:
    h = H()
    h.put("x", "a", 0, 1)
    h.put("x", "b", 2, 3, type="info")
    h.append("x", "c", 2, 3, None, type="info")
    h.cas("x", "a", "d", 2, 3, type="info")
    h.get("x", 4, 5, "a")
    h.get("x", 10, 11, "a")
    assert check_history(h.events()).ok


def test_unknown_append_and_cas_that_took_effect() -> None:
    h = H()
    h.put("x", "a", 0, 1)
    h.append("x", "1", 2, 3, None, type="info")
    h.cas("x", "a1", "b", 2, 3, type="info")
    h.append("x", "2", 6, 7, "b2")
    assert check_history(h.events()).ok


def test_invocation_without_completion_is_unknown() -> None:
    h = H()
    h.put("x", "a", 0, None)
    h.get("x", 5, 6, "a")
    r = check_history(h.events())
    assert r.ok and r.counts["info"] == 1


def test_failed_commands_without_result_did_nothing() -> None:
    h = H()
    h.put("x", "a", 0, 1, type="fail")
    h.append("x", "b", 2, 3, None, type="fail")
    h.get("x", 4, 5, None)
    assert check_history(h.events()).ok


def test_empty_history() -> None:
    r = check_history([])
    assert r.ok and r.keys == {} and r.operations == 0


# -- Violations --------------------------------------------------------------------------------


def _bad(events: list[Event]) -> str:
    r = check_history(events)
    assert r.status == "not-linearizable" and not r.ok
    return r.explanation


def test_stale_read() -> None:
    h = H()
    h.put("x", "a", 0, 1)
    h.put("x", "b", 2, 3)
    stale = h.get("x", 4, 5, "a", process="reader")
    text = _bad(h.events())
    assert "key 'x'" in text
    assert f"op {stale} (reader) get: read 'a'" in text
    assert "read 'a' but the value is 'b'" in text


def test_read_from_the_future() -> None:
    h = H()
    h.get("x", 0, 1, "a")
    h.put("x", "a", 2, 3)
    assert "read 'a' but the value is absent" in _bad(h.events())


def test_lost_write() -> None:
    h = H()
    h.put("x", "a", 0, 1)
    h.put("x", "b", 2, 3)
    h.get("x", 4, 5, "a")
    h.get("x", 6, 7, "a")
    _bad(h.events())


def test_lost_write_on_an_absent_key() -> None:
    h = H()
    h.put("x", "a", 0, 1)
    h.get("x", 2, 3, None)
    _bad(h.events())


def test_duplicated_append() -> None:
    h = H()
    h.append("x", "1,", 0, 1, "1,")
    h.append("x", "2,", 2, 3, "1,2,")
    h.get("x", 4, 5, "1,2,2,")
    text = _bad(h.events())
    assert "read '1,2,2,' but the value is '1,2,'" in text


def test_append_result_disagreeing_with_the_state() -> None:
    h = H()
    h.put("x", "a", 0, 1)
    h.append("x", "1", 2, 3, "1")  # as if the put were lost
    assert "returned '1' but the value is 'a', so it would be 'a1'" in _bad(h.events())


def test_cas_swapped_from_a_value_the_key_did_not_hold() -> None:
    h = H()
    h.put("x", "a", 0, 1)
    h.cas("x", "z", "b", 2, 3)
    assert "swapped, expecting 'z', but the value is 'a'" in _bad(h.events())


def test_cas_refused_although_the_value_was_expected() -> None:
    h = H()
    h.put("x", "a", 0, 1)
    h.cas("x", "a", "b", 2, 3, swapped=False, found="a")
    assert "which is what it expected" in _bad(h.events())


def test_cas_refused_reporting_a_value_the_key_did_not_hold() -> None:
    h = H()
    h.put("x", "a", 0, 1)
    h.cas("x", "q", "b", 2, 3, swapped=False, found="c")
    assert "refused, finding 'c', but the value is 'a'" in _bad(h.events())


def test_cas_swap_not_seen_by_a_later_read() -> None:
    h = H()
    h.put("x", "a", 0, 1)
    h.cas("x", "a", "b", 2, 3)
    h.get("x", 4, 5, "a")
    _bad(h.events())


def test_two_swaps_from_the_same_value() -> None:
    h = H()
    h.put("x", "a", 0, 1)
    h.cas("x", "a", "b", 2, 10)
    h.cas("x", "a", "c", 3, 11)  # concurrent, but only one can find "a"
    _bad(h.events())


def test_read_of_a_value_never_written() -> None:
    h = H()
    h.put("x", "a", 0, 1)
    h.get("x", 2, 3, "ghost")
    text = _bad(h.events())
    assert "read 'ghost'" in text


def test_violation_in_one_key_only_names_that_key() -> None:
    h = H()
    h.put("good", "a", 0, 1)
    h.get("good", 2, 3, "a")
    h.put("bad", "a", 0, 1)
    h.get("bad", 2, 3, "b")
    r = check_history(h.events())
    assert not r.ok
    assert r.keys["good"].ok and r.keys["bad"].status == "not-linearizable"
    assert "key 'bad'" in r.explanation and "key 'good'" not in r.explanation
    assert "'bad'" in r.render().splitlines()[0]


def test_explanation_shows_the_prefix_and_the_candidates() -> None:
    h = H()
    for i in range(12):
        h.put("x", f"v{i}", 10 * i, 10 * i + 5)
    h.put("x", "late", 200, 300)
    h.get("x", 210, 220, "v3")  # stale: v11 was the value
    text = _bad(h.events())
    lines = text.splitlines()
    assert lines[0] == "key 'x' is not linearizable (14 operations)."
    assert "The longest linearizable prefix found has 12 operations; its last 8:" in text
    assert "put 'v11': ok" in text and "put 'v3': ok" not in text
    assert "After it the value is 'v11'." in text
    assert "get: read 'v3'" in text
    assert "read 'v3' but the value is 'v11'" in text
    # The concurrent put could come next, but that leads nowhere either.
    assert "put 'late': ok" in text and "every continuation from there gets stuck" in text
    # Times are seconds from the history's start, as intervals.
    assert "[0.000000s, 0.000000s]" in text


# -- Random histories ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "keys", "clients", "info_rate"),
    [(1, 1, 3, 0.0), (2, 3, 5, 0.05), (3, 10, 5, 0.02), (4, 1, 10, 0.1), (5, 2, 20, 0.02)],
)
def test_random_histories_are_linearizable(
    seed: int, keys: int, clients: int, info_rate: float
) -> None:
    events = random_history(1500, keys=keys, clients=clients, seed=seed, info_rate=info_rate)
    r = check_history(events, timeout=60)
    assert r.status == "linearizable", r.explanation
    assert r.operations == 1500
    assert r.counts["info"] > 0 or info_rate == 0
    by_key: dict[str, list[Event]] = {}
    for e in events:
        by_key.setdefault(e.key, []).append(e)
    for key, result in r.keys.items():
        assert replay_ok(by_key[key], result.order)


def test_random_histories_with_each_operation_mix() -> None:
    mixes: list[dict[str, float]] = [
        {"get": 0.5, "put": 0.5},
        {"get": 0.4, "cas": 0.6},
        {"get": 0.3, "append": 0.7},
        {"put": 0.4, "cas": 0.3, "append": 0.3},
    ]
    for i, mix in enumerate(mixes):
        events = random_history(800, keys=2, clients=8, seed=10 + i, info_rate=0.05, mix=mix)  # type: ignore[arg-type]
        r = check_history(events, timeout=60)
        assert r.ok, (mix, r.explanation)


def _mutate(events: list[Event], rng: random.Random) -> list[Event]:
    """One change that makes the history non-linearizable: a get reads a value never
    written, or an append's result shows its value twice."""
    events = list(events)
    targets = [
        i for i, e in enumerate(events)
        if e.type == "ok" and e.f in ("get", "append")
    ]  # fmt: skip
    i = rng.choice(targets)
    e = events[i]
    if e.f == "get":
        events[i] = dataclasses.replace(e, result=f"never-written-{i}")
    else:
        events[i] = dataclasses.replace(e, result=e.result + e.value)
    return events


def test_mutated_random_histories_are_not_linearizable() -> None:
    rng = random.Random(7)
    for seed in range(20):
        events = random_history(400, keys=3, clients=5, seed=seed, info_rate=0.02)
        r = check_history(_mutate(events, rng), timeout=60)
        assert r.status == "not-linearizable", seed


# -- Cross-check with a brute force --------------------------------------------------------------


def brute_force(events: list[Event]) -> bool:
    """Linearizable? By trying every order (small histories only), replaying ops through
    a real KVStore and comparing outcomes: independent of the checker's model."""
    inv = {e.id: e for e in events if e.type == "invoke"}
    done = {e.id: e for e in events if e.type != "invoke"}
    rank = {(e.type == "invoke", e.id): i for i, e in enumerate(sorted(
        events, key=lambda e: e.time))}  # fmt: skip
    call = {i: rank[(True, i)] for i in inv}
    ret = {
        i: rank[(False, i)]
        for i, d in done.items()
        if d.type == "ok" or (d.type == "fail" and d.result is not None)
    }
    optional = {
        i for i in inv
        if i not in ret and not (i in done and done[i].type == "fail") and inv[i].f != "get"
    }  # fmt: skip
    for key in {e.key for e in inv.values()}:
        mandatory = frozenset(i for i in ret if inv[i].key == key)
        maybe = frozenset(i for i in optional if inv[i].key == key)
        seen: set[tuple[frozenset[int], str | None]] = set()

        def go(placed: frozenset[int], value: str | None, key: str = key,
               mandatory: frozenset[int] = mandatory, maybe: frozenset[int] = maybe,
               seen: set[tuple[frozenset[int], str | None]] = seen) -> bool:  # fmt: skip
            if mandatory <= placed:
                return True
            if (placed, value) in seen:
                return False
            seen.add((placed, value))
            horizon = min(ret[i] for i in mandatory - placed)
            for i in (mandatory | maybe) - placed:
                if call[i] > horizon:
                    continue
                store = KVStore()
                if value is not None:
                    store.restore(json.dumps({"version": 1, "data": {key: value}}).encode())
                got = outcome(inv[i].f, store.execute(_payload(inv[i])))
                if i in mandatory and got != (done[i].type, done[i].result):
                    continue
                if go(placed | {i}, store.read(key)):
                    return True
            return False

        if not go(frozenset(), None):
            return False
    return True


def _perturb(events: list[Event], rng: random.Random) -> list[Event]:
    """A random small change to one completion: a different result, outcome or type.
    Often the history stays linearizable; the brute force says which."""
    events = list(events)
    values = sorted({x.value for x in events if x.value} | {"v0"})
    while True:
        i = rng.choice([i for i, e in enumerate(events) if e.type != "invoke"])
        e = events[i]
        options: list[Event] = []
        if e.f == "get" and e.type == "ok":
            options += [dataclasses.replace(e, result=v) for v in (None, *values)]
        if e.f == "cas" and e.type == "ok":
            options += [
                dataclasses.replace(e, type="fail", result={"swapped": False, "value": v})
                for v in (None, *values)
            ]
        if e.f == "cas" and e.type == "fail" and e.result is not None:
            options.append(
                dataclasses.replace(e, type="ok", result={"swapped": True, "value": e.value})
            )
        if e.f == "append" and e.type == "ok":
            options += [
                dataclasses.replace(e, result=e.result[:cut] + e.value)
                for cut in range(len(e.result) + 1)
            ]
        if e.type == "ok" and e.f != "get":
            options.append(dataclasses.replace(e, type="info", result=None))
        if e.type == "info":
            options.append(dataclasses.replace(e, type="fail", result=None))
        if options:
            events[i] = rng.choice(options)
            return events


def test_agrees_with_brute_force_on_small_histories() -> None:
    rng = random.Random(42)
    verdicts = {True: 0, False: 0}
    for seed in range(1000):
        events = random_history(
            rng.randint(4, 10), keys=rng.randint(1, 2), clients=rng.randint(2, 6),
            seed=seed, info_rate=0.25,
        )  # fmt: skip
        for _ in range(seed % 3):
            events = _perturb(events, rng)
        expected = brute_force(events)
        r = check_history(events)
        assert r.ok == expected, (seed, [e.to_json() for e in events], r.explanation)
        verdicts[expected] += 1
    assert min(verdicts.values()) > 200, verdicts  # both verdicts were exercised


# -- Scale and budget ----------------------------------------------------------------------------


def test_ten_thousand_operations_check_in_bounded_time() -> None:
    """Not a benchmark: a guard that the search is not exponential on a normal workload."""
    events = random_history(10_000, keys=10, clients=5, seed=2024, info_rate=0.02)
    started = time.monotonic()
    r = check_history(events, timeout=120)
    assert r.status == "linearizable"
    assert r.operations == 10_000 and len(r.keys) == 10
    assert time.monotonic() - started < 60


def test_time_budget_gives_unknown() -> None:
    h = H()
    h.put("x", "a", 0, 1)
    h.put("y", "a", 0, 1)
    r = check_history(h.events(), timeout=0)
    assert r.status == "unknown" and not r.ok
    assert "time budget ran out" in r.explanation
    assert r.render().startswith("UNKNOWN")


def test_search_gives_up_at_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_module, "_CLOCK_EVERY", 1)
    by_key, _ = build_ops(random_history(200, keys=1, clients=5, seed=1))
    ops = prepare(by_key["k0"])
    assert search(ops, deadline=time.monotonic() - 1).status == "unknown"
    assert search(ops, deadline=time.monotonic() + 60).status == "linearizable"


def test_violation_outranks_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    h = H()
    h.put("a", "1", 0, 1)
    h.get("a", 2, 3, "2")  # checked first (fewer ops) and not linearizable
    for i in range(3):
        h.put("b", str(i), 10 + 2 * i, 11 + 2 * i)
    real = search_module.search

    def slow(ops: Any, deadline: Any = None, initial: Any = None) -> Any:
        if ops and ops[0].key == "b":
            return real(ops, time.monotonic() - 1)
        return real(ops, deadline)

    monkeypatch.setattr(search_module, "_CLOCK_EVERY", 1)
    monkeypatch.setattr("paxoi.check.linear.checker.search", slow)
    r = check_history(h.events())
    assert r.status == "not-linearizable"
    assert r.keys["b"].status == "unknown"
    assert "key 'a'" in r.explanation and "key 'b'" in r.explanation


def test_unknown_model_and_malformed_events_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        check_history([], model="queue")
    h = H()
    h.put("x", "a", 0, 1)
    events = h.events()
    with pytest.raises(HistoryError, match="completes twice"):
        check_history([*events, events[-1]])


def test_result_as_json() -> None:
    h = H()
    h.put("x", "a", 0, 1)
    h.get("x", 2, 3, "b")
    doc = check_history(h.events()).to_dict()
    assert doc["status"] == "not-linearizable" and doc["ok"] is False
    assert doc["counts"] == {"ok": 2, "fail": 0, "info": 0}
    assert doc["keys"]["x"]["status"] == "not-linearizable"
    json.dumps(doc)


# -- Command line --------------------------------------------------------------------------------


def _write(path: Path, events: list[Event]) -> Path:
    path.write_text("".join(e.to_json() + "\n" for e in events))
    return path


def test_cli_linearizable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "h.jsonl", random_history(300, keys=3, seed=1))
    assert main(["check-linear", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("linearizable: 300 operations (") and "on 3 keys" in out


def test_cli_not_linearizable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h = H()
    h.put("x", "a", 0, 1)
    h.get("x", 2, 3, "b")
    path = _write(tmp_path / "h.jsonl", h.events())
    assert main(["check-linear", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("NOT linearizable: ") and "read 'b' but the value is 'a'" in out
    assert main(["check-linear", "--json", str(path)]) == 1
    assert json.loads(capsys.readouterr().out)["status"] == "not-linearizable"


def test_cli_unknown_when_out_of_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "h.jsonl", random_history(50, keys=2, seed=1))
    assert main(["check-linear", "--timeout", "1e-9", str(path)]) == 3
    assert capsys.readouterr().out.startswith("UNKNOWN")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json\n", "line 1: not JSON"),
        ('\n{"type": "invoke"}\n', "line 2: id must be an integer"),
        ('{"type":"ok","id":1,"process":"p","f":"get","key":"x","time":5}\n',
         "line 1: operation 1 completes (ok) but was not invoked"),
    ],
)  # fmt: skip
def test_cli_malformed_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(content)
    assert main(["check-linear", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("paxoi check-linear: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_missing_file_and_bad_timeout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-linear", str(tmp_path / "nope.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    path = _write(tmp_path / "h.jsonl", [])
    assert main(["check-linear", "--timeout", "-1", str(path)]) == 2
    assert "--timeout" in capsys.readouterr().err
    (tmp_path / "bin").write_bytes(b"\xff\xfe\n")
    assert main(["check-linear", str(tmp_path / "bin")]) == 2
    assert "UTF-8" in capsys.readouterr().err
