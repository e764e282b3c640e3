"""`paxoi bench`: throughput and latency of a local cluster under closed-loop load."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Start a local cluster (separate server processes on 127.0.0.1, fsync on, in a temporary
directory deleted afterwards), drive it with N closed-loop clients in separate load
processes, each client with up to K commands outstanding, and report committed commands
per second, latency percentiles, fsyncs per second and commands per fsync, CPU and memory
of each server. The warm-up is excluded. --sweep runs a series of (clients, outstanding)
points on the same cluster and prints the throughput-latency curve.
"""


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="run a throughput/latency benchmark on a local cluster",
        description=DESCRIPTION,
    )
    parser.add_argument("--servers", type=int, default=3, choices=(1, 3, 5, 7), help="(3)")
    parser.add_argument("--clients", type=int, default=1, metavar="N", help="clients (1)")
    parser.add_argument(
        "--outstanding", type=int, default=1, metavar="K", help="commands in flight per client (1)"
    )
    parser.add_argument("--size", type=int, default=16, metavar="BYTES", help="command size (16)")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="the servers' log level (WARNING); with --keep, read logs/node-N.log",
    )
    parser.add_argument(
        "--app",
        choices=("chat", "kv"),
        default="chat",
        help="the servers' application (chat); kv: each client puts one key, so the "
        "state stays small: use it to watch the servers' memory",
    )
    parser.add_argument(
        "--duration", type=float, metavar="S", help="measured seconds per run (10; 5 with --sweep)"
    )
    parser.add_argument("--warmup", type=float, default=1.5, metavar="S", help="not measured (1.5)")
    parser.add_argument(
        "--no-fsync", action="store_true", help="servers do not fsync (UNSAFE; for comparison)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="P",
        help="load processes (default: one per client, at most one per CPU, at most 8)",
    )
    parser.add_argument(
        "--sweep",
        nargs="?",
        const="default",
        metavar="POINTS",
        help="run a series of CxK points (default 1x1,1x8,4x16,8x32,16x64,32x128)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per command (10)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every figure as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the data and logs directory")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from paxoi.bench.load import LoadError
    from paxoi.bench.report import full_report
    from paxoi.bench.runner import DEFAULT_SWEEP, BenchParams, parse_points, run_bench, write_json

    try:
        sweep = None
        if args.sweep is not None:
            sweep = list(DEFAULT_SWEEP) if args.sweep == "default" else parse_points(args.sweep)
        params = BenchParams(
            servers=args.servers,
            clients=args.clients,
            outstanding=args.outstanding,
            size=args.size,
            duration=args.duration if args.duration is not None else (5.0 if sweep else 10.0),
            warmup=args.warmup,
            fsync=not args.no_fsync,
            workers=args.workers,
            sweep=sweep,
            timeout=args.timeout,
            keep=args.keep,
            app=args.app,
            log_level=args.log_level,
        )
        params.validate()
    except ValueError as e:
        print(f"paxoi bench: {e}", file=sys.stderr)
        return 2
    progress = None if args.quiet or not sys.stderr.isatty() else sys.stderr
    try:
        doc = run_bench(params, progress_stream=progress, argv=sys.argv)
    except (LoadError, RuntimeError, TimeoutError, OSError) as e:
        print(f"\npaxoi bench: {e}", file=sys.stderr)
        return 1
    print(full_report(doc))
    if args.json is not None:
        write_json(doc, args.json)
        print(f"results written to {args.json}")
    errors = sum(r["errors"] for r in doc["runs"])
    committed = sum(r["committed"] for r in doc["runs"])
    if committed == 0:
        print("paxoi bench: no command was committed", file=sys.stderr)
        return 1
    return 0 if errors == 0 else 1
