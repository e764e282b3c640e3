"""The protocol's vocabulary: node ids, slots, ballots, commands and slot values.

A slot's value is a *batch*: a tuple of client commands decided together. The empty
batch is the no-op a new leader uses to fill a hole, so "no-op" needs no special
case anywhere: applying it applies nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple, TypeAlias

NodeId: TypeAlias = int
Slot: TypeAlias = int
ClientId: TypeAlias = str
Seq: TypeAlias = int


class Role(str, Enum):
    """What a node does. A node may play any subset; quorums are majorities of acceptors."""

    PROPOSER = "proposer"
    ACCEPTOR = "acceptor"
    LEARNER = "learner"


ALL_ROLES: frozenset[Role] = frozenset(Role)


@dataclass(frozen=True, slots=True, order=True)
class Ballot:
    """A ballot (round, node): totally ordered, and unique because the node id breaks ties.

    Comparison is lexicographic on (round, node), which is what the dataclass order gives.
    """

    round: int
    node: NodeId

    def __str__(self) -> str:
        return f"{self.round}.{self.node}"


#: Lower than every real ballot; what an acceptor has promised before any prepare.
BOTTOM = Ballot(-1, -1)


class Command(NamedTuple):
    """One client command. (client, seq) identifies it across retries: exactly-once hinges on it.

    Sequence numbers start at 1 and a client's commands are applied in seq order.
    The payload is opaque to the protocol; the state machine interprets it.

    A NamedTuple, not a frozen dataclass like the rest: every server builds one per
    command, and a frozen dataclass takes twice as long to build (its `__init__` goes
    through `object.__setattr__` once per field). Immutable and hashable all the same.
    """

    client: ClientId
    seq: Seq
    payload: bytes


#: A slot's value: commands decided together. () is the no-op.
Batch: TypeAlias = tuple[Command, ...]
NOOP: Batch = ()


@dataclass(frozen=True, slots=True)
class PValue:
    """An accepted proposal (ballot, slot, value): the paper's "pvalue"."""

    ballot: Ballot
    slot: Slot
    value: Batch
