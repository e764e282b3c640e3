"""`paxoi nemesis`: a key-value workload under injected faults, checked for linearizability.

Starts a local cluster, runs concurrent clients while a seeded nemesis kills, pauses,
partitions, restarts servers and skews their clocks, then heals everything, waits for
recovery, checks the recorded history for linearizability and the final values for lost
writes, and prints a summary. Exit status: 0 linearizable and nothing lost, 1 otherwise,
2 for a usage error. See docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from paxoi.core.bugs import Bug
from paxoi.nemesis.run import NemesisOptions, random_seed, run_nemesis
from paxoi.nemesis.schedule import KINDS, VARIANTS, ScheduleError, parse_faults
from paxoi.nemesis.workload import READ_MODES, WORKLOADS

_FAULT_HELP = (
    "comma-separated: "
    + ", ".join(f"{k} ({'|'.join(VARIANTS[k])})" for k in KINDS)
    + "; KIND:VARIANT for one variant only; all (default) or none"
)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "nemesis",
        help="a key-value workload under injected faults, checked for linearizability",
        description=(
            "Run a local cluster of the key-value store, concurrent clients, and faults "
            "scheduled by a seeded generator; then heal, recover, check the history for "
            "linearizability and the final values for lost writes. Exit 0 when "
            "linearizable and nothing acknowledged was lost, 1 otherwise."
        ),
    )
    parser.add_argument("--servers", type=int, choices=(3, 5), default=3, help="3 or 5 (default 3)")
    parser.add_argument(
        "--duration", type=float, default=30.0, metavar="S", help="seconds of workload (default 30)"
    )
    parser.add_argument("--faults", default="all", metavar="LIST", help=_FAULT_HELP)
    parser.add_argument(
        "--clients", type=int, default=8, metavar="N", help="read-write clients (default 8)"
    )
    parser.add_argument(
        "--readers",
        type=int,
        metavar="N",
        help="read-only clients, which stay with whichever server answers (default: one per server)",
    )
    parser.add_argument("--keys", type=int, default=8, metavar="K", help="keys (default 8)")
    parser.add_argument(
        "--reads",
        choices=READ_MODES,
        default="lease",
        help="lease: the leader answers under its lease (default; leases on); log: reads "
        "are commands; stale: any server answers (NOT linearizable: expected to fail)",
    )
    parser.add_argument(
        "--workload",
        choices=WORKLOADS,
        default="mixed",
        help="register: get/put/cas; append: get/append on lists; mixed (default): both",
    )
    parser.add_argument(
        "--seed", type=int, help="seed of the schedule and the clients (default: random)"
    )
    parser.add_argument(
        "--history", type=Path, metavar="FILE", help="keep the history (JSON lines) in FILE"
    )
    parser.add_argument(
        "--plant-bug",
        choices=[b.value for b in Bug],
        metavar="NAME",
        help="TEST ONLY: run the servers with a known protocol bug "
        "(follower-reads-unconfirmed, leader-reads-without-lease, ...): the run must fail",
    )
    parser.add_argument(
        "--op-timeout",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds before an operation's outcome is unknown (default 1)",
    )
    parser.add_argument(
        "--check-timeout",
        type=float,
        metavar="S",
        help="time budget of the linearizability check (default: max(60, 2 x duration))",
    )
    parser.add_argument(
        "--clock-beyond-bound",
        action="store_true",
        help="clock faults skew beyond timing.lease_drift_percent (voids the lease "
        "assumption: lease reads may then be stale, and the run may fail)",
    )
    parser.add_argument("--workdir", type=Path, metavar="DIR", help="run here, and keep it")
    parser.add_argument(
        "--keep", action="store_true", help="keep the run's directory (logs, data, history)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no timeline, only the summary")
    parser.set_defaults(func=run)


def _usage(message: str) -> int:
    print(f"paxoi nemesis: {message}", file=sys.stderr)
    return 2


def options_from(args: argparse.Namespace) -> NemesisOptions:
    """The run's options; ValueError says what is wrong with the arguments."""
    try:
        faults = parse_faults(args.faults)
    except ScheduleError as e:
        raise ValueError(str(e)) from None
    if not 0 < args.duration <= 24 * 3600:
        raise ValueError("--duration: must be more than 0 s and at most a day")
    if not 0 <= args.clients <= 200:
        raise ValueError("--clients: must be between 0 and 200")
    if args.readers is not None and not 0 <= args.readers <= 200:
        raise ValueError("--readers: must be between 0 and 200")
    if not 1 <= args.keys <= 10_000:
        raise ValueError("--keys: must be between 1 and 10000")
    if args.workload == "mixed" and args.keys < 2:
        raise ValueError("--keys: the mixed workload needs at least 2 keys")
    if not 0.05 <= args.op_timeout <= 60:
        raise ValueError("--op-timeout: must be between 0.05 and 60 s")
    if args.check_timeout is not None and args.check_timeout <= 0:
        raise ValueError("--check-timeout: must be positive")
    readers = args.readers
    if args.clients + (args.servers if readers is None else readers) == 0:
        raise ValueError("--clients and --readers: at least one client is needed")
    if args.workdir is not None and args.workdir.exists() and any(args.workdir.iterdir()):
        raise ValueError(f"--workdir {args.workdir}: not empty")
    return NemesisOptions(
        servers=args.servers,
        duration=args.duration,
        faults=faults,
        clients=args.clients,
        readers=readers,
        keys=args.keys,
        reads=args.reads,
        workload=args.workload,
        seed=args.seed if args.seed is not None else random_seed(),
        history=args.history,
        plant_bug=args.plant_bug,
        workdir=args.workdir,
        keep=args.keep,
        op_timeout=args.op_timeout,
        check_timeout=args.check_timeout,
        clock_beyond_bound=args.clock_beyond_bound,
    )


def run(args: argparse.Namespace) -> int:
    try:
        opts = options_from(args)
    except ValueError as e:
        return _usage(str(e))
    quiet = args.json or args.quiet

    def say(line: str) -> None:
        if not quiet:
            print(line, flush=True)

    readers = opts.servers if opts.readers is None else opts.readers
    say(
        f"paxoi nemesis: {opts.servers} servers, {opts.duration:g} s, faults "
        f"{opts.faults.describe()}, workload {opts.workload}, reads {opts.reads}, "
        f"{opts.clients} clients + {readers} readers, {opts.keys} keys, seed {opts.seed}"
    )
    if opts.plant_bug:
        say(f"  WARNING: planted bug {opts.plant_bug}: the servers are deliberately unsafe")
    if opts.reads == "stale":
        say("  WARNING: stale reads are not linearizable: the run is expected to fail")
    report = run_nemesis(opts, say)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.render())
    return 0 if report.ok else 1
