"""Operation histories: what clients asked of the key-value store, and what they were told.

A history is a JSON-lines file in the style of Jepsen: one event per line, in the order
they happened. Every operation has an invocation event and at most one completion event:

    {"type": "invoke", "id": 7, "process": "c1", "f": "cas", "key": "x",
     "value": "b", "expect": "a", "time": 1200}
    {"type": "ok", "id": 7, "process": "c1", "f": "cas", "key": "x",
     "value": "b", "expect": "a", "result": {"swapped": true, "value": "b"}, "time": 1350}

Fields: `type` is "invoke" | "ok" | "fail" | "info"; `id` an int naming the operation;
`process` the client that ran it (informational: the checker orders only by time); `f`
"get" | "put" | "cas" | "append"; `key` a string; `value` the value written (a string, or
null for get); `expect` the value a cas compares with (null: the key must be absent; only
on cas); `time` a monotonic clock in nanoseconds (one clock per history). A completion
repeats the invocation's fields and adds `result`:

    ok get        the value read (string or null)
    ok put        null
    ok cas        {"swapped": true, "value": <the new value>}
    ok append     the key's new value (a string)
    fail cas      {"swapped": false, "value": <the value the cas found>}: the compare failed
    fail (other)  null: the store refused the command, which changed nothing
    info          null: the outcome is unknown (timeout, lost connection)

`fail` means the operation surely did not change the state. A cas whose compare failed is
recorded as `fail`, as Jepsen does, but it still completed: it read the key, and its result
says what it found. The checker therefore linearizes it as a read that saw that value (and
not `expect`), which catches a cas wrongly refused. A `fail` without a result did nothing
at all and is left out of the check.

`info` means the operation may have taken effect, at any time after its invocation, or
never. An invocation with no completion in the file is treated the same way.

Real time is what `time` says: the checker orders events by time, and events with equal
times by their order in the file. One recorder reads its clock and writes under one lock,
so its file is in time order; histories merged from several machines need one clock.

`HistoryRecorder` writes such files as events happen; `load_history` reads them back,
refusing malformed lines with their line number; `RecordingKV` runs key-value operations
through a client and records each one.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from paxoi.apps import kv

EventType = Literal["invoke", "ok", "fail", "info"]
Function = Literal["get", "put", "cas", "append"]

EVENT_TYPES: tuple[EventType, ...] = ("invoke", "ok", "fail", "info")
FUNCTIONS: tuple[Function, ...] = ("get", "put", "cas", "append")
_FIELDS = {"type", "id", "process", "f", "key", "value", "expect", "result", "time"}


class HistoryError(ValueError):
    """A history event or file is malformed; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Event:
    """One line of a history. `result` is None on invocations and where the table says."""

    type: EventType
    id: int
    process: str
    f: Function
    key: str
    value: str | None
    expect: str | None
    result: Any
    time: int

    def to_dict(self) -> dict[str, Any]:
        """The event as its JSON document (expect only on cas, result only on completions)."""
        doc: dict[str, Any] = {
            "type": self.type,
            "id": self.id,
            "process": self.process,
            "f": self.f,
            "key": self.key,
            "value": self.value,
        }
        if self.f == "cas":
            doc["expect"] = self.expect
        if self.type != "invoke":
            doc["result"] = self.result
        doc["time"] = self.time
        return doc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=True, separators=(",", ":"))


# -- Validation ------------------------------------------------------------------------------


def _a(f: str) -> str:
    return f"an {f}" if f == "append" else f"a {f}"


def _optional_str(doc: dict[str, Any], name: str) -> str | None:
    x = doc.get(name)
    if x is not None and not isinstance(x, str):
        raise HistoryError(f"{name} must be a string or null, not {json.dumps(x)}")
    return x


def check_result(f: str, type_: str, result: Any) -> None:
    """Refuse a completion result that does not have the shape the format's table gives."""
    if type_ == "info":
        if result is not None:
            raise HistoryError("an info event has no result (its outcome is unknown)")
        return
    if type_ == "fail":
        if result is None:
            return
        if f != "cas":
            raise HistoryError(f"a failed {f} has no result (only a failed cas has one)")
        if not (
            isinstance(result, dict)
            and set(result) == {"swapped", "value"}
            and result["swapped"] is False
            and (result["value"] is None or isinstance(result["value"], str))
        ):
            raise HistoryError(
                'a failed cas\'s result must be {"swapped": false, "value": <string or null>}'
            )
        return
    # ok
    if f == "get":
        if result is not None and not isinstance(result, str):
            raise HistoryError("an ok get's result must be the value read (a string or null)")
    elif f == "put":
        if result is not None:
            raise HistoryError("an ok put's result must be null")
    elif f == "append":
        if not isinstance(result, str):
            raise HistoryError("an ok append's result must be the new value (a string)")
    elif not (
        isinstance(result, dict)
        and set(result) == {"swapped", "value"}
        and result["swapped"] is True
        and isinstance(result["value"], str)
    ):
        raise HistoryError('an ok cas\'s result must be {"swapped": true, "value": <string>}')


def parse_event(doc: object) -> Event:
    """One event from its JSON document, checked field by field (not against other events)."""
    if not isinstance(doc, dict):
        raise HistoryError("an event must be a JSON object")
    unknown = set(doc) - _FIELDS
    if unknown:
        raise HistoryError(f"unknown field {sorted(unknown)[0]!r}")
    type_ = doc.get("type")
    if type_ not in EVENT_TYPES:
        raise HistoryError(f"type must be one of {', '.join(EVENT_TYPES)}")
    op_id = doc.get("id")
    if not isinstance(op_id, int) or isinstance(op_id, bool):
        raise HistoryError("id must be an integer")
    t = doc.get("time")
    if not isinstance(t, int) or isinstance(t, bool):
        raise HistoryError("time must be an integer (nanoseconds)")
    process = doc.get("process")
    if not isinstance(process, str):
        raise HistoryError("process must be a string")
    f = doc.get("f")
    if f not in FUNCTIONS:
        raise HistoryError(f"f must be one of {', '.join(FUNCTIONS)}")
    key = doc.get("key")
    if not isinstance(key, str):
        raise HistoryError("key must be a string")
    value = _optional_str(doc, "value")
    expect = _optional_str(doc, "expect")
    if f == "get" and value is not None:
        raise HistoryError("a get has no value")
    if f != "get" and value is None:
        raise HistoryError(f"{_a(f)} needs a value (a string)")
    if f != "cas" and expect is not None:
        raise HistoryError("only a cas has expect")
    result = doc.get("result")
    if type_ == "invoke":
        if result is not None:
            raise HistoryError("an invoke event has no result")
    else:
        check_result(f, type_, result)
    return Event(type_, op_id, process, f, key, value, expect, result, t)


class HistoryChecker:
    """Checks events against the ones before them: ids, pairing, order in time.

    Feed events in file order; `add` raises HistoryError for an event that contradicts
    the history so far. The loader and the recorder share it, so the recorder can never
    write a file the loader refuses.
    """

    def __init__(self) -> None:
        self.invoked: dict[int, Event] = {}
        self.completed: set[int] = set()

    def add(self, event: Event) -> None:
        if event.type == "invoke":
            if event.id in self.invoked:
                raise HistoryError(f"operation {event.id} is invoked twice")
            self.invoked[event.id] = event
            return
        inv = self.invoked.get(event.id)
        if inv is None:
            raise HistoryError(f"operation {event.id} completes ({event.type}) but was not invoked")
        if event.id in self.completed:
            raise HistoryError(f"operation {event.id} completes twice")
        for name in ("process", "f", "key", "value", "expect"):
            if getattr(event, name) != getattr(inv, name):
                raise HistoryError(
                    f"operation {event.id}: its completion's {name} "
                    f"{json.dumps(getattr(event, name))} differs from its invocation's "
                    f"{json.dumps(getattr(inv, name))}"
                )
        if event.time < inv.time:
            raise HistoryError(f"operation {event.id} completes before it was invoked")
        self.completed.add(event.id)


def validate_history(events: Iterable[Event]) -> None:
    """Raise HistoryError (naming the event's position) if the events do not form a history."""
    checker = HistoryChecker()
    for i, event in enumerate(events):
        try:
            checker.add(event)
        except HistoryError as e:
            raise HistoryError(f"event {i}: {e}") from None


def load_history(path: str | os.PathLike[str]) -> list[Event]:
    """Read a history file; HistoryError("<path> line N: ...") on the first bad line.

    Blank lines are skipped. OSError (no such file, ...) is raised as is.
    """
    events: list[Event] = []
    checker = HistoryChecker()
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                try:
                    doc = json.loads(line)
                except (ValueError, RecursionError) as e:
                    raise HistoryError(f"not JSON: {e}") from None
                event = parse_event(doc)
                checker.add(event)
            except HistoryError as e:
                raise HistoryError(f"{path} line {n}: {e}") from None
            events.append(event)
    return events


# -- Recording -------------------------------------------------------------------------------


class HistoryRecorder:
    """Records operations as they happen: to a file (one flushed line per event), and/or
    in memory (`events`).

    A lock makes each call atomic, so threads and asyncio tasks can share one recorder,
    and the clock is read under it: the file is in time order, as the checker expects.
    The recorder refuses what the loader would refuse (a bad result, a second completion).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        stream: IO[str] | None = None,
        keep: bool = True,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if path is not None and stream is not None:
            raise ValueError("give a path or a stream, not both")
        self._own = path is not None
        # Held open for the recorder's life and closed by close(): not a `with` block.
        self._out: IO[str] | None = (
            open(Path(path), "w", encoding="utf-8") if path is not None else stream  # noqa: SIM115
        )
        self._keep = keep
        self._events: list[Event] = []
        self._clock = clock
        self._lock = threading.Lock()
        self._checker = HistoryChecker()
        self._next_id = 0

    def invoke(
        self,
        process: str,
        f: Function,
        key: str,
        value: str | None = None,
        expect: str | None = None,
    ) -> int:
        """Record an invocation; the new operation's id."""
        with self._lock:
            op_id = self._next_id
            doc = {
                "type": "invoke",
                "id": op_id,
                "process": process,
                "f": f,
                "key": key,
                "value": value,
                "expect": expect,
                "time": self._clock(),
            }
            event = parse_event(doc)
            self._next_id += 1
            self._emit(event)
            return op_id

    def ok(self, op_id: int, result: Any = None) -> Event:
        """The operation completed with `result` (shape: see the module docstring)."""
        return self._complete(op_id, "ok", result)

    def fail(self, op_id: int, result: Any = None) -> Event:
        """The operation surely did not change the state (a failed cas: what it found)."""
        return self._complete(op_id, "fail", result)

    def info(self, op_id: int) -> Event:
        """The operation's outcome is unknown: it may take effect later, or never."""
        return self._complete(op_id, "info", None)

    def _complete(self, op_id: int, type_: EventType, result: Any) -> Event:
        with self._lock:
            inv = self._checker.invoked.get(op_id)
            if inv is None:
                raise HistoryError(f"operation {op_id} was not invoked")
            check_result(inv.f, type_, result)
            event = Event(
                type_, op_id, inv.process, inv.f, inv.key, inv.value, inv.expect, result,
                self._clock(),
            )  # fmt: skip
            self._emit(event)
            return event

    def _emit(self, event: Event) -> None:
        self._checker.add(event)
        if self._keep:
            self._events.append(event)
        if self._out is not None:
            self._out.write(event.to_json() + "\n")
            self._out.flush()

    @property
    def events(self) -> list[Event]:
        """A copy of the events recorded so far (empty with keep=False)."""
        with self._lock:
            return list(self._events)

    def pending(self) -> list[int]:
        """Ids of operations invoked but not completed."""
        with self._lock:
            return [i for i in self._checker.invoked if i not in self._checker.completed]

    def close(self) -> None:
        """Close the file if the recorder opened it. Pending operations stay unknown."""
        with self._lock:
            if self._own and self._out is not None:
                self._out.close()
            self._out = None

    def __enter__(self) -> HistoryRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- Recording key-value operations through a client -----------------------------------------


class Submitter(Protocol):
    """What RecordingKV needs of a client: `paxoi.client.AsyncClient` is one."""

    async def submit(self, payload: bytes, timeout: float | None = None) -> bytes: ...


#: A linearizable read of one key, for reads that do not go through the log.
ReadFn = Callable[[str], Awaitable[str | None]]


class KVError(Exception):
    """The store refused the command, or its reply could not be understood."""


@dataclass(frozen=True, slots=True)
class CasResult:
    """What a cas did: whether it swapped, and the key's value after it.

    Truthy exactly when it swapped, so `if await kv.cas(...)` reads naturally.
    """

    swapped: bool
    value: str | None

    def __bool__(self) -> bool:
        return self.swapped


def outcome(f: Function, reply: Any) -> tuple[EventType, Any]:
    """THE mapping from the store's reply document (see `paxoi.apps.kv`) to a history
    completion: its type and its result field.

    An {"ok": false, "error": ...} reply means the store refused the command and changed
    nothing: `fail`. A cas whose compare failed is `fail` with what it found. A reply that
    does not have the expected shape could hide anything: `info`.
    """
    if not isinstance(reply, dict):
        return "info", None
    if reply.get("ok") is False and "error" in reply:
        return "fail", None
    found = reply.get("value")
    if f == "get" and reply.get("ok") is True and (found is None or isinstance(found, str)):
        return "ok", found
    if f == "put" and reply.get("ok") is True:
        return "ok", None
    if f == "append" and reply.get("ok") is True and isinstance(found, str):
        return "ok", found
    if f == "cas" and isinstance(reply.get("ok"), bool):
        swapped = reply["ok"]
        if swapped and isinstance(found, str):
            return "ok", {"swapped": True, "value": found}
        if not swapped and (found is None or isinstance(found, str)):
            return "fail", {"swapped": False, "value": found}
    return "info", None


def outcome_of_error(exc: BaseException) -> EventType:
    """THE mapping from a client exception to a completion: always `info`.

    SubmitTimeout and ClientClosed leave the outcome unknown by definition. ServerRefused
    does too: AsyncClient fails *every* outstanding command when one ErrorReply arrives,
    including commands it already sent (possibly to an earlier server that applied them).
    Cancellation and unexpected errors may strike after the command left. Only the store's
    own refusal (an error reply document, see `outcome`) proves nothing happened.
    """
    return "info"


class RecordingKV:
    """Key-value operations through a client, each recorded in a history.

    Writes go through `client.submit` (the replicated log). Reads do too, unless `read` is
    given: an async callable `read(key) -> value` (e.g. a lease or quorum read; bind its
    mode with functools.partial). Every call records an invocation, then exactly one
    completion, even when it raises (then `info`: see `outcome_of_error`).
    """

    def __init__(
        self,
        client: Submitter,
        recorder: HistoryRecorder,
        *,
        process: str | None = None,
        timeout: float | None = None,
        read: ReadFn | None = None,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.process = process if process is not None else str(getattr(client, "id", "client"))
        self.timeout = timeout
        self._read = read

    async def get(self, key: str) -> str | None:
        if self._read is None:
            result = await self._submit("get", key, None, None, kv.get(key))
        else:
            read = self._read
            result = await self._call("get", key, None, None, lambda: read(key))
        assert result is None or isinstance(result, str)
        return result

    async def put(self, key: str, value: str) -> None:
        await self._submit("put", key, value, None, kv.put(key, value))

    async def cas(self, key: str, expect: str | None, value: str) -> CasResult:
        """Set `key` to `value` if it is `expect` (None: absent). Never raises on a compare
        failure: the result is falsy and says what the key held."""
        result = await self._submit("cas", key, value, expect, kv.cas(key, expect, value))
        assert isinstance(result, dict)
        return CasResult(bool(result["swapped"]), result["value"])

    async def append(self, key: str, value: str) -> str:
        """Append `value` to `key`; the key's new value."""
        result = await self._submit("append", key, value, None, kv.append(key, value))
        assert isinstance(result, str)
        return result

    async def _submit(
        self, f: Function, key: str, value: str | None, expect: str | None, payload: bytes
    ) -> Any:
        async def call() -> Any:
            raw = await self.client.submit(payload, timeout=self.timeout)
            try:
                return json.loads(raw)
            except (ValueError, RecursionError):
                return None  # `outcome` makes an unreadable reply info

        return await self._call(f, key, value, expect, call, decode=True)

    async def _call(
        self,
        f: Function,
        key: str,
        value: str | None,
        expect: str | None,
        call: Callable[[], Awaitable[Any]],
        decode: bool = False,
    ) -> Any:
        op = self.recorder.invoke(self.process, f, key, value, expect)
        try:
            answer = await call()
        except BaseException as e:
            assert outcome_of_error(e) == "info"
            self.recorder.info(op)
            raise
        if not decode:  # a read function's answer is the value itself
            if answer is not None and not isinstance(answer, str):
                self.recorder.info(op)
                raise KVError(f"read({key!r}) returned {answer!r}, not a string or None")
            self.recorder.ok(op, answer)
            return answer
        type_, result = outcome(f, answer)
        if type_ == "ok":
            self.recorder.ok(op, result)
            return result
        if type_ == "fail" and result is not None:  # a cas that found another value
            self.recorder.fail(op, result)
            return result
        if type_ == "fail":
            self.recorder.fail(op)
            raise KVError(f"{f} {key!r} refused by the store: {answer.get('error')}")
        self.recorder.info(op)
        raise KVError(f"{f} {key!r}: unexpected reply {answer!r}")


__all__ = [
    "EVENT_TYPES",
    "FUNCTIONS",
    "CasResult",
    "Event",
    "EventType",
    "Function",
    "HistoryChecker",
    "HistoryError",
    "HistoryRecorder",
    "KVError",
    "ReadFn",
    "RecordingKV",
    "Submitter",
    "check_result",
    "load_history",
    "outcome",
    "outcome_of_error",
    "parse_event",
    "validate_history",
]
