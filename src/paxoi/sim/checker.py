"""The invariants a simulated run is judged by (../shared/design/INVARIANTS.md).

The checker watches what leaves each node (messages as they are released, commands
as they are applied) and the acceptors' state when they come back from a crash. It
holds the global truth no single node can see: which pvalues a majority accepted,
every value any learner learned for each slot, every command any client submitted.

Snapshots: a replica that restores one (after a restart, or from a peer's transfer)
applies nothing for the slots it covers. The simulator reports the restored state
(`on_restored`), which must be exactly the reference sequence up to that point (R3), and
the replica's checks go on from there. An acceptor may drop what it accepted below its
`compacted` point, and only slots that were decided may be below it (S1).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from ..core.acceptor import Acceptor
from ..core.messages import Accept, Accepted, Decide, PeerMessage, Promise
from ..core.types import Ballot, Batch, ClientId, Command, NodeId, Seq, Slot


@dataclass(frozen=True)
class Violation(Exception):
    """A broken invariant: which one, and what was seen."""

    invariant: str
    detail: str

    def __str__(self) -> str:
        return f"{self.invariant}: {self.detail}"


class Checker:
    def __init__(self, quorum: int) -> None:
        self.quorum = quorum
        # C1: slot -> ballot -> value proposed
        self._proposed: dict[Slot, dict[Ballot, Batch]] = {}
        # who accepted each (ballot, slot)
        self._accepted_by: dict[tuple[Ballot, Slot], set[NodeId]] = defaultdict(set)
        # A5/C2: slot -> (lowest ballot chosen in, value): once chosen, higher ballots carry it
        self.chosen: dict[Slot, tuple[Ballot, Batch]] = {}
        # agreement: slot -> value any learner learned
        self.learned: dict[Slot, Batch] = {}
        # A1/A3 across restarts: what each acceptor revealed to the world
        self._revealed_promise: dict[NodeId, Ballot] = {}
        self._revealed_accept: dict[NodeId, dict[Slot, Ballot]] = defaultdict(dict)
        # integrity: what clients submitted
        self.submitted: dict[tuple[ClientId, Seq], bytes] = {}
        # R3/prefix: the one applied sequence every replica must follow
        self.reference: list[tuple[Slot, ClientId, Seq]] = []
        self._position: dict[tuple[NodeId, int], int] = {}
        self._applied: dict[tuple[NodeId, int], set[tuple[ClientId, Seq]]] = defaultdict(set)
        self._last_seq: dict[tuple[NodeId, int], dict[ClientId, Seq]] = defaultdict(dict)
        self.results: dict[tuple[ClientId, Seq], bytes] = {}
        # S1: every slot below this was learned by some learner
        self._learned_floor: Slot = 0

    def learned_floor(self) -> Slot:
        """Every slot below this was decided (some learner was told its value)."""
        while self._learned_floor in self.learned:
            self._learned_floor += 1
        return self._learned_floor

    def _check_compacted(self, node: NodeId, compacted: Slot) -> None:
        if compacted > self.learned_floor():
            raise Violation(
                "S1",
                f"acceptor {node} compacted slots below {compacted}, but slot "
                f"{self.learned_floor()} was never decided",
            )

    # ---------------------------------------------------------------- messages
    def on_send(self, src: NodeId, msg: PeerMessage) -> None:
        if isinstance(msg, Accept):
            self._on_accept(msg)
        elif isinstance(msg, Accepted):
            self._on_accepted(src, msg)
        elif isinstance(msg, Promise):
            prev = self._revealed_promise.get(src)
            if prev is not None and msg.ballot < prev:
                raise Violation(
                    "A1", f"acceptor {src} promised {msg.ballot} after promising {prev}"
                )
            self._revealed_promise[src] = msg.ballot
            self._check_compacted(src, msg.compacted)
        elif isinstance(msg, Decide):
            value = msg.value
            if value is None:  # by reference: what its ballot proposed for the slot
                proposed = self._proposed.get(msg.slot, {})
                if msg.ballot is None or msg.ballot not in proposed:
                    raise Violation(
                        "agreement",
                        f"node {src} decided slot {msg.slot} by reference to ballot "
                        f"{msg.ballot}, which proposed nothing there",
                    )
                value = proposed[msg.ballot]
            self.on_learn(src, msg.slot, value)

    def _on_accept(self, m: Accept) -> None:
        proposals = self._proposed.setdefault(m.slot, {})
        old = proposals.setdefault(m.ballot, m.value)
        if old != m.value:
            raise Violation("C1", f"ballot {m.ballot} proposed two values for slot {m.slot}")
        chosen = self.chosen.get(m.slot)
        if chosen is not None and m.ballot > chosen[0] and m.value != chosen[1]:
            raise Violation(
                "C2",
                f"slot {m.slot} was chosen in ballot {chosen[0]}, but ballot {m.ballot} "
                "proposes a different value",
            )

    def _on_accepted(self, src: NodeId, m: Accepted) -> None:
        prev = self._revealed_promise.get(src)
        if prev is not None and m.ballot < prev:
            raise Violation("A1", f"acceptor {src} accepted in {m.ballot} after promising {prev}")
        self._revealed_promise[src] = m.ballot
        seen = self._revealed_accept[src]
        if m.ballot > seen.get(m.slot, m.ballot) or m.slot not in seen:
            seen[m.slot] = m.ballot
        value = self._proposed.get(m.slot, {}).get(m.ballot)
        if value is None:
            raise Violation(
                "A2", f"acceptor {src} accepted slot {m.slot} in {m.ballot}, never proposed"
            )
        voters = self._accepted_by[(m.ballot, m.slot)]
        voters.add(src)
        if len(voters) < self.quorum:
            return
        chosen = self.chosen.get(m.slot)
        if chosen is not None and chosen[1] != value:
            raise Violation(
                "A5", f"slot {m.slot} chosen with two values ({chosen[0]} and {m.ballot})"
            )
        if chosen is None or m.ballot < chosen[0]:
            self.chosen[m.slot] = (m.ballot, value)
            for ballot, proposed in self._proposed[m.slot].items():
                if ballot > m.ballot and proposed != value:
                    raise Violation(
                        "C2",
                        f"slot {m.slot} is chosen in ballot {m.ballot}, but ballot {ballot} "
                        "proposed a different value",
                    )

    def on_learn(self, node: NodeId, slot: Slot, value: Batch) -> None:
        old = self.learned.setdefault(slot, value)
        if old != value:
            raise Violation("agreement", f"node {node} learned a different value for slot {slot}")

    # ---------------------------------------------------------------- restarts
    def on_acceptor_recovered(self, node: NodeId, acceptor: Acceptor) -> None:
        """Whatever an acceptor told others must have survived its crash (E3)."""
        revealed = self._revealed_promise.get(node)
        if revealed is not None and acceptor.promised < revealed:
            raise Violation(
                "A1",
                f"acceptor {node} came back with promise {acceptor.promised} "
                f"after having promised {revealed}",
            )
        self._check_compacted(node, acceptor.compacted)
        for slot, ballot in self._revealed_accept[node].items():
            if slot < acceptor.compacted:
                continue  # decided, and covered by the node's durable snapshot (S1)
            pv = acceptor.accepted.get(slot)
            if pv is None or pv.ballot < ballot:
                raise Violation(
                    "A3", f"acceptor {node} forgot slot {slot} it accepted in ballot {ballot}"
                )

    # ---------------------------------------------------------------- clients
    def on_submit(self, cmd: Command) -> None:
        self.submitted[(cmd.client, cmd.seq)] = cmd.payload

    def on_applied(
        self, node: NodeId, incarnation: int, slot: Slot, cmd: Command, result: bytes
    ) -> None:
        key = (cmd.client, cmd.seq)
        if self.submitted.get(key) != cmd.payload:
            raise Violation("integrity", f"node {node} applied {key} that no client submitted")
        who = (node, incarnation)
        applied = self._applied[who]
        if key in applied:
            raise Violation("E1", f"node {node} applied {key} twice")
        applied.add(key)
        last = self._last_seq[who].get(cmd.client, 0)
        if cmd.seq != last + 1:
            raise Violation(
                "E2", f"node {node} applied {key} right after seq {last} of that client"
            )
        self._last_seq[who][cmd.client] = cmd.seq
        pos = self._position.get(who, 0)
        entry = (slot, cmd.client, cmd.seq)
        if pos < len(self.reference):
            if self.reference[pos] != entry:
                raise Violation(
                    "R3",
                    f"node {node} applied {entry} at position {pos}, others {self.reference[pos]}",
                )
        else:
            self.reference.append(entry)
        self._position[who] = pos + 1
        old = self.results.setdefault(key, result)
        if old != result:
            raise Violation("R3", f"{key} gave result {result!r} on node {node}, {old!r} elsewhere")

    def on_restored(
        self, node: NodeId, incarnation: int, applied: list[tuple[Slot, Command]]
    ) -> None:
        """A replica replaced its state with a snapshot holding `applied`, in order."""
        who = (node, incarnation)
        pos = self._position.get(who, 0)
        if len(applied) < pos:
            raise Violation(
                "R4", f"node {node} restored a snapshot of {len(applied)} commands after {pos}"
            )
        last: dict[ClientId, Seq] = {}
        keys: set[tuple[ClientId, Seq]] = set()
        for i, (slot, cmd) in enumerate(applied):
            key = (cmd.client, cmd.seq)
            if self.submitted.get(key) != cmd.payload:
                raise Violation("integrity", f"node {node} restored {key}, never submitted")
            entry = (slot, cmd.client, cmd.seq)
            if i >= len(self.reference):
                self.reference.append(entry)
            elif self.reference[i] != entry:
                raise Violation(
                    "R3",
                    f"node {node} restored a snapshot with {entry} at position {i}, "
                    f"others applied {self.reference[i]}",
                )
            if key in keys:
                raise Violation("E1", f"node {node} restored a snapshot applying {key} twice")
            keys.add(key)
            last[cmd.client] = cmd.seq
        self._position[who] = len(applied)
        self._applied[who] = keys
        self._last_seq[who] = last

    def applied_by(self, node: NodeId, incarnation: int) -> set[tuple[ClientId, Seq]]:
        return self._applied[(node, incarnation)]
