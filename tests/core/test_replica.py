"""The replica (learner), rule by rule: R1-R4, exactly-once (E1), per-client FIFO (E2),
recovery and catch-up.

Most tests drive the learner-only node 4 of `ClusterConfig.separate(1, 3, 1)` (node 0 is
the proposer, 1-3 the acceptors) through the public Node API.
"""

from __future__ import annotations

import json
import random

import pytest
from core_helpers import (
    Cluster,
    ListMachine,
    check_safety,
    cmd,
    config,
    expected_entries,
    make_node,
    msgs,
)

from paxoi.core import (
    NOOP,
    Accept,
    Ballot,
    Bug,
    CatchupReply,
    CatchupRequest,
    ClusterConfig,
    Decide,
    DecidedRecord,
    DurableState,
    Heartbeat,
    InvariantViolation,
    Limits,
    Node,
    ReplyStatus,
    Snapshot,
    SnapshotChunk,
    SnapshotError,
    SnapshotRecord,
    SnapshotRequest,
)
from paxoi.core.replica import OUTGOING_IDLE_PERIODS, TRANSFER_RETRIES

LEARNER = 4


def learner(bugs: frozenset[Bug] = frozenset(), durable: DurableState | None = None, **limits: int):
    cfg = ClusterConfig.separate(1, 3, 1, limits=Limits(**limits))
    node, machine = make_node(LEARNER, cfg, durable=durable, bugs=bugs)
    return node, machine


def decide(node, slot: int, *commands) -> None:
    node.step(Decide(0, slot, tuple(commands)))


def oks(ready) -> list[tuple[str, int, bytes]]:
    return [(r.client, r.seq, r.result) for r in ready.replies if r.status is ReplyStatus.OK]


# ------------------------------------------------------------------------------ R1


@pytest.mark.parametrize("where", ["applied", "buffered", "catchup"])
def test_R1_conflicting_decision_raises_InvariantViolation(where: str) -> None:
    node, _ = learner()
    a, b = cmd("a", 1), cmd("b", 1)
    slot = 0 if where == "applied" else 5
    decide(node, slot, a)
    if where == "applied":
        assert node.replica.slot_out == 1
    else:
        assert node.replica.slot_out == 0 and slot in node.log
    with pytest.raises(InvariantViolation, match="R1"):
        if where == "catchup":
            node.step(CatchupReply(0, ((slot, (b,)),)))
        else:
            decide(node, slot, b)


def test_R1_redundant_decision_is_harmless() -> None:
    node, machine = learner()
    for _ in range(3):
        decide(node, 0, cmd("a", 1))
    ready = node.take_ready()
    assert machine.commands == [("a", 1)]
    # persisted once, lazily: a decision lost in a crash is learned again from peers
    assert ready.persist_lazy == [DecidedRecord(0, (cmd("a", 1),))] and ready.persist == []


# ------------------------------------------------------------------------------ R2 / R3 / R4


def test_R2_R3_applies_in_slot_order_only_once_contiguous() -> None:
    node, machine = learner()
    r = node.replica
    decide(node, 2, cmd("c", 1))
    assert machine.entries == [] and r.slot_out == 0  # slot 0 and 1 unknown
    decide(node, 0, cmd("a", 1))
    assert machine.commands == [("a", 1)] and r.slot_out == 1
    decide(node, 1, cmd("b", 1))
    assert [s for s, *_ in machine.entries] == [0, 1, 2] and r.slot_out == 3
    assert all(s in node.log for s in range(r.slot_out))  # R2


@pytest.mark.parametrize("seed", range(5))
def test_R3_state_is_the_decided_prefix_applied_in_order_whatever_the_delivery(seed: int) -> None:
    rng = random.Random(seed)
    clients = ["a", "b", "c"]
    seqs = dict.fromkeys(clients, 0)
    decisions = {}
    for slot in range(40):
        batch = []
        for _ in range(rng.randrange(0, 3)):  # includes no-ops
            c = rng.choice(clients)
            seqs[c] += 1
            batch.append(cmd(c, seqs[c]))
        decisions[slot] = tuple(batch)
    deliveries = [(s, v) for s, v in decisions.items() for _ in range(rng.randrange(1, 3))]
    rng.shuffle(deliveries)
    node, machine = learner()
    for slot, value in deliveries:
        before = node.replica.slot_out
        node.step(Decide(0, slot, value))
        assert node.replica.slot_out >= before  # R4
    assert node.replica.slot_out == 40
    assert [(s, c, q) for s, c, q, _ in machine.entries] == expected_entries(decisions, 40)
    assert len(machine.entries) == sum(seqs.values())


def test_R4_slot_out_never_decreases() -> None:
    node, _ = learner()
    seen = []
    for slot in (1, 0, 0, 3, 1, 2, 0):
        decide(node, slot, cmd("a", slot + 1))
        seen.append(node.replica.slot_out)
    assert seen == sorted(seen) and seen[-1] == 4


def test_noop_applies_nothing_but_advances_slot_out() -> None:
    node, machine = learner()
    node.step(Decide(0, 0, NOOP))
    decide(node, 1, cmd("a", 1))
    assert node.replica.slot_out == 2
    assert machine.entries == [(1, "a", 1, b"a:1")]


def test_batch_applies_in_order_with_one_reply_and_applied_each() -> None:
    node, machine = learner()
    decide(node, 0, cmd("a", 1), cmd("b", 1), cmd("a", 2))
    ready = node.take_ready()
    assert machine.commands == [("a", 1), ("b", 1), ("a", 2)]
    assert [(x.slot, x.command.client, x.command.seq) for x in ready.applied] == [
        (0, "a", 1),
        (0, "b", 1),
        (0, "a", 2),
    ]
    assert [(c, q) for c, q, _ in oks(ready)] == [("a", 1), ("b", 1), ("a", 2)]
    assert [x.result for x in ready.applied] == [res for *_, res in oks(ready)]


# ------------------------------------------------------------------------------ E1


def test_E1_retry_applied_once_and_returns_cached_result() -> None:
    node, machine = learner()
    decide(node, 0, cmd("a", 1))
    [first] = oks(node.take_ready())
    decide(node, 1, cmd("b", 1))  # changes what a re-execution would return
    node.take_ready()
    decide(node, 2, cmd("a", 1))  # the retry, decided again in a later slot
    ready = node.take_ready()
    assert machine.commands == [("a", 1), ("b", 1)]
    assert oks(ready) == [first]  # the cached result, not a new one
    assert ready.applied == []


def test_E1_retry_within_one_batch() -> None:
    node, machine = learner()
    decide(node, 0, cmd("a", 1), cmd("a", 1))
    assert machine.commands == [("a", 1)]
    replies = oks(node.take_ready())
    assert len(replies) == 2 and replies[0] == replies[1]


@pytest.mark.parametrize("planted", [False, True])
def test_planted_bug_replica_forgets_client_table(planted: bool) -> None:
    bugs = frozenset({Bug.REPLICA_FORGETS_CLIENT_TABLE}) if planted else frozenset()
    node, machine = learner(bugs=bugs)
    decide(node, 0, cmd("a", 1))
    decide(node, 1, cmd("a", 1))  # a retry
    decide(node, 2, cmd("a", 3))  # skips seq 2
    if planted:
        assert machine.commands == [("a", 1), ("a", 1), ("a", 3)]
    else:
        assert machine.commands == [("a", 1)]


def test_planted_bug_replica_forgets_client_table_end_to_end() -> None:
    # A client retries after its reply was lost. With its client table the leader's
    # replica answers the retry itself (it is not ordered again: no slot is spent);
    # without one, the retry is ordered and applied a second time.
    for planted, decided, expected in ((False, 1, [("a", 1)]), (True, 2, [("a", 1), ("a", 1)])):
        bugs = frozenset({Bug.REPLICA_FORGETS_CLIENT_TABLE}) if planted else frozenset()
        c = Cluster(config(3), bugs=bugs)
        leader = c.elect()
        c.submit(leader, cmd("a", 1))
        c.submit(leader, cmd("a", 1))
        assert len(c.decided(1)) == decided
        assert [m.commands for m in c.machines.values() if m is not None] == [expected] * 3
        assert [r.seq for r in c.ok_replies(leader)] == [1, 1]


def test_client_results_are_bounded() -> None:
    node, machine = learner(client_results=2)
    for seq in range(1, 5):
        decide(node, seq - 1, cmd("a", seq))
    session = node.replica.clients["a"]
    assert session.last_seq == 4 and list(session.results) == [3, 4]
    results = {q: res for _, q, res in oks(node.take_ready())}
    decide(node, 4, cmd("a", 4))
    decide(node, 5, cmd("a", 1))
    retried = oks(node.take_ready())
    assert retried[0] == ("a", 4, results[4])  # remembered
    assert retried[1] == ("a", 1, b"")  # forgotten result, but still not re-applied (E1)
    assert len(machine.entries) == 4


def test_answers_are_built_for_the_audience_only() -> None:
    """A learner whose shell delivers answers to some clients only (those connected
    to it) builds none for the others; it applies and remembers everything the same."""
    connected: set[str] = set()
    cfg = ClusterConfig.separate(1, 3, 1)
    machine = ListMachine()
    node = Node(LEARNER, cfg, random.Random(0), machine, audience=connected)
    decide(node, 0, cmd("a", 1), cmd("b", 1))
    assert oks(node.take_ready()) == []  # no one is connected here: a follower
    connected.add("a")
    decide(node, 1, cmd("a", 2), cmd("b", 2))
    decide(node, 2, cmd("a", 1), cmd("b", 1))  # retries of applied commands
    assert [(c, q) for c, q, _ in oks(node.take_ready())] == [("a", 2), ("a", 1)]
    assert machine.commands == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    assert node.replica.clients["b"].last_seq == 2


def test_applied_commands_are_counted_and_listed_only_when_asked() -> None:
    node, machine = learner()
    decide(node, 0, cmd("a", 1), cmd("a", 3))  # a:3 is ahead of the client's order
    assert [a.command.seq for a in node.take_ready().applied] == [1]
    node.replica.report_applied = False
    decide(node, 1, cmd("a", 2), cmd("b", 1))
    assert node.take_ready().applied == []
    assert node.replica.applied_commands == 3 == len(machine.entries)


def test_client_results_restored_under_a_smaller_limit_are_trimmed() -> None:
    """Results are evicted by key (the oldest is seq - limit); a table restored from a
    snapshot taken with a larger limit holds more, and the next apply trims it."""
    big, _ = learner(client_results=5)
    for seq in range(1, 6):
        decide(big, seq - 1, cmd("a", seq))
    node, _ = learner(client_results=2)
    node.replica._restore_table(big.replica._table())
    assert list(node.replica.clients["a"].results) == [1, 2, 3, 4, 5]
    decide(node, 0, cmd("a", 6))
    assert list(node.replica.clients["a"].results) == [5, 6]


# ------------------------------------------------------------------------------ E2


def test_E2_out_of_order_seq_not_applied() -> None:
    node, machine = learner()
    decide(node, 0, cmd("a", 2))  # ahead of a:1: decided out of order
    ready = node.take_ready()
    assert machine.entries == [] and ready.replies == [] and node.replica.slot_out == 1
    decide(node, 1, cmd("a", 1))
    decide(node, 2, cmd("a", 2))  # the client's retry, after a:1
    assert [(s, c, q) for s, c, q, _ in machine.entries] == [(1, "a", 1), (2, "a", 2)]
    assert [(c, q) for c, q, _ in oks(node.take_ready())] == [("a", 1), ("a", 2)]


def test_E2_clients_are_ordered_independently() -> None:
    node, machine = learner()
    decide(node, 0, cmd("b", 1), cmd("a", 2))
    decide(node, 1, cmd("a", 1), cmd("b", 2))
    assert machine.commands == [("b", 1), ("a", 1), ("b", 2)]


def test_E2_first_command_of_a_client_must_be_seq_1() -> None:
    node, machine = learner()
    decide(node, 0, cmd("a", 5))
    assert machine.entries == []


# ------------------------------------------------------------------------------ recovery


def test_recover_replays_durable_log_without_client_replies() -> None:
    disk = DurableState()
    first, _ = learner()
    # a:1 is decided twice (a retry): replay must dedupe it silently too
    for slot, command in enumerate([cmd("a", 1), cmd("b", 1), cmd("a", 1), cmd("a", 2)]):
        decide(first, slot, command)
    for record in first.take_ready().persist_lazy:
        disk.apply(record)
    disk.decided[5] = (cmd("a", 3),)  # and one beyond a hole: not applied yet
    node, machine = learner(durable=disk)
    ready = node.take_ready()
    assert machine.commands == [("a", 1), ("b", 1), ("a", 2)]
    assert node.replica.slot_out == 4 and node.log.top == 6
    assert ready.replies == [] and ready.persist == [] and ready.persist_lazy == []
    # the client table was rebuilt: a retry is answered, not applied
    decide(node, 4, cmd("a", 2))
    assert machine.commands == [("a", 1), ("b", 1), ("a", 2), ("a", 3)]
    assert [(c, q) for c, q, _ in oks(node.take_ready())] == [("a", 2), ("a", 3)]


# ------------------------------------------------------------------------------ catch-up


def test_catchup_requests_missing_decisions() -> None:
    node, _ = learner()
    decide(node, 2, cmd("c", 1))  # slots 0 and 1 are missing
    node.take_ready()
    wait = node.config.timing.catchup
    for _ in range(wait - 1):
        node.tick()
    assert msgs(node.take_ready().send, CatchupRequest) == []
    node.tick()
    [(dst, req)] = msgs(node.take_ready().send, CatchupRequest)
    assert dst == 0  # the only node that serves catch-up (a proposer; no other learner)
    assert req == CatchupRequest(LEARNER, 0, 3)
    # not again before another `catchup` ticks
    for _ in range(wait - 1):
        node.tick()
    assert msgs(node.take_ready().send, CatchupRequest) == []
    node.tick()
    assert [r for _, r in msgs(node.take_ready().send, CatchupRequest)] == [req]
    # the reply fills the gap
    node.step(CatchupReply(0, ((0, (cmd("a", 1),)), (1, (cmd("b", 1),)))))
    assert node.replica.slot_out == 3
    for _ in range(3 * wait):
        node.tick()
    assert msgs(node.take_ready().send, CatchupRequest) == []


def test_catchup_learns_lag_from_heartbeat_and_is_bounded() -> None:
    node, _ = learner(max_catchup=4)
    node.step(Heartbeat(0, Ballot(0, 0), 10))  # 10 slots are decided; we know none
    assert node.leader == 0
    for _ in range(node.config.timing.catchup):
        node.tick()
    [(dst, req)] = msgs(node.take_ready().send, CatchupRequest)
    assert (dst, req.from_slot, req.to_slot) == (0, 0, 4)


def test_up_to_date_learner_never_asks() -> None:
    node, _ = learner()
    decide(node, 0, cmd("a", 1))
    node.step(Heartbeat(0, Ballot(0, 0), 1))
    for _ in range(100):
        node.tick()
    assert msgs(node.take_ready().send, CatchupRequest) == []


@pytest.mark.parametrize(
    "request_,limit,expected",
    [
        ((0, 5), 256, [0, 1, 2, 4]),
        ((0, 5), 2, [0, 1]),
        ((3, 5), 256, [4]),
        ((5, 9), 256, None),  # nothing known: no reply at all
    ],
)
def test_serves_catchup_from_its_log_bounded(request_, limit, expected) -> None:
    node, _ = make_node(1, config(3, max_catchup=limit))
    for slot in (0, 1, 2, 4):
        node.step(Decide(0, slot, (cmd("a", slot + 1),)))
    node.take_ready()
    node.step(CatchupRequest(2, *request_))
    replies = msgs(node.take_ready().send, CatchupReply)
    if expected is None:
        assert replies == []
    else:
        [(dst, reply)] = replies
        assert dst == 2 and [s for s, _ in reply.decisions] == expected


def test_catchup_end_to_end_after_missed_decisions() -> None:
    c = Cluster(config(3))
    c.elect()
    c.drop = lambda s, d, m: d == 2 and isinstance(m, Decide)
    for seq in range(1, 6):
        c.submit(0, cmd("a", seq))
    assert c.nodes[2].replica.slot_out == 0
    c.drop = None
    c.tick(2 * c.config.timing.catchup + c.config.timing.heartbeat)
    assert c.machines[2].commands == [("a", i) for i in range(1, 6)]
    assert any(isinstance(m, CatchupRequest) and s == 2 for s, _, m in c.delivered)
    check_safety(c)


def test_catchup_is_pipelined_not_paced_by_the_timer() -> None:
    """Regression: a learner far behind asked for one small chunk per catch-up period,
    so a long gap took minutes. Each useful reply now asks for the next chunk at once:
    20 slots in chunks of 2 arrive within one period, not ten."""
    c = Cluster(config(3, max_catchup=2))
    leader = c.elect()
    lagging = next(n for n in (0, 1, 2) if n != leader)
    c.crash(lagging)
    for seq in range(1, 21):
        c.submit(leader, cmd("a", seq))
    c.disks[lagging] = DurableState()  # it comes back with nothing
    c.restart(lagging)
    period = c.config.timing.catchup + c.config.timing.heartbeat
    ticks = c.tick_until(lambda: c.nodes[lagging].log.floor >= 20, max_ticks=2 * period)
    assert ticks <= 2 * period
    requests = [m for s, d, m in c.sent_of(CatchupRequest) if s == lagging]
    assert len(requests) >= 10  # many chunks, in one burst


def test_catchup_reply_is_bounded_in_commands() -> None:
    """A reply carries at most catchup_commands commands (at least one slot), so a reply
    of full slots fits a datagram while empty slots travel many at a time."""
    from paxoi.core import DecisionLog

    log = DecisionLog({s: tuple(cmd("a", 10 * s + i) for i in range(5)) for s in range(10)})
    assert [s for s, _ in log.span(0, 10, limit=100, budget=12)] == [0, 1]
    assert [s for s, _ in log.span(0, 10, limit=100, budget=3)] == [0]  # always one
    assert len(log.span(0, 10, limit=100)) == 10


# ------------------------------------------------------------------------------ snapshots


def snapshots(ready) -> list[SnapshotRecord]:
    assert not any(isinstance(r, SnapshotRecord) for r in ready.persist_lazy)  # never lazy
    return [r for r in ready.persist if isinstance(r, SnapshotRecord)]


def run_of(node, slots: int, start: int = 0) -> None:
    """Decide slots [start, slots): client "a" with seq slot+1, so every command applies."""
    for s in range(start, slots):
        decide(node, s, cmd("a", s + 1))


@pytest.mark.parametrize(
    "every,keep,decided,taken,base",
    [
        (3, 1, 7, [(3, 2), (6, 5)], 5),
        (3, 0, 7, [(3, 3), (6, 6)], 6),
        (5, 10, 12, [(5, 0), (10, 0)], 0),  # keeps more than there is: nothing dropped
        (4, 2, 3, [], 0),  # not yet
        (0, 2, 30, [], 0),  # off
    ],
)
def test_snapshot_every_n_applied_slots_then_compact(every, keep, decided, taken, base) -> None:
    node, _ = learner(snapshot_every=every, log_keep=keep)
    run_of(node, decided)
    records = snapshots(node.take_ready())
    assert [(r.snapshot.slot, r.base) for r in records] == taken
    assert node.log.base == base and node.log.floor == decided
    assert len(node.log) == decided - base
    if records:
        last = records[-1].snapshot
        assert len(json.loads(last.state)) == last.slot  # one command applied per slot
        [(client, last_seq, _)] = last.clients
        assert (client, last_seq) == ("a", last.slot)
        assert node.replica.snapshot_slot == last.slot


def test_kept_log_is_bounded_by_commands_as_well_as_slots() -> None:
    # Slots of 3 commands each; log_keep would keep 10 slots, log_keep_commands 7
    # commands: the two slots below the snapshot (6 commands) and no more.
    node, _ = learner(snapshot_every=4, log_keep=10, log_keep_commands=7)
    for s in range(4):
        decide(node, s, *(cmd(c, s + 1) for c in "abc"))
    [record] = snapshots(node.take_ready())
    assert (record.snapshot.slot, record.base) == (4, 2)
    assert node.log.base == 2 and node.log.get(1) is None and node.log.get(2) is not None


def test_snapshot_holds_the_machine_and_client_table_at_its_slot() -> None:
    node, machine = learner(snapshot_every=2, log_keep=0)
    decide(node, 0, cmd("a", 1), cmd("b", 1))
    [first] = [r.result for r in node.take_ready().applied if r.command.client == "a"]
    decide(node, 1, cmd("a", 2))
    [record] = snapshots(node.take_ready())
    snap = record.snapshot
    assert snap.slot == 2 and snap.state == machine.snapshot()
    table = {c: (last, dict(results)) for c, last, results in snap.clients}
    assert table["b"][0] == 1 and table["a"][0] == 2 and table["a"][1][1] == first


def test_recover_from_snapshot_then_replay_above_it() -> None:
    node, machine = learner(snapshot_every=4, log_keep=1)
    run_of(node, 6)
    disk = DurableState()
    ready = node.take_ready()
    for r in ready.persist + ready.persist_lazy:
        disk.apply(r)
    assert (
        disk.snapshot is not None and disk.snapshot.slot == 4 and sorted(disk.decided) == [3, 4, 5]
    )
    again, machine2 = learner(durable=disk, snapshot_every=4, log_keep=1)
    assert again.replica.slot_out == 6 and machine2.entries == machine.entries
    assert again.take_ready().replies == []  # recovery answers no client
    # E1 across the snapshot: a late retry of a command it covers is not applied again
    decide(again, 6, cmd("a", 2))
    ready = again.take_ready()
    assert machine2.entries == machine.entries and ready.applied == []
    assert [(c, q) for c, q, _ in oks(ready)] == [("a", 2)]


def test_recover_from_a_snapshot_the_machine_cannot_read_fails_loudly() -> None:
    disk = DurableState()
    disk.apply(SnapshotRecord(Snapshot(3, (b"not json",)), 3))
    with pytest.raises(SnapshotError, match="slot 3"):
        learner(durable=disk)


# ------------------------------------------------------------------------------ transfers

TWO = 5  # the second learner of ClusterConfig.separate(1, 3, 2): nodes 4 and 5


def two_learners(**limits: int):
    cfg = ClusterConfig.separate(1, 3, 2, limits=Limits(**limits))
    a, ma = make_node(LEARNER, cfg)
    b, mb = make_node(TWO, cfg)
    return a, ma, b, mb


def pump(a, b, first: list, persisted: list | None = None, limit: int = 10_000) -> list:
    """Deliver messages between nodes a and b (and nothing else) until quiet; what b
    persisted meanwhile goes to `persisted`."""
    nodes = {a.id: a, b.id: b}
    queue = list(first)
    seen = []
    while queue:
        assert len(seen) < limit
        dst, msg = queue.pop(0)
        seen.append((dst, msg))
        nodes[dst].step(msg)
        ready = nodes[dst].take_ready()
        if persisted is not None and dst == b.id:
            persisted.append(ready)
        queue += [(d, m) for d, m in ready.send if d in nodes]
    return seen


def test_catchup_below_the_base_is_answered_with_a_snapshot_in_chunks() -> None:
    a, ma, b, mb = two_learners(snapshot_every=5, log_keep=2, snapshot_chunk=32)
    run_of(a, 13)
    a.take_ready()
    assert a.log.base == 8
    readies: list = []
    seen = pump(a, b, [(LEARNER, CatchupRequest(TWO, 0, 13))], readies)
    chunks = [m for _, m in seen if isinstance(m, SnapshotChunk)]
    assert len(chunks) > 3 and chunks[0].offset == 0 and chunks[0].slot == 13
    assert [c.offset for c in chunks] == sorted({c.offset for c in chunks})  # one pass
    assert all(len(c.data) <= 32 for c in chunks)
    # installed: same state, same client table, log moved past it, and made durable
    assert b.replica.slot_out == 13 and mb.entries == ma.entries
    assert b.replica.clients["a"].last_seq == 13
    assert (b.log.base, b.log.floor) == (13, 13)
    [record] = [r for ready in readies for r in snapshots(ready)]
    assert record.snapshot.slot == 13 and record.base == 13


def test_slots_above_the_base_still_come_from_the_log() -> None:
    a, _, b, _ = two_learners(snapshot_every=5, log_keep=2)
    run_of(a, 13)
    a.take_ready()
    seen = pump(a, b, [(LEARNER, CatchupRequest(TWO, 9, 13))])
    assert [type(m) for _, m in seen] == [CatchupRequest, CatchupReply]


def test_decisions_buffered_during_a_transfer_apply_after_it() -> None:
    a, ma, b, mb = two_learners(snapshot_every=5, log_keep=0, snapshot_chunk=16)
    run_of(a, 10)
    a.take_ready()
    decide(b, 10, cmd("a", 11))
    decide(b, 11, cmd("a", 12))
    assert b.replica.slot_out == 0
    pump(a, b, [(LEARNER, CatchupRequest(TWO, 0, 10))])
    run_of(a, 12, start=10)
    assert b.replica.slot_out == 12 and mb.entries == ma.entries


def _chunk_for(a, slot_from: int = 0):
    a.step(CatchupRequest(TWO, slot_from, 100))
    [(_, chunk)] = [(d, m) for d, m in a.take_ready().send if isinstance(m, SnapshotChunk)]
    return chunk


@pytest.mark.parametrize(
    "case",
    [
        "already_there",
        "not_from_the_start",
        "too_big",
        "gap",
        "resized",
        "overrun",
        "damaged",
    ],
)
def test_bad_or_useless_chunks_install_nothing(case: str) -> None:
    a, _, b, mb = two_learners(snapshot_every=5, log_keep=0, snapshot_chunk=10_000)
    run_of(a, 10)
    a.take_ready()
    chunk = _chunk_for(a)
    whole = chunk.data
    assert len(whole) == chunk.size  # one chunk holds it all
    if case == "already_there":
        run_of(b, 10)
        b.take_ready()
        before = list(mb.entries)
        b.step(chunk)
        assert mb.entries == before and b.replica._incoming is None
        return
    if case == "not_from_the_start":
        msg = SnapshotChunk(LEARNER, 10, chunk.size, 4, whole[4:])
    elif case == "too_big":
        msg = SnapshotChunk(LEARNER, 10, 10**9, 0, whole)
    elif case == "gap":
        b.step(SnapshotChunk(LEARNER, 10, chunk.size, 0, whole[:4]))
        msg = SnapshotChunk(LEARNER, 10, chunk.size, 8, whole[8:])
    elif case == "resized":
        b.step(SnapshotChunk(LEARNER, 10, chunk.size, 0, whole[:4]))
        msg = SnapshotChunk(LEARNER, 10, chunk.size + 1, 4, whole[4:] + b"?")
    elif case == "overrun":
        b.step(SnapshotChunk(LEARNER, 10, chunk.size, 0, whole[:4]))
        msg = SnapshotChunk(LEARNER, 10, chunk.size, 4, whole[4:] + b"?")
    else:
        damaged = bytearray(whole)
        damaged[len(damaged) // 2] ^= 0xFF
        msg = SnapshotChunk(LEARNER, 10, chunk.size, 0, bytes(damaged))
    b.step(msg)
    assert b.replica.slot_out == 0 and mb.entries == []
    assert not snapshots(b.take_ready())


def test_stalled_transfer_is_asked_again_then_abandoned() -> None:
    a, _, b, _ = two_learners(snapshot_every=5, log_keep=0, snapshot_chunk=8)
    run_of(a, 10)
    a.take_ready()
    chunk = _chunk_for(a)
    b.step(chunk)
    [(dst, first)] = b.take_ready().send
    assert dst == LEARNER and first == SnapshotRequest(TWO, 10, 8)
    # the next chunk is lost: after `catchup` ticks the same request goes again, a few
    # times, to the same peer; then the transfer is dropped and ordinary catch-up resumes
    asked = []
    for _ in range((TRANSFER_RETRIES + 2) * b.config.timing.catchup + 1):
        b.tick()
        asked += [m for _, m in b.take_ready().send]
    again = [m for m in asked if isinstance(m, SnapshotRequest)]
    assert again == [first] * TRANSFER_RETRIES
    assert b.replica._incoming is None


def test_request_for_a_forgotten_image_starts_over_with_a_current_one() -> None:
    a, *_ = two_learners(snapshot_every=5, log_keep=0, snapshot_chunk=8)
    run_of(a, 10)
    a.take_ready()
    a.step(SnapshotRequest(TWO, 3, 8))  # an image a never had (or dropped)
    [(dst, chunk)] = a.take_ready().send
    assert dst == TWO and isinstance(chunk, SnapshotChunk)
    assert (chunk.slot, chunk.offset) == (10, 0)
    # the image is dropped once unused for a while, freeing its memory
    for _ in range(OUTGOING_IDLE_PERIODS * a.config.timing.catchup + 2):
        a.tick()
    assert a.replica._outgoing is None


def test_lagging_replica_catches_up_by_snapshot_end_to_end() -> None:
    """A node is down while the others pass several snapshots; back, it finds the log it
    needs compacted away everywhere and installs a peer's snapshot, then the rest."""
    c = Cluster(config(3, snapshot_every=5, log_keep=2, snapshot_chunk=64))
    leader = c.elect()
    lagging = next(n for n in c.config.nodes if n != leader)
    c.submit(leader, *[cmd("a", i) for i in range(1, 4)])
    c.crash(lagging)
    c.submit(leader, *[cmd("a", i) for i in range(4, 40)])
    c.restart(lagging)
    c.submit(leader, cmd("a", 40))
    c.tick_until(lambda: c.nodes[lagging].replica.slot_out == c.nodes[leader].replica.slot_out, 500)
    assert c.sent_of(SnapshotChunk)
    assert c.machines[lagging].entries == c.machines[leader].entries
    assert c.nodes[lagging].log.base > 0
    check_safety(c)


# ------------------------------------------------------------------------------ decide by reference


@pytest.mark.parametrize(
    "accepted,learns",
    [
        (Ballot(4, 0), True),  # accepted in the ballot the decision names
        (Ballot(5, 2), True),  # in a later one: the slot being chosen, the same value
        (Ballot(3, 2), False),  # only an older ballot's proposal: maybe not the chosen one
        (None, False),  # the Accept never arrived
    ],
)
def test_decide_by_reference_uses_the_acceptors_value_or_catches_up(accepted, learns) -> None:
    node, machine = make_node(1)
    value = (cmd("a", 1),)
    if accepted is not None:
        node.step(Accept(accepted.node, accepted, 0, value))
    node.take_ready()
    node.step(Decide(0, 0, None, Ballot(4, 0)))
    assert (machine.commands == [("a", 1)]) is learns
    if not learns:
        for _ in range(node.config.timing.catchup + 1):
            node.tick()
        requests = [m for _, m in node.take_ready().send if isinstance(m, CatchupRequest)]
        assert requests and requests[0].from_slot == 0 and requests[0].to_slot >= 1


def test_snapshot_after_snapshot_commands_even_within_snapshot_every_slots() -> None:
    """Under load a slot holds a big batch: memory follows commands, and so do snapshots."""
    c = Cluster(config(3, snapshot_every=1_000, snapshot_commands=10, log_keep=0))
    c.elect()
    for i in range(1, 4):
        c.submit(c.leader(), *(cmd(f"c{j}", i) for j in range(5)), together=True)
        c.run()
    # 15 commands in 3 slots (+ a no-op or so): past 10 commands, far from 1,000 slots
    assert all(c.nodes[n].replica.snapshot_slot > 0 for n in c.config.nodes)


def test_sealed_segments_go_to_storage_lazily_as_they_seal(monkeypatch) -> None:
    """A segmented machine's segments reach storage as they seal (SegmentRecord, lazily:
    nothing waits for them), each once and as the very object later snapshots hold; a
    replica recovered from a snapshot hands over only what seals after it."""
    from paxoi.apps import chat
    from paxoi.apps.chat import ChatLog
    from paxoi.core import Node, SegmentRecord

    monkeypatch.setattr(chat, "_SEGMENT_ENTRIES", 3)
    cfg = ClusterConfig.separate(1, 3, 1, limits=Limits(snapshot_every=4, log_keep=0))

    def segments(ready) -> list[tuple[int, bytes]]:
        assert not [r for r in ready.persist if isinstance(r, SegmentRecord)]
        return [(r.index, r.data) for r in ready.persist_lazy if isinstance(r, SegmentRecord)]

    machine = ChatLog()
    node = Node(LEARNER, cfg, random.Random(0), machine, None)
    decide(node, 0, cmd("a", 1), cmd("b", 1))  # 2 entries: only the head is sealed
    [(index, head)] = segments(node.take_ready())
    assert index == 0 and head is machine.snapshot_segments()[0]
    decide(node, 1, cmd("a", 2), cmd("b", 2))  # 4: the first chunk sealed
    [(index, chunk)] = segments(node.take_ready())
    assert index == 1 and chunk is machine.snapshot_segments()[1]
    decide(node, 2, cmd("a", 3))
    assert segments(node.take_ready()) == []
    decide(node, 3, cmd("a", 4), cmd("b", 3), cmd("b", 4))  # 8: the second; a snapshot
    ready = node.take_ready()
    [(index, chunk)] = segments(ready)
    [record] = snapshots(ready)
    assert (
        index == 2 and record.snapshot.segments[2] is chunk and len(record.snapshot.segments) == 4
    )

    disk = DurableState()
    disk.apply(record)
    again = Node(LEARNER, cfg, random.Random(0), ChatLog(), disk)
    assert segments(again.take_ready()) == []  # the snapshot holds them
    decide(again, 4, cmd("c", 1))  # 9 entries: the tail sealed as chunk 3
    assert [i for i, _ in segments(again.take_ready())] == [3]
