"""What a scenario is, the built-in ones, and reading one from a file.

A scenario is a cluster size, a client load and a set of faults; the runner
(`paxoi.scenario.runner`) carries it out on real processes. The built-in scenarios are
the UMich EECS 591 test cases (normal operation, the primary dies once or f times, a
skipped slot, message loss) plus the bonus and robustness ones (stress, the whole
cluster killed and restarted from stable storage, a partitioned leader), and one that
must fail (no majority). A scenario file is either the course's own format
(`paxoi.scenario.umich`) or a paxoi cluster configuration.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..core.errors import ConfigError, PaxoiError
from ..server.config import PaxoiConfig, parse_config, read_yaml_mapping
from .umich import is_umich, parse_umich


class ScenarioError(PaxoiError):
    """A scenario that cannot be run as asked (unknown name, bad file, impossible knob)."""


@dataclass(frozen=True)
class Scenario:
    name: str
    #: One line: what the scenario shows.
    summary: str
    f: int = 1
    clients: int = 3
    #: Messages per client.
    messages: int = 30
    #: The first primary skips this slot and dies soon after passing it (-1: off).
    skip_slot: int = -1
    #: Kill the current primary this many times ("f": f times), each after it committed
    #: some messages; the killed servers stay down.
    kill_primary: int | Literal["f"] = 0
    #: Each message between servers, and between clients and servers, is dropped with
    #: this probability.
    drop_rate: float = 0.0
    seed: int = 1
    #: Seconds every storage write waits first: a slow disk (faults.disk_delay).
    disk_delay: float = 0.0
    #: Kill every server with SIGKILL mid-load and restart them all, this many times.
    crash_restart_all: int = 0
    #: Cut the leader off from the others mid-load, wait for a new leader and progress,
    #: then heal.
    partition: bool = False
    #: Kill f+1 servers (the leader among them) mid-load: the cluster must stall, safely.
    kill_majority: bool = False
    #: Each client pauses a random time in [lo, hi] seconds before each message.
    pause: tuple[float, float] = (0.0, 0.0)
    #: The scenario demonstrates a failure: clients stuck without a majority.
    expect_stuck: bool = False
    #: The servers' storage directory, relative to the scenario's work directory.
    storage: str = "data"
    #: The hosts the source file names for the servers used (empty: built-in).
    hosts: tuple[str, ...] = ()
    #: A paxoi configuration the scenario came from: its timing, limits and faults are used.
    base: PaxoiConfig | None = None
    source: str = "built-in"

    @property
    def servers(self) -> int:
        if self.base is not None:
            return len(self.base.servers)
        return 2 * self.f + 1

    @property
    def kills(self) -> int:
        """How many times the primary is killed, with "f" resolved."""
        return self.f if self.kill_primary == "f" else self.kill_primary

    def with_options(self, **changes: Any) -> Scenario:
        """This scenario with command-line overrides (None values are ignored), checked."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if "f" in changes and self.base is not None and changes["f"] != self.f:
            raise ScenarioError(
                f"--f: {self.source} fixes its servers ({self.servers} servers, f = {self.f})"
            )
        return dataclasses.replace(self, **changes).validated()

    def validated(self) -> Scenario:
        problems = []
        if self.f < 0:
            problems.append(f"f must be 0 or more (is {self.f})")
        if self.clients < 1:
            problems.append(f"--clients must be at least 1 (is {self.clients})")
        if self.messages < 1:
            problems.append(f"--messages must be at least 1 (is {self.messages})")
        if not 0.0 <= self.drop_rate < 1.0:
            problems.append(f"the drop rate must be in [0, 1) (is {self.drop_rate})")
        if not 0.0 <= self.disk_delay <= 10.0:
            problems.append(f"the disk delay must be in [0, 10] seconds (is {self.disk_delay})")
        if self.kills < 0 or self.kills > self.f:
            problems.append(
                f"the primary can be killed at most f = {self.f} times (asked {self.kills}): "
                "more leaves no majority (see the no-majority scenario)"
            )
        if self.crash_restart_all < 0:
            problems.append(f"--restarts must be 0 or more (is {self.crash_restart_all})")
        if self.skip_slot < -1:
            problems.append(f"the skipped slot must be -1 (off) or a slot (is {self.skip_slot})")
        if self.f == 0 and (self.skip_slot >= 0 or self.partition):
            problems.append("skipping a slot or partitioning the leader needs f >= 1")
        if problems:
            raise ScenarioError(f"{self.name}: " + "; ".join(problems))
        return self


NAMED: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "normal",
            "several batch clients; every replica applies every message in the same order",
        ),
        Scenario(
            "primary-dies",
            "the primary is killed mid-load; the next in line takes over and nothing is lost",
            messages=40,
            kill_primary=1,
        ),
        Scenario(
            "primary-dies-f-times",
            "the primary is killed f times in a row, each after committing messages; "
            "the view changes f times and the last f+1 servers finish the load",
            messages=40,
            kill_primary="f",
        ),
        Scenario(
            "skip-slot",
            "the primary leaves slot 3 empty and dies soon after; its successor finds the "
            "hole and fills it with a no-op",
            skip_slot=3,
        ),
        Scenario(
            "message-loss",
            "5% of all messages (between servers, and to and from clients) are dropped; "
            "retransmission and client retries still deliver everything exactly once",
            drop_rate=0.05,
        ),
        Scenario(
            "stress",
            "5 clients send 100 messages each at random intervals",
            clients=5,
            messages=100,
            pause=(0.0, 0.02),
        ),
        Scenario(
            "crash-restart-all",
            "every server is killed with SIGKILL mid-load and restarted, the old primary "
            "last (twice; --restarts R); stable storage keeps every acknowledged message",
            clients=4,
            messages=50,
            crash_restart_all=2,
        ),
        Scenario(
            "partition",
            "the leader is cut off from the majority; the majority elects a new leader and "
            "goes on; after the partition heals the old leader catches up",
            messages=40,
            partition=True,
        ),
        Scenario(
            "no-majority",
            "MUST FAIL: f+1 servers are killed mid-load; the clients are stuck for want of "
            "a majority, and the runner says so (no safety violation)",
            kill_majority=True,
            expect_stuck=True,
        ),
    )
}


def load_scenario(spec: str) -> Scenario:
    """A built-in scenario by name, or one read from a UMich or paxoi YAML file."""
    if spec in NAMED:
        return NAMED[spec]
    path = Path(spec)
    if path.exists() or path.suffix in (".yaml", ".yml") or "/" in spec:
        return scenario_from_file(path)
    known = ", ".join(NAMED)
    raise ScenarioError(f"{spec}: no such scenario or file (scenarios: {known})")


def scenario_from_file(path: Path) -> Scenario:
    try:
        data = read_yaml_mapping(path)
    except ConfigError as e:
        raise ScenarioError(str(e)) from None
    try:
        if is_umich(data):
            u = parse_umich(data, str(path))
            return Scenario(
                path.stem,
                f"UMich configuration {path.name}",
                f=u.f,
                skip_slot=u.x,
                kill_primary=u.kill_primary,
                drop_rate=u.msg_drop_rate,
                storage=u.state_backup_folder or "data",
                hosts=tuple(u.hosts()),
                source=str(path),
            ).validated()
        if "servers" in data:
            config = parse_config(data, str(path))
            faults = config.faults
            return Scenario(
                path.stem,
                f"paxoi configuration {path.name}",
                f=config.cluster_config().f,
                skip_slot=faults.skip_slot,
                drop_rate=faults.msg_drop_rate,
                seed=faults.seed or 1,
                disk_delay=faults.disk_delay,
                hosts=tuple(s.host for s in config.servers.values()),
                base=config,
                source=str(path),
            ).validated()
    except ConfigError as e:
        raise ScenarioError(str(e)) from None
    raise ScenarioError(
        f"{path}: neither a UMich configuration (servers_list, f, x, ...) nor a paxoi one "
        "(servers, ...)"
    )
