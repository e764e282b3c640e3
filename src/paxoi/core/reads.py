"""Reads answered from a replica's state instead of through the log.

A read through the log is an ordinary command and needs nothing here. The other two
kinds:
- LEASE: the leader answers, provided it holds a lease (a quorum of acceptors promised
  to back no other proposer for a while, so no slot can be chosen by anyone else), and
  once it has applied every slot it proposed before the read arrived (its read index).
  The read is linearized at its arrival: nothing chosen then is missing from the answer.
- STALE: any learner answers at once from what it has applied.

Queued lease reads wait only for the apply cursor; they are bounded like the leader's
command queue, and answered NOT_LEADER when the node stops leading.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .bugs import Bug
from .messages import ReadMode, ReadReply, ReadRequest, ReplyStatus
from .types import NodeId, Slot

Query = Callable[[bytes], bytes]


class Reads:
    def __init__(
        self,
        query: Query | None,
        reply: Callable[[ReadReply], None],
        max_pending: int,
        bugs: frozenset[Bug] = frozenset(),
    ) -> None:
        self._query = query
        self._reply = reply
        self._max_pending = max_pending
        self._bugs = bugs
        #: (read index, request), in arrival order (so in index order).
        self._waiting: deque[tuple[Slot, ReadRequest]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def read(
        self,
        req: ReadRequest,
        *,
        applied: Slot | None,
        leading: bool,
        lease: bool,
        read_index: Slot,
        leader: NodeId | None,
    ) -> None:
        """`applied`: this node's apply cursor (None: not a learner). `read_index`: the
        leader's next slot to propose."""
        if applied is None or self._query is None:
            status = ReplyStatus.UNSUPPORTED if applied is not None else ReplyStatus.NOT_LEADER
            self._reply(ReadReply(req.client, req.id, status, leader=leader))
            return
        if req.mode is ReadMode.STALE or (
            Bug.FOLLOWER_READS_UNCONFIRMED in self._bugs and not leading
        ):
            self._answer(req, applied)
            return
        if leading and Bug.LEADER_READS_WITHOUT_LEASE in self._bugs:
            self._answer(req, applied)
            return
        if not leading or not lease:
            self._reply(ReadReply(req.client, req.id, ReplyStatus.NOT_LEADER, leader=leader))
            return
        if applied >= read_index and not self._waiting:
            self._answer(req, applied)
        elif len(self._waiting) >= self._max_pending:
            self._reply(ReadReply(req.client, req.id, ReplyStatus.BUSY, leader=leader))
        else:
            self._waiting.append((read_index, req))

    def advance(self, applied: Slot, leading: bool, leader: NodeId | None) -> None:
        """The apply cursor moved (or leadership changed): answer what can be answered."""
        waiting = self._waiting
        if not leading:
            while waiting:
                _, req = waiting.popleft()
                self._reply(ReadReply(req.client, req.id, ReplyStatus.NOT_LEADER, leader=leader))
            return
        while waiting and waiting[0][0] <= applied:
            _, req = waiting.popleft()
            self._answer(req, applied)

    def _answer(self, req: ReadRequest, applied: Slot) -> None:
        assert self._query is not None
        result = self._query(req.query)
        self._reply(ReadReply(req.client, req.id, ReplyStatus.OK, result, slot=applied))


__all__ = ["Reads"]
