"""The lost-write check: final values against every acknowledged write."""

from __future__ import annotations

from typing import Any

from paxoi.client.history import HistoryRecorder
from paxoi.nemesis.lost import check_lost


class Clock:
    def __init__(self) -> None:
        self.t = 0

    def __call__(self) -> int:
        self.t += 1
        return self.t


def recorder() -> HistoryRecorder:
    return HistoryRecorder(clock=Clock())


def op(h: HistoryRecorder, f: Any, key: str, value: str | None, kind: str, result: Any = None, expect: str | None = None) -> None:  # fmt: skip
    i = h.invoke("p", f, key, value, expect)
    if kind == "ok":
        h.ok(i, result)
    elif kind == "fail":
        h.fail(i, result)
    elif kind == "info":
        h.info(i)


def test_registers_nothing_lost() -> None:
    h = recorder()
    op(h, "put", "r", "v1", "ok")
    op(h, "cas", "r", "v2", "ok", {"swapped": True, "value": "v2"}, expect="v1")
    op(h, "put", "r", "v3", "info")  # unknown: may be the final value, or not
    for final in ("v2", "v3"):
        report = check_lost(h.events, {"r": final})
        assert report.ok, report.problems
        assert report.acknowledged == 2


def test_register_acknowledged_write_lost() -> None:
    h = recorder()
    op(h, "put", "r", "v1", "ok")
    op(h, "put", "r", "v2", "ok")  # began after v1 completed: v1 cannot be final
    report = check_lost(h.events, {"r": "v1"})
    assert not report.ok
    assert "acknowledged write(s) lost" in report.problems[0] and "'v2'" in report.problems[0]


def test_register_final_value_never_written_or_absent() -> None:
    h = recorder()
    op(h, "put", "r", "v1", "ok")
    op(h, "cas", "r", "v9", "fail", {"swapped": False, "value": "v1"}, expect="v0")
    report = check_lost(h.events, {"r": "v9"})  # only a refused cas wrote v9
    assert not report.ok and "never written" in report.problems[0]
    report = check_lost(h.events, {"r": None})
    assert not report.ok and "absent at the end" in report.problems[0]
    assert check_lost(recorder().events, {"r": None}).ok  # nothing written, nothing lost


def test_lists_nothing_lost() -> None:
    h = recorder()
    op(h, "append", "l", "e1;", "ok", "e1;")
    op(h, "append", "l", "e2;", "info")
    op(h, "append", "l", "e3;", "ok", "e1;e2;e3;")
    op(h, "get", "l", None, "ok", "e1;e2;e3;")
    report = check_lost(h.events, {"l": "e1;e2;e3;"})
    assert report.ok, report.problems
    assert (report.acknowledged, report.elements, report.unknown_elements) == (2, 3, 1)


def test_list_acknowledged_append_lost() -> None:
    h = recorder()
    op(h, "append", "l", "e1;", "ok", "e1;")
    op(h, "append", "l", "e2;", "ok", "e1;e2;")
    report = check_lost(h.events, {"l": "e1;"})
    assert any("1 acknowledged append(s) lost" in p for p in report.problems)
    assert any("not a prefix" in p for p in report.problems)  # e2's result "e1;e2;"


def test_list_duplicates_strangers_and_garbage() -> None:
    h = recorder()
    op(h, "append", "l", "e1;", "ok", "e1;")
    report = check_lost(h.events, {"l": "e1;e1;"})
    assert any("more than once" in p for p in report.problems)
    report = check_lost(h.events, {"l": "e1;e7;"})
    assert any("no append could have added: e7;" in p for p in report.problems)
    report = check_lost(h.events, {"l": "e1;junk"})
    assert any("not a list of elements" in p for p in report.problems)


def test_list_real_time_order() -> None:
    h = recorder()
    op(h, "append", "l", "e1;", "ok", "e1;")  # completes before e2 begins
    op(h, "append", "l", "e2;", "info")
    report = check_lost(h.events, {"l": "e2;e1;"})
    assert any("out of order" in p for p in report.problems)
    # concurrent appends may land in either order
    h = recorder()
    a = h.invoke("p1", "append", "l", "e1;")
    b = h.invoke("p2", "append", "l", "e2;")
    h.ok(b, "e2;")
    h.ok(a, "e2;e1;")
    assert check_lost(h.events, {"l": "e2;e1;"}).ok
