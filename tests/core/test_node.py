"""The Node: composition of the roles, the Ready contract, and whole-cluster scenarios on
the in-test pump (perfect network, then a lossy seeded one)."""

from __future__ import annotations

import random

import pytest
from core_helpers import (
    Cluster,
    ListMachine,
    all_out,
    check_safety,
    cmd,
    config,
    make_node,
    msgs,
)

from paxoi.core import (
    Accept,
    Accepted,
    AcceptedRecord,
    Applied,
    Ballot,
    BallotRecord,
    ClientReply,
    ClusterConfig,
    Command,
    ElectionPolicy,
    Limits,
    Node,
    Prepare,
    Promise,
    PromisedRecord,
    ReplyStatus,
    Role,
    StateMachine,
    Timing,
    UsageError,
)

# ------------------------------------------------------------------------------ misuse


def test_unknown_node_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="not in the cluster"):
        Node(7, config(3), random.Random(0), ListMachine())


def test_learner_without_state_machine_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="state machine"):
        Node(0, config(3), random.Random(0), None)


def test_acceptor_only_node_needs_no_state_machine() -> None:
    cfg = ClusterConfig.separate(1, 3, 1)
    node = Node(1, cfg, random.Random(0), None)
    assert node.acceptor is not None and node.proposer is None and node.replica is None


def test_step_rejects_what_is_not_a_peer_message() -> None:
    node, _ = make_node(0)
    with pytest.raises(UsageError):
        node.step(ClientReply("a", 1, ReplyStatus.OK))  # type: ignore[arg-type]


def test_list_machine_is_a_state_machine() -> None:
    m = ListMachine()
    assert isinstance(m, StateMachine)
    m.apply(0, Command("a", 1, b"x"))
    other = ListMachine()
    other.restore(m.snapshot())
    assert other.entries == m.entries


# ------------------------------------------------------------------------------ Ready


def test_take_ready_hands_over_and_resets() -> None:
    node, _ = make_node(1)
    assert node.take_ready().is_empty()
    node.step(Prepare(0, Ballot(0, 0), 0))
    assert not node.take_ready().is_empty()
    assert node.take_ready().is_empty()


def test_self_message_that_may_go_at_once_is_handled_within_the_call() -> None:
    c = Cluster(config(3))
    c.elect()
    leader = c.nodes[0]
    leader.submit(cmd("a", 1))
    ready = leader.take_ready()
    # the Accept to itself never leaves: its acceptor took it in the same call
    assert sorted(d for d, _ in msgs(ready.send, Accept)) == [1, 2]
    assert [type(r) for r in ready.persist] == [AcceptedRecord]
    # ... and its Accepted, which must wait for that record, comes back through step
    assert [(d, type(m)) for d, m in ready.send_after_persist] == [(0, Accepted)]


def test_submit_many_is_submit_of_each_and_one_batch() -> None:
    """A client's frame of commands goes in with one call; a retry of one already
    applied among them is answered from the client table, not ordered again."""
    c = Cluster(config(3))
    c.elect()
    c.submit(0, cmd("a", 1))
    leader = c.nodes[0]
    leader.take_ready()
    leader.submit_many([cmd("a", 1), cmd("a", 2), cmd("a", 3)])
    ready = leader.take_ready()
    assert [(r.seq, r.status) for r in ready.replies] == [(1, ReplyStatus.OK)]
    accepts = msgs(all_out(ready), Accept)
    assert {d for d, _ in accepts} == {1, 2}
    assert [(x.client, x.seq) for x in accepts[0][1].value] == [("a", 2), ("a", 3)]


def test_decisions_for_the_other_learners_are_lazy_and_nothing_else_is() -> None:
    """A Decide may wait for a ride (Ready.send_lazy): the client's answer comes from
    the leader's own learner, which learns at once."""
    c = Cluster(config(3))
    c.elect()
    c.readies.clear()
    c.submit(0, cmd("a", 1))
    lazy = [r.send_lazy for n, r in c.readies if n == 0 and r.send_lazy]
    assert lazy, "no Decide was sent"
    assert {(d, type(m).__name__) for batch in lazy for d, m in batch} == {
        (1, "Decide"),
        (2, "Decide"),
    }
    eager = [m for n, r in c.readies for _, m in r.send + r.send_after_persist]
    assert not any(type(m).__name__ == "Decide" for m in eager)
    assert [type(r) for n, ready in c.readies if n == 0 for r in ready.replies] == [ClientReply]


def test_self_message_after_persist_comes_back_through_step() -> None:
    node, _ = make_node(0)
    for _ in range(node.config.timing.election):
        node.tick()
    ready = node.take_ready()
    assert [type(r) for r in ready.persist] == [BallotRecord]
    assert (0, Prepare(0, Ballot(0, 0), 0)) in ready.send_after_persist
    node.step(Prepare(0, Ballot(0, 0), 0))  # the shell releases it after the fsync
    ready = node.take_ready()
    assert ready.persist == [PromisedRecord(Ballot(0, 0))]
    assert ready.send_after_persist == [(0, Promise(0, Ballot(0, 0), 0, ()))]
    node.step(Promise(0, Ballot(0, 0), 0, ()))
    assert not node.is_leader  # one promise of three
    node.step(Promise(2, Ballot(0, 0), 0, ()))
    assert node.is_leader and node.leader == 0


def test_ready_contract_holds_over_a_whole_run() -> None:
    """What reveals durable state is always held for the disk; nothing in `send` loops back."""
    rng = random.Random(5)
    c = Cluster(config(3, window=2), seed=5)
    c.drop = lambda s, d, m: rng.random() < 0.1
    for t in range(300):
        if t % 4 == 0:
            c.submit(rng.choice(c.up), cmd("a", t // 40 + 1))
        if t == 150:
            leader = c.leader()
            c.crash(leader if leader is not None else 0)
        c.tick()
    assert c.readies
    for n, ready in c.readies:
        assert all(d != n for d, _ in ready.send), "a self-addressed message in send"
        assert not any(isinstance(m, Promise | Accepted | Prepare) for _, m in ready.send)
        for _, m in ready.send_after_persist:
            assert isinstance(m, Promise | Accepted | Prepare)
    check_safety(c)


def test_replies_and_applied_do_not_wait_for_the_disk() -> None:
    c = Cluster(config(3))
    c.elect()
    leader = c.nodes[0]
    leader.submit(cmd("a", 1))
    leader.take_ready()
    b = leader.proposer.ballot
    leader.step(Accepted(0, b, 0))
    leader.step(Accepted(1, b, 0))
    ready = leader.take_ready()
    assert [(r.client, r.seq, r.status) for r in ready.replies] == [("a", 1, ReplyStatus.OK)]
    assert [a.command for a in ready.applied] == [cmd("a", 1)]
    assert ready.applied == [Applied(0, cmd("a", 1), ready.replies[0].result)]


# ------------------------------------------------------------------------------ scenarios


def test_happy_path_every_replica_applies_the_same_sequence() -> None:
    c = Cluster(config(3))
    assert c.elect() == 0
    expected = []
    for i in range(1, 8):
        for client in ("a", "b", "c"):
            c.submit(0, cmd(client, i))
            expected.append((client, i))
    c.tick(10)
    for n in c.config.nodes:
        assert c.machines[n].commands == expected
        assert sorted((r.client, r.seq) for r in c.ok_replies(n)) == sorted(expected)
    check_safety(c)


def test_client_redirected_by_a_node_without_a_proposer() -> None:
    cfg = ClusterConfig.separate(1, 3, 1)
    c = Cluster(cfg)
    assert c.elect() == 0
    c.tick(cfg.timing.heartbeat)  # the learner hears who leads
    c.submit(4, cmd("a", 1))
    assert [(r.status, r.leader) for r in c.replies[4]] == [(ReplyStatus.NOT_LEADER, 0)]


def test_separate_roles_cluster_decides_and_learners_apply() -> None:
    cfg = ClusterConfig.separate(2, 3, 2)  # proposers 0-1, acceptors 2-4, learners 5-6
    c = Cluster(cfg)
    assert c.elect() == 0
    c.submit(0, cmd("a", 1), cmd("a", 2))
    c.crash(0)
    assert c.elect() == 1
    c.submit(1, cmd("a", 3))
    c.tick(5)
    for n in cfg.learners:
        assert c.machines[n].commands == [("a", 1), ("a", 2), ("a", 3)]
    for n in cfg.acceptors:
        assert len(c.nodes[n].log) == 0 and c.nodes[n].acceptor.accepted
    check_safety(c)


@pytest.mark.parametrize("down,progress", [((), True), ((2,), True), ((1, 2), False)])
def test_progress_needs_a_majority_of_configured_acceptors(down, progress) -> None:
    c = Cluster(config(3))
    assert c.elect() == 0
    c.crash(*down)
    c.submit(0, cmd("a", 1))
    c.tick(50)
    assert (c.machines[0].commands == [("a", 1)]) is progress


def test_whole_cluster_restart_recovers_state_and_continues() -> None:
    c = Cluster(config(3))
    c.elect()
    c.submit(0, cmd("a", 1), cmd("b", 1), cmd("a", 2))
    before = {n: list(c.machines[n].entries) for n in c.config.nodes}
    for n in c.config.nodes:
        c.crash(n)
    for n in c.config.nodes:
        c.restart(n)
    assert {n: c.machines[n].entries for n in c.config.nodes} == before
    leader = c.elect()
    c.submit(leader, cmd("a", 2))  # a retry from before the crash: not applied again
    c.submit(leader, cmd("a", 3))
    c.tick(5)
    for n in c.config.nodes:
        assert c.machines[n].commands == [("a", 1), ("b", 1), ("a", 2), ("a", 3)]
    check_safety(c)


def test_same_seed_same_run() -> None:
    def trace(seed: int) -> list:
        rng = random.Random(seed)
        c = Cluster(config(3, policy=ElectionPolicy.RANDOM), seed=seed)
        c.drop = lambda s, d, m: rng.random() < 0.2
        for t in range(150):
            if t % 5 == 0:
                c.submit(rng.choice(c.up), cmd("a", t // 10 + 1))
            c.tick()
        return c.sent

    assert trace(3) == trace(3)
    assert trace(3) != trace(4)


def _lossy_run(seed: int, cfg: ClusterConfig, loss: float, ticks: int) -> Cluster:
    rng = random.Random(seed)
    c = Cluster(cfg, seed=seed)
    c.drop = lambda s, d, m: rng.random() < loss
    next_seq = {"a": 1, "b": 1, "c": 1}
    max_down = (len(cfg.acceptors) - 1) // 2
    for _ in range(ticks):
        for client, seq in next_seq.items():
            if any(r.client == client and r.seq == seq for r in c.ok_replies()):
                next_seq[client] = seq + 1
            elif rng.random() < 0.3:
                leader = c.leader()
                target = leader if leader is not None and rng.random() < 0.8 else rng.choice(c.up)
                c.submit(target, cmd(client, next_seq[client]))
        roll = rng.random()
        if roll < 0.01 and len(c.down) < max_down:
            c.crash(rng.choice(c.up))
        elif roll < 0.03 and c.down:
            c.restart(rng.choice(sorted(c.down)))
        c.tick()
    check_safety(c)
    c.drop = None  # heal: everything comes back and converges
    for n in sorted(c.down):
        c.restart(n)
    return c


FAST = Timing(heartbeat=2, election=10, retransmit=3, catchup=3)


@pytest.mark.parametrize("every", [0, 3], ids=["no-snapshots", "snapshots"])
@pytest.mark.parametrize("policy", list(ElectionPolicy))
@pytest.mark.parametrize("seed", range(3))
def test_safety_and_convergence_under_loss_and_crashes(policy, seed, every) -> None:
    limits = Limits(window=4, max_batch=3, snapshot_every=every, log_keep=1, snapshot_chunk=40)
    cfg = ClusterConfig.colocated(3, timing=FAST, policy=policy, limits=limits)
    c = _lossy_run(seed, cfg, loss=0.2, ticks=250)
    c.tick(150)
    check_safety(c)
    outs = {n: c.nodes[n].replica.slot_out for n in cfg.learners}
    assert len(set(outs.values())) == 1 and min(outs.values()) > 20, outs
    entries = [c.machines[n].entries for n in cfg.learners]
    assert all(e == entries[0] for e in entries)


@pytest.mark.parametrize("every", [0, 3], ids=["no-snapshots", "snapshots"])
@pytest.mark.parametrize("seed", range(2))
def test_safety_with_separate_roles_under_loss(seed, every) -> None:
    limits = Limits(window=4, max_batch=3, snapshot_every=every, log_keep=1, snapshot_chunk=40)
    cfg = ClusterConfig.separate(2, 3, 2, timing=FAST, limits=limits)
    c = _lossy_run(seed, cfg, loss=0.2, ticks=250)
    c.tick(150)
    check_safety(c)
    assert c.machines[5].entries == c.machines[6].entries and c.machines[5].entries


def test_roles_of_a_colocated_node() -> None:
    node, _ = make_node(0)
    assert node.roles == frozenset(Role)
    assert node.acceptor is not None and node.proposer is not None and node.replica is not None


# ------------------------------------------------------------------------------ memory


@pytest.mark.parametrize("every", [0, 50])
def test_memory_stays_bounded_over_many_slots(every: int) -> None:
    """Issue #8: what each server holds per slot (its learner's log, its acceptor's
    accepted values) stays bounded with snapshots on, and grows without them."""
    keep, window, slots = 10, 8, 1_500
    c = Cluster(config(3, snapshot_every=every, log_keep=keep, window=window))
    leader = c.elect()
    peak = 0
    for i in range(1, slots + 1):
        c.submit(leader, cmd("a", i))
        for node in c.nodes.values():
            assert node.acceptor is not None
            peak = max(peak, len(node.acceptor.accepted), len(node.log))
    assert c.nodes[leader].log.floor == slots
    if every:
        assert peak <= every + keep + window
    else:
        assert peak == slots
    check_safety(c)
