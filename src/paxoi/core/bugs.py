"""Known protocol bugs that can be planted on purpose, to prove the checkers can fail.

A test-only switch: production code paths never set these. Each name is one bug that
the simulator (and the scenario checkers) must catch.
"""

from __future__ import annotations

from enum import Enum


class Bug(str, Enum):
    #: In phase 1 the new leader ignores values its acceptors already accepted (breaks C2).
    LEADER_IGNORES_ACCEPTED = "leader-ignores-accepted"
    #: The acceptor sends promises and accepts before their state is durable (breaks E3/A1).
    ACCEPTOR_REPLIES_BEFORE_PERSIST = "acceptor-replies-before-persist"
    #: Quorums of f acceptors instead of f+1: two quorums need not intersect.
    QUORUM_OF_F = "quorum-of-f"
    #: The replica keeps no client table, so retried commands are applied again (breaks E1).
    REPLICA_FORGETS_CLIENT_TABLE = "replica-forgets-client-table"
    #: A follower answers lease reads from its own state, confirming nothing (stale reads).
    FOLLOWER_READS_UNCONFIRMED = "follower-reads-unconfirmed"
    #: The leader answers lease reads from its state at once, with no lease and no read
    #: index: a deposed leader that has not heard of its successor (partitioned, paused)
    #: serves stale state.
    LEADER_READS_WITHOUT_LEASE = "leader-reads-without-lease"
    #: In phase 1 the new leader ignores `Promise.compacted`: it fills "holes" below the
    #: acceptors' compaction point with no-ops and re-proposes stale values there, where
    #: the chosen value is no longer reported (breaks C2).
    LEADER_IGNORES_COMPACTED = "leader-ignores-compacted"


def parse_bugs(names: list[str] | tuple[str, ...]) -> frozenset[Bug]:
    """Bug names as given on a command line, validated."""
    known = {b.value: b for b in Bug}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown bug(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return frozenset(known[n] for n in names)
