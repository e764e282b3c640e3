"""The harness's configuration file, and how its roles map onto the core's node ids.

`paxos.conf` has one line per role: `<role> <ip> <port>` (clients, proposers,
acceptors, learners), spacing free. Node ids are role-local in the harness (1, 2, ...),
so the core sees proposer i as i, acceptor i as 100 + i, learner i as 200 + i.

The acceptor count is fixed at 3 (the harness's assumption): with fewer running the
quorum stays 2 of 3, so a lone acceptor makes no progress rather than deciding alone.
Proposers also learn (with a silent state machine): a proposer that takes over then
knows the decided prefix, so its phase 1 covers only the undecided tail.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.config import ClusterConfig, ElectionPolicy, Limits, Timing
from ..core.errors import ConfigError
from ..core.types import NodeId, Role

ROLES = ("clients", "proposers", "acceptors", "learners")
BASE = {"proposers": 0, "acceptors": 100, "learners": 200}
ACCEPTORS = 3
#: Proposer and learner ids the configuration knows of (a higher id extends it).
KNOWN = 8

Group = tuple[str, int]


@dataclass(frozen=True)
class AbcastConfig:
    groups: dict[str, Group]

    def group_of(self, node: NodeId) -> Group:
        if node >= 200:
            return self.groups["learners"]
        if node >= 100:
            return self.groups["acceptors"]
        return self.groups["proposers"]


def parse_conf(path: Path | str) -> AbcastConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    groups: dict[str, Group] = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 3 or fields[0] not in ROLES:
            raise ConfigError(
                f"{path}:{number}: expected '<role> <ip> <port>' with role in {', '.join(ROLES)}"
            )
        role, ip, port = fields
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{path}:{number}: bad port {port!r}")
        groups[role] = (ip, int(port))
    missing = [r for r in ROLES if r not in groups]
    if missing:
        raise ConfigError(f"{path}: no line for {', '.join(missing)}")
    return AbcastConfig(groups)


def node_id(role: str, index: int) -> NodeId:
    if index < 1:
        raise ConfigError(f"{role} id must be 1 or more, not {index}")
    if role == "acceptors" and index > ACCEPTORS:
        raise ConfigError(f"acceptor id {index}: the harness has {ACCEPTORS} acceptors")
    if index >= 100:
        raise ConfigError(f"{role} id {index}: ids go up to 99")
    return BASE[role] + index


def cluster_config(highest: int = KNOWN) -> ClusterConfig:
    n = max(KNOWN, highest)
    roles: dict[NodeId, frozenset[Role]] = {}
    for i in range(1, n + 1):
        roles[BASE["proposers"] + i] = frozenset({Role.PROPOSER, Role.LEARNER})
        roles[BASE["learners"] + i] = frozenset({Role.LEARNER})
    for i in range(1, ACCEPTORS + 1):
        roles[BASE["acceptors"] + i] = frozenset({Role.ACCEPTOR})
    return ClusterConfig(
        roles=roles,
        # Two proposers and no leader oracle: randomized timeouts break ties (no livelock).
        policy=ElectionPolicy.RANDOM,
        timing=Timing(heartbeat=5, election=30, retransmit=10, catchup=5),
        # Small enough that every message fits one datagram (see transport.multicast):
        # a catch-up reply carries up to 1,000 commands, however many slots hold them.
        # No snapshots: a learner must print every value, which a learner that installed
        # a snapshot instead of applying each slot could not (and a snapshot would not
        # fit a datagram anyway).
        limits=Limits(
            window=64, max_batch=256, max_catchup=256, catchup_commands=1_000, snapshot_every=0
        ),
    )
