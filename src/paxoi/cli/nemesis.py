"""`paxoi nemesis`: a key-value workload under injected faults, checked for linearizability (being built)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "nemesis", help="a key-value workload under injected faults, checked for linearizability"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print("paxoi nemesis: not available yet", file=sys.stderr)
    return 2
