"""Helpers of the security tests: certificates, TLS clusters, raw TLS connections, and a
well-behaved client that keeps submitting while attacks happen.

Importable as `security_helpers` (conftest.py puts this folder on sys.path). Nothing
here sleeps and hopes: waits poll a condition against a deadline.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from integration_helpers import entries, submit_one, wait_until

from paxoi.client import Client
from paxoi.core.types import NodeId
from paxoi.security import certs
from paxoi.server.config import PaxoiConfig, free_ports, local_config
from paxoi.server.local import LocalCluster
from paxoi.wire.codec import PROTOCOL_VERSION, Message, decode, encode
from paxoi.wire.framing import FrameDecoder, frame
from paxoi.wire.messages import KIND_CLIENT, ErrorReply, Hello

HOST = "127.0.0.1"


# ---------------------------------------------------------------------- certificates
@dataclass
class Pki:
    """A CA and certificates in `dir`, laid out as `paxoi certs` lays them out."""

    dir: Path
    cluster: str
    authority: certs.Authority

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    def node(self, node: NodeId) -> tuple[Path, Path]:
        return certs.node_paths(self.dir, node)

    def client(self, name: str) -> tuple[Path, Path]:
        return certs.client_paths(self.dir, name)

    def issue_node(self, node: NodeId, cluster: str | None = None) -> tuple[Path, Path]:
        """A node certificate signed by this CA (for `cluster`, default the PKI's)."""
        cert, key = certs.make_node_cert(self.authority, cluster or self.cluster, node, [HOST])
        stem = self.dir / f"extra-node-{node}-{cluster or self.cluster}"
        paths = (stem.with_suffix(".pem"), stem.with_suffix(".key"))
        certs.write_pair(*paths, cert, key, force=True)
        return paths

    def issue_client(self, name: str, cluster: str | None = None) -> tuple[Path, Path]:
        cert, key = certs.make_client_cert(self.authority, cluster or self.cluster, name)
        stem = self.dir / f"extra-client-{name}-{cluster or self.cluster}"
        paths = (stem.with_suffix(".pem"), stem.with_suffix(".key"))
        certs.write_pair(*paths, cert, key, force=True)
        return paths


def make_pki(
    directory: Path, cluster: str, nodes: Iterable[NodeId], clients: Iterable[str] = ()
) -> Pki:
    ca = certs.make_ca(cluster)
    certs.save_ca(directory, ca, force=False)
    for node in nodes:
        cert, key = certs.make_node_cert(ca, cluster, node, [HOST])
        certs.write_pair(*certs.node_paths(directory, node), cert, key, force=False)
    for name in clients:
        cert, key = certs.make_client_cert(ca, cluster, name)
        certs.write_pair(*certs.client_paths(directory, name), cert, key, force=False)
    return Pki(directory, cluster, ca)


def tls_cluster(workdir: Path, pki: Pki, **extra: Any) -> LocalCluster:
    """A 3-server cluster on 127.0.0.1 using `pki`'s certificates (not started)."""
    config = local_config(1, 0, workdir / "data", cluster=pki.cluster, ports=free_ports(3), **extra)
    return LocalCluster(config, workdir)


# ---------------------------------------------------------------------- raw connections
def tls_context(
    ca: Path, cert: tuple[Path, Path] | None = None, *, check_hostname: bool = True
) -> ssl.SSLContext:
    """A bare client context (not paxoi's): trusts `ca`, presents `cert` if given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(ca))
    ctx.check_hostname = check_hostname
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


class Raw:
    """A blocking connection to one server that speaks (or abuses) the protocol by hand,
    over TLS with `context`, or over plain TCP when `context` is None."""

    def __init__(
        self,
        config: PaxoiConfig,
        node: NodeId,
        context: ssl.SSLContext | None,
        timeout: float = 5.0,
    ) -> None:
        entry = config.servers[node]
        self.config = config
        sock = socket.create_connection((entry.host, entry.port), timeout=timeout)
        self.local_port = int(sock.getsockname()[1])
        self.sock: socket.socket = sock
        if context is not None:
            try:
                self.sock = context.wrap_socket(sock, server_hostname=entry.host)
            except BaseException:
                sock.close()
                raise
        self.decoder = FrameDecoder(64 * 1024 * 1024)
        self.pending: list[bytes] = []
        #: Why the stream ended, if it ended with an error (a TLS alert, a reset).
        self.error: BaseException | None = None
        self.raw_received = b""

    @property
    def peer_tag(self) -> str:
        """How the server's log names this connection."""
        return f"('{HOST}', {self.local_port})"

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, *msgs: Message) -> None:
        self.sock.sendall(b"".join(frame(encode(m)) for m in msgs))

    def hello_client(self, client_id: str, token: str | None = None) -> None:
        self.send(
            Hello(PROTOCOL_VERSION, self.config.cluster, KIND_CLIENT, None, client_id, token=token)
        )

    def recv(self, timeout: float = 5.0) -> Message | None:
        """The next message; None once the stream ended (closed, reset or TLS alert)."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message from the server in time")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
                self.error = e
                return None
            if not data:
                return None
            self.raw_received += data
            self.pending.extend(self.decoder.feed(data))
        return decode(self.pending.pop(0))

    def recv_until(self, predicate: Callable[[Message], bool], timeout: float = 10.0) -> Message:
        """Skip messages until one satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            if msg is None:
                raise AssertionError(f"the server closed the connection ({self.error!r})")
            if predicate(msg):
                return msg

    def drain_until_closed(self, timeout: float = 8.0) -> list[Message]:
        out: list[Message] = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            if msg is None:
                return out
            out.append(msg)

    def refusal(self) -> ErrorReply | None:
        """The ErrorReply the server sent before closing (None if it just closed)."""
        errors = [m for m in self.drain_until_closed() if isinstance(m, ErrorReply)]
        return errors[0] if errors else None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------- a good client
@dataclass
class Steady:
    """A well-behaved client that keeps submitting, one command at a time, in a thread.

    `acked` lists what the cluster acknowledged, in order; the tests check that each of
    these is in every replica's log exactly once at the end."""

    config: PaxoiConfig
    name: str = "steady"
    acked: list[str] = field(default_factory=list)
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Steady:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            with Client.from_config(self.config, name=self.name, timeout=20) as client:
                for i in range(1_000_000):
                    if self._stop.is_set():
                        return
                    text = f"{self.name} {i}"
                    client.submit(text)
                    self.acked.append(text)
                    self._stop.wait(0.02)  # pacing: a steady trickle, not a flood
        except BaseException as e:  # reported by the test through `check`
            self.error = e

    def check(self) -> None:
        assert self.error is None, f"the good client failed: {self.error!r}"
        assert self._thread is not None and self._thread.is_alive(), "the good client stopped"

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            assert not self._thread.is_alive(), "the good client did not stop"

    @contextlib.contextmanager
    def keeps_going(self, more: int = 3, timeout: float = 20.0) -> Iterator[None]:
        """Around an attack: the good client is fine before it, and gets `more`
        commands acknowledged after it started (so it was served through it)."""
        self.check()
        start = len(self.acked)
        yield
        wait_until(
            lambda: self.error is not None or len(self.acked) >= start + more,
            timeout,
            f"{more} more acknowledgements for the good client",
        )
        self.check()


def still_serving(cluster: LocalCluster, node: NodeId) -> None:
    """`node` is the same process, alive, and applies a fresh client's command."""
    assert cluster.alive(node), f"node {node} died"
    text = f"probe {uuid.uuid4().hex[:8]}"
    slot = int(submit_one(cluster.config, text))
    wait_until(
        lambda: any(e.slot == slot and e.message == text for e in entries(cluster, node)),
        10,
        f"node {node} to apply {text!r}",
    )
    assert cluster.alive(node)


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def all_acked_present(cluster: LocalCluster, acked: list[str], timeout: float = 20.0) -> None:
    """Every acknowledged message is in every replica's log exactly once, and the
    replicas' logs are identical."""

    def done() -> bool:
        logs = {n: [e.message for e in entries(cluster, n)] for n in cluster.config.servers}
        if len({tuple(v) for v in logs.values()}) != 1:
            return False
        log = next(iter(logs.values()))
        return all(log.count(text) == 1 for text in acked)

    wait_until(done, timeout, f"all {len(acked)} acknowledged messages on every replica once")
