"""`paxoi chat`: an interactive chat client; everyone's messages appear as they commit."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import Any

from paxoi.cli.common import add_config_arg, config_from


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "chat",
        help="chat interactively",
        description=(
            "Type a line and press Enter to send it. Every committed message, yours and "
            "everyone's, is shown as '<slot> <sender>: <message>' once it is in the log. "
            "End with Ctrl-D."
        ),
    )
    add_config_arg(parser)
    parser.add_argument("--name", default="anon", help="your name (default anon)")
    parser.add_argument("--history", type=int, default=20, help="show the last N messages first")
    parser.set_defaults(func=run)


def sender_name(client_id: str) -> str:
    """Client ids are '<name>-<random>' (unique per session); show the name."""
    return client_id.rsplit("-", 1)[0]


def run(args: argparse.Namespace) -> int:
    config = config_from(args, "chat")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_chat(config, args))
    return 0


async def _chat(config: Any, args: argparse.Namespace) -> None:
    from paxoi.client import AsyncClient, ClientError

    client = AsyncClient.from_config(config, name=args.name)
    loop = asyncio.get_running_loop()

    async def show() -> None:
        statuses = [await _status(client, n) for n in config.servers]
        top = max((s.applied for s in statuses if s is not None), default=0)
        async for slot, cmd, _ in client.subscribe(max(0, top - args.history)):
            text = cmd.payload.decode("utf-8", errors="replace")
            print(f"{slot} {sender_name(cmd.client)}: {text}", flush=True)

    watcher = loop.create_task(show())
    async with client:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            line = line.rstrip("\n")
            if not line:
                continue
            try:
                await client.submit(line)
            except ClientError as e:
                print(f"(not sent: {e})", file=sys.stderr, flush=True)
    watcher.cancel()


async def _status(client: Any, node: int) -> Any:
    try:
        return await client.status(node, 1.0)
    except Exception:
        return None
