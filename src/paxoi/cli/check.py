"""`paxoi check DIR`: judge a finished run from its files (proposed/ and learned/)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from paxoi.cli.common import fail


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "check",
        help="check a run's results: integrity, agreement, termination, duplicates",
        description=(
            "Read what clients proposed (DIR/proposed/*.jsonl, or *.txt with one value per "
            "line) and what learners learned (DIR/learned/*.txt: chat-log copies or one value "
            "per line; DIR/crashed/*.txt for learners that stopped early) and report: "
            "integrity (every learned value was proposed), agreement (every learner's log is a "
            "prefix of the longest), termination (the share of proposed values learned by all "
            "learners; every acknowledged command must be) and duplicates. Exit status: 0 ok, "
            "1 a violation, 2 unreadable input."
        ),
        epilog="The scenario runner (`paxoi scenario ... --keep`) leaves such a directory.",
    )
    parser.add_argument("dir", type=Path, metavar="DIR", help="the results directory")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--min-termination",
        type=float,
        metavar="PCT",
        default=None,
        help=(
            "fail unless at least PCT%% of distinct proposed values were learned by every "
            "learner (default: 100 for plain files, none for chat files, where every "
            "acknowledged command must be learned)"
        ),
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from paxoi.check.results import ResultsError, check, load_results

    if args.min_termination is not None and not 0.0 <= args.min_termination <= 100.0:
        fail("check", "--min-termination must be between 0 and 100", 2)
    try:
        results = load_results(args.dir)
    except ResultsError as e:
        fail("check", str(e), 2)
    report = check(results, min_termination=args.min_termination)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.render())
    return 0 if report.ok else 1
