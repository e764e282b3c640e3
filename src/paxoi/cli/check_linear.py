"""`paxoi check-linear HISTORY`: is a recorded key-value history linearizable?"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

#: The exit status when the time budget ran out before a verdict.
EXIT_UNKNOWN = 3


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "check-linear",
        help="check a recorded key-value history for linearizability",
        description=(
            "Read a history (JSON lines, one invoke/ok/fail/info event per line, as "
            "paxoi.client.history records it) and decide whether it is linearizable for the "
            "key-value store, key by key. When it is not, print the key, the longest "
            "linearizable prefix found and the operations that could not come next, with "
            "why. Exit status: 0 linearizable, 1 not linearizable, 2 unreadable or malformed "
            f"history, {EXIT_UNKNOWN} undecided when the time budget ran out."
        ),
    )
    parser.add_argument("history", type=Path, metavar="HISTORY", help="the history file")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        default=60.0,
        help="give up after S seconds and report 'unknown' (default 60; 0: no limit)",
    )
    parser.set_defaults(func=run)


def _error(message: str) -> int:
    """One line on stderr, status 2 (returned, not raised, so `main()` returns it)."""
    print(f"paxoi check-linear: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from paxoi.check.linear import LINEARIZABLE, NOT_LINEARIZABLE, check_history
    from paxoi.client.history import HistoryError, load_history

    if not math.isfinite(args.timeout) or args.timeout < 0:
        return _error("--timeout must be a number of seconds, 0 or more")
    try:
        events = load_history(args.history)
    except HistoryError as e:
        return _error(str(e))
    except OSError as e:
        return _error(f"cannot read {args.history}: {e.strerror or e}")
    except UnicodeDecodeError as e:
        return _error(f"{args.history}: not UTF-8 text ({e.reason})")
    result = check_history(events, timeout=args.timeout or None)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.render())
    if result.status == LINEARIZABLE:
        return 0
    return 1 if result.status == NOT_LINEARIZABLE else EXIT_UNKNOWN
