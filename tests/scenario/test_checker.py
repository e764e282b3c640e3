"""The result checker as pure functions: each violation it must catch, on planted data.

No processes here: the inputs are built by hand (or written to tmp_path for the loader
and the `paxoi check` command), so every check is shown to fail when it should.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paxoi.apps.chat import ChatEntry, canonical_line
from paxoi.check.results import (
    AGREEMENT,
    DUPLICATES,
    INTEGRITY,
    TERMINATION,
    Learned,
    Proposal,
    Results,
    ResultsError,
    check,
    check_agreement,
    check_duplicates,
    check_integrity,
    check_termination,
    empty_slots,
    format_slots,
    load_results,
    parse_chat_log,
    parse_learned,
    unescape,
)
from paxoi.cli.main import main

# -- helpers --------------------------------------------------------------------------------


def props(*items: tuple[str, int, str, bool]) -> list[Proposal]:
    return [Proposal(c, s, v, a) for c, s, v, a in items]


def log(*items: tuple[int, str, int, str]) -> list[Learned]:
    return [Learned(v, slot, c, s) for slot, c, s, v in items]


A = ("a", 1, "hello", True)
B = ("b", 1, "world", True)
C = ("a", 2, "again", True)
GOOD = log((0, "a", 1, "hello"), (1, "b", 1, "world"), (3, "a", 2, "again"))


def chat_text(entries: list[Learned]) -> str:
    return "".join(
        canonical_line(ChatEntry(e.slot or 0, e.client or "", e.seq or 0, e.value)) for e in entries
    )


# -- each check -----------------------------------------------------------------------------


def test_a_correct_run_passes() -> None:
    report = check(Results({"a": props(A, C), "b": props(B)}, {"0": GOOD, "1": GOOD}))
    assert report.ok, report.render()
    assert report.termination.acked == report.termination.acked_learned_by_all == 3
    assert report.learners[0].empty_slots == (2,)  # the gap: a no-op
    assert report.verdict().startswith("OK: integrity, agreement, no duplicates")


def test_a_lagging_learner_misses_acked_commands() -> None:
    """Learner 1 never learned ('a', 2): acknowledged, so a termination violation."""
    report = check(Results({"a": props(A, C), "b": props(B)}, {"0": GOOD, "1": GOOD[:2]}))
    missing = report.problems_of(TERMINATION)
    assert len(missing) == 1 and "(a, 2)" in missing[0].detail and "1" in missing[0].detail
    assert not report.ok
    assert report.verdict().startswith("VIOLATION: termination (1)")


def test_an_unacked_command_need_not_be_learned() -> None:
    report = check(
        Results({"a": props(A, ("a", 2, "again", False)), "b": props(B)}, {"0": GOOD[:2]})
    )
    assert report.ok, report.render()
    assert report.termination.percent == pytest.approx(100 * 2 / 3)


def test_agreement_violation_two_learners_differ_at_a_slot() -> None:
    other = log((0, "a", 1, "hello"), (1, "a", 2, "again"), (3, "b", 1, "world"))
    problems = check_agreement({"0": GOOD, "1": other})
    assert len(problems) == 1
    assert problems[0].check == AGREEMENT and "entry 2" in problems[0].detail
    report = check(Results({"a": props(A, C), "b": props(B)}, {"0": GOOD, "1": other}))
    assert not report.ok and report.problems_of(AGREEMENT)


def test_agreement_a_prefix_is_fine_and_slot_order_is_checked() -> None:
    assert check_agreement({"0": GOOD, "1": GOOD[:1], "2": []}) == []
    backwards = log((3, "a", 1, "hello"), (1, "b", 1, "world"))
    problems = check_agreement({"0": backwards})
    assert len(problems) == 1 and "out of slot order" in problems[0].detail


def test_integrity_violation_a_value_nobody_proposed() -> None:
    forged = [*GOOD, Learned("evil", 4, "mallory", 1)]
    problems = check_integrity(props(A, B, C), {"0": forged})
    assert [p.check for p in problems] == [INTEGRITY]
    assert "mallory" in problems[0].detail and "never proposed" in problems[0].detail


def test_integrity_violation_a_command_learned_with_another_value() -> None:
    changed = log((0, "a", 1, "HELLO"))
    problems = check_integrity(props(A), {"0": changed})
    assert len(problems) == 1 and "was proposed as 'hello'" in problems[0].detail


def test_duplicate_a_command_learned_twice() -> None:
    twice = [*GOOD, Learned("hello", 5, "a", 1)]
    problems = check_duplicates(props(A, B, C), {"0": twice})
    assert [p.check for p in problems] == [DUPLICATES]
    assert "(a, 1) learned 2 times (slots 0, 5)" in problems[0].detail
    report = check(Results({"a": props(A, C), "b": props(B)}, {"0": twice}))
    assert report.problems_of(DUPLICATES) and not report.ok


def test_missing_acked_command_with_no_learner_at_all() -> None:
    term, problems = check_termination(props(A), {})
    assert term.learned_by_all == 0 and len(problems) == 1


def test_termination_not_required_without_a_majority() -> None:
    report = check(Results({"a": props(A, C)}, {"0": GOOD[:1]}), require_acked=False)
    assert report.ok
    assert any("not required" in n for n in report.notes)


def test_crashed_learners_are_checked_for_agreement_not_termination() -> None:
    stale = GOOD[:1]
    ok = check(Results({"a": props(A, C), "b": props(B)}, {"0": GOOD}, {"9": stale}))
    assert ok.ok, ok.render()
    wrong = log((0, "b", 1, "world"))
    bad = check(Results({"a": props(A, C), "b": props(B)}, {"0": GOOD}, {"9": wrong}))
    assert bad.problems_of(AGREEMENT)


# -- the plain layout (USI harness: one value per line) -------------------------------------


def plain(values: str) -> list[Learned]:
    return parse_learned(values, chat=False)


def test_plain_layout_passes_with_repeated_proposals() -> None:
    proposed = {
        "prop1": [Proposal("prop1", None, v) for v in ["1", "2", "2"]],
        "prop2": [Proposal("prop2", None, v) for v in ["3"]],
    }
    learned = {"l1": plain("1\n2\n2\n3\n"), "l2": plain("1\n2\n2\n3\n")}
    report = check(Results(proposed, learned))
    assert report.layout == "plain"
    assert report.ok, report.render()
    assert report.termination.percent == 100.0


def test_plain_layout_catches_each_violation() -> None:
    proposed = {"p": [Proposal("p", None, v) for v in ["1", "2", "3"]]}
    learned = {
        "l1": plain("1\n2\n3\n"),
        "l2": plain("1\n3\n2\n"),  # order differs: agreement
        "l3": plain("1\n1\n"),  # 1 twice, proposed once: duplicate
        "l4": plain("1\n2\n3\n4\n"),  # 4 never proposed: integrity
    }
    report = check(Results(proposed, learned))
    assert report.problems_of(AGREEMENT)
    assert any("learned 2 times, proposed 1" in p.detail for p in report.problems_of(DUPLICATES))
    assert any("'4'" in p.detail for p in report.problems_of(INTEGRITY))
    # l3 lacks 2 and 3: not every value is learned by every learner
    assert report.problems_of(TERMINATION)
    assert report.termination.percent == pytest.approx(100 / 3)


def test_plain_layout_termination_threshold() -> None:
    proposed = {"p": [Proposal("p", None, v) for v in ["1", "2", "3", "4"]]}
    learned = {"l1": plain("1\n2\n3\n")}
    assert not check(Results(proposed, learned)).ok  # 100% by default
    assert check(Results(proposed, learned), min_termination=75).ok


# -- parsing and loading --------------------------------------------------------------------


def test_chat_log_round_trip_with_escapes() -> None:
    weird = "tab\there\nnewline \\ backslash \x00 nul \u2028 sep"
    text = canonical_line(ChatEntry(7, "we\tird", 3, weird))
    (entry,) = parse_chat_log(text)
    assert (entry.slot, entry.client, entry.seq, entry.value) == (7, "we\tird", 3, weird)
    assert unescape("plain") == "plain"
    with pytest.raises(ValueError):
        unescape("bad \\q escape")


def test_chat_log_bad_line_is_an_input_error() -> None:
    with pytest.raises(ResultsError, match=r"x\.txt:2: expected 4 tab-separated fields"):
        parse_chat_log("0\ta\t1\thi\nnot a chat line\n", "x.txt")


def test_learned_format_is_recognised_from_the_content() -> None:
    assert parse_learned("0\ta\t1\thi\n")[0].key == ("a", 1)
    assert parse_learned("12\n13\n")[0].key is None


def test_empty_slots_are_the_gaps_below_the_top() -> None:
    entries = log((0, "a", 1, "x"), (2, "a", 2, "y"), (2, "b", 1, "z"), (6, "a", 3, "w"))
    assert empty_slots(entries) == (1, 3, 4, 5)
    assert format_slots(empty_slots(entries)) == "1, 3-5"
    assert format_slots(()) == "none"


def write_chat_dir(root: Path, learned: dict[str, list[Learned]]) -> None:
    (root / "proposed").mkdir(parents=True)
    (root / "learned").mkdir()
    rows = [{"client": c, "seq": s, "value": v, "acked": a} for c, s, v, a in (A, B, C)]
    (root / "proposed" / "client0.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    for name, entries in learned.items():
        (root / "learned" / f"{name}.txt").write_text(chat_text(entries), encoding="utf-8")


def test_load_results_and_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_chat_dir(tmp_path / "ok", {"node-0": GOOD, "node-1": GOOD})
    results = load_results(tmp_path / "ok")
    assert results.layout == "chat" and set(results.learners) == {"node-0", "node-1"}
    assert main(["check", str(tmp_path / "ok")]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].startswith("OK: integrity, agreement, no duplicates")

    forged = [*GOOD, Learned("hello", 9, "a", 1)]
    write_chat_dir(tmp_path / "bad", {"node-0": forged, "node-1": GOOD})
    assert main(["check", str(tmp_path / "bad"), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["problems"]["duplicates"]
    assert doc["problems"]["agreement"] == []  # node-1 is a prefix of node-0


def test_check_command_plain_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for d in ("proposed", "learned"):
        (tmp_path / d).mkdir()
    (tmp_path / "proposed" / "prop1.txt").write_text("5\n6\n6\n")
    (tmp_path / "learned" / "learner1.txt").write_text("5\n6\n6\n")
    (tmp_path / "learned" / "learner2.txt").write_text("5\n6\n")
    assert main(["check", str(tmp_path)]) == 0
    assert "termination: 100.0%" in capsys.readouterr().out


def test_check_command_bad_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["check", str(tmp_path / "nowhere")])
    assert exc.value.code == 2
    assert "no such directory" in capsys.readouterr().err

    (tmp_path / "proposed").mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["check", str(tmp_path)])
    assert exc.value.code == 2
    assert "learned" in capsys.readouterr().err

    (tmp_path / "learned").mkdir()
    (tmp_path / "proposed" / "c.jsonl").write_text('{"client": "a", "seq": "one"}\n')
    with pytest.raises(SystemExit) as exc:
        main(["check", str(tmp_path)])
    assert exc.value.code == 2
    assert "c.jsonl:1: 'seq' must be an integer" in capsys.readouterr().err


def test_conflicting_records_of_one_command_are_refused(tmp_path: Path) -> None:
    for d in ("proposed", "learned"):
        (tmp_path / d).mkdir()
    rows = [
        {"client": "a", "seq": 1, "value": "x", "acked": False},
        {"client": "a", "seq": 1, "value": "y", "acked": True},
    ]
    (tmp_path / "proposed" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ResultsError, match="two values"):
        load_results(tmp_path)
