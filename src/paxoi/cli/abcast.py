"""`paxoi abcast ROLE ID CONF`: one process of the atomic broadcast over IP multicast."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

ROLE_NAMES = ("acceptor", "client", "learn", "learner", "proposer")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "abcast",
        help="run one role of the multicast atomic broadcast (USI harness)",
        description=(
            "Run a proposer, acceptor, learner or client of Multi-Paxos atomic broadcast, "
            "all communication by IP multicast, one group per role as named in CONF "
            "('<role> <ip> <port>' lines). A learner prints each decided value on its "
            "own line; a client submits each line of its standard input. Loopback "
            "multicast by default; set PAXOI_MULTICAST_IF to an interface address for "
            "real networks, PAXOI_DROP_RATE (and PAXOI_DROP_SEED) to drop received "
            "datagrams on purpose. Stops on SIGTERM. (The role scripts in adapters/usi/ "
            "run the same thing as `python -m paxoi.abcast`, which starts faster.)"
        ),
    )
    parser.add_argument("role", choices=ROLE_NAMES, help="which role this process plays")
    parser.add_argument("id", type=int, help="the role-local id, from 1")
    parser.add_argument("conf", type=Path, help="the configuration file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from paxoi.abcast.__main__ import main

    return main([args.role, str(args.id), str(args.conf)])
