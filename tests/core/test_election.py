"""Failure detection and succession (liveness only: safety never depends on it)."""

from __future__ import annotations

import random

import pytest
from core_helpers import Cluster, check_safety, cmd, config

from paxoi.core import (
    BOTTOM,
    Ballot,
    BallotRecord,
    Election,
    ElectionPolicy,
    Timing,
)

T = Timing()  # election = 30 ticks
PROPOSERS = (0, 1, 2)


def election(
    node: int, policy: ElectionPolicy = ElectionPolicy.RANK, seed: int = 0, **kw
) -> Election:
    return Election(node, PROPOSERS, T, policy, random.Random(seed), **kw)


def ticks_to_claim(e: Election, limit: int = 1_000) -> tuple[int, Ballot]:
    for t in range(1, limit + 1):
        ballot = e.tick()
        if ballot is not None:
            return t, ballot
    raise AssertionError("never campaigned")


# ------------------------------------------------------------------------------ RANK


@pytest.mark.parametrize(
    "node,ticks,ballot",
    [
        (0, 30, Ballot(0, 0)),  # view 0 is node 0's: it goes first
        (1, 60, Ballot(1, 1)),  # if it heard nothing for another timeout, view 1: node 1
        (2, 90, Ballot(2, 2)),
    ],
)
def test_rank_policy_view_owner_campaigns_in_turn(node, ticks, ballot) -> None:
    e = election(node)
    assert ticks_to_claim(e) == (ticks, ballot)
    assert e.round_used == ballot.round and e.max_seen == ballot


def test_rank_policy_succession_0_1_2() -> None:
    """Leaders go 0, 1, 2 as they fail, and a recovered node does not grab leadership back."""
    c = Cluster(config(5))
    assert c.elect() == 0
    c.submit(0, cmd("a", 1))
    c.crash(0)
    assert c.elect() == 1
    assert c.nodes[1].proposer.ballot == Ballot(1, 1)
    c.submit(1, cmd("a", 2))
    c.crash(1)
    assert c.elect() == 2
    assert c.nodes[2].proposer.ballot == Ballot(2, 2)
    c.restart(0)
    c.restart(1)
    c.tick(200)
    assert c.leaders() == [2]
    assert c.nodes[0].leader == 2 and c.nodes[1].leader == 2
    c.submit(2, cmd("a", 3))
    assert c.machines[0].commands == [("a", 1), ("a", 2), ("a", 3)]
    # exactly three campaigns: no node campaigned out of turn
    rounds = sorted(
        r.round for n in c.config.nodes for r in c.persisted[n] if isinstance(r, BallotRecord)
    )
    assert rounds == [0, 1, 2]
    check_safety(c)


def test_rank_policy_only_view_owner_campaigns_after_seeing_a_ballot() -> None:
    # Having seen round 4, the next view is 5: node 2's (5 % 3). Nodes 0 and 1 stay quiet.
    claims = {}
    for node in PROPOSERS:
        e = election(node)
        e.observe(Ballot(4, 1))
        claims[node] = [b for _ in range(T.election) if (b := e.tick()) is not None]
    assert claims == {0: [], 1: [], 2: [Ballot(5, 2)]}


# ------------------------------------------------------------------------------ RANDOM


def test_random_policy_timeouts_differ() -> None:
    firsts = [ticks_to_claim(election(0, ElectionPolicy.RANDOM, seed))[0] for seed in range(10)]
    assert all(T.election <= t < 2 * T.election for t in firsts)
    assert len(set(firsts)) > 1
    # and drawn afresh each time, from one seeded generator
    e = election(0, ElectionPolicy.RANDOM, seed=1)
    gaps = [ticks_to_claim(e)[0] for _ in range(8)]
    assert all(T.election <= g < 2 * T.election for g in gaps) and len(set(gaps)) > 1
    # ... deterministically
    e2 = election(0, ElectionPolicy.RANDOM, seed=1)
    assert gaps == [ticks_to_claim(e2)[0] for _ in range(8)]


def test_random_policy_timeouts_differ_between_nodes_of_a_cluster() -> None:
    first_campaigner = {}
    for seed in range(6):
        c = Cluster(config(3, policy=ElectionPolicy.RANDOM), seed=seed)
        c.elect()
        first_campaigner[seed] = c.leader()
    assert len(set(first_campaigner.values())) > 1  # not always the same node


@pytest.mark.parametrize(
    "seen,round_used,expected", [(BOTTOM, -1, 0), (Ballot(7, 2), -1, 8), (Ballot(3, 2), 9, 10)]
)
def test_random_policy_claims_a_round_above_any_seen_or_used(seen, round_used, expected) -> None:
    e = election(1, ElectionPolicy.RANDOM, round_used=round_used)
    e.observe(seen)
    assert ticks_to_claim(e)[1] == Ballot(expected, 1)


# ------------------------------------------------------------------------------ both


@pytest.mark.parametrize("policy", list(ElectionPolicy))
@pytest.mark.parametrize("node", PROPOSERS)
@pytest.mark.parametrize("round_used", [0, 1, 2, 7])
def test_restarted_proposer_never_reuses_round(policy, node, round_used) -> None:
    e = election(node, policy, round_used=round_used)
    claimed = []
    for _ in range(3):
        claimed.append(ticks_to_claim(e)[1])
    rounds = [b.round for b in claimed]
    assert rounds[0] > round_used
    assert rounds == sorted(set(rounds)), "rounds must strictly increase"
    assert all(b.node == node for b in claimed)
    if policy is ElectionPolicy.RANK:
        assert all(r % len(PROPOSERS) == node for r in rounds)


@pytest.mark.parametrize("policy", list(ElectionPolicy))
def test_heard_leader_resets_the_election_timer(policy) -> None:
    e = election(1, policy)
    for _ in range(3):
        for _ in range(T.election - 1):
            assert e.tick() is None
        assert e.heard_leader(Ballot(0, 0)) is True
        assert e.leader == 0
    assert e.tick() is None


def test_stale_heartbeat_is_ignored() -> None:
    e = election(1)
    e.observe(Ballot(3, 2))
    for _ in range(T.election - 1):
        assert e.tick() is None
    assert e.heard_leader(Ballot(2, 0)) is False
    assert e.leader is None
    assert e.tick() == Ballot(4, 1)  # the timer was not reset: it fires on time


def test_timeout_forgets_the_leader() -> None:
    e = election(2)
    e.heard_leader(Ballot(0, 0))
    assert e.leader == 0
    for _ in range(T.election):
        e.tick()
    assert e.leader is None


def test_max_seen_only_increases() -> None:
    e = election(0)
    for b, expected in [
        (Ballot(2, 1), Ballot(2, 1)),
        (Ballot(1, 2), Ballot(2, 1)),
        (Ballot(2, 2), Ballot(2, 2)),
    ]:
        e.observe(b)
        assert e.max_seen == expected


def test_stable_leader_no_elections_on_a_perfect_network() -> None:
    c = Cluster(config(3))
    c.elect()
    c.tick(1_000)
    assert c.leaders() == [0]
    campaigns = [r for n in c.config.nodes for r in c.persisted[n] if isinstance(r, BallotRecord)]
    assert campaigns == [BallotRecord(0)]
