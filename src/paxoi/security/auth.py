"""Who may talk to a server, and how a client presents itself: both sides of `auth`.

Server side, `Gate` holds the TLS contexts a server needs and decides, once a
connection's `Hello` has been read, whether the speaker is who it claims to be:

- a server must present a certificate naming the node id of its Hello (with TLS on);
- a client, under `auth.clients: cert`, a client certificate of this cluster; under
  `auth.clients: token`, a token listed in `auth.tokens`. Either way the credential
  names a client *name*, and the client may only use client ids in that name's
  namespace: the name itself, or ``<name>-...``. An authenticated client therefore
  cannot submit under another client's id and disturb its exactly-once bookkeeping.

Client side, `client_options` turns a configuration into the keyword arguments of
`AsyncClient`: the TLS context (the cluster CA, and the client certificate if the file
names one), the token (from `auth.token_file`), and a default client name inside the
credential's namespace.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.types import ClientId, NodeId
from ..wire.messages import KIND_SERVER, Hello
from .tls import (
    IdentityError,
    check_node,
    client_context,
    client_names,
    describe,
    server_context,
)
from .tokens import read_token_file, token_name, verify

if TYPE_CHECKING:
    from ..server.config import PaxoiConfig


def owns(name: str, client: ClientId) -> bool:
    """Whether client id `client` is in the namespace of client name `name`."""
    return client == name or client.startswith(name + "-")


class Gate:
    """A server's TLS contexts and its admission check for each connection."""

    def __init__(self, config: PaxoiConfig, node: NodeId) -> None:
        self.cluster = config.cluster
        self.node = node
        self.mode = config.auth.clients
        self.tokens = dict(config.auth.tokens)
        tls = config.tls
        #: For the listener (None: plain TCP).
        self.server_ssl: ssl.SSLContext | None = None
        #: For our links to peers: the CA, and our node certificate as client certificate.
        self.peer_ssl: ssl.SSLContext | None = None
        if tls is not None:
            cert, key = tls.node_cert(node), tls.node_key(node)
            self.server_ssl = server_context(
                tls.ca, cert, key, require_client_cert=self.mode == "cert"
            )
            self.peer_ssl = client_context(tls.ca, cert, key, ("tls.cert", "tls.key"))

    @property
    def tls(self) -> bool:
        return self.server_ssl is not None

    def check(self, hello: Hello, peercert: Any) -> str | None:
        """Why the sender of `hello` may not go on (None: it may). `peercert` is the
        connection's verified certificate (`get_extra_info("peercert")`)."""
        if hello.kind == KIND_SERVER:
            if not self.tls:
                return None
            if hello.node is None:
                return "a server Hello must name its node"
            try:
                check_node(peercert, self.cluster, hello.node)
            except IdentityError as e:
                return f"Hello as node {hello.node} refused: {e}"
            return None
        client = hello.client or ""
        if self.mode == "none":
            return None
        if self.mode == "cert":
            names = client_names(peercert, self.cluster)
            if not names:
                return (
                    f"client {client!r} needs a client certificate of cluster "
                    f"{self.cluster!r} (it presented {describe(peercert)})"
                )
        else:
            name = verify(hello.token, self.tokens)
            if name is None:
                why = "no token" if not hello.token else "a token that is not valid here"
                return f"client {client!r} needs a valid token (it presented {why})"
            names = [name]
        if not any(owns(n, client) for n in names):
            allowed = " or ".join(f"{n!r} or '{n}-...'" for n in names)
            return f"client id {client!r} is not allowed for this credential (use {allowed})"
        return None


def client_options(config: PaxoiConfig, kw: dict[str, Any]) -> dict[str, Any]:
    """`kw` completed from the configuration's tls and auth sections (what the caller
    passed wins): `ssl_context`, `token`, and a `name` in the credential's namespace."""
    out = dict(kw)
    if not hasattr(config, "auth"):
        return out  # a configuration of another kind (servers and cluster only)
    principal: str | None = None
    tls = config.tls
    if tls is not None and out.get("ssl_context") is None:
        key = tls.client_key_path()
        out["ssl_context"] = client_context(tls.ca, tls.client_cert, key)
        if tls.client_cert is not None and config.auth.clients == "cert":
            principal = _cert_name(tls.client_cert, config.cluster)
    if config.auth.clients == "token":
        if out.get("token") is None and config.auth.token_file is not None:
            out["token"] = read_token_file(config.auth.token_file)
        if out.get("token") is not None:
            principal = token_name(out["token"])
    if principal is not None and out.get("client_id") is None:
        name = out.get("name", "client")
        if not owns(principal, name):
            out["name"] = f"{principal}-{name}"
    return out


def _cert_name(path: Path, cluster: str) -> str | None:
    """The client name a certificate file holds in `cluster`, if any."""
    from .certs import CertError, read_cert_identities
    from .tls import cluster_prefix

    try:
        uris = read_cert_identities(path)
    except CertError:
        return None  # the TLS context already loaded it; a failure shows on connecting
    prefix = f"{cluster_prefix(cluster)}client/"
    names = [u[len(prefix) :] for u in uris if u.startswith(prefix)]
    return names[0] if names else None


__all__ = ["Gate", "client_options", "owns"]
