"""`paxoi sim`: run the deterministic simulator over many seeds and check every invariant."""

from __future__ import annotations

import argparse
from typing import Any

from paxoi.sim.cluster import FAULTS, LAYOUTS
from paxoi.sim.runner import NODE_COUNTS


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sim",
        help="run the deterministic simulator over many seeds",
        description=(
            "Run seeded simulations of whole clusters under injected faults (crashes, "
            "partitions, message loss, delay and reordering) and check safety and liveness. "
            "Seeds are spread across the chosen node counts and layouts; a failure prints "
            "the seed that reproduces it."
        ),
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="N",
        help="number of seeds to run (default: 100, or 200 with --bug)",
    )
    parser.add_argument(
        "--start-seed", type=int, default=0, metavar="S", help="first seed (default: 0)"
    )
    parser.add_argument(
        "--nodes",
        type=int,
        choices=NODE_COUNTS,
        action="append",
        default=None,
        help="cluster size; repeat to run several (default: 3, 5 and 7)",
    )
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        action="append",
        default=None,
        help="colocated roles or separate role nodes; repeat for both (default: both)",
    )
    parser.add_argument(
        "--bug",
        metavar="NAME",
        default=None,
        help="plant a known protocol bug, which the checkers must catch (see --list-bugs)",
    )
    parser.add_argument(
        "--list-bugs", action="store_true", help="list the bugs --bug can plant, and exit"
    )
    parser.add_argument(
        "--faults",
        default="all",
        metavar="KINDS",
        help=f"comma-separated faults to inject, from {', '.join(FAULTS)}; or all, none "
        "(default: all)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="print every seed's outcome")
    parser.set_defaults(func=run)


def _dedupe(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def run(args: argparse.Namespace) -> int:
    # `append` with a non-empty default would add to the default, so fill defaults here.
    args.nodes = _dedupe(args.nodes) if args.nodes else list(NODE_COUNTS)
    args.layout = _dedupe(args.layout) if args.layout else list(LAYOUTS)
    if args.seeds is None:
        args.seeds = 200 if args.bug else 100
    from paxoi.sim.runner import main as sim_main

    return sim_main(args)
