"""The simulated network: loss, duplication, delay (hence reordering) and partitions."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..core.types import NodeId

Endpoint = NodeId | str  # nodes are ints, clients are strings


@dataclass
class SimNetwork:
    rng: random.Random
    drop: float = 0.0
    duplicate: float = 0.0
    delay_min: int = 1
    delay_max: int = 5
    #: Node groups that can talk only among themselves; empty means no partition.
    groups: list[frozenset[NodeId]] = field(default_factory=list)

    def connected(self, a: Endpoint, b: Endpoint) -> bool:
        if not self.groups or isinstance(a, str) or isinstance(b, str) or a == b:
            return True
        return any(a in g and b in g for g in self.groups)

    def delays(self, src: Endpoint, dst: Endpoint) -> list[int]:
        """Delivery delays (ms) for one send: none if it is lost, two if duplicated."""
        if src == dst:
            return [0]
        if not self.connected(src, dst) or self.rng.random() < self.drop:
            return []
        copies = 2 if self.rng.random() < self.duplicate else 1
        return [self.rng.randint(self.delay_min, self.delay_max) for _ in range(copies)]
