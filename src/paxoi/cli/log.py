"""`paxoi log`: a replica's chat log, or its hash (read from the server's data directory)."""

from __future__ import annotations

import argparse
import hashlib
from typing import Any

from paxoi.cli.common import add_config_arg, config_from, fail


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "log",
        help="print a replica's chat log or its hash",
        description=(
            "Print the chat log that server N has applied, one line per message "
            "('<slot> <sender>: <message>'), or with --hash the sha256 of its canonical form. "
            "Reads <storage.dir>/node-N/chat.log, so it works while the server is down too."
        ),
    )
    add_config_arg(parser)
    parser.add_argument("--id", type=int, required=True, metavar="N", help="which replica")
    parser.add_argument("--hash", action="store_true", help="print only the sha256 of the log")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from(args, "log")
    if args.id not in config.servers:
        fail("log", f"--id {args.id}: no such server in {args.config}", 2)
    path = config.data_dir(args.id) / "chat.log"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        fail("log", f"{path}: no chat log (has server {args.id} run with this configuration?)")
    except OSError as e:
        fail("log", f"{path}: {e.strerror}")
    if args.hash:
        entries = data.count(b"\n")
        print(f"{hashlib.sha256(data).hexdigest()}  {entries} entries  node {args.id}")
        return 0
    for line in data.decode("utf-8", errors="replace").splitlines():
        slot, sender, _seq, message = line.split("\t", 3)
        print(f"{slot} {sender}: {message}")
    return 0
