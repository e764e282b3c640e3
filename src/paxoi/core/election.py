"""Failure detection and succession: when a proposer should campaign, and with what ballot.

Safety never depends on this module (ballots are unique and Paxos tolerates any
number of would-be leaders); only liveness does. So the policies here are about
converging quickly on one leader:

- RANK (view succession, after the UMich and CS 380D handouts): round r belongs to
  proposers[r % n]. When followers stop hearing the leader they all move to the next
  view; only its owner campaigns. If it is dead too, the next timeout moves on again,
  so leadership goes 0, 1, 2, ... and a recovered node does not grab it back.
- RANDOM: a follower that times out campaigns at once with a round above any seen;
  timeouts are drawn afresh from [election, 2*election) ticks, so duelling
  candidates spread apart and one wins (as Raft does).
"""

from __future__ import annotations

import random

from .config import ElectionPolicy, Timing
from .types import BOTTOM, Ballot, NodeId


class Election:
    def __init__(
        self,
        node_id: NodeId,
        proposers: tuple[NodeId, ...],
        timing: Timing,
        policy: ElectionPolicy,
        rng: random.Random,
        round_used: int = -1,
    ) -> None:
        self.id = node_id
        self._proposers = proposers
        self._rank = proposers.index(node_id)
        self._timing = timing
        self._policy = policy
        self._rng = rng
        #: The highest round this node has used as a proposer (durable; never reused).
        self.round_used = round_used
        #: The highest ballot seen in use anywhere.
        self.max_seen: Ballot = BOTTOM
        #: Where this node believes the leader is (a hint for clients), or None.
        self.leader: NodeId | None = None
        #: RANK only: the view this node currently believes in.
        self.view = -1
        self._elapsed = 0
        self._timeout = self._draw()

    def _draw(self) -> int:
        t = self._timing.election
        if self._policy is ElectionPolicy.RANDOM:
            return self._rng.randrange(t, 2 * t)
        return t

    def observe(self, ballot: Ballot) -> None:
        """A ballot was seen in use (prepare, accept, preemption)."""
        if ballot > self.max_seen:
            self.max_seen = ballot
            self.view = max(self.view, ballot.round)

    def heard_leader(self, ballot: Ballot) -> bool:
        """A heartbeat from the leader of `ballot`. True if it is followed (not stale)."""
        if ballot < self.max_seen:
            return False
        self.observe(ballot)
        self.leader = ballot.node
        self.restart_timer()
        return True

    def restart_timer(self) -> None:
        self._elapsed = 0
        self._timeout = self._draw()

    def tick(self) -> Ballot | None:
        """Advance one tick; a ballot to campaign with if this node should campaign now."""
        self._elapsed += 1
        if self._elapsed < self._timeout:
            return None
        self.restart_timer()
        self.leader = None
        if self._policy is ElectionPolicy.RANDOM:
            return self._claim(max(self.max_seen.round, self.round_used) + 1)
        self.view = max(self.view, self.max_seen.round) + 1
        if self._proposers[self.view % len(self._proposers)] != self.id:
            return None
        return self._claim(self.view)

    def claim_next(self) -> Ballot:
        """A new ballot of ours above every one seen or used: under RANK, in the next
        view this node owns, so followers do not campaign against it."""
        return self._claim(self._own_round(max(self.max_seen.round, self.round_used) + 1))

    def _own_round(self, round_: int) -> int:
        """`round_`, or under RANK the first view from it on that this node owns."""
        if self._policy is ElectionPolicy.RANK:
            round_ += (self._rank - round_) % len(self._proposers)
            self.view = max(self.view, round_)
        return round_

    def _claim(self, round_: int) -> Ballot:
        if round_ <= self.round_used:
            # After a restart: never reuse a round. Under RANK, jump to our next own view.
            round_ = self._own_round(self.round_used + 1)
        self.round_used = round_
        ballot = Ballot(round_, self.id)
        self.observe(ballot)
        return ballot
