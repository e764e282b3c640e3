"""The acceptor, rule by rule (A1-A5 of Paxos Made Moderately Complex, and E3)."""

from __future__ import annotations

import random

import pytest
from core_helpers import Capture, Cluster, check_safety, cmd, config, make_node, pv

from paxoi.core import (
    BOTTOM,
    Accept,
    Accepted,
    AcceptedRecord,
    Acceptor,
    Ballot,
    Bug,
    DurableState,
    Preempted,
    Prepare,
    Promise,
    PromisedRecord,
    PValue,
)

X = (cmd("x", 1),)
Y = (cmd("y", 1),)
Z = (cmd("z", 1),)


def b(round_: int, node: int = 1) -> Ballot:
    return Ballot(round_, node)


def acceptor(**kw) -> tuple[Acceptor, Capture]:
    cap = Capture()
    return Acceptor(9, cap.send, cap.persist, **kw), cap


def replies(cap: Capture):
    return [m for _, m, _ in cap.sent]


# ------------------------------------------------------------------------------ A1


@pytest.mark.parametrize(
    "ballots,expected_promised,expected_kinds",
    [
        ([b(1), b(2), b(3)], [b(1), b(2), b(3)], [Promise, Promise, Promise]),
        ([b(3), b(2), b(1)], [b(3), b(3), b(3)], [Promise, Preempted, Preempted]),
        ([b(2), b(2)], [b(2), b(2)], [Promise, Promise]),  # a retransmitted prepare
        # ties on round are broken by the node id
        (
            [Ballot(4, 2), Ballot(4, 1), Ballot(4, 3)],
            [Ballot(4, 2)] * 2 + [Ballot(4, 3)],
            [Promise, Preempted, Promise],
        ),
    ],
)
def test_A1_promised_ballot_only_increases(ballots, expected_promised, expected_kinds) -> None:
    a, cap = acceptor()
    for ballot, promised, kind in zip(ballots, expected_promised, expected_kinds, strict=True):
        cap.clear()
        a.on_prepare(Prepare(ballot.node, ballot, 0))
        assert a.promised == promised
        [(dst, msg, _)] = cap.sent
        assert dst == ballot.node and type(msg) is kind
        if isinstance(msg, Preempted):
            assert msg.ballot == ballot and msg.promised == promised


def test_A1_only_new_promises_are_persisted() -> None:
    a, cap = acceptor()
    for ballot in (b(1), b(1), b(0), b(2)):
        a.on_prepare(Prepare(1, ballot, 0))
    assert cap.persisted == [PromisedRecord(b(1)), PromisedRecord(b(2))]


def test_A1_accept_in_a_higher_ballot_raises_the_promise() -> None:
    a, cap = acceptor()
    a.on_prepare(Prepare(1, b(1), 0))
    a.on_accept(Accept(2, b(5, 2), 0, X))
    assert a.promised == b(5, 2)
    cap.clear()
    a.on_prepare(Prepare(1, b(4), 0))
    assert isinstance(replies(cap)[0], Preempted)


def test_A1_promise_survives_restart() -> None:
    a, cap = acceptor()
    a.on_prepare(Prepare(1, b(3), 0))
    a.on_accept(Accept(1, b(3), 0, X))
    disk = DurableState()
    for record in cap.persisted:
        disk.apply(record)
    again, cap2 = acceptor(promised=disk.promised, accepted=disk.accepted)
    again.on_prepare(Prepare(2, b(2, 2), 0))
    assert isinstance(replies(cap2)[0], Preempted)
    again.on_accept(Accept(2, b(2, 2), 1, Y))
    assert 1 not in again.accepted
    assert again.accepted[0] == PValue(b(3), 0, X)


# ------------------------------------------------------------------------------ A2


@pytest.mark.parametrize(
    "promised,accept_ballot,accepted",
    [
        (BOTTOM, b(0), True),
        (b(3), b(3), True),  # the current ballot
        (b(3), b(4), True),  # a higher ballot: promise it and accept
        (b(3), b(2), False),
        (b(3, 2), b(3, 1), False),
    ],
)
def test_A2_accepts_only_in_current_ballot(promised, accept_ballot, accepted) -> None:
    a, cap = acceptor(promised=promised)
    a.on_accept(Accept(accept_ballot.node, accept_ballot, 7, X))
    [(dst, msg, _)] = cap.sent
    assert dst == accept_ballot.node
    if accepted:
        assert msg == Accepted(9, accept_ballot, 7)
        assert a.accepted[7] == PValue(accept_ballot, 7, X)
        assert a.promised == accept_ballot
        assert cap.persisted == [AcceptedRecord(PValue(accept_ballot, 7, X))]
    else:
        assert msg == Preempted(9, accept_ballot, promised)
        assert 7 not in a.accepted and a.promised == promised
        assert cap.persisted == []


# ------------------------------------------------------------------------------ A3


def test_A3_accepted_pvalue_is_never_removed() -> None:
    a, _ = acceptor()
    a.on_accept(Accept(1, b(2), 0, X))
    a.on_accept(Accept(1, b(2), 1, Y))
    # a lower ballot cannot replace it, and neither prepares nor other slots remove it
    a.on_accept(Accept(1, b(1), 0, Z))
    a.on_prepare(Prepare(3, b(7, 3), 0))
    a.on_prepare(Prepare(1, b(1), 0))
    a.on_accept(Accept(3, b(7, 3), 2, Z))
    assert a.accepted[0] == PValue(b(2), 0, X)
    assert a.accepted[1] == PValue(b(2), 1, Y)
    # only a higher ballot for the same slot supersedes it
    a.on_accept(Accept(3, b(7, 3), 0, Z))
    assert a.accepted[0] == PValue(b(7, 3), 0, Z)
    assert set(a.accepted) == {0, 1, 2}


def test_A3_durable_state_keeps_highest_ballot_pvalue_in_any_order() -> None:
    records = [
        AcceptedRecord(pv(1, 1, 0, *X)),
        AcceptedRecord(pv(3, 1, 0, *Y)),
        AcceptedRecord(pv(2, 2, 0, *Z)),
        PromisedRecord(b(1)),
    ]
    rng = random.Random(3)
    for _ in range(10):
        rng.shuffle(records)
        disk = DurableState()
        for r in records + records:  # idempotent
            disk.apply(r)
        assert disk.accepted == {0: PValue(b(3), 0, Y)}
        assert disk.promised == b(3)


# ------------------------------------------------------------------------------ A4 / A5


@pytest.mark.parametrize("seed", range(4))
def test_A4_one_value_per_ballot_and_slot_across_acceptors(seed: int) -> None:
    rng = random.Random(seed)
    c = Cluster(config(3, window=4, max_batch=2), seed=seed)
    c.drop = lambda s, d, m: rng.random() < 0.25
    seq = {"p": 1, "q": 1}
    for t in range(500):
        if t % 3 == 0:
            for client in seq:
                node = rng.choice(c.up)
                c.submit(node, cmd(client, seq[client]))
                if any(r.client == client and r.seq == seq[client] for r in c.ok_replies()):
                    seq[client] += 1
        if t == 200:
            c.crash(c.leader() if c.leader() is not None else 0)
        if t == 300:
            c.restart(next(iter(c.down)))
        c.tick()
    by_ballot_slot: dict[tuple[Ballot, int], set] = {}
    for n in c.config.acceptors:
        for r in c.persisted[n]:
            if isinstance(r, AcceptedRecord):
                by_ballot_slot.setdefault((r.pvalue.ballot, r.pvalue.slot), set()).add(
                    r.pvalue.value
                )
    assert by_ballot_slot, "the run accepted nothing: the test would prove nothing"
    assert all(len(v) == 1 for v in by_ballot_slot.values())
    check_safety(c)


def test_A5_value_accepted_by_a_majority_survives_a_leader_change() -> None:
    c = Cluster(config(3))
    assert c.elect() == 0
    old = c.nodes[0].proposer.ballot
    # X reaches acceptors 0 and 1 (a majority) but no Accepted gets back: nobody knows
    # it is chosen. Then the leader dies.
    c.drop = lambda s, d, m: (isinstance(m, Accept) and d == 2) or isinstance(m, Accepted)
    c.submit(0, cmd("x", 1))
    c.crash(0)
    c.drop = None
    assert all(c.nodes[n].acceptor.accepted[0].value == X for n in (0, 1))
    assert 0 not in c.nodes[1].log
    new_leader = c.elect()
    assert new_leader == 1
    c.submit(1, cmd("y", 1))
    c.tick(2)
    later = [m for _, _, m in c.sent_of(Accept) if m.slot == 0 and m.ballot > old]
    assert later and all(m.value == X for m in later)
    assert c.nodes[2].acceptor.accepted[0].value == X
    assert c.decided(2)[0] == X and c.decided(2)[1] == (cmd("y", 1),)
    check_safety(c)


# ------------------------------------------------------------------------------ phase 1b


def test_promise_reports_accepted_at_or_above_from_slot_in_slot_order() -> None:
    a, cap = acceptor()
    for slot, value in ((5, X), (1, Y), (3, Z), (0, X)):
        a.on_accept(Accept(1, b(1), slot, value))
    cap.clear()
    a.on_prepare(Prepare(2, b(2, 2), 2))
    [(_, promise, _)] = cap.sent
    assert isinstance(promise, Promise)
    assert promise.from_slot == 2 and promise.ballot == b(2, 2)
    assert [p.slot for p in promise.accepted] == [3, 5]
    assert promise.accepted[0] == PValue(b(1), 3, Z)


# ------------------------------------------------------------------------------ E3


class _Events:
    """One ordered trace of persists and sends, to check which comes first."""

    def __init__(self) -> None:
        self.log: list[tuple] = []

    def send(self, dst, msg, after_persist) -> None:
        self.log.append(("send", type(msg), after_persist))

    def persist(self, record) -> None:
        self.log.append(("persist", type(record)))


def test_E3_promise_released_only_after_persist() -> None:
    ev = _Events()
    a = Acceptor(9, ev.send, ev.persist)
    a.on_prepare(Prepare(1, b(1), 0))
    assert ev.log == [("persist", PromisedRecord), ("send", Promise, True)]
    # A retransmitted prepare: no new record, but the reply still waits for the disk
    # (the earlier record might not be durable yet).
    ev.log.clear()
    a.on_prepare(Prepare(1, b(1), 0))
    assert ev.log == [("send", Promise, True)]


def test_E3_accepted_released_only_after_persist() -> None:
    ev = _Events()
    a = Acceptor(9, ev.send, ev.persist)
    a.on_accept(Accept(1, b(1), 0, X))
    assert ev.log == [("persist", AcceptedRecord), ("send", Accepted, True)]
    ev.log.clear()
    a.on_accept(Accept(1, b(1), 0, X))  # a retransmission: nothing new to persist
    assert ev.log == [("send", Accepted, True)]


def test_E3_through_a_node_promise_and_accepted_wait_in_send_after_persist() -> None:
    node, _ = make_node(1)
    node.step(Prepare(0, Ballot(0, 0), 0))
    node.step(Accept(0, Ballot(0, 0), 0, X))
    ready = node.take_ready()
    assert ready.persist == [
        PromisedRecord(Ballot(0, 0)),
        AcceptedRecord(PValue(Ballot(0, 0), 0, X)),
    ]
    assert [type(m) for _, m in ready.send_after_persist] == [Promise, Accepted]
    assert not any(isinstance(m, Promise | Accepted) for _, m in ready.send)


def test_refusals_leave_at_once_and_persist_nothing() -> None:
    a, cap = acceptor(promised=b(5))
    a.on_prepare(Prepare(1, b(4), 0))
    a.on_accept(Accept(1, b(4), 0, X))
    assert cap.persisted == []
    assert [(type(m), after) for _, m, after in cap.sent] == [(Preempted, False)] * 2


# ------------------------------------------------------------------------------ planted bug


@pytest.mark.parametrize("planted", [False, True])
def test_planted_bug_acceptor_replies_before_persist(planted: bool) -> None:
    bugs = frozenset({Bug.ACCEPTOR_REPLIES_BEFORE_PERSIST}) if planted else frozenset()
    node, _ = make_node(1, bugs=bugs)
    node.step(Prepare(0, Ballot(0, 0), 0))
    node.step(Accept(0, Ballot(0, 0), 0, X))
    ready = node.take_ready()
    early = [type(m) for _, m in ready.send if isinstance(m, Promise | Accepted)]
    late = [type(m) for _, m in ready.send_after_persist if isinstance(m, Promise | Accepted)]
    # the records are still written; only the release order changes
    assert len(ready.persist) == 2
    if planted:
        assert early == [Promise, Accepted] and late == []
    else:
        assert early == [] and late == [Promise, Accepted]


# ------------------------------------------------------------------------------ compaction


def with_slots(*slots: int, **kw) -> tuple[Acceptor, Capture]:
    """An acceptor that accepted X in ballot 2 at each of `slots`."""
    a, cap = acceptor(**kw)
    for s in slots:
        a.on_accept(Accept(1, b(2), s, X))
    cap.clear()
    return a, cap


@pytest.mark.parametrize(
    "compact,from_slot,reported",
    [
        (0, 0, [1, 3, 5, 7]),
        (4, 0, [5, 7]),  # compacted slots are no longer reported...
        (4, 6, [7]),  # ...and from_slot still applies above them
        (8, 0, []),
    ],
)
def test_promise_reports_compaction_and_only_what_lies_above(compact, from_slot, reported) -> None:
    a, cap = with_slots(1, 3, 5, 7)
    a.compact(compact)
    assert sorted(a.accepted) == [s for s in (1, 3, 5, 7) if s >= compact]
    a.on_prepare(Prepare(1, b(3), from_slot))
    [(_, promise, after_persist)] = cap.sent
    assert isinstance(promise, Promise) and after_persist
    assert promise.compacted == compact
    assert [pv.slot for pv in promise.accepted] == reported


def test_compaction_never_goes_back() -> None:
    a, _ = with_slots(1, 5)
    a.compact(4)
    a.compact(2)
    assert a.compacted == 4 and sorted(a.accepted) == [5]


@pytest.mark.parametrize(
    "promised,ballot,reply,persisted",
    [
        # a decided slot under our snapshot: yes, with nothing stored (the value is moot)
        (b(2), b(2), Accepted, []),
        # a higher ballot is still a promise, and must be durable before the reply
        (b(2), b(5), Accepted, [PromisedRecord(b(5))]),
        # A2 first: a lower ballot is refused as anywhere else
        (b(2), b(1), Preempted, []),
    ],
)
def test_accept_below_compaction_stores_nothing(promised, ballot, reply, persisted) -> None:
    a, cap = acceptor(promised=promised, compacted=10)
    a.on_accept(Accept(ballot.node, ballot, 4, Y))
    [(_, msg, after_persist)] = cap.sent
    assert type(msg) is reply and after_persist is (reply is Accepted)
    assert cap.persisted == persisted and a.accepted == {}
    assert a.promised == max(promised, ballot)


def test_recovered_acceptor_is_compacted_only_under_its_own_snapshot() -> None:
    """Node wiring: the durable base compacts the acceptor of a learner node; an
    acceptor-only node has no snapshot and never compacts."""
    from core_helpers import make_node

    from paxoi.core import ClusterConfig, Snapshot, SnapshotRecord

    disk = DurableState()
    for s in (1, 5, 9):
        disk.apply(AcceptedRecord(PValue(b(2), s, X)))
    disk.apply(SnapshotRecord(Snapshot(8, (b"[]",)), 6))
    assert sorted(disk.accepted) == [9]
    node, _ = make_node(0, durable=disk)
    assert node.acceptor is not None and node.acceptor.compacted == 6
    assert node.log.floor == 8 and node.replica is not None and node.replica.slot_out == 8
    plain = DurableState()
    for s in (1, 5, 9):
        plain.apply(AcceptedRecord(PValue(b(2), s, X)))
    only, _ = make_node(1, ClusterConfig.separate(1, 3, 1), durable=plain)
    assert only.acceptor is not None and only.acceptor.compacted == 0
    assert sorted(only.acceptor.accepted) == [1, 5, 9]
