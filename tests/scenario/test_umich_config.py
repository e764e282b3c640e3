"""Reading scenarios: the UMich course files unchanged, paxoi configs, and bad input.

Nothing here starts a server: every case is either parsed in-process or refused before
the runner starts anything (exit status 2, one line on stderr).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from paxoi.cli.main import main
from paxoi.scenario import NAMED, ScenarioError, load_scenario

HERE = Path(__file__).resolve().parent
UMICH = HERE / "umich"
SHARED = HERE.parents[2] / "shared" / "external-tests" / "umich"

#: file -> (f, x, kills, drop rate), as the course's README describes them
EXPECTED = {
    "servers_test1.yaml": (2, -1, 0, 0.0),  # normal operation
    "servers_test2.yaml": (2, -1, 1, 0.0),  # the primary dies
    "servers_test3.yaml": (2, -1, 2, 0.0),  # the primary dies twice
    "servers_test4.yaml": (1, 3, 0, 0.0),  # skip slot 3
    "servers_test5.yaml": (1, -1, 0, 0.05),  # 5% message loss
}


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_course_files_are_read_unchanged(name: str) -> None:
    s = load_scenario(str(UMICH / name))
    assert (s.f, s.skip_slot, s.kills, s.drop_rate) == EXPECTED[name]
    assert s.servers == 2 * s.f + 1  # six listed; only 0..2f are used
    assert s.storage == "../state_backup"
    assert set(s.hosts) == {"bigdata.eecs.umich.edu"}


@pytest.mark.skipif(not SHARED.is_dir(), reason="no ../shared checkout next to this one")
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_our_copies_match_the_shared_ones(name: str) -> None:
    assert (UMICH / name).read_bytes() == (SHARED / name).read_bytes()


def test_a_remote_host_is_refused_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["scenario", str(UMICH / "servers_test1.yaml")], capsys)
    assert code == 2
    assert "bigdata.eecs.umich.edu is not an address of this machine" in err
    assert "--host 127.0.0.1" in err


def test_named_scenarios_and_overrides() -> None:
    assert {
        "normal",
        "primary-dies",
        "primary-dies-f-times",
        "skip-slot",
        "message-loss",
        "stress",
        "crash-restart-all",
        "partition",
        "no-majority",
    } <= set(NAMED)
    assert NAMED["primary-dies-f-times"].with_options(f=2).kills == 2
    assert NAMED["message-loss"].drop_rate == 0.05
    with pytest.raises(ScenarioError, match="at most f = 1 times"):
        NAMED["normal"].with_options(kill_primary=2)
    with pytest.raises(ScenarioError, match="needs f >= 1"):
        NAMED["skip-slot"].with_options(f=0)


def test_a_paxoi_config_is_a_scenario_too(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(
        "cluster: mine\n"
        "servers:\n"
        "  0: {host: 127.0.0.1, port: 7000}\n"
        "  1: {host: 127.0.0.1, port: 7001}\n"
        "  2: {host: 127.0.0.1, port: 7002}\n"
        "faults: {msg_drop_rate: 0.01, seed: 5}\n"
    )
    s = load_scenario(str(path))
    assert (s.f, s.servers, s.drop_rate, s.seed) == (1, 3, 0.01, 5)
    assert s.base is not None and s.base.cluster == "mine"
    with pytest.raises(ScenarioError, match="fixes its servers"):
        s.with_options(f=2)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("f: [unclosed\n", "not valid YAML"),
        ("- a list\n", "expected a mapping"),
        ("f: 1\nservers_list: {0: {host: h, port: 1}}\n", "needs servers 0..2; missing 1, 2"),
        (
            "f: 1\nnum_failed_primary: 2\nservers_list: {0: {host: h, port: 1}, "
            "1: {host: h, port: 2}, 2: {host: h, port: 3}}\n",
            "num_failed_primary: 2 is more than f = 1",
        ),
        (
            "f: 1\nmsg_drop_rat: 0.1\nservers_list: {0: {host: h, port: 1}, "
            "1: {host: h, port: 2}, 2: {host: h, port: 3}}\n",
            "msg_drop_rat: Extra inputs are not permitted",
        ),
        ("cluster: c\n", "neither a UMich configuration"),
        ("servers: {0: {port: 70000}}\n", "servers.0.port"),
    ],
)
def test_bad_files_exit_2_with_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    code, _, err = run_cli(["scenario", str(path), "--host", "127.0.0.1"], capsys)
    assert code == 2, err
    assert err.startswith("paxoi scenario: ") and message in err
    assert "Traceback" not in err


def test_missing_file_and_unknown_name_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["scenario", str(tmp_path / "none.yaml")], capsys)
    assert code == 2 and "none.yaml: no such file" in err
    code, _, err = run_cli(["scenario", "no-such-scenario"], capsys)
    assert code == 2 and "no such scenario or file" in err and "crash-restart-all" in err


def test_bad_options_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in [
        (["scenario", "normal", "--clients", "0"], "--clients must be at least 1"),
        (["scenario", "normal", "--drop-rate", "1.5"], "drop rate must be in [0, 1)"),
        (["scenario", "normal", "--host", "example.com"], "not an address of this machine"),
        (["scenario", "normal", "--timeout", "0"], "must be positive"),
    ]:
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and message in err, (argv, err)


def test_storage_may_not_leave_the_scenario_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (UMICH / "servers_test4.yaml").read_text()
    path = tmp_path / "escape.yaml"
    path.write_text(text.replace("../state_backup", "../../../../elsewhere"))
    code, _, err = run_cli(["scenario", str(path), "--host", "127.0.0.1"], capsys)
    assert code == 2 and "would leave the scenario's directory" in err


@pytest.mark.parametrize("command", ["scenario", "check"])
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli([command, "--help"], capsys)
    assert code == 0 and "usage: paxoi " + command in out
