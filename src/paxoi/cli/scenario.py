"""`paxoi scenario NAME|FILE`: run a chat-service scenario on real processes and judge it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from paxoi.cli.common import fail


def register(subparsers: Any) -> None:
    from paxoi.scenario.named import NAMED

    names = "\n".join(f"  {name:<21} {s.summary}" for name, s in NAMED.items())
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "scenario",
        help="run a test scenario (UMich config file or built-in name) and check the result",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Start 2f+1 servers on free ports of a local address (in a temporary directory),\n"
            "run batch clients (each sends its next message when the previous is answered),\n"
            "inject the scenario's faults, wait until the clients are done or stuck, let the\n"
            "live replicas converge, and print per replica its entries, the sha256 of its\n"
            "chat log and its empty (no-op) slots, then the checker's verdict.\n\n"
            "SCENARIO is a built-in name, a UMich EECS 591 configuration file (f, x,\n"
            "num_failed_primary, msg_drop_rate, state_backup_folder, servers_list; only\n"
            "servers 0..2f are used) or a paxoi cluster configuration.\n\n"
            f"Built-in scenarios:\n{names}\n\n"
            "Exit status: 0 pass; 1 the replicas' logs differ, an acknowledged message is\n"
            "missing or applied twice, clients were stuck (also with no majority: the\n"
            "no-majority scenario fails on purpose), or a fault did not happen; 2 bad input."
        ),
    )
    parser.add_argument("scenario", metavar="SCENARIO", help="a built-in name or a YAML file")
    parser.add_argument("--clients", type=int, metavar="N", help="batch clients")
    parser.add_argument("--messages", type=int, metavar="M", help="messages per client")
    parser.add_argument(
        "--host",
        metavar="ADDR",
        help="local address every server listens on (overrides the file's hosts, which "
        "may name a remote machine: use 127.0.0.1)",
    )
    parser.add_argument("--f", type=int, metavar="F", help="failures tolerated: 2F+1 servers")
    parser.add_argument("--skip-slot", type=int, metavar="X", help="the first primary skips slot X")
    parser.add_argument(
        "--kill-primary", type=int, metavar="K", help="kill the primary K times (K <= f)"
    )
    parser.add_argument("--drop-rate", type=float, metavar="P", help="drop each message with P")
    parser.add_argument(
        "--restarts",
        type=int,
        metavar="R",
        help="kill every server with SIGKILL mid-load and restart them all, R times",
    )
    parser.add_argument("--seed", type=int, help="seed of the drop generator and the clients")
    parser.add_argument(
        "--timeout",
        type=float,
        default=40.0,
        metavar="S",
        help="bound on the client phase in seconds (default 40)",
    )
    parser.add_argument(
        "--command-timeout",
        type=float,
        default=4.0,
        metavar="S",
        help="seconds a client waits for one answer before sending again (default 4)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run's directory")
    parser.add_argument(
        "--workdir", type=Path, metavar="DIR", help="run in DIR (new or empty; kept)"
    )
    parser.add_argument(
        "--log-level", default="WARNING", help="the servers' log level (default WARNING)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from paxoi.scenario.named import ScenarioError, load_scenario
    from paxoi.scenario.runner import RunOptions, run_scenario

    if args.timeout <= 0 or args.command_timeout <= 0:
        fail("scenario", "--timeout and --command-timeout must be positive", 2)
    try:
        scenario = load_scenario(args.scenario).with_options(
            f=args.f,
            clients=args.clients,
            messages=args.messages,
            skip_slot=args.skip_slot,
            kill_primary=args.kill_primary,
            drop_rate=args.drop_rate,
            crash_restart_all=args.restarts,
            seed=args.seed,
        )
        options = RunOptions(
            host=args.host,
            keep=args.keep,
            timeout=args.timeout,
            command_timeout=args.command_timeout,
            workdir=args.workdir,
            log_level=args.log_level,
        )
        outcome = run_scenario(scenario, options)
    except ScenarioError as e:
        fail("scenario", str(e), 2)
    return outcome.exit_code
