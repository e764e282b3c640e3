"""`paxoi abcast ROLE ID CONF`: one process of the atomic broadcast over IP multicast."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from paxoi.cli.common import fail
from paxoi.core.errors import PaxoiError

ROLES = {
    "proposer": "proposers",
    "acceptor": "acceptors",
    "learner": "learners",
    "learn": "learners",
    "client": "clients",
}


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
            "datagrams on purpose. Stops on SIGTERM."
        ),
    )
    parser.add_argument("role", choices=sorted(ROLES), help="which role this process plays")
    parser.add_argument("id", type=int, help="the role-local id, from 1")
    parser.add_argument("conf", type=Path, help="the configuration file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from paxoi.abcast.config import node_id, parse_conf
    from paxoi.abcast.runtime import main

    role = ROLES[args.role]
    try:
        conf = parse_conf(args.conf)
        if role != "clients":
            node_id(role, args.id)
        elif args.id < 1:
            raise PaxoiError(f"client id must be 1 or more, not {args.id}")
    except PaxoiError as e:
        fail("abcast", str(e), 2)
    try:
        main(role, args.id, conf)
    except OSError as e:
        fail("abcast", f"multicast socket: {e.strerror or e}")
    return 0
