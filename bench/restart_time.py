"""How long a real server with 100,000 decided commands takes to be back in service.

Issue 3: "Restarting a server whose data directory holds 100,000 decided commands takes
under 3 seconds to be back in service." This builds a 3-server cluster of real processes
on 127.0.0.1 (fsync on), fills it with `--commands` chat messages through pipelined
clients, then:

- SIGKILLs one follower, restarts it, and times from the process start until it answers
  status and its applied count equals the leader's (`--runs` times; the median counts);
- SIGKILLs the whole cluster, restarts it, and times until every server answers with the
  applied count from before and there is a leader, then until a new command is answered.

    python bench/restart_time.py [--commands 100000] [--clients 4] [--outstanding 256]
                                 [--max-batch N] [--runs 3] [--dir DIR] [--profile FILE]

`--max-batch 1` makes every command its own slot (the worst case for the storage, as in
bench/storage_restart.py); by default the leader batches as the load makes it.
Each server's "serving" log line splits a restart into start-up (Python, storage open and
load, replay of the log, chat.log rewrite) and rejoining (catching up from the peers). The
CPU time the restarted server used is printed too: wall time grows when other work competes
for the machine, CPU time much less. `--profile FILE` restarts a follower once more under
cProfile and prints the 30 most expensive calls (cumulative).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from paxoi.client import AsyncClient
from paxoi.core.types import NodeId
from paxoi.server.config import free_ports, local_config
from paxoi.server.local import LocalCluster, query_status, query_statuses

POLL = 0.01


def fill(cluster: LocalCluster, total: int, clients: int, outstanding: int) -> float:
    """Submit `total` commands through pipelined clients; returns the seconds it took."""
    counter = itertools.count()

    async def worker(client: AsyncClient) -> None:
        while (n := next(counter)) < total:
            await client.submit(f"bench message {n:08d}")

    async def go() -> None:
        cs = [
            AsyncClient.from_config(
                cluster.config, name=f"bench{i}", max_outstanding=outstanding, timeout=120
            )
            for i in range(clients)
        ]
        try:
            await asyncio.gather(*(worker(c) for c in cs for _ in range(outstanding)))
        finally:
            for c in cs:
                await c.close()

    start = time.perf_counter()
    asyncio.run(go())
    return time.perf_counter() - start


def wait(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until `condition()`; the monotonic time it first held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL)
    return time.monotonic()


def serving_at(cluster: LocalCluster, node: NodeId) -> float | None:
    """Wall-clock time of the last "serving on" line in the node's log."""
    path = cluster.log_dir / f"node-{node}.log"
    last = None
    for line in path.read_text(errors="replace").splitlines():
        if " serving on " in line:
            last = line
    if last is None:
        return None
    stamp = datetime.strptime(last[:23], "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp()


def restart_follower(cluster: LocalCluster) -> dict[str, float]:
    config = cluster.config
    leader = cluster.wait_leader(20)
    follower = next(n for n in sorted(config.servers) if n != leader)
    lead = query_status(config, leader)
    assert lead is not None
    target = lead.applied
    cluster.kill(follower)  # SIGKILL, reaped
    wall0, t0 = time.time(), time.monotonic()
    cluster.start([follower])
    answered = wait(lambda: query_status(config, follower, 0.5) is not None, 60, "an answer")
    caught_up = wait(
        lambda: (st := query_status(config, follower, 0.5)) is not None and st.applied >= target,
        60,
        "the follower to catch up",
    )
    cpu = cpu_seconds(cluster.procs[follower].pid)
    serving = serving_at(cluster, follower)
    return {
        "serving": (serving - wall0) if serving else float("nan"),
        "answers": answered - t0,
        "in service": caught_up - t0,
        "its CPU": cpu,
    }


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far: unlike wall time, it does not
    grow when other work competes for the machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def restart_cluster(cluster: LocalCluster) -> dict[str, float]:
    config = cluster.config
    before = {n: st.applied for n, st in query_statuses(config).items() if st is not None}
    target = max(before.values())
    running = [p for p in cluster.procs.values() if p.poll() is None]
    for p in running:
        p.kill()  # SIGKILL, all at once
    for p in running:
        p.wait(10)
    wall0, t0 = time.time(), time.monotonic()
    cluster.start()

    def all_back() -> bool:
        sts = query_statuses(config, 0.5)
        return all(st is not None and st.applied >= target for st in sts.values()) and any(
            st is not None and st.is_leader for st in sts.values()
        )

    back = wait(all_back, 60, "the whole cluster to be back")

    async def one() -> None:
        async with AsyncClient.from_config(config, name="probe", timeout=30) as client:
            await client.submit("after the restart")

    asyncio.run(one())
    served = time.monotonic()
    stamps = [serving_at(cluster, n) for n in config.servers]
    return {
        "serving (last)": max(s for s in stamps if s) - wall0,
        "in service": back - t0,
        "new command": served - t0,
        "max CPU": max(cpu_seconds(p.pid) for p in cluster.procs.values()),
    }


def profile_follower(cluster: LocalCluster, out: Path) -> None:
    """Restart a follower under cProfile until it is in service; print where time went."""
    import pstats

    config = cluster.config
    leader = cluster.wait_leader(20)
    follower = next(n for n in sorted(config.servers) if n != leader)
    lead = query_status(config, leader)
    assert lead is not None
    cluster.kill(follower)
    command = cluster.command(follower)
    command[1:3] = ["-m", "cProfile", "-o", str(out), "-m", "paxoi"]
    t0 = time.monotonic()
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        wait(
            lambda: (
                (st := query_status(config, follower, 0.5)) is not None
                and st.applied >= lead.applied
            ),
            60,
            "the profiled follower to catch up",
        )
        print(f"profiled follower in service after {time.monotonic() - t0:.2f} s")
    finally:
        proc.terminate()  # SIGTERM: a clean exit, so cProfile writes its file
        proc.wait(30)
    cluster.start([follower])
    stats = pstats.Stats(str(out))
    stats.sort_stats("cumulative").print_stats(30)


def startup_floor() -> float:
    """Python start-up plus importing everything the server imports, before any data."""
    code = "import paxoi.cli.main, paxoi.server.runtime, paxoi.client"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def fmt(figures: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f} s" for k, v in figures.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--outstanding", type=int, default=256)
    parser.add_argument("--max-batch", type=int, help="limits.max_batch (default: paxoi's)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="where to put the cluster's directories")
    parser.add_argument("--profile", type=Path, help="also profile a follower's restart into FILE")
    args = parser.parse_args()

    extra = {"limits": {"max_batch": args.max_batch}} if args.max_batch else {}
    with tempfile.TemporaryDirectory(prefix="paxoi-restart-", dir=args.dir) as tmp:
        workdir = Path(tmp)
        config = local_config(1, 0, workdir / "data", cluster="bench", ports=free_ports(3), **extra)
        with LocalCluster(config, workdir, log_level="INFO") as cluster:
            cluster.start()
            cluster.wait_leader(20)
            seconds = fill(cluster, args.commands, args.clients, args.outstanding)

            def filled() -> bool:
                sts = query_statuses(config)
                return (
                    all(
                        st is not None and st.extra.get("entries", 0) >= args.commands
                        for st in sts.values()
                    )
                    and len({st.applied for st in sts.values() if st is not None}) == 1
                )

            wait(filled, 60, "every server to apply every command")
            st = query_status(config, 0)
            assert st is not None
            db = config.data_dir(0) / "data.db"
            wal = db.with_name("data.db-wal")
            size = db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
            print(
                f"filled: {st.extra['entries']:,} commands in {st.applied:,} slots, "
                f"{seconds:.1f} s ({args.commands / seconds:,.0f} commands/s, fsync on, "
                f"{args.clients} clients x {args.outstanding} outstanding); "
                f"data.db(+wal) {size / 1e6:.1f} MB per node"
            )
            print(f"python start-up + imports (no data): {startup_floor():.2f} s")

            runs = []
            for i in range(args.runs):
                figures = restart_follower(cluster)
                runs.append(figures)
                print(f"follower restart {i + 1}: {fmt(figures)}")
            print(
                f"follower restart, median of {args.runs}: "
                + fmt({k: statistics.median(r[k] for r in runs) for k in runs[0]})
            )
            print(f"whole-cluster restart (SIGKILL): {fmt(restart_cluster(cluster))}")
            if args.profile:
                profile_follower(cluster, args.profile.resolve())


if __name__ == "__main__":
    main()
