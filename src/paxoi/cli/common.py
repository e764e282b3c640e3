"""What every command shares: loading the configuration, and failing with a clear line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import NoReturn

from paxoi.core.errors import PaxoiError
from paxoi.server.config import PaxoiConfig, load_config


def fail(command: str, message: str, code: int = 1) -> NoReturn:
    """Print `paxoi <command>: <message>` on stderr and exit: never a traceback."""
    print(f"paxoi {command}: {message}", file=sys.stderr)
    raise SystemExit(code)


def add_config_arg(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        required=required,
        metavar="FILE",
        help="cluster configuration (YAML)",
    )


def config_from(args: argparse.Namespace, command: str) -> PaxoiConfig:
    try:
        return load_config(args.config)
    except PaxoiError as e:
        fail(command, str(e), 2)


def setup_logging(level: str, prefix: str = "") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
