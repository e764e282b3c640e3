"""`paxoi demo`: a real 3-server cluster survives losing its leader, start to finish."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="run a local cluster through a leader crash and check the logs agree",
        description=(
            "Start 3 servers on 127.0.0.1 in a temporary directory, run 3 clients sending "
            "chat messages, kill the leader with SIGKILL half-way, restart it, wait until "
            "every replica has applied everything, and print each replica's log hash and a "
            "summary. Exits 0 when all hashes are equal; leaves nothing running."
        ),
    )
    parser.add_argument(
        "--messages", type=int, default=200, help="messages per client (default 200)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--simulated", action="store_true", help="run the deterministic simulator instead"
    )
    parser.add_argument("--seed", type=int, default=7, help="simulator seed (with --simulated)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.simulated:
        from paxoi.sim.runner import demo

        return demo(args)
    workdir = Path(tempfile.mkdtemp(prefix="paxoi-demo-"))
    try:
        return _demo(workdir, args.messages)
    finally:
        if args.keep:
            print(f"(kept {workdir})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _demo(workdir: Path, per_client: int) -> int:
    from paxoi.server.config import free_ports, local_config
    from paxoi.server.local import LocalCluster

    config = local_config(1, 0, workdir / "data", ports=free_ports(3))
    started = time.monotonic()
    print(
        f"paxoi demo: 3 servers on 127.0.0.1 (ports {', '.join(str(s.port) for s in config.servers.values())})"
    )
    with LocalCluster(config, workdir, log_level="WARNING") as cluster:
        cluster.start()
        leader = cluster.wait_leader(20)
        print(f"  server {leader} leads; 3 clients send {per_client} messages each")
        result = asyncio.run(_drive(cluster, per_client))
        total = 3 * per_client

        def converged() -> bool:
            statuses = cluster.statuses()
            return all(s is not None and s.extra.get("entries") == total for s in statuses.values())

        cluster.wait_for(converged, 20, "every replica to apply every message")
        hashes = {}
        for node in sorted(config.servers):
            import hashlib

            hashes[node] = hashlib.sha256(cluster.chat_log(node)).hexdigest()
    print(
        f"  killed leader {result['killed']} (SIGKILL) after {result['killed_after']} messages; "
        f"a new leader answered {result['failover'] * 1000:.0f} ms later; restarted it"
    )
    for node, digest in hashes.items():
        print(f"  server {node}: {total} messages, log sha256 {digest[:16]}")
    elapsed = time.monotonic() - started
    print(
        f"{total} messages acknowledged, {result['throughput']:.0f} messages/s, "
        f"failover {result['failover'] * 1000:.0f} ms, {elapsed:.1f} s in all"
    )
    if len(set(hashes.values())) != 1:
        print("FAIL: the replicas' logs differ")
        return 1
    print("OK: every replica holds the same log")
    return 0


async def _drive(cluster: Any, per_client: int) -> dict[str, Any]:
    from paxoi.client import AsyncClient

    clients = [
        AsyncClient.from_config(cluster.config, name=f"user{i}", timeout=20) for i in range(3)
    ]
    acked: list[float] = []
    kill_at = 3 * per_client // 2
    state: dict[str, Any] = {}
    killed = asyncio.Event()

    async def send(i: int) -> None:
        for n in range(per_client):
            await clients[i].submit(f"message {n} from user{i}")
            acked.append(time.monotonic())
            if len(acked) == kill_at:
                killed.set()

    async def chaos() -> None:
        await killed.wait()
        leader = await asyncio.to_thread(cluster.leader)
        if leader is None:
            return
        state["killed"], state["killed_after"] = leader, len(acked)
        state["kill_time"] = time.monotonic()
        cluster.kill(leader)
        await asyncio.sleep(1.0)
        cluster.start([leader])

    started = time.monotonic()
    await asyncio.gather(chaos(), *(send(i) for i in range(3)))
    elapsed = time.monotonic() - started
    for c in clients:
        await c.close()
    after = [t for t in acked if t > state.get("kill_time", float("inf"))]
    state["failover"] = (min(after) - state["kill_time"]) if after else float("nan")
    state["throughput"] = len(acked) / elapsed
    state.setdefault("killed", None)
    state.setdefault("killed_after", 0)
    return state
