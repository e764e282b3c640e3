"""`paxoi server`: run one server process (manual mode)."""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from paxoi.cli.common import add_config_arg, config_from, fail, setup_logging
from paxoi.core.errors import PaxoiError
from paxoi.server.heap import HeapKeeper
from paxoi.transport import runloop


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "server",
        help="run one server of a cluster",
        description=(
            "Run the server with the given id from the cluster configuration: it listens on "
            "its port, keeps its state in <storage.dir>/node-<id>, and serves until SIGTERM "
            "or Ctrl-C, then shuts down cleanly."
        ),
    )
    parser.add_argument("--id", type=int, required=True, metavar="N", help="this server's id")
    add_config_arg(parser)
    parser.add_argument(
        "--no-fsync",
        action="store_true",
        help="UNSAFE: do not fsync; a machine crash can lose acknowledged commands",
    )
    parser.add_argument(
        "--memory", action="store_true", help="keep state in memory only (lost on exit)"
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    faults = parser.add_argument_group(
        "fault injection", "the same as the `faults:` fields of the configuration file"
    )
    faults.add_argument(
        "--drop-rate", type=float, metavar="P", help="drop each message with probability P"
    )
    faults.add_argument("--seed", type=int, help="seed of the drop generator")
    faults.add_argument(
        "--skip-slot",
        type=int,
        metavar="X",
        help="as leader, leave slot X empty, then die soon after passing it (-1: off)",
    )
    faults.add_argument(
        "--time-bomb",
        type=int,
        metavar="N",
        help="as leader, crash after sending N Paxos messages (heartbeats not counted)",
    )
    faults.add_argument(
        "--lifetime", type=float, metavar="SECONDS", help="crash this long after starting"
    )
    parser.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    # The parent's pid, given by the parent: os.getppid() read after our imports could
    # already be the reaper's if the parent died meanwhile.
    parser.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from(args, "server")
    if args.no_fsync or args.memory:
        storage = config.storage.model_copy(
            update={"fsync": config.storage.fsync and not args.no_fsync, "memory": args.memory}
        )
        config = config.model_copy(update={"storage": storage})
    overrides = {
        "msg_drop_rate": args.drop_rate,
        "seed": args.seed,
        "skip_slot": args.skip_slot,
        "time_bomb": args.time_bomb,
        "lifetime": args.lifetime,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        from paxoi.server.config import parse_config

        data = config.model_dump()
        data["faults"].update(overrides)
        try:
            config = parse_config(data, "command line")
        except PaxoiError as e:
            fail("server", str(e), 2)
    setup_logging(args.log_level, f"node-{args.id} ")
    from paxoi.server.local import parent_watchdog
    from paxoi.server.runtime import Server

    try:
        server = Server(config, args.id, heap=HeapKeeper())
    except (PaxoiError, ValueError) as e:
        fail("server", str(e))

    async def main() -> None:
        try:
            await server.start()
        except OSError as e:
            server.storage.close()
            fail("server", f"cannot listen on {server.me.bind_host}:{server.me.port}: {e.strerror}")
        except PaxoiError as e:  # a TLS certificate or key missing or unreadable
            server.storage.close()
            fail("server", str(e), 2)
        if args.exit_with_parent:
            check = parent_watchdog(args.parent_pid or os.getppid(), server.stop)
            check()

            async def watch() -> None:
                while True:
                    await asyncio.sleep(0.5)
                    check()

            watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await server.run_started()
        finally:
            if args.exit_with_parent:
                watcher.cancel()

    runloop.run(main())
    if server.failed is not None:
        fail("server", f"stopped: storage failed: {server.failed}")
    return 0
