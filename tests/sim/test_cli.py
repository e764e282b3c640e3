"""`paxoi sim` as a user runs it: last line, exit codes, reproduction."""

from __future__ import annotations

import pytest

from paxoi.cli.main import main


def test_sim_passes_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--seeds", "6"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "6 seeds, 0 violations"


def test_list_bugs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--list-bugs"]) == 0
    names = capsys.readouterr().out.split()
    assert "leader-ignores-accepted" in names
    assert "acceptor-replies-before-persist" in names
    assert "quorum-of-f" in names
    assert "replica-forgets-client-table" in names


def test_bug_is_reported_with_a_reproducing_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--bug", "quorum-of-f"]) == 1
    out = capsys.readouterr().out
    assert "VIOLATION at seed" in out
    repro = next(line for line in out.splitlines() if line.startswith("reproduce: "))
    first_violation = next(line for line in out.splitlines() if line.startswith("VIOLATION"))
    argv = repro.removeprefix("reproduce: paxoi ").split()
    assert main(argv) == 1
    again = capsys.readouterr().out
    assert first_violation in again


def test_unknown_bug_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--bug", "no-such-bug"]) == 2
    assert "unknown bug" in capsys.readouterr().err


def test_simulated_demo_shows_equal_hashes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--simulated"]) == 0
    out = capsys.readouterr().out
    hashes = {line.split("sha256 ")[1] for line in out.splitlines() if "sha256" in line}
    assert len(hashes) == 1
    assert "OK: every replica holds the same log" in out
