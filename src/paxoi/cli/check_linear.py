"""`paxoi check-linear`: check a recorded history for linearizability (being built)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "check-linear", help="check a recorded history for linearizability"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print("paxoi check-linear: not available yet", file=sys.stderr)
    return 2
