"""`paxoi certs`: create a cluster CA and node/client certificates for TLS (being built)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "certs", help="create a cluster CA and node/client certificates for TLS"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print("paxoi certs: not available yet", file=sys.stderr)
    return 2
