"""The proposer (leader, scout and commanders), rule by rule: C1, C2, hole filling, the
window, batching, back-pressure, and the planted proposer bugs.

Single-node tests drive node 0 of a 3-node co-located cluster through the public Node
API and play the other acceptors by hand; scenario tests use the in-test pump.
"""

from __future__ import annotations

import random

import pytest
from core_helpers import (
    Cluster,
    ListMachine,
    all_out,
    campaign,
    check_safety,
    cmd,
    config,
    make_node,
    merge,
    msgs,
    pv,
)

from paxoi.core import (
    NOOP,
    Accept,
    Accepted,
    Ballot,
    BallotRecord,
    Bug,
    CatchupReply,
    CatchupRequest,
    ClusterConfig,
    Decide,
    DurableState,
    ElectionPolicy,
    Heartbeat,
    Node,
    Phase,
    Preempted,
    Prepare,
    Promise,
    PValue,
    Ready,
    ReplyStatus,
    Timing,
)
from paxoi.core.node import GAP_PATIENCE

X = (cmd("x", 1),)
Y = (cmd("y", 1),)
Z = (cmd("z", 1),)


def win(
    promises: dict[int, tuple[PValue, ...]],
    *,
    decided: tuple[tuple[int, tuple], ...] = (),
    bugs: frozenset[Bug] = frozenset(),
    cfg: ClusterConfig | None = None,
) -> tuple[Node, Ballot, Ready]:
    """Node 0 campaigns (in round 6: earlier rounds are "used") and gets `promises`."""
    node, _ = make_node(0, cfg, durable=DurableState(round_used=5), bugs=bugs)
    for slot, value in decided:
        node.step(Decide(1, slot, value))
    ballot, first = campaign(node)
    assert ballot == Ballot(6, 0)
    [(_, prepare)] = msgs(first.send_after_persist, Prepare)[:1]
    for src, accepted in promises.items():
        node.step(Promise(src, ballot, prepare.from_slot, accepted))
    return node, ballot, merge([first, node.take_ready()])


def proposals(ready: Ready, to: int = 1) -> dict[int, tuple]:
    """slot -> value of the Accepts sent to acceptor `to`."""
    out: dict[int, tuple] = {}
    for dst, m in msgs(all_out(ready), Accept):
        if dst == to:
            assert out.setdefault(m.slot, m.value) == m.value
    return out


# ------------------------------------------------------------------------------ C2


@pytest.mark.parametrize(
    "from1,from2,expected",
    [
        # one promise reports a value: it is re-proposed
        ((pv(2, 1, 0, *X),), (), {0: X}),
        # two report different values: the one accepted with the highest ballot wins
        ((pv(2, 1, 0, *X),), (pv(4, 2, 0, *Y),), {0: Y}),
        ((pv(4, 2, 0, *Y),), (pv(2, 1, 0, *X),), {0: Y}),
        # equal rounds: the node id breaks the tie, as in Ballot's order
        ((pv(3, 1, 0, *X),), (pv(3, 2, 0, *Y),), {0: Y}),
        # slot by slot
        ((pv(2, 1, 0, *X), pv(1, 1, 1, *Y)), (pv(3, 2, 1, *Z),), {0: X, 1: Z}),
        # a no-op that was accepted is a value like any other
        ((pv(5, 2, 0),), (pv(1, 1, 0, *X),), {0: NOOP}),
    ],
)
def test_C2_new_leader_reproposes_highest_ballot_value(from1, from2, expected) -> None:
    node, ballot, ready = win({1: from1, 2: from2})
    assert node.is_leader
    assert proposals(ready) == expected
    assert all(m.ballot == ballot for _, m in msgs(ready.send, Accept))


def test_C2_values_reported_by_later_promises_are_too_late_but_harmless() -> None:
    # Leadership is decided by the first quorum; a third promise does not change proposals.
    node, ballot, ready = win({1: (pv(2, 1, 0, *X),), 2: ()})
    node.step(Promise(0, ballot, 0, (pv(5, 0, 0, *Y),)))
    assert proposals(merge([ready, node.take_ready()])) == {0: X}


# ------------------------------------------------------------------------------ holes


def test_noop_fills_hole_only_below_highest_accepted() -> None:
    node, _, ready = win({1: (pv(2, 1, 0, *X),), 2: (pv(2, 1, 3, *Y),)})
    assert proposals(ready) == {0: X, 1: NOOP, 2: NOOP, 3: Y}
    assert node.proposer.next_slot == 4
    node.submit(cmd("z", 1))
    assert proposals(node.take_ready()) == {4: Z}


def test_leader_change_without_holes_consumes_no_slot() -> None:
    node, _, ready = win({1: (), 2: ()})
    assert node.is_leader and proposals(ready) == {}
    assert node.proposer.next_slot == 0
    node.submit(cmd("z", 1))
    assert proposals(node.take_ready()) == {0: Z}


def test_leader_change_without_holes_consumes_no_slot_in_a_cluster() -> None:
    c = Cluster(config(3))
    assert c.elect() == 0
    c.submit(0, cmd("a", 1), cmd("a", 2))
    c.crash(0)
    assert c.elect() == 1
    c.submit(1, cmd("b", 1))
    c.tick()
    assert c.decided(2) == {0: (cmd("a", 1),), 1: (cmd("a", 2),), 2: (cmd("b", 1),)}
    assert c.nodes[1].proposer.next_slot == 3
    check_safety(c)


def test_phase1_starts_at_first_slot_not_known_decided() -> None:
    node, _, ready = win({1: (), 2: ()}, decided=((0, X), (1, Y)))
    [(_, prepare), *_] = msgs(ready.send_after_persist, Prepare)
    assert prepare.from_slot == 2
    assert node.proposer.next_slot == 2


def test_recovery_skips_slots_known_decided_and_fills_the_rest() -> None:
    # Slot 2 is known decided, 0 and 1 are not, and no acceptor reports anything.
    node, _, ready = win({1: (), 2: ()}, decided=((2, Z),))
    assert proposals(ready) == {0: NOOP, 1: NOOP}
    assert node.proposer.next_slot == 3


# ------------------------------------------------------------------------------ C1


@pytest.mark.parametrize("policy", list(ElectionPolicy))
@pytest.mark.parametrize("seed", range(3))
def test_C1_one_value_per_ballot_and_slot(policy: ElectionPolicy, seed: int) -> None:
    """Lossy network, crashes and restarts: no ballot ever proposes two values for a slot."""
    rng = random.Random(seed)
    c = Cluster(config(3, policy=policy, window=3, max_batch=2), seed=seed)
    c.drop = lambda s, d, m: rng.random() < 0.2
    for t in range(400):
        if t % 2 == 0:
            c.submit(rng.choice(c.up), cmd(f"c{t % 3}", t // 6 + 1))
        if t in (120, 260) and not c.down:
            leader = c.leader()
            c.crash(leader if leader is not None else rng.choice(c.up))
        elif t in (180, 320) and c.down:
            c.restart(sorted(c.down)[0])
        c.tick()
    values: dict[tuple[Ballot, int], set] = {}
    for _, _, m in c.sent_of(Accept):
        values.setdefault((m.ballot, m.slot), set()).add(m.value)
    ballots = {b for b, _ in values}
    assert len(ballots) >= 2, "expected at least one leader change"
    assert all(len(v) == 1 for v in values.values())
    check_safety(c)


def test_restarted_proposer_never_reuses_round() -> None:
    c = Cluster(config(3))
    assert c.elect() == 0
    first = c.nodes[0].proposer.ballot
    c.submit(0, cmd("a", 1))
    for n in (0, 1, 2):  # a whole-cluster power failure
        c.crash(n)
    for n in (0, 1, 2):
        c.restart(n)
    assert c.elect() == 0
    second = c.nodes[0].proposer.ballot
    assert second.round > first.round and second.round % 3 == 0
    c.submit(0, cmd("a", 2))
    assert c.decided(1) == {0: (cmd("a", 1),), 1: (cmd("a", 2),)}
    check_safety(c)


@pytest.mark.parametrize("policy", list(ElectionPolicy))
@pytest.mark.parametrize("node_id", [0, 1, 2])
@pytest.mark.parametrize("round_used", [0, 4, 9])
def test_restarted_node_campaigns_above_its_durable_round(policy, node_id, round_used) -> None:
    cfg = config(3, policy=policy)
    node, _ = make_node(node_id, cfg, durable=DurableState(round_used=round_used))
    ballot, ready = campaign(node)
    assert ballot.round > round_used and ballot.node == node_id
    if policy is ElectionPolicy.RANK:
        assert ballot.round % 3 == node_id  # still its own view
    assert ready.persist == [BallotRecord(ballot.round)]


def test_E3_ballot_is_durable_before_prepares_leave() -> None:
    node, _ = make_node(0)
    ballot, ready = campaign(node)
    assert ready.persist == [BallotRecord(ballot.round)]
    assert msgs(ready.send, Prepare) == []
    assert sorted(d for d, _ in msgs(ready.send_after_persist, Prepare)) == [0, 1, 2]


# ------------------------------------------------------------------------------ quorums


def test_decides_only_on_a_quorum_of_accepted_in_its_own_ballot() -> None:
    node, ballot, _ = win({1: (), 2: ()})
    node.submit(cmd("z", 1))
    node.take_ready()
    stale = Ballot(5, 2)
    for m in (
        Accepted(1, ballot, 0),
        Accepted(1, ballot, 0),  # a duplicate from the same acceptor counts once
        Accepted(2, stale, 0),  # another ballot does not count
        Accepted(2, ballot, 9),  # another slot does not count
    ):
        node.step(m)
        ready = node.take_ready()
        assert (
            msgs(ready.send + ready.send_lazy, Decide) == []
            and ready.replies == []
            and ready.applied == []
        )
    assert 0 not in node.log
    node.step(Accepted(2, ballot, 0))
    ready = node.take_ready()
    assert sorted(d for d, _ in msgs(ready.send_lazy, Decide)) == [1, 2]
    assert [(r.client, r.seq, r.status) for r in ready.replies] == [("z", 1, ReplyStatus.OK)]
    assert node.log.get(0) == Z


@pytest.mark.parametrize(
    "promises,leads",
    [
        ([(1, 0), (2, 0)], True),
        ([(1, 0), (1, 0)], False),  # the same acceptor twice is one promise
        ([(1, 0), (2, -1)], False),  # a promise for an older ballot does not count
        ([(1, 0), (2, +1)], False),  # nor one for another (later) ballot
    ],
)
def test_phase1_needs_a_quorum_of_promises_in_its_own_ballot(promises, leads) -> None:
    node, _ = make_node(0, durable=DurableState(round_used=5))
    ballot, _ = campaign(node)
    for src, shift in promises:
        node.step(Promise(src, Ballot(ballot.round + shift, ballot.node), 0, ()))
    assert node.is_leader is leads


def test_E3_client_ack_only_after_decision() -> None:
    c = Cluster(config(3))
    c.elect()
    c.drop = lambda s, d, m: isinstance(m, Accepted) and s != 0  # only self-acks arrive
    c.submit(0, cmd("z", 1))
    c.tick(5)
    assert c.ok_replies() == [] and 0 not in c.nodes[0].log
    c.drop = None
    c.tick(10)  # retransmission reaches the others
    assert [(r.client, r.seq) for r in c.ok_replies(0)] == [("z", 1)]


def accepts_to(ready: Ready) -> tuple[list[int], list[int]]:
    """(acceptors sent the Accepts at once, acceptors sent them lazily)"""
    return (
        sorted(d for d, _ in msgs(ready.send, Accept)),
        sorted(d for d, _ in msgs(ready.send_lazy, Accept)),
    )


def test_a_new_leaders_first_accept_goes_to_every_acceptor_at_once() -> None:
    node, _, _ = win({1: (), 2: ()})
    node.submit(cmd("z", 1))
    assert accepts_to(node.take_ready()) == ([1, 2], [])


def test_alone_in_flight_an_accept_goes_at_once_only_to_the_last_quorum() -> None:
    """The acceptor outside the quorum that chose the previous slot gets it lazily (it
    still gets it: any quorum can decide); with another slot in flight, everyone at once."""
    node, ballot, _ = win({1: (), 2: ()})
    node.submit(cmd("z", 1))
    node.take_ready()
    for src in (0, 2, 1):  # its own acceptor and node 2 choose slot 0; node 1 is late
        node.step(Accepted(src, ballot, 0))
        node.take_ready()
    assert node.log.get(0) == Z
    node.submit(cmd("z", 2))
    assert accepts_to(node.take_ready()) == ([2], [1])
    node.submit(cmd("z", 3))
    assert accepts_to(node.take_ready()) == ([1, 2], [])


def test_losing_the_quick_acceptor_costs_one_slot_a_lazy_accept() -> None:
    c = Cluster(config(3))
    leader = c.elect()
    c.submit(leader, cmd("a", 1))
    c.readies.clear()
    c.submit(leader, cmd("a", 2))
    [eager] = [accepts_to(r)[0] for n, r in c.readies if n == leader and r.send]
    [quick] = eager
    [other] = [n for n in c.config.acceptors if n not in (leader, quick)]
    c.crash(quick)
    c.readies.clear()
    c.submit(leader, cmd("a", 3))  # this shell sends lazy messages at once, as a tick would
    assert [accepts_to(r) for n, r in c.readies if n == leader and msgs(all_out(r), Accept)] == [
        ([quick], [other])
    ]
    assert [r.seq for r in c.ok_replies(leader)] == [1, 2, 3]
    c.readies.clear()
    c.submit(leader, cmd("a", 4))  # the quorum that answered is the quick one now
    assert [accepts_to(r) for n, r in c.readies if n == leader and msgs(all_out(r), Accept)] == [
        ([other], [quick])
    ]
    assert [r.seq for r in c.ok_replies(leader)] == [1, 2, 3, 4]


# ------------------------------------------------------------------------------ window etc.


def _stalled_leader(**limits: int) -> Cluster:
    """A 3-node cluster whose leader (0) hears no Accepted: nothing gets decided."""
    c = Cluster(config(3, **limits))
    assert c.elect() == 0
    c.drop = lambda s, d, m: isinstance(m, Accepted)
    return c


def test_window_bounds_inflight() -> None:
    c = _stalled_leader(window=2)
    c.submit(0, *(cmd("a", i) for i in range(1, 6)))
    slots = {m.slot for _, _, m in c.sent_of(Accept)}
    assert slots == {0, 1}
    p = c.nodes[0].proposer
    assert (p.inflight, p.pending) == (2, 3)
    c.tick(25)  # retransmissions resend the same slots, nothing more
    assert {m.slot for _, _, m in c.sent_of(Accept)} == {0, 1}


def test_batching_when_window_full() -> None:
    c = Cluster(config(3, window=1, max_batch=3))
    assert c.elect() == 0
    c.submit(0, *(cmd("a", i) for i in range(1, 6)))
    a = [cmd("a", i) for i in range(1, 6)]
    assert c.decided(1) == {0: (a[0],), 1: (a[1], a[2], a[3]), 2: (a[4],)}
    assert c.machines[2].commands == [("a", i) for i in range(1, 6)]


def test_commands_of_one_round_share_a_slot() -> None:
    """Flush on demand: what arrives between two Readies is proposed as one batch."""
    c = Cluster(config(3, max_batch=3))
    assert c.elect() == 0
    a = [cmd("a", i) for i in range(1, 6)]
    c.submit(0, *a, together=True)
    assert c.decided(1) == {0: (a[0], a[1], a[2]), 1: (a[3], a[4])}
    c.submit(0, cmd("b", 1))
    assert c.decided(1)[2] == (cmd("b", 1),)


def test_backpressure_busy_when_pending_full() -> None:
    c = _stalled_leader(window=1, max_pending=2)
    c.submit(0, *(cmd("a", i) for i in range(1, 5)))
    busy = [r for r in c.replies[0] if r.status is ReplyStatus.BUSY]
    assert [(r.client, r.seq, r.leader) for r in busy] == [("a", 4, 0)]
    p = c.nodes[0].proposer
    assert (p.inflight, p.pending) == (1, 2)
    c.drop = None
    c.tick(12)  # retransmission unblocks the window; the queue drains
    assert c.machines[1].commands == [("a", 1), ("a", 2), ("a", 3)]
    c.submit(0, cmd("a", 4))  # taken now: there is room again
    assert c.machines[1].commands[-1] == ("a", 4)


def test_retry_of_a_queued_command_is_not_proposed_twice() -> None:
    c = Cluster(config(3, window=1))
    assert c.elect() == 0
    c.submit(0, cmd("a", 1), cmd("a", 2), cmd("a", 1), cmd("a", 2))
    values = [m.value for _, d, m in c.sent_of(Accept) if d == 1]
    assert values == [(cmd("a", 1),), (cmd("a", 2),)]


def test_R5_proposes_only_below_decided_prefix_plus_window() -> None:
    """Regression: the window once bounded only the slots in flight, so a stuck slot let
    next_slot run arbitrarily far ahead of the decided prefix."""
    c = Cluster(config(3, window=2))
    assert c.elect() == 0
    # slot 0 reaches only the leader's own acceptor: it stays undecided
    c.drop = lambda s, d, m: isinstance(m, Accept) and m.slot == 0
    c.submit(0, cmd("a", 1))
    c.drop = None
    for seq in range(2, 6):
        c.submit(0, cmd("a", seq))
    assert c.nodes[0].log.floor == 0
    slots = sorted({m.slot for _, _, m in c.sent_of(Accept)})
    assert max(slots) < 0 + 2, f"proposed slots {slots} with slot 0 undecided and WINDOW 2"


# ------------------------------------------------------------------------------ leadership


def test_follower_redirects_clients_to_the_leader() -> None:
    c = Cluster(config(3))
    c.elect()
    c.submit(2, cmd("a", 1))
    [reply] = c.replies[2]
    assert (reply.status, reply.leader) == (ReplyStatus.NOT_LEADER, 0)
    assert c.decided(2) == {}


def test_candidate_queues_commands_and_proposes_them_after_winning() -> None:
    node, _ = make_node(0)
    ballot, _ = campaign(node)
    node.submit(cmd("a", 1))
    assert proposals(node.take_ready()) == {}
    node.step(Promise(1, ballot, 0, ()))
    node.step(Promise(2, ballot, 0, ()))
    assert node.is_leader
    assert proposals(node.take_ready()) == {0: (cmd("a", 1),)}


@pytest.mark.parametrize(
    "deposer",
    [
        lambda b: Preempted(1, b, Ballot(b.round + 1, 1)),
        lambda b: Heartbeat(2, Ballot(b.round + 1, 2), 0),
        lambda b: Prepare(1, Ballot(b.round + 1, 1), 0),
        lambda b: Accept(1, Ballot(b.round + 1, 1), 0, X),
    ],
    ids=["preempted", "heartbeat", "prepare", "accept"],
)
def test_higher_ballot_deposes_leader_and_redirects_its_clients(deposer) -> None:
    c = _stalled_leader(window=1)
    c.submit(0, cmd("a", 1), cmd("a", 2))
    node = c.nodes[0]
    ballot = node.proposer.ballot
    node.step(deposer(ballot))
    ready = node.take_ready()
    assert not node.is_leader and node.proposer.phase is Phase.FOLLOWER
    redirected = [(r.client, r.seq) for r in ready.replies if r.status is ReplyStatus.NOT_LEADER]
    assert redirected == [("a", 1), ("a", 2)]
    assert (node.proposer.inflight, node.proposer.pending) == (0, 0)


def test_lower_ballot_does_not_depose_leader() -> None:
    c = Cluster(config(3))
    c.elect()
    node = c.nodes[0]
    b = node.proposer.ballot
    node.step(Preempted(1, Ballot(b.round - 1, 1), b))  # about a ballot that is not ours
    node.step(Heartbeat(2, Ballot(b.round - 1, 2), 0))
    assert node.is_leader


def test_retransmits_unanswered_accepts_only_to_silent_acceptors() -> None:
    node, ballot, _ = win({1: (), 2: ()})
    node.submit(cmd("a", 1))
    node.take_ready()
    node.step(Accepted(1, ballot, 0))
    retransmit = node.config.timing.retransmit
    for _ in range(retransmit - 1):
        node.tick()
    assert msgs(node.take_ready().send, Accept) == []
    node.tick()
    assert [(d, m.slot) for d, m in msgs(node.take_ready().send, Accept)] == [(2, 0)]


def test_candidate_retransmits_prepares_to_acceptors_that_did_not_promise() -> None:
    node, _ = make_node(0)
    ballot, _ = campaign(node)
    node.step(Promise(1, ballot, 0, ()))
    node.take_ready()
    for _ in range(node.config.timing.retransmit):
        node.tick()
    again = msgs(node.take_ready().send_after_persist, Prepare)
    assert sorted(d for d, _ in again) == [0, 2]
    assert all(m.ballot == ballot for _, m in again)


def test_leader_heartbeats_every_heartbeat_ticks() -> None:
    node, _, ready = win({1: (), 2: ()})
    assert sorted(d for d, _ in msgs(ready.send, Heartbeat)) == [1, 2]  # on winning
    period = node.config.timing.heartbeat
    beats = []
    for t in range(1, 3 * period + 1):
        node.tick()
        if msgs(node.take_ready().send, Heartbeat):
            beats.append(t)
    assert beats == [period, 2 * period, 3 * period]


@pytest.mark.parametrize("accepts", [True, False], ids=["accepts-flow", "silence"])
def test_accepts_from_the_leader_count_as_heartbeats(accepts: bool) -> None:
    """A follower whose heartbeats are stuck behind a stream of accepts (an overloaded
    leader) keeps following; with neither, it campaigns after the election timeout."""
    node, _ = make_node(1)
    leader = Ballot(0, 0)
    node.step(Heartbeat(0, leader, 0))
    timeout = node.config.timing.election
    campaigned = False
    for t in range(3 * timeout):
        if accepts and t % 10 == 0:
            node.step(Accept(0, leader, t, X))
        node.tick()
        campaigned |= bool(msgs(node.take_ready().send_after_persist, Prepare))
    assert campaigned is not accepts
    assert (node.leader == 0) is accepts


def test_ticks_made_up_after_a_stall_expire_the_lease_but_not_the_election_timer() -> None:
    """A node whose loop stalled gets its missed ticks at once (Node.tick(catching_up)).
    The leader's lease runs out on them, since the time did pass; a follower does not
    campaign on them, since the leader's messages may be waiting unread."""
    c = Cluster(config(3, timing=Timing(lease=40)))
    leader = c.elect()
    c.tick(10)
    follower = (leader + 1) % 3
    assert c.nodes[leader].proposer.has_lease
    for _ in range(500):
        c.nodes[follower].tick(catching_up=True)
        c.nodes[leader].tick(catching_up=True)
    assert not c.nodes[leader].proposer.has_lease  # 500 ticks passed for the lease clock
    assert c.nodes[leader].is_leader
    ready = c.nodes[follower].take_ready()
    assert not msgs(ready.send_after_persist, Prepare)  # and the follower did not campaign
    c.nodes[follower].tick()  # a live tick after a burst: one tick of the timer, no more
    assert not msgs(c.nodes[follower].take_ready().send_after_persist, Prepare)


# ------------------------------------------------------------------------------ planted bugs


@pytest.mark.parametrize("planted", [False, True])
def test_planted_bug_quorum_of_f(planted: bool) -> None:
    """With 2 of 3 acceptors down, a quorum of f (= 1) lets the lone node decide."""
    bugs = frozenset({Bug.QUORUM_OF_F}) if planted else frozenset()
    c = Cluster(config(3), bugs=bugs)
    c.crash(1, 2)
    c.tick(100)
    c.submit(0, cmd("a", 1))
    if planted:
        assert c.nodes[0].is_leader
        assert c.decided(0) == {0: (cmd("a", 1),)}
        assert c.machines[0].commands == [("a", 1)]
    else:
        assert not c.nodes[0].is_leader
        assert c.decided(0) == {} and c.machines[0].commands == []


@pytest.mark.parametrize("planted", [False, True])
def test_planted_bug_leader_ignores_accepted(planted: bool) -> None:
    bugs = frozenset({Bug.LEADER_IGNORES_ACCEPTED}) if planted else frozenset()
    # The new leader knows slot 1 decided, so it must recover slot 0, which acceptor 1
    # reports as accepted with X.
    _, _, ready = win({1: (pv(2, 1, 0, *X),), 2: ()}, decided=((1, Y),), bugs=bugs)
    assert proposals(ready) == ({0: NOOP} if planted else {0: X})


@pytest.mark.parametrize("planted", [False, True])
def test_planted_bug_leader_ignores_accepted_overwrites_a_chosen_value(planted: bool) -> None:
    bugs = frozenset({Bug.LEADER_IGNORES_ACCEPTED}) if planted else frozenset()
    c = Cluster(config(3), bugs=bugs)
    assert c.elect() == 0
    # X is accepted by acceptors 0 and 1 (chosen) but nobody hears of it; 0 dies.
    c.drop = lambda s, d, m: (isinstance(m, Accept) and d == 2) or isinstance(m, Accepted)
    c.submit(0, cmd("x", 1))
    c.crash(0)
    c.drop = None
    assert c.elect() == 1
    c.submit(1, cmd("y", 1))
    if planted:
        assert c.decided(2)[0] == (cmd("y", 1),)
        with pytest.raises(AssertionError, match="A5/C2"):
            check_safety(c)
    else:
        assert c.decided(2)[0] == X
        check_safety(c)


def test_skip_slot_leaves_a_hole_that_the_next_leader_fills_with_a_noop() -> None:
    """UMich test 4: the primary skips slot X; once it dies its successor finds the hole
    (a slot below the highest accepted one that no acceptor accepted) and fills it."""
    cfg = config(3)
    c = Cluster(cfg)
    c.nodes[0] = Node(0, cfg, random.Random(0), ListMachine(), skip_slot=1)
    assert c.elect() == 0
    c.submit(0, cmd("a", 1), cmd("a", 2), cmd("a", 3))
    accepted_slots = {m.slot for _, _, m in c.sent_of(Accept)}
    assert 1 not in accepted_slots
    assert {0, 2, 3} <= accepted_slots
    replica = c.nodes[1].replica
    assert replica is not None and replica.slot_out == 1  # stuck behind the hole
    c.crash(0)
    assert c.elect() != 0
    for n in (1, 2):
        machine = c.machines[n]
        assert machine is not None
        assert [(s, q) for s, _, q, _ in machine.entries] == [(0, 1), (2, 2), (3, 3)]
        assert c.nodes[n].log.get(1) == ()


def test_retry_of_an_adopted_command_takes_no_second_slot() -> None:
    """The old leader's accept reached the acceptors but it died before the decision; the
    client's retry reaches the new leader. The new leader re-proposes the adopted command
    in its old slot and must not order the retry again: a leader change without holes
    consumes no slot numbers (CS 380D), even with retries."""
    c = Cluster(config(3))
    assert c.elect() == 0
    c.drop = lambda s, d, m: isinstance(m, Accepted)  # the accepts land, the answers don't
    c.submit(0, cmd("a", 1))
    c.drop = None
    c.crash(0)
    c.drop = lambda s, d, m: isinstance(m, Promise)  # hold phase 1 open

    def candidates() -> list[int]:
        return [n for n in (1, 2) if c.nodes[n].proposer.phase is Phase.CANDIDATE]  # type: ignore[union-attr]

    c.tick_until(lambda: bool(candidates()))
    candidate = candidates()[0]
    c.submit(candidate, cmd("a", 1))  # the retry, queued while phase 1 runs
    c.drop = None
    assert c.elect() == candidate
    c.tick(20)
    decided = c.decided(candidate)
    assert decided == {0: (cmd("a", 1),)}


# ------------------------------------------------------------------------------ compaction


def win_compacted(
    promises: dict[int, tuple[tuple[PValue, ...], int]],
    *,
    bugs: frozenset[Bug] = frozenset(),
    cfg: ClusterConfig | None = None,
) -> tuple[Node, Ballot, Ready]:
    """As `win`, each promise with its `compacted` point: src -> (accepted, compacted)."""
    node, _ = make_node(0, cfg, durable=DurableState(round_used=5), bugs=bugs)
    ballot, first = campaign(node)
    [(_, prepare), *_] = msgs(first.send_after_persist, Prepare)
    for src, (accepted, compacted) in promises.items():
        node.step(Promise(src, ballot, prepare.from_slot, accepted, compacted))
    return node, ballot, merge([first, node.take_ready()])


@pytest.mark.parametrize(
    "promises,expected,next_slot",
    [
        # nobody compacted: the usual recovery, holes and all
        ({1: ((pv(2, 1, 3, *X),), 0), 2: ((), 0)}, {0: NOOP, 1: NOOP, 2: NOOP, 3: X}, 4),
        # acceptor 2 compacted below 10: nothing at all is proposed below 10, not even
        # acceptor 1's stale value for slot 3, nor no-ops for the "holes"
        ({1: ((pv(1, 1, 3, *Y),), 0), 2: ((), 10)}, {}, 10),
        # above the compaction point recovery goes on as usual
        (
            {1: ((pv(1, 1, 3, *Y), pv(2, 1, 12, *X)), 0), 2: ((), 10)},
            {10: NOOP, 11: NOOP, 12: X},
            13,
        ),
        # the highest compaction point of the quorum counts
        ({1: ((pv(2, 1, 12, *X),), 5), 2: ((pv(2, 1, 12, *X),), 12)}, {12: X}, 13),
    ],
)
def test_C2_leader_proposes_nothing_below_the_quorums_compaction(
    promises, expected, next_slot
) -> None:
    node, _, ready = win_compacted(promises)
    assert node.is_leader
    assert proposals(ready) == expected
    assert node.proposer.next_slot == next_slot


@pytest.mark.parametrize("planted", [False, True])
def test_planted_bug_leader_ignores_compacted(planted: bool) -> None:
    bugs = frozenset({Bug.LEADER_IGNORES_COMPACTED}) if planted else frozenset()
    _, _, ready = win_compacted({1: ((pv(1, 1, 3, *Y),), 0), 2: ((), 10)}, bugs=bugs)
    # Slots 0-9 are decided, and what acceptor 2 accepted there is gone: the bug proposes
    # the stale Y and no-ops there, any of which may overwrite a chosen value.
    assert proposals(ready) == ({0: NOOP, 1: NOOP, 2: NOOP, 3: Y} if planted else {})


def test_leader_behind_the_compaction_catches_up_and_keeps_serving() -> None:
    node, _, ready = win_compacted({1: ((), 0), 2: ((), 40)}, cfg=config(3, window=4))
    p, r = node.proposer, node.replica
    assert p.decided_below == 40 and p.chosen == 40 and node.log.floor == 0
    # its heartbeats tell followers what is decided; its learner knows it lags
    assert {m.chosen for _, m in msgs(ready.send, Heartbeat)} == {40}
    assert r.known_chosen == 40
    # new commands go above the compaction point, window-bounded from there (R5)
    out = []
    for i in range(1, 10):  # one round of input each: one slot each, as far as allowed
        node.submit(cmd("c", i))
        out.append(node.take_ready())
    assert sorted(proposals(merge(out))) == [40, 41, 42, 43]
    # and its learner asks a peer for what it lacks
    for _ in range(config(3).timing.catchup + 1):
        node.tick()
    asked = msgs(node.take_ready().send, CatchupRequest)
    assert asked and all(m.from_slot == 0 for _, m in asked)


def test_proposer_only_leader_moves_its_log_past_the_compaction() -> None:
    cfg = ClusterConfig.separate(1, 3, 1)
    node, _, ready = win_compacted({1: ((), 0), 2: ((pv(2, 2, 21, *X),), 20)}, cfg=cfg)
    assert node.replica is None and node.is_leader
    assert (node.log.base, node.log.floor) == (20, 20)
    assert proposals(ready) == {20: NOOP, 21: X}
    [(_, prepare), *_] = msgs(ready.send_after_persist, Prepare)
    assert prepare.from_slot == 0


def test_leader_stuck_below_the_compaction_recovers_the_slots_by_a_new_phase1() -> None:
    """The only nodes holding slots below the compaction point may all be down: then the
    live acceptors' accepted values are the only copy, and a new phase 1 (from the log's
    floor, in a new ballot) gets them out."""
    cfg = config(3)
    node, first_ballot, _ = win_compacted({1: ((), 0), 2: ((), 4)}, cfg=cfg)
    assert node.proposer.decided_below == 4 and node.log.floor == 0
    # Nobody answers the learner's catch-up requests. After GAP_PATIENCE election
    # timeouts the leader campaigns again, from its floor.
    ready = []
    for _ in range(GAP_PATIENCE * cfg.timing.election + 1):
        node.tick()
        ready.append(node.take_ready())
    prepares = msgs(merge(ready).send_after_persist, Prepare)
    assert prepares, "the stuck leader never ran phase 1 again"
    ballot = prepares[0][1].ballot
    assert ballot > first_ballot and ballot.node == 0
    assert {m.from_slot for _, m in prepares} == {0}
    assert BallotRecord(ballot.round) in merge(ready).persist
    # Acceptors 1 and 2 compacted nothing; they report what they accepted below 4.
    accepted = (pv(2, 1, 0, *X), pv(2, 1, 1, *Y), pv(2, 1, 3, *Z))
    node.step(Promise(1, ballot, 0, accepted, 0))
    node.step(Promise(2, ballot, 0, (), 0))
    assert node.is_leader and node.proposer.ballot == ballot
    assert proposals(node.take_ready()) == {0: X, 1: Y, 2: NOOP, 3: Z}


def test_leader_whose_learner_progresses_does_not_campaign_again() -> None:
    cfg = config(3)
    node, ballot, _ = win_compacted({1: ((), 0), 2: ((), 200)}, cfg=cfg)
    for t in range(GAP_PATIENCE * cfg.timing.election * 2):
        node.tick()
        if t % 10 == 0:  # catch-up keeps arriving, slowly
            node.step(CatchupReply(1, ((t // 10, X),)))
        assert not msgs(node.take_ready().send_after_persist, Prepare)
    assert node.is_leader and node.proposer.ballot == ballot
