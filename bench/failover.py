"""Failover time after SIGKILL of the leader, with the default timeouts.

Issue 4 targets a new leader serving within 1 second of the old one's death. This starts
a local 3-server cluster (real processes on 127.0.0.1, default configuration: 10 ms
ticks, heartbeat every 5 ticks, election timeout 30 ticks, fsync on), runs one client
that sends continuously with one command outstanding, and then, `--runs` times:

1. kills the current leader with SIGKILL;
2. measures the time from the kill to the first command acknowledged by another server
   (a reply the dead leader had already sent does not count);
3. restarts the killed server, watches for 2 s whether it deposes its successor (it
   should not: design.md, Succession), and waits until it has caught up.

    python bench/failover.py [--runs 7] [--keep]

Prints each run and the median, min and max.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from paxoi.client import AsyncClient
from paxoi.server.config import free_ports, local_config
from paxoi.server.local import LocalCluster


class Sender:
    """One client sending continuously; remembers when each ack came and from whom."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.client = AsyncClient.from_config(cluster.config, name="bench", timeout=30)
        self.acks: list[tuple[float, int]] = []  # (monotonic time, server it was on)
        self.stop = False

    async def run(self, limit: float) -> None:
        """Send until told to stop; bounded by `limit` seconds."""
        deadline = time.monotonic() + limit
        n = 0
        while not self.stop and time.monotonic() < deadline:
            await self.client.submit(f"bench {n}")
            self.acks.append((time.monotonic(), self.client.target))
            n += 1
        await self.client.close()

    async def wait_acks(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acks) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self.acks)} of {count} commands acknowledged")
            await asyncio.sleep(0.01)

    async def first_ack_after(self, t: float, not_from: int, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while True:
            after = [at for at, node in self.acks if at > t and node != not_from]
            if after:
                return after[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no command acknowledged within {timeout} s of the kill")
            await asyncio.sleep(0.005)


def caught_up(cluster: LocalCluster, node: int) -> bool:
    """`node` answers, some server leads, and `node` has applied what the others have."""
    statuses = cluster.statuses()
    mine, others = statuses[node], [s for n, s in statuses.items() if n != node and s]
    return (
        mine is not None
        and bool(others)
        and any(s.is_leader for s in [mine, *others])
        and mine.applied >= min(s.applied for s in others)
    )


def leadership(cluster: LocalCluster) -> tuple[int, str] | None:
    for node, st in cluster.statuses().items():
        if st is not None and st.is_leader:
            return node, str(st.ballot)
    return None


def watch_leadership(cluster: LocalCluster, seconds: float) -> list[tuple[int, str]]:
    """Every (leader, ballot) seen over `seconds`, in order."""
    seen: list[tuple[int, str]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = leadership(cluster)
        if now is not None and (not seen or seen[-1] != now):
            seen.append(now)
        time.sleep(0.05)
    return seen


async def measure(cluster: LocalCluster, runs: int) -> tuple[list[float], int]:
    """Failover times, and how many restarts of a killed leader deposed its successor."""
    sender = Sender(cluster)
    task = asyncio.create_task(sender.run(limit=60.0 + 15.0 * runs))
    times = []
    deposed = 0
    try:
        await sender.wait_acks(50, 20)
        for i in range(runs):
            leader = await asyncio.to_thread(cluster.leader)
            assert leader is not None, "no leader before the kill"
            before = len(sender.acks)
            await sender.wait_acks(before + 20, 10)  # steady state on the current leader
            killed_at = time.monotonic()
            await asyncio.to_thread(cluster.kill, leader)
            served_at = await sender.first_ack_after(killed_at, leader, 20)
            times.append(served_at - killed_at)
            successor = await asyncio.to_thread(leadership, cluster)
            cluster.start([leader])
            seen = await asyncio.to_thread(watch_leadership, cluster, 2.0)
            changed = [x for x in seen if x != successor]
            deposed += bool(changed)
            print(
                f"run {i + 1}: killed leader {leader}; {successor[0] if successor else '?'} "
                f"served after {(served_at - killed_at) * 1000:.0f} ms"
                + (f"; the restarted server deposed it: {changed}" if changed else ""),
                flush=True,
            )
            await asyncio.to_thread(
                cluster.wait_for, lambda n=leader: caught_up(cluster, n), 20, "catch-up"
            )
    finally:
        sender.stop = True
        await asyncio.wait_for(task, 30)
    return times, deposed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="leader kills (default 7)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="paxoi-failover-"))
    config = local_config(1, 0, workdir / "data", ports=free_ports(3))
    t = config.timing
    print(
        f"3 servers on 127.0.0.1, tick {config.tick_ms:g} ms, heartbeat {t.heartbeat} ticks, "
        f"election {t.election} ticks, fsync {config.storage.fsync}",
        flush=True,
    )
    try:
        with LocalCluster(config, workdir, log_level="WARNING") as cluster:
            cluster.start()
            cluster.wait_leader(20)
            times, deposed = asyncio.run(measure(cluster, args.runs))
    finally:
        if args.keep:
            print(f"(kept {workdir})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    ms = sorted(x * 1000 for x in times)
    print(
        f"failover over {len(ms)} runs: median {statistics.median(ms):.0f} ms, "
        f"min {ms[0]:.0f} ms, max {ms[-1]:.0f} ms"
    )
    print(f"restarts of a killed leader that deposed its successor: {deposed} of {len(ms)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
