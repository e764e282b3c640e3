"""How long a node with a long log takes to reopen its storage, and how fast it writes.

Issue 3 asks that a server whose data directory holds 100,000 decided commands be back in
service in under 3 s. Reopening the storage (lock, quick_check, identity) and loading the
DurableState is the part of that restart the storage layer owns; this measures it.

    python bench/storage_restart.py [--commands 100000] [--batch 500] [--runs 5]

Prints the write throughput with fsync on (records/s and syncs/s for the big batches, and
syncs/s for one-record writes, the worst case group commit exists to avoid), then the
median of `--runs` restarts (open + load) and its two parts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from paxoi.core.records import DecidedRecord
from paxoi.core.types import Command
from paxoi.storage import DB_FILE, NodeIdentity, SqliteStorage

IDENTITY = NodeIdentity("bench", 0, b"bench-config")


def write_log(data_dir: Path, commands: int, batch: int, fsync: bool) -> tuple[float, int]:
    """Write `commands` decisions of one 16-byte command each; returns (seconds, syncs)."""
    syncs = 0
    with SqliteStorage.open(data_dir, IDENTITY, fsync=fsync) as storage:
        start = time.perf_counter()
        for first in range(0, commands, batch):
            records = [
                DecidedRecord(slot, (Command(f"client-{slot % 10}", slot + 1, os.urandom(16)),))
                for slot in range(first, min(first + batch, commands))
            ]
            storage.write(records)
            syncs += 1
        return time.perf_counter() - start, syncs


def single_record_syncs(data_dir: Path, writes: int, fsync: bool) -> float:
    """Seconds for `writes` one-record writes after the log (each its own transaction)."""
    with SqliteStorage.open(data_dir, IDENTITY, fsync=fsync) as storage:
        base = len(storage.load().decided)
        start = time.perf_counter()
        for i in range(writes):
            slot = base + i
            storage.write([DecidedRecord(slot, (Command("one", slot + 1, os.urandom(16)),))])
        return time.perf_counter() - start


def restart(data_dir: Path, expected: int) -> tuple[float, float]:
    """One restart: (seconds to open, seconds to load)."""
    start = time.perf_counter()
    storage = SqliteStorage.open(data_dir, IDENTITY, create=False)
    opened = time.perf_counter()
    state = storage.load()
    loaded = time.perf_counter()
    storage.close()
    if len(state.decided) < expected:
        sys.exit(f"lost decisions: {len(state.decided)} < {expected}")
    return opened - start, loaded - opened


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--single-writes", type=int, default=300)
    parser.add_argument("--no-fsync", action="store_true", help="measure synchronous=OFF")
    parser.add_argument("--dir", type=Path, help="where to build the data directory")
    args = parser.parse_args()
    fsync = not args.no_fsync

    with tempfile.TemporaryDirectory(prefix="paxoi-bench-", dir=args.dir) as tmp:
        data_dir = Path(tmp) / "node"
        seconds, syncs = write_log(data_dir, args.commands, args.batch, fsync)
        print(
            f"write  {args.commands} decided commands in batches of {args.batch} "
            f"(fsync {'on' if fsync else 'OFF'}): {seconds:.2f} s, "
            f"{args.commands / seconds:,.0f} records/s, {syncs / seconds:,.0f} syncs/s"
        )
        single = single_record_syncs(data_dir, args.single_writes, fsync)
        print(
            f"write  {args.single_writes} one-record transactions: "
            f"{args.single_writes / single:,.0f} syncs/s ({1000 * single / args.single_writes:.2f} ms each)"
        )
        size = (data_dir / DB_FILE).stat().st_size
        print(f"data   {size / 1e6:.1f} MB in {data_dir / DB_FILE}")
        runs = [restart(data_dir, args.commands) for _ in range(args.runs)]
        total = statistics.median(o + lo for o, lo in runs)
        print(
            f"restart open + load(), median of {args.runs}: {total:.3f} s "
            f"(open incl. quick_check {statistics.median(o for o, _ in runs):.3f} s, "
            f"load {statistics.median(lo for _, lo in runs):.3f} s)"
        )


if __name__ == "__main__":
    main()
