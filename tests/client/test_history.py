"""History recording and loading, and RecordingKV against a fake client."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from paxoi.apps.kv import KVStore
from paxoi.check.linear import check_history
from paxoi.client import ClientClosed, ServerRefused, SubmitTimeout
from paxoi.client.history import (
    CasResult,
    Event,
    HistoryError,
    HistoryRecorder,
    KVError,
    RecordingKV,
    load_history,
    outcome,
)


class Clock:
    """A fake monotonic clock: each reading is 10 ns after the previous one."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        self.now += 10
        return self.now


# -- Recorder ----------------------------------------------------------------------------------


def test_recorder_writes_flushed_lines_and_keeps_events(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with HistoryRecorder(path, clock=Clock()) as rec:
        a = rec.invoke("c1", "put", "x", "v1")
        b = rec.invoke("c2", "get", "x")
        # Every event is on disk as soon as it is recorded, before close().
        assert len(path.read_text().splitlines()) == 2
        rec.ok(a)
        rec.ok(b, "v1")
        c = rec.invoke("c1", "cas", "x", "v2", expect="v1")
        rec.ok(c, {"swapped": True, "value": "v2"})
        d = rec.invoke("c2", "cas", "x", "v3", expect="zz")
        rec.fail(d, {"swapped": False, "value": "v2"})
        e = rec.invoke("c1", "append", "x", "!")
        rec.info(e)
        assert rec.pending() == []
        f = rec.invoke("c3", "get", "y")
        assert rec.pending() == [f]
    lines = path.read_text().splitlines()
    assert len(lines) == 11
    assert json.loads(lines[0]) == {
        "type": "invoke", "id": 0, "process": "c1", "f": "put", "key": "x",
        "value": "v1", "time": 10,
    }  # fmt: skip
    assert json.loads(lines[5]) == {
        "type": "ok", "id": 2, "process": "c1", "f": "cas", "key": "x", "value": "v2",
        "expect": "v1", "result": {"swapped": True, "value": "v2"}, "time": 60,
    }  # fmt: skip
    loaded = load_history(path)
    assert loaded == rec.events
    assert [e.time for e in loaded] == sorted(e.time for e in loaded)
    r = check_history(loaded)
    assert r.ok and r.counts == {"ok": 3, "fail": 1, "info": 2}


def test_recorder_in_memory_only_and_to_a_stream() -> None:
    rec = HistoryRecorder()
    rec.ok(rec.invoke("p", "get", "k"), None)
    assert [e.type for e in rec.events] == ["invoke", "ok"]
    lines: list[str] = []

    class Sink:
        def write(self, s: str) -> int:
            lines.append(s)
            return len(s)

        def flush(self) -> None:
            lines.append("<flush>")

    rec2 = HistoryRecorder(stream=Sink(), keep=False)  # type: ignore[arg-type]
    rec2.invoke("p", "put", "k", "v")
    assert rec2.events == []
    assert lines[1] == "<flush>" and json.loads(lines[0])["f"] == "put"
    with pytest.raises(ValueError, match="path or a stream"):
        HistoryRecorder("x", stream=Sink())  # type: ignore[arg-type]


def test_recorder_refuses_what_the_loader_would() -> None:
    rec = HistoryRecorder()
    with pytest.raises(HistoryError, match="f must be one of"):
        rec.invoke("p", "delete", "k")  # type: ignore[arg-type]
    with pytest.raises(HistoryError, match="a put needs a value"):
        rec.invoke("p", "put", "k")
    with pytest.raises(HistoryError, match="only a cas has expect"):
        rec.invoke("p", "put", "k", "v", expect="w")
    with pytest.raises(HistoryError, match="was not invoked"):
        rec.ok(99)
    op = rec.invoke("p", "get", "k")
    with pytest.raises(HistoryError, match="an ok get's result"):
        rec.ok(op, 5)
    with pytest.raises(HistoryError, match="a failed get has no result"):
        rec.fail(op, {"swapped": False, "value": None})
    rec.ok(op, "v")
    with pytest.raises(HistoryError, match="completes twice"):
        rec.info(op)
    cas = rec.invoke("p", "cas", "k", "v", expect=None)
    with pytest.raises(HistoryError, match="an ok cas's result"):
        rec.ok(cas, {"swapped": False, "value": "v"})
    # Refused events leave nothing behind: the history is still well formed.
    assert [e.type for e in rec.events] == ["invoke", "ok", "invoke"]


def test_recorder_is_safe_across_threads(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    rec = HistoryRecorder(path)

    def work(n: int) -> None:
        for i in range(200):
            op = rec.invoke(f"t{n}", "put", f"k{i % 3}", f"{n}-{i}")
            rec.ok(op)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rec.close()
    events = load_history(path)
    assert len(events) == 1600
    assert len({e.id for e in events}) == 800
    assert [e.time for e in events] == sorted(e.time for e in events)
    assert check_history(events).ok


# -- Loader ------------------------------------------------------------------------------------


def _line(**fields: Any) -> str:
    doc = {"type": "invoke", "id": 1, "process": "p", "f": "get", "key": "x", "time": 1}
    doc.update(fields)
    return json.dumps({k: v for k, v in doc.items() if v is not ...})


_OK_GET = _line(type="ok", result="v", time=2)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["[1, 2]"], "line 1: an event must be a JSON object"),
        (["{oops"], "line 1: not JSON"),
        ([_line(type="start")], "line 1: type must be one of invoke, ok, fail, info"),
        ([_line(id="1")], "line 1: id must be an integer"),
        ([_line(id=True)], "line 1: id must be an integer"),
        ([_line(time=1.5)], "line 1: time must be an integer"),
        ([_line(process=...)], "line 1: process must be a string"),
        ([_line(f="incr")], "line 1: f must be one of get, put, cas, append"),
        ([_line(key=3)], "line 1: key must be a string"),
        ([_line(value="v")], "line 1: a get has no value"),
        ([_line(f="append")], "line 1: an append needs a value"),
        ([_line(f="put", value=7)], "line 1: value must be a string or null"),
        ([_line(f="put", value="v", expect="w")], "line 1: only a cas has expect"),
        ([_line(result="v")], "line 1: an invoke event has no result"),
        ([_line(colour="red")], "line 1: unknown field 'colour'"),
        ([_line(), _line()], "line 2: operation 1 is invoked twice"),
        ([_OK_GET], "line 1: operation 1 completes (ok) but was not invoked"),
        ([_line(), _OK_GET, _OK_GET], "line 3: operation 1 completes twice"),
        ([_line(time=5), _OK_GET], "line 2: operation 1 completes before it was invoked"),
        ([_line(), _line(type="ok", key="y", result=None, time=2)],
         'line 2: operation 1: its completion\'s key "y" differs from its invocation\'s "x"'),
        ([_line(), _line(type="ok", result=3, time=2)], "line 2: an ok get's result"),
        ([_line(), _line(type="info", result="v", time=2)], "line 2: an info event has no result"),
        ([_line(f="put", value="v"), _line(type="ok", f="put", value="v", result="v", time=2)],
         "line 2: an ok put's result must be null"),
        ([_line(f="append", value="v"), _line(type="ok", f="append", value="v", time=2)],
         "line 2: an ok append's result must be the new value"),
        ([_line(f="cas", value="v"), _line(type="fail", f="cas", value="v", result={"swapped": True, "value": "v"}, time=2)],
         "line 2: a failed cas's result must be"),
    ],
)  # fmt: skip
def test_load_history_refuses_malformed_lines(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(HistoryError) as exc:
        load_history(path)
    assert str(exc.value).startswith(f"{path} {message}")


def test_load_history_skips_blank_lines_and_counts_them(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text("\n" + _line() + "\n\n" + _OK_GET + "\n   \n")
    events = load_history(path)
    assert [e.type for e in events] == ["invoke", "ok"]
    path.write_text("\n\n" + _OK_GET + "\n")
    with pytest.raises(HistoryError, match="line 3:"):
        load_history(path)


def test_event_round_trip() -> None:
    e = Event("fail", 4, "p", "cas", "k", "new", None, {"swapped": False, "value": "old"}, 9)
    assert json.loads(e.to_json()) == e.to_dict()
    assert e.to_dict()["expect"] is None  # a cas always says what it expected


# -- The one mapping from store replies to history outcomes ------------------------------------


@pytest.mark.parametrize(
    ("f", "reply", "expected"),
    [
        ("get", {"ok": True, "value": "v"}, ("ok", "v")),
        ("get", {"ok": True, "value": None}, ("ok", None)),
        ("put", {"ok": True}, ("ok", None)),
        ("cas", {"ok": True, "value": "n"}, ("ok", {"swapped": True, "value": "n"})),
        ("cas", {"ok": False, "value": "o"}, ("fail", {"swapped": False, "value": "o"})),
        ("cas", {"ok": False, "value": None}, ("fail", {"swapped": False, "value": None})),
        ("append", {"ok": True, "value": "ab"}, ("ok", "ab")),
        ("put", {"ok": False, "error": "value must be a string"}, ("fail", None)),
        ("get", {"ok": True, "value": 3}, ("info", None)),
        ("append", {"ok": True}, ("info", None)),
        ("put", ["ok"], ("info", None)),
    ],
)
def test_outcome(f: Any, reply: Any, expected: tuple[str, Any]) -> None:
    assert outcome(f, reply) == expected


# -- RecordingKV -------------------------------------------------------------------------------


class FakeClient:
    """Applies payloads to a real KVStore, with hooks to fail before or after applying.

    Each submit yields to the event loop before and after applying, so concurrent
    operations interleave.
    """

    def __init__(self, seed: int = 0) -> None:
        self.store = KVStore()
        self.id = "fake-1"
        self.before: BaseException | None = None  # raised instead of applying
        self.after: BaseException | None = None  # raised after applying
        self.reply: bytes | None = None  # returned instead of the store's answer
        self.rng = random.Random(seed)
        self.timeouts: list[float | None] = []

    async def _yield(self) -> None:
        for _ in range(self.rng.randint(0, 3)):
            await asyncio.sleep(0)

    async def submit(self, payload: bytes, timeout: float | None = None) -> bytes:
        self.timeouts.append(timeout)
        await self._yield()
        if self.before is not None:
            raise self.before
        answer = json.dumps(self.store.execute(payload)).encode()
        await self._yield()
        if self.after is not None:
            raise self.after
        return self.reply if self.reply is not None else answer


def _kv(client: FakeClient, **kw: Any) -> tuple[RecordingKV, HistoryRecorder]:
    rec = HistoryRecorder(clock=Clock())
    return RecordingKV(client, rec, **kw), rec


def test_recording_kv_operations_and_their_events() -> None:
    client = FakeClient()
    kv, rec = _kv(client, timeout=2.5)

    async def go() -> None:
        assert await kv.get("x") is None
        await kv.put("x", "a")
        assert await kv.get("x") == "a"
        swapped = await kv.cas("x", "a", "b")
        assert swapped and swapped == CasResult(True, "b")
        refused = await kv.cas("x", "a", "c")
        assert not refused and refused == CasResult(False, "b")
        assert await kv.cas("y", None, "new") == CasResult(True, "new")
        assert await kv.append("x", "+") == "b+"

    asyncio.run(go())
    assert client.timeouts == [2.5] * 7
    done = [e for e in rec.events if e.type != "invoke"]
    assert [(e.type, e.f, e.result) for e in done] == [
        ("ok", "get", None),
        ("ok", "put", None),
        ("ok", "get", "a"),
        ("ok", "cas", {"swapped": True, "value": "b"}),
        ("fail", "cas", {"swapped": False, "value": "b"}),
        ("ok", "cas", {"swapped": True, "value": "new"}),
        ("ok", "append", "b+"),
    ]
    assert {e.process for e in rec.events} == {"fake-1"}
    assert check_history(rec.events).ok


@pytest.mark.parametrize(
    "error",
    [SubmitTimeout("slow"), ClientClosed("closed"), ServerRefused("no"), RuntimeError("bug")],
)
@pytest.mark.parametrize("when", ["before", "after"])
def test_client_errors_are_recorded_as_unknown_and_raised(error: Exception, when: str) -> None:
    client = FakeClient()
    kv, rec = _kv(client, process="w1")
    setattr(client, when, error)
    with pytest.raises(type(error)):
        asyncio.run(kv.put("x", "a"))
    assert [(e.type, e.process) for e in rec.events] == [("invoke", "w1"), ("info", "w1")]
    assert client.store.read("x") == ("a" if when == "after" else None)


def test_cancellation_is_recorded_as_unknown() -> None:
    client = FakeClient()
    kv, rec = _kv(client)

    async def go() -> None:
        blocked = asyncio.Event()  # never set: the submit hangs until cancelled

        async def never(payload: bytes, timeout: float | None = None) -> bytes:
            await blocked.wait()
            return b"{}"

        client.submit = never  # type: ignore[method-assign]
        task = asyncio.create_task(kv.put("x", "a"))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert [e.type for e in rec.events] == ["invoke", "info"]


def test_store_refusal_is_a_failure_and_garbage_is_unknown() -> None:
    client = FakeClient()
    kv, rec = _kv(client)
    client.reply = b'{"ok": false, "error": "value must be a string"}'
    with pytest.raises(KVError, match="refused by the store: value must be a string"):
        asyncio.run(kv.put("x", "a"))
    client.reply = b"\xff not json"
    with pytest.raises(KVError, match="unexpected reply"):
        asyncio.run(kv.append("x", "a"))
    client.reply = b'{"ok": true, "value": 7}'
    with pytest.raises(KVError, match="unexpected reply"):
        asyncio.run(kv.get("x"))
    assert [e.type for e in rec.events if e.type != "invoke"] == ["fail", "info", "info"]


def test_pluggable_read_path() -> None:
    client = FakeClient()
    reads: list[str] = []

    async def read(key: str) -> str | None:
        reads.append(key)
        return client.store.read(key)

    kv, rec = _kv(client, read=read)

    async def go() -> None:
        await kv.put("x", "a")
        assert await kv.get("x") == "a"

    asyncio.run(go())
    assert reads == ["x"]
    assert len(client.timeouts) == 1  # the get did not go through submit
    assert [(e.type, e.f, e.result) for e in rec.events if e.type != "invoke"] == [
        ("ok", "put", None),
        ("ok", "get", "a"),
    ]

    async def broken(key: str) -> str | None:
        raise SubmitTimeout("lease expired")

    async def odd(key: str) -> str | None:
        return 5  # type: ignore[return-value]

    for fn, exc in ((broken, SubmitTimeout), (odd, KVError)):
        kv2, rec2 = _kv(client, read=fn)
        with pytest.raises(exc):
            asyncio.run(kv2.get("x"))
        assert [e.type for e in rec2.events] == ["invoke", "info"]


def test_concurrent_recorded_operations_check_linearizable() -> None:
    """Many tasks on one store through RecordingKV, some timing out after applying:
    the recorded history must be linearizable, and the checker must say so."""
    client = FakeClient(seed=3)
    rec = HistoryRecorder(clock=Clock())
    rng = random.Random(5)

    async def worker(n: int) -> None:
        kv = RecordingKV(client, rec, process=f"w{n}")
        for i in range(60):
            key = rng.choice("abc")
            choice = rng.random()
            client.after = SubmitTimeout("lost") if rng.random() < 0.05 else None
            try:
                if choice < 0.4:
                    await kv.get(key)
                elif choice < 0.6:
                    await kv.put(key, f"{n}.{i}")
                elif choice < 0.8:
                    await kv.cas(key, client.store.read(key), f"{n}.{i}")
                else:
                    await kv.append(key, f"{n}.{i},")
            except SubmitTimeout:
                pass

    async def go() -> None:
        await asyncio.gather(*(worker(n) for n in range(6)))

    asyncio.run(go())
    r = check_history(rec.events)
    assert r.ok, r.explanation
    assert r.operations == 360 and r.counts["info"] > 0 and r.counts["fail"] > 0


def test_a_stale_reading_client_is_caught() -> None:
    """A read path that answers from a stale copy: the checker must notice."""
    client = FakeClient()
    stale: dict[str, str | None] = {}

    async def read(key: str) -> str | None:
        return stale.get(key)

    kv, rec = _kv(client, read=read)

    async def go() -> None:
        await kv.put("x", "a")
        stale["x"] = client.store.read("x")
        await kv.put("x", "b")
        await kv.get("x")  # answers "a"

    asyncio.run(go())
    r = check_history(rec.events)
    assert r.status == "not-linearizable"
    assert "read 'a' but the value is 'b'" in r.explanation
