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
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ..core.config import ClusterConfig, ElectionPolicy, Limits, Timing
from ..core.errors import ConfigError
from ..core.types import ALL_ROLES, NodeId, Role
from ..security.tokens import DIGEST_PATTERN, NAME_PATTERN
from ..wire.values import MAX_BIN

Port = Annotated[int, Field(ge=1, le=65535)]
#: Node ids travel in every message and ballot as msgpack integers: keep them well inside.
MAX_NODE_ID = 2**32 - 1
Ticks = Annotated[int, Field(ge=1)]
#: A snapshot chunk is one msgpack bin, which the decoder caps (paxoi.wire.values.MAX_BIN).
MAX_SNAPSHOT_CHUNK = MAX_BIN
#: SQLite stores at most 10^9 bytes in one value (SQLITE_MAX_LENGTH): a snapshot is one.
MAX_SNAPSHOT = 1_000_000_000
#: Room in a frame around a snapshot chunk's bytes (the message's other fields).
FRAME_OVERHEAD = 128


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _no_nul(value: Any) -> Any:
    """Paths and patterns with a NUL byte cannot name a file; refuse them here, with the
    field, rather than fail later in the file system."""
    if value is not None and "\x00" in str(value):
        raise ValueError("must not contain a NUL character")
    return value


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
    #: Leader leases for `lease` reads (0: off). See docs/reliability.md for the clock
    #: assumption: tick rates of any two servers differ by under lease_drift_percent.
    lease: Annotated[int, Field(ge=0)] = Timing.lease
    lease_drift_percent: Annotated[int, Field(ge=0, lt=100)] = Timing.lease_drift_percent


class LimitsEntry(_Strict):
    window: Ticks = Limits.window
    max_batch: Ticks = Limits.max_batch
    max_pending: Ticks = Limits.max_pending
    max_catchup: Ticks = Limits.max_catchup
    catchup_commands: Ticks = Limits.catchup_commands
    client_results: Ticks = Limits.client_results
    #: Applied slots between snapshots; the log is compacted below each (0: never, and
    #: the log and the data directory then grow with every command).
    snapshot_every: Annotated[int, Field(ge=0)] = Limits.snapshot_every
    #: ... or applied commands between snapshots, whichever comes first (a slot holds a
    #: batch: hundreds of commands under load).
    snapshot_commands: Annotated[int, Field(ge=1)] = Limits.snapshot_commands
    #: Decided slots kept below a snapshot, so a peer that lags by less catches up from
    #: the log instead of by a snapshot transfer.
    log_keep: Annotated[int, Field(ge=0)] = Limits.log_keep
    #: ... but no more of them than hold this many commands (a slot holds a batch).
    log_keep_commands: Annotated[int, Field(ge=0)] = Limits.log_keep_commands
    #: Bytes of snapshot per transfer message (must fit in max_frame; if not given, the
    #: default or what fits in max_frame, whichever is less).
    snapshot_chunk: Annotated[int, Field(ge=64, le=MAX_SNAPSHOT_CHUNK)] = Limits.snapshot_chunk
    #: Largest snapshot a server takes in from a peer, in bytes (its reassembly buffer).
    max_snapshot: Annotated[int, Field(ge=1024, le=MAX_SNAPSHOT)] = Limits.max_snapshot
    #: Largest frame accepted on any connection, in bytes. It must hold the largest
    #: command with room to spare: clients put up to 32 KiB of commands in one frame
    #: (`paxoi.wire.messages.BATCH_FRAME_BYTES`), one bigger command alone.
    max_frame: Annotated[int, Field(ge=1024)] = 32 * 1024 * 1024
    #: Messages queued for one peer before further ones are dropped (Paxos tolerates loss).
    peer_queue: Ticks = 100_000
    #: Client connections at once; one more is refused with a "busy" error.
    max_clients: Annotated[int, Field(ge=1)] = 1024
    #: Connections still in their handshake at once; one more evicts the oldest, so a
    #: flood of silent connections cannot keep a real client or peer out.
    max_handshaking: Annotated[int, Field(ge=1)] = 128
    #: Seconds a new connection has to send its Hello.
    handshake_timeout: Annotated[float, Field(gt=0)] = 5.0
    #: Seconds a client connection may stay silent (subscribers excepted) before it is closed.
    client_idle: Annotated[float, Field(gt=0)] = 600.0
    #: Commands of one client connection awaiting their reply; more are answered BUSY.
    client_pending: Annotated[int, Field(ge=1)] = 4096

    @model_validator(mode="before")
    @classmethod
    def _fit_snapshot_chunk(cls, data: Any) -> Any:
        """A small max_frame shrinks the default snapshot_chunk rather than refusing it."""
        if isinstance(data, dict) and "snapshot_chunk" not in data:
            frame = data.get("max_frame")
            if type(frame) is int and frame - FRAME_OVERHEAD < Limits.snapshot_chunk:
                data = {**data, "snapshot_chunk": max(64, frame - FRAME_OVERHEAD)}
        return data

    @model_validator(mode="after")
    def _check_snapshot_sizes(self) -> LimitsEntry:
        if self.snapshot_chunk + FRAME_OVERHEAD > self.max_frame:
            raise ValueError(
                f"snapshot_chunk: {self.snapshot_chunk} bytes do not fit in a frame of "
                f"max_frame {self.max_frame} bytes (with {FRAME_OVERHEAD} to spare)"
            )
        if self.max_snapshot < self.snapshot_chunk:
            raise ValueError("max_snapshot: must be at least snapshot_chunk")
        return self


class StorageEntry(_Strict):
    #: Each server keeps its state in `<dir>/node-<id>`.
    dir: Path = Path("paxoi-data")

    @field_validator("dir")
    @classmethod
    def _check_dir(cls, value: Any) -> Any:
        return _no_nul(value)

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
    #: Seconds every storage write waits before it starts: a slow disk. Nothing waiting
    #: on the write leaves the node meanwhile, so only a bug would answer early.
    disk_delay: Annotated[float, Field(ge=0.0, le=10.0)] = 0.0
    #: Accept run-time fault injection (partition, heal, time bomb) from clients.
    #: For test harnesses only: anyone who can connect could then disrupt the cluster.
    control: bool = False


class TlsEntry(_Strict):
    """TLS on every link, server to server and client to server, with certificates from
    the cluster's CA (`paxoi certs`). With this section, servers speak TLS only: plain TCP
    is refused. Relative paths are relative to the configuration file."""

    #: The cluster CA's certificate (PEM). Its key stays off the servers.
    ca: Path
    #: This server's certificate and key; "{id}" stands for the server's id. Default:
    #: node-{id}.pem and node-{id}.key in the directory of `ca`.
    cert: str | None = None
    key: str | None = None
    #: The certificate and key that clients reading this file present (auth.clients:
    #: cert). The key defaults to the certificate's path with the suffix .key.
    client_cert: Path | None = None
    client_key: Path | None = None

    @field_validator("ca", "cert", "key", "client_cert", "client_key")
    @classmethod
    def _check_path(cls, value: Any) -> Any:
        value = _no_nul(value)
        if isinstance(value, str):
            if not value:
                raise ValueError("must not be empty")
            if "{" in value.replace("{id}", "") or "}" in value.replace("{id}", ""):
                raise ValueError('the only placeholder is "{id}"')
        return value

    def node_cert(self, node: NodeId) -> Path:
        pattern = self.cert if self.cert is not None else str(self.ca.parent / "node-{id}.pem")
        return Path(pattern.replace("{id}", str(node)))

    def node_key(self, node: NodeId) -> Path:
        pattern = self.key if self.key is not None else str(self.ca.parent / "node-{id}.key")
        return Path(pattern.replace("{id}", str(node)))

    def client_key_path(self) -> Path | None:
        if self.client_key is not None:
            return self.client_key
        return None if self.client_cert is None else self.client_cert.with_suffix(".key")


ClientName = Annotated[str, Field(pattern=NAME_PATTERN)]
TokenDigest = Annotated[str, Field(pattern=DIGEST_PATTERN)]


class AuthEntry(_Strict):
    """How servers authenticate clients (peers always by certificate, under `tls`)."""

    #: none: any client that can connect; cert: a client certificate from the cluster CA;
    #: token: a token listed in `tokens`. cert and token need the `tls` section.
    clients: Literal["none", "cert", "token"] = "none"
    #: Token auth: client name -> "sha256:<hex>" of its token (`paxoi certs issue --token`).
    tokens: dict[ClientName, TokenDigest] = {}
    #: The file holding the token that clients reading this configuration present.
    token_file: Path | None = None

    @field_validator("token_file")
    @classmethod
    def _check_path(cls, value: Any) -> Any:
        return _no_nul(value)


class PaxoiConfig(_Strict):
    cluster: Annotated[str, Field(min_length=1, max_length=128)] = "paxoi"
    servers: dict[NodeId, ServerEntry]
    #: Optional: if given, must equal (acceptors - 1) // 2; a cross-check for humans.
    f: Annotated[int, Field(ge=0)] | None = None
    #: Milliseconds per tick of the protocol's clock.
    tick_ms: Annotated[float, Field(gt=0, le=10_000)] = 10.0
    policy: ElectionPolicy = ElectionPolicy.RANK
    #: The replicated application: the chat log, or the key-value store.
    app: Literal["chat", "kv"] = "chat"
    timing: TimingEntry = TimingEntry()
    limits: LimitsEntry = LimitsEntry()
    storage: StorageEntry = StorageEntry()
    faults: FaultsEntry = FaultsEntry()
    tls: TlsEntry | None = None
    auth: AuthEntry = AuthEntry()

    @model_validator(mode="after")
    def _check(self) -> PaxoiConfig:
        if not self.servers:
            raise ValueError("servers: at least one server is needed")
        for nid in self.servers:
            if nid < 0 or nid > MAX_NODE_ID:
                raise ValueError(f"servers: node id {nid} must be between 0 and {MAX_NODE_ID}")
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
        if self.auth.clients != "none" and self.tls is None:
            raise ValueError(
                f"auth.clients: {self.auth.clients} needs a tls section "
                "(on plain TCP a certificate cannot be checked and a token is readable by anyone)"
            )
        if self.auth.clients == "token" and not self.auth.tokens:
            raise ValueError("auth.tokens: token auth needs at least one token")
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
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
    except Exception as e:
        # PyYAML's constructors raise what they meet on some bad input: ValueError from
        # datetime on "2001-13-01", AttributeError on "!!timestamp x", and so on.
        raise ConfigError(f"{path}: not valid YAML: {type(e).__name__}: {e}") from None
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
    return _security_paths_from(config, path.parent.resolve())


def _security_paths_from(config: PaxoiConfig, base: Path) -> PaxoiConfig:
    """The configuration with relative tls and auth paths made relative to `base` (the
    directory of the configuration file), as for storage.dir."""

    def anchor(p: Any) -> Any:
        return p if p is None or Path(p).is_absolute() else type(p)(base / p)

    tls = config.tls
    if tls is not None:
        fields = ("ca", "cert", "key", "client_cert", "client_key")
        tls = tls.model_copy(update={f: anchor(getattr(tls, f)) for f in fields})
    auth = config.auth.model_copy(update={"token_file": anchor(config.auth.token_file)})
    return config.model_copy(update={"tls": tls, "auth": auth})


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
