"""`paxoi master` against the CS 380D tests: the official ones, ours, and its contract.

Every run goes through the repository's COMMAND file, as the course's tester runs it
(`cs380d_harness.run_master`), on real server and client processes on 127.0.0.1. The
official tests are compared as the tester compares them; ours (cases/*.test with their
.sol) exactly, which is stricter. Each run is bounded by the tester's 10 s limit.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cs380d_harness import (
    CASES,
    OFFICIAL,
    REPO,
    TESTER_LIMIT,
    accepted_by_tester,
    command,
    expected_for,
    run_master,
)

from paxoi.master.client import ChatView, sender_of
from paxoi.master.commands import (
    AllClear,
    CrashServer,
    PrintChatLog,
    Rejected,
    RestartServer,
    SendMessage,
    Start,
    TimeBombLeader,
    parse_command,
)


def _procs_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text` (a run's unique working directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(int(entry.name))
    return found


def _wait_gone(workdir: Path, timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := _procs_mentioning(str(workdir))) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


# ---------------------------------------------------------------------- end to end
@pytest.mark.parametrize("test", sorted(OFFICIAL.glob("**/*.test")), ids=lambda p: Path(p).stem)
def test_official(test: Path, tmp_path: Path) -> None:
    run = run_master(test.read_text(encoding="utf-8"), log_dir=tmp_path / "run")
    expected = expected_for(test).read_text(encoding="utf-8")
    assert run.returncode == 0, f"killed or failed after {run.elapsed:.1f} s"
    assert run.stderr == b""
    assert accepted_by_tester(run.stdout, expected), run.stdout
    assert run.elapsed < TESTER_LIMIT
    assert _wait_gone(tmp_path / "run") == []


@pytest.mark.parametrize("test", sorted(CASES.glob("*.test")), ids=lambda p: Path(p).stem)
def test_case(test: Path, tmp_path: Path) -> None:
    run = run_master(test.read_text(encoding="utf-8"), log_dir=tmp_path / "run")
    expected = expected_for(test).read_text(encoding="utf-8")
    assert run.returncode == 0, f"killed or failed after {run.elapsed:.1f} s"
    assert run.stderr == b""
    assert run.elapsed < TESTER_LIMIT
    assert _wait_gone(tmp_path / "run") == []
    assert run.stdout == expected


def test_concurrent_clients_agree_and_keep_their_order(tmp_path: Path) -> None:
    """Four clients send bursts at once: the order between clients is the leader's to
    choose, so the check is on properties: every client prints the same log, each message
    appears exactly once, each client's messages in its sending order, one slot each."""
    clients, per_client = 4, 6
    sends = [
        f"sendMessage {i} c{i}_m{k} word{k}" for k in range(per_client) for i in range(clients)
    ]
    prints = [f"printChatLog {i}" for i in range(clients)]
    test = "\n".join([f"start 3 {clients}", *sends, "allClear", *prints])
    run = run_master(test, log_dir=tmp_path / "run")
    assert run.returncode == 0 and run.stderr == b""
    lines = run.stdout.splitlines()
    total = clients * per_client
    assert len(lines) == clients * total
    views = [lines[i * total : (i + 1) * total] for i in range(clients)]
    assert all(view == views[0] for view in views)
    parsed = [re.fullmatch(r"(\d+) (\d+): (c(\d+)_m(\d+) word(\d+))", line) for line in views[0]]
    assert all(parsed), views[0]
    slots = [int(m[1]) for m in parsed if m]
    assert slots == list(range(total))
    assert sorted(m[3] for m in parsed if m) == sorted(s.split(" ", 2)[2] for s in sends)
    for i in range(clients):
        mine = [int(m[5]) for m in parsed if m and int(m[2]) == i]
        assert all(m[2] == m[4] for m in parsed if m)  # the sender index is right
        assert mine == list(range(per_client))


def test_nothing_but_the_logs_on_stdout_and_stderr(tmp_path: Path) -> None:
    run = run_master("start 3 1\nallClear\nnonsense here\nprintChatLog 3", log_dir=tmp_path)
    assert (run.returncode, run.stdout, run.stderr) == (0, "", b"")
    log = (tmp_path / "master.log").read_text(encoding="utf-8")
    assert "ignored 'nonsense here': unknown command 'nonsense'" in log
    assert "there is no client 3" in log


def test_without_a_log_dir_nothing_is_left_behind(tmp_path: Path) -> None:
    run = run_master(
        "start 3 1\nsendMessage 0 x\nallClear\nprintChatLog 0",
        extra_env={"TMPDIR": str(tmp_path)},
    )
    assert (run.returncode, run.stdout, run.stderr) == (0, "0 0: x\n", b"")
    assert list(tmp_path.iterdir()) == []


def test_sigterm_stops_every_child(tmp_path: Path) -> None:
    env = dict(os.environ, PAXOI_PYTHON=sys.executable, PAXOI_MASTER_LOG_DIR=str(tmp_path))
    proc = subprocess.Popen(
        command(),
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write(b"start 3 2\nsendMessage 0 hi\nallClear\n")
        proc.stdin.flush()
        log = tmp_path / "master.log"
        deadline = time.monotonic() + TESTER_LIMIT
        while "allClear done" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "allClear did not finish"
            time.sleep(0.05)
        assert len(_procs_mentioning(str(tmp_path))) >= 5  # 3 servers, 2 clients, standbys
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TESTER_LIMIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out, err) == (128 + signal.SIGTERM, b"", b"")
    assert _wait_gone(tmp_path) == []


def test_master_client_is_not_advertised() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "paxoi", "--help"], capture_output=True, text=True, check=True
    )
    assert "master " in result.stdout and "master-client" not in result.stdout


# ---------------------------------------------------------------------- units
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("start 3 2", Start(3, 2)),
        ("start 5 0\n", Start(5, 0)),
        ("sendMessage 0 helloWorld", SendMessage(0, "helloWorld")),
        ("sendMessage 1   many \t spaced   words  ", SendMessage(1, "many spaced words")),
        ("crashServer 4", CrashServer(4)),
        ("restartServer 0", RestartServer(0)),
        ("allClear", AllClear()),
        ("  allClear  ", AllClear()),
        ("timeBombLeader 0", TimeBombLeader(0)),
        ("printChatLog 1", PrintChatLog(1)),
        ("", None),
        ("   \n", None),
    ],
)
def test_parse_command(line: str, expected: object) -> None:
    assert parse_command(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "launch 3 2",
        "start 3",
        "start 0 2",
        "start 99 2",
        "start 3 999",
        "start three 2",
        "sendMessage 0",
        "sendMessage -1 hi",
        "sendMessage +1 hi",
        "crashServer",
        "crashServer 1 2",
        "crashServer -1",
        "crashServer \u0661",  # ARABIC-INDIC DIGIT ONE: a digit, but not ASCII
        "allClear now",
        "timeBombLeader",
        "printChatLog x",
        "allclear",
    ],
)
def test_parse_command_rejects(line: str) -> None:
    result = parse_command(line)
    assert isinstance(result, Rejected) and result.reason


def test_sender_index_comes_from_the_client_id() -> None:
    assert sender_of("3-0123456789ab") == "3"
    assert sender_of("12-x") == "12"
    assert sender_of("status-ab") == "status-ab"
    assert sender_of("plain") == "plain"


def test_chat_view_orders_by_slot_and_drops_redeliveries() -> None:
    view = ChatView()
    assert view.add(2, "1-a", 1, "second")
    assert view.add(0, "0-b", 1, "first")
    assert not view.add(2, "1-a", 1, "second")  # again, after a resubscription
    assert view.add(5, "0-b", 2, "third")
    assert len(view) == 3 and view.top == 5
    assert view.entries() == [(0, "0", "first"), (2, "1", "second"), (5, "0", "third")]


def test_first_send_after_idle_does_not_fail_over() -> None:
    """The workaround in paxoi.master.client._Client: after an idle spell, a command that
    is slow to commit must not send the client to another server (and resend it)."""
    import asyncio
    import functools

    from paxoi.core.messages import ClientReply, ReplyStatus
    from paxoi.master.client import _Client
    from paxoi.transport.tcp import FrameReader
    from paxoi.wire.codec import PROTOCOL_VERSION, encode
    from paxoi.wire.framing import frame
    from paxoi.wire.messages import HelloAck, Submit

    async def scenario() -> tuple[int, list[int]]:
        submits: list[int] = []  # which server each Submit reached

        async def serve(
            index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            frames = FrameReader(reader, 1 << 20)
            await frames.read_one()  # Hello
            writer.write(frame(encode(HelloAck(PROTOCOL_VERSION, "c", index, 0))))
            while (msg := await frames.read_one()) is not None:
                if isinstance(msg, Submit):
                    submits.append(index)
                    await asyncio.sleep(0.15)  # slow, but within the retry interval
                    reply = ClientReply(msg.command.client, msg.command.seq, ReplyStatus.OK, b"0")
                    writer.write(frame(encode(reply)))

        servers = [
            await asyncio.start_server(functools.partial(serve, i), "127.0.0.1", 0)
            for i in range(2)
        ]
        addresses = {i: ("127.0.0.1", s.sockets[0].getsockname()[1]) for i, s in enumerate(servers)}
        client = _Client(addresses, cluster="c", retry_interval=0.25, timeout=10)
        client.target = 0
        try:
            await client.submit("first")
            await asyncio.sleep(1.0)  # idle: nothing heard from the server meanwhile
            await client.submit("after a pause")
        finally:
            await client.close()
            for s in servers:
                s.close()
        return client.failovers, submits

    failovers, submits = asyncio.run(scenario())
    assert failovers == 0 and set(submits) == {0}, submits
