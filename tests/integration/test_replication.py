"""Real 3-server clusters on 127.0.0.1: normal operation, a leader or a follower killed,
exactly-once under duplicated requests, and clients that start at a follower."""

from __future__ import annotations

import asyncio
import contextlib
import json
import selectors
import socket
import threading
import time
from collections.abc import Callable

import pytest
from integration_helpers import (
    Load,
    RawConnection,
    check_exactly_once,
    entries,
    follower_of,
    run_clients,
    submit_one,
    wait_logs_equal,
    wait_until,
)

from paxoi.client import AsyncClient, Client
from paxoi.core.messages import ClientReply, ReplyStatus
from paxoi.core.types import Command
from paxoi.server.local import LocalCluster
from paxoi.wire.codec import decode
from paxoi.wire.framing import FrameDecoder
from paxoi.wire.messages import KIND_SERVER, Hello, HelloAck, Submit
from paxoi.wire.values import DecodeError

ALL = [0, 1, 2]


def test_normal_operation(cluster: LocalCluster) -> None:
    load = asyncio.run(run_clients(cluster.config, clients=3, per_client=50, deadline=30))
    wait_logs_equal(cluster, ALL, 150)
    for node in ALL:
        check_exactly_once(entries(cluster, node), load.sent, load.results)


def test_leader_killed_during_load(
    cluster: LocalCluster, record_property: pytest.RecordProperty
) -> None:
    leader = cluster.wait_leader()
    live = [n for n in ALL if n != leader]
    per_client, kill_after = 60, 60
    state: dict[str, float] = {}

    async def scenario() -> Load:
        reached = asyncio.Event()

        def on_ack(total: int) -> None:
            if total == kill_after:
                reached.set()

        async def chaos() -> None:
            await asyncio.wait_for(reached.wait(), 20)
            state["kill"] = time.monotonic()
            await asyncio.to_thread(cluster.kill, leader)  # SIGKILL

        load, _ = await asyncio.gather(
            run_clients(cluster.config, 3, per_client, deadline=40, on_ack=on_ack), chaos()
        )
        return load

    load = asyncio.run(scenario())
    assert not cluster.alive(leader)
    # Failover: the first command acknowledged after the kill by a server other than the
    # killed one (a reply the dead leader had already sent does not count).
    after = [t for t, _, node in load.ack_times if t > state["kill"] and node != leader]
    failover = min(after) - state["kill"]
    record_property("failover_s", round(failover, 3))
    print(f"failover after SIGKILL of leader {leader}: {failover * 1000:.0f} ms")
    assert failover < 5.0, f"no new leader served within 5 s ({failover:.2f} s)"
    new_leader = wait_until(cluster.leader, 10, "a new leader")
    assert new_leader in live

    wait_logs_equal(cluster, live, 3 * per_client)
    for node in live:
        check_exactly_once(entries(cluster, node), load.sent, load.results)

    cluster.start([leader])
    wait_logs_equal(cluster, ALL, 3 * per_client)
    check_exactly_once(entries(cluster, leader), load.sent, load.results)


def test_follower_killed_and_restarted(cluster: LocalCluster) -> None:
    leader = cluster.wait_leader()
    follower = follower_of(cluster, leader)
    first = asyncio.run(run_clients(cluster.config, 2, 20))
    wait_logs_equal(cluster, ALL, 40)

    cluster.kill(follower)
    second = asyncio.run(run_clients(cluster.config, 2, 20))
    live = [n for n in ALL if n != follower]
    wait_logs_equal(cluster, live, 80)
    assert cluster.chat_log(follower).count(b"\n") == 40  # it really missed the second round

    cluster.start([follower])
    wait_logs_equal(cluster, ALL, 80)  # caught up from its peers
    third = asyncio.run(run_clients(cluster.config, 1, 10))
    wait_logs_equal(cluster, ALL, 90)
    sent = {**first.sent, **second.sent, **third.sent}
    results = {**first.results, **second.results, **third.results}
    for node in ALL:
        check_exactly_once(entries(cluster, node), sent, results)


def barrier(cluster: LocalCluster) -> None:
    """Submit a probe and wait until every replica applied it: everything the leader
    ordered before it has then been applied everywhere too."""
    slot = int(submit_one(cluster.config, "probe"))
    wait_until(
        lambda: all(any(e.slot == slot for e in entries(cluster, n)) for n in ALL),
        10,
        "every replica to apply the probe",
    )


def test_duplicated_submit_applies_once(cluster: LocalCluster) -> None:
    leader = cluster.wait_leader()
    follower = follower_of(cluster, leader)
    cid = "dup-client-1"
    cmd = Command(cid, 1, b"once only")

    def is_reply(msg: object) -> bool:
        return isinstance(msg, ClientReply) and msg.client == cid and msg.seq == 1

    with RawConnection(cluster.config, leader) as to_leader:
        to_leader.hello_client(cid)
        assert isinstance(to_leader.recv(), HelloAck)
        # The same request three times in one write: a retry racing the original.
        to_leader.send(Submit(cmd), Submit(cmd), Submit(cmd))
        first = to_leader.recv_until(is_reply)
        assert isinstance(first, ClientReply) and first.status is ReplyStatus.OK
        result = first.result
        assert result.isdigit()

        # A retry after the reply (the client did not see it) is answered, not re-applied.
        to_leader.send(Submit(cmd))
        again = to_leader.recv_until(is_reply)
        assert isinstance(again, ClientReply)
        assert (again.status, again.result) == (ReplyStatus.OK, result)

        # Let every replica apply the duplicates so far: from now on, a reply on the
        # follower's connection can only be about what we send next.
        barrier(cluster)

        # The same request to a second server, on a second connection of the same client.
        with RawConnection(cluster.config, follower) as to_follower:
            to_follower.hello_client(cid)
            assert isinstance(to_follower.recv(), HelloAck)
            to_follower.send(Submit(cmd))
            # The follower's replica has applied it already: it answers from its client
            # table, with the same result, and orders nothing (no redirect, no slot).
            answer = to_follower.recv_until(is_reply)
            assert isinstance(answer, ClientReply)
            assert (answer.status, answer.result) == (ReplyStatus.OK, result)
            # And once more at the leader, on the first connection.
            to_leader.send(Submit(cmd))
            reply = to_leader.recv_until(is_reply)
            assert isinstance(reply, ClientReply)
            assert (reply.status, reply.result) == (ReplyStatus.OK, result)

    barrier(cluster)
    logs = {n: cluster.chat_log(n) for n in ALL}
    assert len(set(logs.values())) == 1
    mine = [e for e in entries(cluster, leader) if e.sender == cid]
    assert len(mine) == 1
    assert (mine[0].seq, mine[0].message, mine[0].slot) == (1, "once only", int(result))


def test_async_client_starting_at_a_follower(cluster: LocalCluster) -> None:
    leader = cluster.wait_leader()
    follower = follower_of(cluster, leader)

    async def go() -> tuple[list[bytes], str, int]:
        client = AsyncClient.from_config(cluster.config, name="at-follower", timeout=10)
        client.target = follower  # before the first submit: it connects there first
        async with client:
            results = [await client.submit(f"via follower {i}") for i in range(5)]
            return results, client.id, client.redirects

    results, cid, redirects = asyncio.run(go())
    assert redirects >= 1
    wait_logs_equal(cluster, ALL, 5)
    mine = [e for e in entries(cluster, follower) if e.sender == cid]
    assert [e.message for e in mine] == [f"via follower {i}" for i in range(5)]
    assert [e.slot for e in mine] == [int(r) for r in results]


def test_sync_client_starting_at_a_follower(cluster: LocalCluster) -> None:
    leader = cluster.wait_leader()
    follower = follower_of(cluster, leader)
    with Client.from_config(cluster.config, name="sync-at-follower", timeout=10) as client:
        # The sync Client wraps an AsyncClient; point it at the follower before any submit.
        client._async.target = follower
        results = [client.submit(f"sync {i}") for i in range(5)]
        cid = client.id
        assert client._async.redirects >= 1
    wait_logs_equal(cluster, ALL, 5)
    mine = [e for e in entries(cluster, follower) if e.sender == cid]
    assert [e.message for e in mine] == [f"sync {i}" for i in range(5)]
    assert [e.slot for e in mine] == [int(r) for r in results]


class HalfOpenPort:
    """Stands in for a dead server's port: accepts its peers' outbound links and swallows
    everything they send, never answering, like a connection whose far end crashed
    without a FIN (machine crash, cable pulled). Client connections are closed at once.
    `close_listener` stops accepting while the swallowed links stay open."""

    def __init__(self, port: int) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(16)
        self.listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.decoders: dict[socket.socket, FrameDecoder] = {}
        self.peers: set[int] = set()  # node ids whose server Hello arrived
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            for key, _ in self.selector.select(0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self.listener:
                    with contextlib.suppress(OSError):
                        conn, _ = sock.accept()
                        conn.setblocking(False)
                        self.decoders[conn] = FrameDecoder(64 * 1024 * 1024)
                        self.selector.register(conn, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(1 << 16)
                    frames = self.decoders[sock].feed(data) if data else []
                except (OSError, DecodeError):
                    data, frames = b"", []
                if not data:
                    self._drop(sock)
                    continue
                for payload in frames:
                    try:
                        msg = decode(payload)
                    except DecodeError:
                        continue
                    if isinstance(msg, Hello) and msg.kind == KIND_SERVER:
                        assert msg.node is not None
                        self.peers.add(msg.node)
                    elif isinstance(msg, Hello):
                        self._drop(sock)
                        break

    def _drop(self, sock: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(sock)
        self.decoders.pop(sock, None)
        sock.close()

    def close_listener(self) -> None:
        self.selector.unregister(self.listener)
        self.listener.close()

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        for sock in list(self.decoders):
            self._drop(sock)
        with contextlib.suppress(OSError):
            self.listener.close()
        self.selector.close()


def test_restarted_server_is_reached_despite_a_half_open_link(cluster: LocalCluster) -> None:
    """Regression: an inbound connection from a peer did not reset the outbound link to
    it, so the leader kept writing into its old, dead connection (or slept in its
    backoff, up to 1.5 s); the restarted server heard no heartbeat, timed out, and
    campaigned with a higher ballot, deposing the healthy leader."""
    first = asyncio.run(run_clients(cluster.config, 1, 20))
    victim = cluster.wait_leader()
    port = cluster.config.servers[victim].port
    peers = {n for n in ALL if n != victim}
    cluster.kill(victim)
    fake = HalfOpenPort(port)
    try:
        # Both peers reconnect to "the victim" and their links stay up, swallowed.
        wait_until(lambda: fake.peers == peers, 10, "both peers' links to the fake port")
        fake.close_listener()
        successor = wait_until(cluster.leader, 10, "a new leader")
        before = cluster.status(successor)
        assert before is not None
        ballot = before.ballot
        second = asyncio.run(run_clients(cluster.config, 1, 10))

        cluster.start([victim])  # binds beside the half-open connections (SO_REUSEADDR)
        wait_until(lambda: cluster.status(victim) is not None, 10, "the victim to answer")
        # It must not depose the healthy leader (design.md: "a recovered node does not grab
        # it back"), and it must catch up: its peers' links must reach the new process.
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            st = cluster.statuses()
            leaders = [(n, s.ballot) for n, s in st.items() if s is not None and s.is_leader]
            assert leaders in ([], [(successor, ballot)]), f"leadership moved: {leaders}"
            time.sleep(0.1)
        wait_logs_equal(cluster, ALL, 30, timeout=5)
    finally:
        fake.close()
    sent = {**first.sent, **second.sent}
    for node in ALL:
        check_exactly_once(entries(cluster, node), sent)


def test_one_fsync_per_command_at_low_load(cluster: LocalCluster) -> None:
    """One client, one command at a time: the leader syncs each accept, and the decision
    rides along with the next write instead of costing a sync of its own."""
    leader = cluster.wait_leader()

    def syncs() -> int:
        status = cluster.status(leader)
        assert status is not None and status.is_leader
        return int(status.extra["syncs"])

    before, n = syncs(), 100
    load = asyncio.run(run_clients(cluster.config, clients=1, per_client=n, deadline=30))
    assert sum(map(len, load.results.values())) == n
    # 2n before decisions were lazy; a few spare for heartbeat-time lazy writes
    assert syncs() - before <= n + n // 4


def test_a_key_value_subscriber_gets_each_entry_once_in_order(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    """A key-value log has no backlog: a subscriber gets what commits after it came,
    from the replica's list of applied commands, which a server fills only while it
    has such a subscriber (Replica.report_applied)."""
    from paxoi.apps import kv

    cluster = make_cluster(app="kv")
    cluster.start()
    cluster.wait_leader(20)

    async def scenario() -> list[str]:
        got: list[str] = []
        first = asyncio.Event()
        async with AsyncClient.from_config(cluster.config, name="watcher") as watcher:

            async def watch() -> None:
                async for _, cmd, _ in watcher.subscribe(0):
                    got.append(json.loads(cmd.payload)["key"])
                    first.set()
                    if got[-1] == "after 4":
                        return

            task = asyncio.ensure_future(watch())
            async with AsyncClient.from_config(cluster.config, name="writer") as writer:
                deadline = time.monotonic() + 20
                while not first.is_set():  # until the subscription is surely in place
                    assert time.monotonic() < deadline, "the subscriber got nothing"
                    await writer.submit(kv.put("probe", "probe"))
                    await asyncio.sleep(0.05)
                for i in range(5):
                    await writer.submit(kv.put(f"after {i}", "v"))
            await asyncio.wait_for(task, 20)
        return got

    got = [key for key in asyncio.run(scenario()) if key != "probe"]
    assert got == [f"after {i}" for i in range(5)], got


def test_subscriber_gets_the_backlog_then_each_entry_once_in_order(
    cluster: LocalCluster,
) -> None:
    """A subscriber (what `paxoi chat` shows) gets what was committed before it came,
    then every new entry as it commits: each once, in log order."""
    before = [submit_one(cluster.config, f"before {i}") for i in range(5)]

    async def scenario() -> list[tuple[int, str]]:
        got: list[tuple[int, str]] = []
        async with AsyncClient.from_config(cluster.config, name="watcher") as watcher:

            async def watch() -> None:
                async for slot, cmd, _ in watcher.subscribe(0):
                    got.append((slot, cmd.payload.decode()))
                    if len(got) == 15:
                        return

            task = asyncio.ensure_future(watch())
            async with AsyncClient.from_config(cluster.config, name="writer") as writer:
                for i in range(10):
                    await writer.submit(f"after {i}")
            await asyncio.wait_for(task, 20)
        return got

    got = asyncio.run(scenario())
    texts = [t for _, t in got]
    assert texts[:5] == [f"before {i}" for i in range(5)], got
    assert texts[5:] == [f"after {i}" for i in range(10)], got
    assert [s for s, _ in got] == sorted(s for s, _ in got)
    assert int(before[0]) == got[0][0]
