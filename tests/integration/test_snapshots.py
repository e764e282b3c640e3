"""Snapshots on real processes: a server that was down while the others compacted their
logs past it catches up by snapshot transfer, and ends with the same chat log.

Everything runs on 127.0.0.1; only the servers this test started are signalled.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from crash_helpers import (
    Load,
    check_log,
    log_tails,
    make_config,
    submit_one,
    wait_converged,
    wait_logs_identical,
    wait_until,
)

from paxoi.core.types import NodeId
from paxoi.server.local import LocalCluster
from paxoi.storage import DB_FILE

EVERY = 20  # applied slots between snapshots
KEEP = 5  # decided slots kept below each
CHUNK = 1024  # bytes per transfer message: the chat snapshot takes several
#: Messages a server queues for an unreachable peer. With the default (100,000) a peer
#: that comes back within a few seconds is sent every Accept and Decide it missed, and
#: catches up from those; a short queue drops them, so it must catch up by itself.
PEER_QUEUE = 64


@contextlib.contextmanager
def snapshotting_cluster(workdir: Path) -> Iterator[LocalCluster]:
    config = make_config(
        workdir,
        "snapshots",
        limits={
            "snapshot_every": EVERY,
            "log_keep": KEEP,
            "snapshot_chunk": CHUNK,
            "peer_queue": PEER_QUEUE,
        },
    )
    c = LocalCluster(config, workdir)
    try:
        c.start()
        c.wait_leader(20)
        yield c
    finally:
        c.stop()


def stored_snapshot(c: LocalCluster, node: NodeId) -> tuple[int, int] | None:
    """(slot, base) of the snapshot in `node`'s database (read-only; it may be running)."""
    db = c.config.data_dir(node) / DB_FILE
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT slot, base FROM snapshot").fetchone()
        return None if row is None else (row[0], row[1])
    finally:
        conn.close()


def applied(c: LocalCluster, node: NodeId) -> int:
    st = c.status(node, 1.0)
    return -1 if st is None else st.applied


def test_restarted_server_catches_up_by_snapshot_transfer(tmp_path: Path) -> None:
    with snapshotting_cluster(tmp_path) as c:
        leader = c.wait_leader(10)
        lagging = next(n for n in sorted(c.config.servers) if n != leader)
        others = [n for n in sorted(c.config.servers) if n != lagging]
        with Load(c.config, clients=3, max_seconds=120) as load:
            load.wait_acked(40, 30)
            c.kill(lagging, signal.SIGTERM)
            assert c.procs[lagging].returncode == 0, log_tails(c)
            # It stopped less than EVERY slots above its last snapshot. The others go on
            # past several snapshots, and compact their logs (in memory and on disk) well
            # beyond where it is.
            left_at = (stored_snapshot(c, lagging) or (0, 0))[0]
            gone = left_at + 4 * EVERY + KEEP

            def compacted_past() -> bool:
                snaps = [stored_snapshot(c, n) for n in others]
                return all(s is not None and s[1] > gone for s in snaps)

            wait_until(compacted_past, 90, f"the running servers to compact past slot {gone}")
            bases = {n: stored_snapshot(c, n) for n in others}
        assert not load.crashes, load.crashes

        c.start([lagging])
        # Caught up with no new command: by a snapshot installed from a peer, which it
        # keeps as its own with nothing below it (one it takes itself keeps KEEP slots).
        top = max(applied(c, n) for n in others)
        wait_until(lambda: applied(c, lagging) == top, 60, f"node {lagging} to reach {top}")

        def stored_near_top() -> bool:  # written by the group commit just after
            s = stored_snapshot(c, lagging)
            return s is not None and s[0] > gone

        wait_until(stored_near_top, 10, f"node {lagging} to store a snapshot past {gone}")
        mine = stored_snapshot(c, lagging)
        assert mine is not None and mine[0] == mine[1], (mine, bases)
        print(f"stopped at snapshot {left_at}, peers {bases}, restarted with {mine}")

        # chat.log follows the chat, restored entries included: equal with no new command.
        check_log(wait_logs_identical(c, timeout=30), load.acked, load.unknown)

        probe = submit_one(c.config, "after the restart")
        assert probe.slot is not None
        wait_converged(c, at_least=probe.slot + 1, timeout=60)
        data = wait_logs_identical(c, timeout=30)
        check_log(data, [*load.acked, probe], load.unknown)
        for node in c.config.servers:
            assert c.alive(node), f"node {node} exited:\n{log_tails(c)}"
        log = (c.log_dir / f"node-{lagging}.log").read_text()
        assert "Traceback" not in log, log[-3000:]
