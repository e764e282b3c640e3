"""`paxoi send`: a batch client: one chat message per input line, with a summary."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from paxoi.cli.common import add_config_arg, config_from


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "send",
        help="send messages read from stdin or a file",
        description=(
            "Send every line of the input as a chat message, each with its own sequence "
            "number; with --outstanding 1 (default) the next is sent when the previous is "
            "answered. Progress goes to stderr; a summary line ends the run."
        ),
    )
    add_config_arg(parser)
    parser.add_argument("--file", type=Path, help="read messages from this file, not stdin")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="at most R messages/s (0: no limit)"
    )
    parser.add_argument("--outstanding", type=int, default=1, metavar="K", help="pipeline depth")
    parser.add_argument("--name", default="send", help="sender name (prefix of the client id)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per message")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from(args, "send")
    source = args.file.open(encoding="utf-8") if args.file else sys.stdin
    lines = [line.rstrip("\n") for line in source]
    return asyncio.run(_send(config, lines, args))


async def _send(config: Any, lines: list[str], args: argparse.Namespace) -> int:
    from paxoi.client import AsyncClient, ClientError

    client = AsyncClient.from_config(
        config, name=args.name, max_outstanding=max(1, args.outstanding), timeout=args.timeout
    )
    acked = failed = 0
    started = time.monotonic()
    gap = 1.0 / args.rate if args.rate > 0 else 0.0

    async def one(i: int, line: str) -> None:
        nonlocal acked, failed
        if gap:
            await asyncio.sleep(max(0.0, started + i * gap - time.monotonic()))
        try:
            await client.submit(line)
            acked += 1
        except ClientError as e:
            failed += 1
            print(f"\nfailed: {line[:60]!r}: {e}", file=sys.stderr)
        if not args.quiet and sys.stderr.isatty():
            print(f"\r{acked + failed}/{len(lines)} sent", end="", file=sys.stderr)

    async with client:
        window = asyncio.Semaphore(max(1, args.outstanding))

        async def guarded(i: int, line: str) -> None:
            async with window:
                await one(i, line)

        await asyncio.gather(*(guarded(i, line) for i, line in enumerate(lines)))
    elapsed = max(time.monotonic() - started, 1e-9)
    if not args.quiet and sys.stderr.isatty():
        print(file=sys.stderr)
    print(
        f"{acked} acknowledged, {failed} failed, {acked / elapsed:.0f} messages/s ({elapsed:.2f} s)"
    )
    return 0 if failed == 0 else 1
