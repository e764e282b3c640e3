"""`paxoi demo`: show a small cluster agreeing on a chat log."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="run a small cluster and show it agreeing on a chat log",
        description=(
            "Run a 3-server Multi-Paxos cluster in the deterministic simulator, with clients "
            "sending chat messages while servers crash and messages are lost, and show that "
            "every replica applied the same log. (Networked servers replace the simulator "
            "here once they exist.)"
        ),
    )
    parser.add_argument("--seed", type=int, default=7, help="simulation seed (default: 7)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from paxoi.sim.runner import demo

    return demo(args)
