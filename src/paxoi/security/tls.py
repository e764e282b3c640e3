"""TLS contexts for paxoi's links, and the identities certificates carry.

Every certificate of a cluster is signed by the cluster's own CA (`paxoi certs`) and
names who holds it with a URI subject alternative name:

- a server: ``paxoi://<cluster>/node/<id>``, plus its `host` as an IP or DNS name, so
  that the usual hostname check works across machines;
- a client: ``paxoi://<cluster>/client/<name>``.

TLS proves a certificate chains to the CA; the URI says who it belongs to. A server
therefore checks, after the handshake, that a peer's certificate names the node its
`Hello` claims, and a client checks that the server it reached is the node it meant
to reach. The cluster is part of the URI, so a certificate of another cluster that
happens to share the CA is refused as well.

Only the standard library `ssl` is used at run time (`cryptography` only makes the
files, in `paxoi.security.certs`).
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from ..core.errors import ConfigError, PaxoiError
from ..transport.framed import open_framed_connection

#: Strong AEAD suites with forward secrecy, for TLS 1.2 (TLS 1.3 suites are all fine).
TLS12_CIPHERS: Final = "ECDHE+AESGCM:ECDHE+CHACHA20"

SCHEME: Final = "paxoi://"


class IdentityError(PaxoiError, ssl.SSLCertVerificationError):
    """A certificate that chains to the CA but names someone else (another node, a client
    where a server was expected, another cluster). An OSError like every TLS failure,
    so code that retries on connection errors treats it as one."""


# ---------------------------------------------------------------- identities


def cluster_prefix(cluster: str) -> str:
    """``paxoi://<cluster>/``: the cluster id percent-encoded, so any id makes a valid URI."""
    return f"{SCHEME}{quote(cluster, safe='')}/"


def node_uri(cluster: str, node: int) -> str:
    return f"{cluster_prefix(cluster)}node/{node}"


def client_uri(cluster: str, name: str) -> str:
    return f"{cluster_prefix(cluster)}client/{name}"


def uris(peercert: Any) -> list[str]:
    """The URI subject alternative names of a certificate as `SSLObject.getpeercert()`
    returns it (a dict; empty or None when the peer presented no certificate)."""
    if not isinstance(peercert, dict):
        return []
    out: list[str] = []
    for entry in peercert.get("subjectAltName", ()):
        if isinstance(entry, tuple) and len(entry) == 2 and entry[0] == "URI":
            out.append(str(entry[1]))
    return out


def describe(peercert: Any) -> str:
    """Who a certificate says it is, for log lines and refusals."""
    names = uris(peercert)
    if names:
        return ", ".join(names)
    return "no certificate" if not peercert else "a certificate without a paxoi identity"


def check_node(peercert: Any, cluster: str, node: int) -> None:
    """The certificate must name server `node` of `cluster`; IdentityError if not."""
    if node_uri(cluster, node) not in uris(peercert):
        raise IdentityError(
            f"certificate of {describe(peercert)} does not name {node_uri(cluster, node)}"
        )


def client_names(peercert: Any, cluster: str) -> list[str]:
    """The client names a certificate holds in `cluster` (normally one)."""
    prefix = f"{cluster_prefix(cluster)}client/"
    return [u[len(prefix) :] for u in uris(peercert) if u.startswith(prefix)]


# ---------------------------------------------------------------- contexts


def _load(
    ctx: ssl.SSLContext,
    ca: Path,
    cert: Path | None = None,
    key: Path | None = None,
    fields: tuple[str, str] = ("tls.cert", "tls.key"),
) -> None:
    """Load the CA and, if given, our certificate; ConfigError naming the file at fault."""
    try:
        ctx.load_verify_locations(cafile=str(ca))
    except FileNotFoundError:
        raise ConfigError(f"tls.ca: {ca}: no such file") from None
    except (ssl.SSLError, OSError, ValueError) as e:
        raise ConfigError(f"tls.ca: {ca}: not a PEM CA certificate ({_reason(e)})") from None
    if cert is None:
        return
    assert key is not None
    for field, path in zip(fields, (cert, key), strict=True):
        if not path.is_file():
            raise ConfigError(f"{field}: {path}: no such file")
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError, ValueError) as e:
        raise ConfigError(
            f"{fields[0]}: {cert} and its key {key} do not load ({_reason(e)})"
        ) from None


def _reason(e: BaseException) -> str:
    if isinstance(e, ssl.SSLError) and e.reason:
        return str(e.reason)
    return str(e) or type(e).__name__


def _harden(ctx: ssl.SSLContext) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION
    if hasattr(ssl, "OP_NO_RENEGOTIATION"):
        ctx.options |= ssl.OP_NO_RENEGOTIATION
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT


def server_context(ca: Path, cert: Path, key: Path, *, require_client_cert: bool) -> ssl.SSLContext:
    """The listener's context: our node certificate; peers' certificates verified against
    the cluster CA. Servers always present one (checked per connection, after Hello);
    clients must too when `require_client_cert` (auth.clients: cert)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx)
    _load(ctx, ca, cert, key)
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def client_context(
    ca: Path,
    cert: Path | None = None,
    key: Path | None = None,
    fields: tuple[str, str] = ("tls.client_cert", "tls.client_key"),
) -> ssl.SSLContext:
    """A connecting side's context: trusts the cluster CA only (not the system's), checks
    the server's host name, and presents `cert` if given (a server to its peers, or a
    client when the cluster requires client certificates)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _harden(ctx)
    _load(ctx, ca, cert, key, fields)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


# ---------------------------------------------------------------- connecting


async def open_connection(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None,
    cluster: str,
    node: int,
    handshake_timeout: float = 5.0,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to server `node` (`open_framed_connection`); with TLS, the certificate must
    also name that node of `cluster` (IdentityError otherwise, after closing)."""
    if ssl_context is None:
        return await open_framed_connection(host, port)
    reader, writer = await open_framed_connection(
        host,
        port,
        ssl=ssl_context,
        server_hostname=host,
        ssl_handshake_timeout=handshake_timeout,
    )
    try:
        check_node(writer.get_extra_info("peercert"), cluster, node)
    except IdentityError:
        writer.close()
        raise
    return reader, writer


__all__ = [
    "IdentityError",
    "check_node",
    "client_context",
    "client_names",
    "client_uri",
    "cluster_prefix",
    "describe",
    "node_uri",
    "open_connection",
    "server_context",
    "uris",
]
