"""The deployment configuration: a YAML file naming the cluster, its servers and knobs.

Validated by pydantic at start, so a wrong value is reported with the path of the
field that holds it ("servers.1.port: ...") rather than discovered later as a crash.
Unknown keys are errors too: a misspelt knob silently ignored is worse than a refusal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..core.config import ClusterConfig, ElectionPolicy, Limits, Timing
from ..core.errors import ConfigError
from ..core.types import ALL_ROLES, NodeId, Role

Port = Annotated[int, Field(ge=1, le=65535)]
Ticks = Annotated[int, Field(ge=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerEntry(_Strict):
    #: Where peers and clients reach this server (its advertised address).
    host: str = "127.0.0.1"
    port: Port
    #: Where it listens, if not `host` (e.g. 0.0.0.0 behind NAT or in a container).
    bind: str | None = None
    roles: tuple[Role, ...] = tuple(sorted(ALL_ROLES, key=lambda r: r.value))

    @property
    def bind_host(self) -> str:
        return self.bind or self.host


class TimingEntry(_Strict):
    heartbeat: Ticks = Timing.heartbeat
    election: Ticks = Timing.election
    retransmit: Ticks = Timing.retransmit
    catchup: Ticks = Timing.catchup


class LimitsEntry(_Strict):
    window: Ticks = Limits.window
    max_batch: Ticks = Limits.max_batch
    max_pending: Ticks = Limits.max_pending
    max_catchup: Ticks = Limits.max_catchup
    catchup_commands: Ticks = Limits.catchup_commands
    client_results: Ticks = Limits.client_results
    #: Largest frame accepted on any connection, in bytes.
    max_frame: Annotated[int, Field(ge=1024)] = 32 * 1024 * 1024
    #: Messages queued for one peer before further ones are dropped (Paxos tolerates loss).
    peer_queue: Ticks = 100_000


class StorageEntry(_Strict):
    #: Each server keeps its state in `<dir>/node-<id>`.
    dir: Path = Path("paxoi-data")
    #: false: do not fsync. UNSAFE: a power loss can forget promises and lose data.
    fsync: bool = True
    #: true: keep state in memory only (nothing survives a restart).
    memory: bool = False


class FaultsEntry(_Strict):
    """Fault injection, for tests and demonstrations; all off by default."""

    #: Each message between servers, and between clients and servers, is dropped with
    #: this probability (from a generator seeded with `seed`).
    msg_drop_rate: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    seed: int = 0
    #: As leader, never propose a command at this slot (-1: off); once past it, die
    #: `skip_slot_grace` seconds later, leaving the hole to the next leader (UMich test 4).
    skip_slot: Annotated[int, Field(ge=-1)] = -1
    skip_slot_grace: Annotated[float, Field(ge=0.0)] = 1.0
    #: As leader, crash after sending this many Paxos messages to other servers
    #: (heartbeats not counted); 0 crashes at once when leading. None: off.
    time_bomb: Annotated[int, Field(ge=0)] | None = None
    #: Exit (as a crash) this many seconds after starting. None: live forever.
    lifetime: Annotated[float, Field(gt=0.0)] | None = None
    #: Accept run-time fault injection (partition, heal, time bomb) from clients.
    #: For test harnesses only: anyone who can connect could then disrupt the cluster.
    control: bool = False


class PaxoiConfig(_Strict):
    cluster: Annotated[str, Field(min_length=1, max_length=128)] = "paxoi"
    servers: dict[NodeId, ServerEntry]
    #: Optional: if given, must equal (acceptors - 1) // 2; a cross-check for humans.
    f: Annotated[int, Field(ge=0)] | None = None
    #: Milliseconds per tick of the protocol's clock.
    tick_ms: Annotated[float, Field(gt=0, le=10_000)] = 10.0
    policy: ElectionPolicy = ElectionPolicy.RANK
    timing: TimingEntry = TimingEntry()
    limits: LimitsEntry = LimitsEntry()
    storage: StorageEntry = StorageEntry()
    faults: FaultsEntry = FaultsEntry()

    @model_validator(mode="after")
    def _check(self) -> PaxoiConfig:
        if not self.servers:
            raise ValueError("servers: at least one server is needed")
        for nid in self.servers:
            if nid < 0:
                raise ValueError(f"servers: node id {nid} must be >= 0")
        seen: dict[tuple[str, int], NodeId] = {}
        for nid, s in self.servers.items():
            addr = (s.host, s.port)
            if addr in seen:
                raise ValueError(f"servers.{nid}: same host and port as server {seen[addr]}")
            seen[addr] = nid
        try:
            cluster = self.cluster_config()
        except ConfigError as e:
            raise ValueError(str(e)) from None
        if self.f is not None and self.f != cluster.f:
            raise ValueError(
                f"f: is {self.f}, but {len(cluster.acceptors)} acceptors tolerate f = {cluster.f}"
            )
        return self

    def cluster_config(self) -> ClusterConfig:
        # Built from the entries' fields by name: a field added to Timing or Limits is
        # configurable as soon as its entry has it, with no second list to keep in step.
        return ClusterConfig(
            roles={nid: frozenset(s.roles) for nid, s in self.servers.items()},
            timing=Timing(**_fields_of(Timing, self.timing)),
            limits=Limits(**_fields_of(Limits, self.limits)),
            policy=self.policy,
        )

    def data_dir(self, node: NodeId) -> Path:
        return self.storage.dir / f"node-{node}"

    def fingerprint(self) -> bytes:
        """The membership, canonically: stored with a node's data so it cannot be
        reopened under a different cluster by mistake."""
        members = {
            str(n): [s.host, s.port, sorted(r.value for r in s.roles)]
            for n, s in sorted(self.servers.items())
        }
        text = json.dumps({"cluster": self.cluster, "servers": members}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest().encode()


def _fields_of(target: type, entry: BaseModel) -> dict[str, Any]:
    """The values of `entry` that `target` (a dataclass) takes."""
    names = {f.name for f in dataclasses.fields(target)}
    return {k: v for k, v in entry.model_dump().items() if k in names}


def parse_config(data: Any, source: str = "config") -> PaxoiConfig:
    try:
        return PaxoiConfig.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            problems.append(f"  {where}: {err['msg']}")
        raise ConfigError(f"{source}: invalid configuration\n" + "\n".join(problems)) from None


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """A YAML file whose top level is a mapping of settings; ConfigError says what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


def load_config(path: Path | str) -> PaxoiConfig:
    """Read and validate a YAML configuration file; ConfigError says what is wrong."""
    path = Path(path)
    config = parse_config(read_yaml_mapping(path), str(path))
    if not config.storage.dir.is_absolute():
        # Relative data directories are relative to the configuration file, not to
        # wherever the server happens to be started from.
        storage = config.storage.model_copy(
            update={"dir": (path.parent / config.storage.dir).resolve()}
        )
        config = config.model_copy(update={"storage": storage})
    return config


def local_config(
    f: int,
    base_port: int,
    data_dir: Path,
    cluster: str = "paxoi",
    ports: list[int] | None = None,
    **extra: Any,
) -> PaxoiConfig:
    """2f+1 colocated servers on 127.0.0.1: on `ports`, or base_port, base_port+1, ..."""
    n = 2 * f + 1
    ports = ports or [base_port + i for i in range(n)]
    servers = {i: {"host": "127.0.0.1", "port": ports[i]} for i in range(n)}
    return parse_config(
        {"cluster": cluster, "servers": servers, "storage": {"dir": str(data_dir)}, **extra}
    )


def free_ports(n: int) -> list[int]:
    """n TCP ports on 127.0.0.1 that nothing listens on right now."""
    import socket

    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def dump_config(config: PaxoiConfig) -> str:
    data = config.model_dump(mode="json", exclude_defaults=False)
    return yaml.safe_dump(data, sort_keys=False)
