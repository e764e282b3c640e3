"""`paxoi master`: the CS 380D course's master program; `paxoi master-client`, its clients.

The course's tester runs the one-line command in the repository's COMMAND file, feeds a
test on standard input and compares standard output with the expected one, exactly. So
after its arguments are parsed the master writes nothing but printChatLog's lines:
logging, and even a stray warning or traceback (file descriptor 2 is pointed at the
log), go to `master.log` in its log directory.

`master-client` is internal (the master starts one per client and talks to it over a
pipe), so it is left out of `paxoi --help`.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

#: Where the master keeps its logs and the servers' data when --log-dir is not given.
LOG_DIR_ENV = "PAXOI_MASTER_LOG_DIR"


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "master",
        help="the CS 380D master program: drive a chat room with commands on stdin",
        description=(
            "Read CS 380D master commands from standard input until EOF (start S C, "
            "sendMessage i words..., crashServer i, restartServer i, allClear, "
            "timeBombLeader n, printChatLog i) and run them against real paxoi servers and "
            "clients on 127.0.0.1. Only printChatLog writes to standard output; everything "
            "else, including ignored commands, is logged to DIR/master.log. At EOF every "
            "server and client is stopped."
        ),
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        metavar="DIR",
        help=(
            f"keep logs, configuration and server data here (default: ${LOG_DIR_ENV} if "
            "set, else a temporary directory, removed at exit)"
        ),
    )
    parser.add_argument(
        "--all-clear-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="longest wait of one allClear for the system to go idle (default 10)",
    )
    parser.set_defaults(func=run)

    # No help= : argparse then leaves it out of the command list.
    client: argparse.ArgumentParser = subparsers.add_parser(
        "master-client", description="internal: one client process of `paxoi master`"
    )
    client.add_argument("--config", type=Path, required=True, help=argparse.SUPPRESS)
    client.add_argument("--index", type=int, required=True, help=argparse.SUPPRESS)
    client.set_defaults(func=run_client)

    standby: argparse.ArgumentParser = subparsers.add_parser(
        "master-standby", description="internal: a warm process of `paxoi master`"
    )
    # Unused but in the command line, so that a process listing shows whose it is.
    standby.add_argument("--for", dest="owner", metavar="DIR", help=argparse.SUPPRESS)
    standby.set_defaults(func=run_standby)


class _Stopped(BaseException):
    """A signal asked the master to stop: unwind so every child is stopped."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum: int, frame: FrameType | None) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # one stop is enough; let it finish
    raise _Stopped(signum)


def _input_lines() -> Iterator[str]:
    # Bytes, decoded here: the tester's locale may not be UTF-8, and a stray byte must
    # not end the session with a UnicodeDecodeError.
    for raw in sys.stdin.buffer:
        yield raw.decode("utf-8", "replace")


def run(args: argparse.Namespace) -> int:
    from paxoi.master import Master, Settings

    explicit = args.log_dir or (
        Path(os.environ[LOG_DIR_ENV]) if os.environ.get(LOG_DIR_ENV) else None
    )
    if explicit is not None:
        workdir = explicit.resolve()
        try:
            workdir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            print(f"paxoi master: cannot create {workdir}: {e.strerror}", file=sys.stderr)
            return 2
    else:
        workdir = Path(tempfile.mkdtemp(prefix="paxoi-master-"))
    log_path = workdir / "master.log"
    logging.basicConfig(
        filename=log_path,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    # From here on nothing may reach the real stderr: not a warning, not a traceback.
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    master = Master(workdir, sys.stdout.buffer, Settings(all_clear_timeout=args.all_clear_timeout))
    logging.getLogger("paxoi.master").info("master pid %d, working in %s", os.getpid(), workdir)
    status = 0
    try:
        master.run(_input_lines())
    except _Stopped as stop:
        logging.getLogger("paxoi.master").warning("stopped by signal %d", stop.signum)
        master.close()
        status = 128 + stop.signum
    if explicit is None:
        # A tester runs COMMAND many times: leave nothing behind by default. To keep
        # the logs, give a directory (--log-dir, or $PAXOI_MASTER_LOG_DIR via COMMAND).
        logging.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)
        return status
    logging.getLogger("paxoi.master").info("master done (exit status %d)", status)
    return status


def run_client(args: argparse.Namespace) -> int:
    import asyncio

    from paxoi.cli.common import setup_logging
    from paxoi.core.errors import PaxoiError
    from paxoi.master.client import serve
    from paxoi.server.config import load_config

    setup_logging("INFO", f"client-{args.index} ")  # stderr: the master's log file
    # A client that will not exit at end of input gets SIGUSR1 before SIGKILL: its stacks
    # then land in its log, which is the only way to learn where it was stuck.
    faulthandler.register(signal.SIGUSR1)
    try:
        config = load_config(args.config)
    except PaxoiError as e:
        logging.getLogger("paxoi.master.client").error("%s", e)
        return 2
    asyncio.run(serve(config, args.index))
    return 0


def run_standby(args: argparse.Namespace) -> int:
    """Import what a server needs, then wait for the order to be one (see
    paxoi.master.standby): a JSON line `{"argv": [...], "log": FILE}`; from then on the
    process is `paxoi <argv>`, writing to FILE. End of input means it is not needed."""
    import json

    import paxoi.server.runtime  # noqa: F401  (the costly part of a server's start)
    from paxoi.cli.main import main

    line = sys.stdin.readline()
    if not line:
        return 0
    order = json.loads(line)
    fd = os.open(order["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    return main([str(a) for a in order["argv"]])
