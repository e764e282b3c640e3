"""`paxoi bench`: run a throughput/latency benchmark on a local cluster (being built)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench", help="run a throughput/latency benchmark on a local cluster"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print("paxoi bench: not available yet", file=sys.stderr)
    return 2
