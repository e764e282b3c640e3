"""Entry point of the `paxoi` command.

Every command group lives in its own module exposing `register(subparsers)`, which adds
its parser and sets `func` to its `run(args) -> int`. Add a group by listing it in
`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from paxoi import __version__
from paxoi.cli import (
    abcast,
    bench,
    certs,
    chat,
    check,
    check_linear,
    cluster,
    demo,
    log,
    master,
    nemesis,
    scenario,
    send,
    server,
    sim,
    status,
)
from paxoi.core.errors import ConfigError

COMMAND_MODULES: tuple[ModuleType, ...] = (
    demo,
    server,
    cluster,
    chat,
    send,
    log,
    status,
    sim,
    master,
    scenario,
    check,
    check_linear,
    abcast,
    bench,
    nemesis,
    certs,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paxoi",
        description="paxoi: a Multi-Paxos replicated state machine library.",
    )
    parser.add_argument("--version", action="version", version=f"paxoi {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]) and return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help and --version (0), usage errors (2)
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        status: int = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ConfigError as e:  # e.g. a TLS file the configuration names is missing
        print(f"paxoi {args.command}: {e}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
