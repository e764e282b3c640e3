"""`paxoi certs`: create a cluster CA and node/client certificates (and tokens) for TLS.

    paxoi certs init  --config FILE [--out DIR] [--client NAME ...]
    paxoi certs issue --config FILE (--node N | --client NAME | --token NAME) [--san HOST ...]

Where the files go: `--out DIR` if given; else, if the configuration has a `tls`
section, where it says (the CA at `tls.ca`, the servers' at `tls.cert`/`tls.key`, clients
and tokens next to the CA); else `certs/` next to the configuration file. Existing files
are never overwritten without `--force`. Exit 0 on success, 1 when a file cannot be
written or the CA cannot be read, 2 for a usage or configuration error (an unknown node,
a bad name, a file that exists).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paxoi.core.errors import PaxoiError
from paxoi.server.config import PaxoiConfig, load_config


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "certs",
        help="create a cluster CA and node/client certificates for TLS",
        description=(
            "Create the cluster's CA and a certificate for every server of the "
            "configuration (init), or one more server or client certificate, or a client "
            "token (issue). See docs/security.md."
        ),
    )
    actions = parser.add_subparsers(dest="certs_action", metavar="ACTION", required=True)

    init = actions.add_parser(
        "init",
        help="create the CA, every server's certificate and client certificates",
        description=(
            "Create a new CA (ca.pem, ca.key), a certificate and key for every server of "
            "the configuration (naming its node id and its host), and client certificates."
        ),
    )
    _common(init)
    init.add_argument(
        "--client",
        action="append",
        metavar="NAME",
        help="also issue a client certificate for NAME (repeatable; default: admin)",
    )
    init.set_defaults(func=run)

    issue = actions.add_parser(
        "issue",
        help="issue one server or client certificate, or a client token, with the existing CA",
    )
    _common(issue)
    who = issue.add_mutually_exclusive_group(required=True)
    who.add_argument("--node", type=int, metavar="N", help="server N of the configuration")
    who.add_argument("--client", metavar="NAME", help="a client certificate for NAME")
    who.add_argument(
        "--token",
        metavar="NAME",
        help="a client token for NAME (for auth.clients: token); prints its auth.tokens line",
    )
    issue.add_argument(
        "--san",
        action="append",
        default=[],
        metavar="HOST",
        help="with --node: another IP address or DNS name the server is reached by",
    )
    issue.set_defaults(func=run)
    parser.set_defaults(func=run)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, required=True, metavar="FILE", help="cluster configuration"
    )
    parser.add_argument("--out", type=Path, metavar="DIR", help="where to write the files")
    parser.add_argument(
        "--days", type=int, default=None, metavar="N", help="validity in days (CA 3650, else 825)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing files")


class _Usage(Exception):
    """A usage or configuration error: exit 2."""


@dataclass(frozen=True)
class _Layout:
    """Where each file goes, from --out or the configuration."""

    config: PaxoiConfig
    config_dir: Path
    out: Path | None

    @property
    def dir(self) -> Path:
        if self.out is not None:
            return self.out
        if self.config.tls is not None:
            return self.config.tls.ca.parent
        return self.config_dir / "certs"

    def ca(self) -> tuple[Path, Path]:
        if self.out is None and self.config.tls is not None:
            return self.config.tls.ca, self.config.tls.ca.with_suffix(".key")
        return self.dir / "ca.pem", self.dir / "ca.key"

    def node(self, node: int) -> tuple[Path, Path]:
        if self.out is None and self.config.tls is not None:
            return self.config.tls.node_cert(node), self.config.tls.node_key(node)
        return self.dir / f"node-{node}.pem", self.dir / f"node-{node}.key"

    def client(self, name: str) -> tuple[Path, Path]:
        return self.dir / f"client-{name}.pem", self.dir / f"client-{name}.key"


def run(args: argparse.Namespace) -> int:
    from paxoi.security.certs import CertError

    try:
        config = load_config(args.config)
        layout = _Layout(config, args.config.resolve().parent, args.out)
        if args.days is not None and args.days < 1:
            raise _Usage("--days must be at least 1")
        if args.certs_action == "init":
            _init(args, layout)
        else:
            _issue(args, layout)
    except _Usage as e:
        return _fail(str(e), 2)
    except CertError as e:
        return _fail(str(e), 2 if "--force" in str(e) else 1)
    except PaxoiError as e:  # the configuration
        return _fail(str(e), 2)
    return 0


def _fail(message: str, code: int) -> int:
    print(f"paxoi certs: {message}", file=sys.stderr)
    return code


def _check_name(name: str) -> None:
    from paxoi.security.tokens import valid_name

    if not valid_name(name):
        raise _Usage(f"bad client name {name!r}: 1-64 letters, digits, '_' or '.'")


def _init(args: argparse.Namespace, layout: _Layout) -> None:
    from paxoi.security import certs

    config = layout.config
    clients: list[str] = list(dict.fromkeys(args.client or ["admin"]))
    for name in clients:
        _check_name(name)
    days = {"days": args.days} if args.days is not None else {}
    targets = [*layout.ca()]
    for node in config.servers:
        targets += layout.node(node)
    for name in clients:
        targets += layout.client(name)
    certs.check_writable(targets, args.force)  # all or nothing

    ca = certs.make_ca(config.cluster, **days)
    certs.write_pair(*layout.ca(), ca.cert, ca.key, args.force)
    for node, entry in sorted(config.servers.items()):
        cert, key = certs.make_node_cert(ca, config.cluster, node, [entry.host], **days)
        certs.write_pair(*layout.node(node), cert, key, args.force)
    for name in clients:
        cert, key = certs.make_client_cert(ca, config.cluster, name, **days)
        certs.write_pair(*layout.client(name), cert, key, args.force)

    ca_pem, ca_key = layout.ca()
    print(f"CA: {ca_pem} (its key {ca_key} is only needed to issue certificates)")
    for node in sorted(config.servers):
        print(f"node {node}: {layout.node(node)[0]}  (host {config.servers[node].host})")
    for name in clients:
        print(f"client {name}: {layout.client(name)[0]}")
    if config.tls is None or layout.out is not None:
        base = layout.config_dir
        print(f"\nadd to {args.config} (then copy the files: see docs/security.md):")
        print("tls:")
        print(f"  ca: {_rel(ca_pem, base)}             # node-<id>.pem/.key are found next to it")
        print(f"  client_cert: {_rel(layout.client(clients[0])[0], base)}")
        print("auth:")
        print("  clients: cert          # or none, or token")


def _issue(args: argparse.Namespace, layout: _Layout) -> None:
    from paxoi.security import certs

    config = layout.config
    days = {"days": args.days} if args.days is not None else {}
    if args.token is not None:
        _check_name(args.token)
        path = certs.token_path(layout.dir, args.token)
        token = certs.save_token(layout.dir, args.token, args.force)
        from paxoi.security.tokens import digest

        print(f"token for {args.token}: {path} (mode 0600; give it to that client only)")
        print(f"\nadd to {args.config}, under auth.tokens:")
        print(f"    {args.token}: {digest(token)}")
        return
    if args.san and args.node is None:
        raise _Usage("--san goes with --node")
    if args.node is not None and args.node not in config.servers:
        known = ", ".join(str(n) for n in sorted(config.servers))
        raise _Usage(f"--node {args.node}: no such server in the configuration (known: {known})")
    if args.client is not None:
        _check_name(args.client)
    ca = certs.load_ca(*layout.ca())  # only once the command line is known to be right
    if args.node is not None:
        paths = layout.node(args.node)
        certs.check_writable(paths, args.force)
        hosts = [config.servers[args.node].host, *args.san]
        cert, key = certs.make_node_cert(ca, config.cluster, args.node, hosts, **days)
        certs.write_pair(*paths, cert, key, args.force)
        print(f"node {args.node}: {paths[0]}, {paths[1]}  (hosts {', '.join(hosts)})")
    else:
        paths = layout.client(args.client)
        certs.check_writable(paths, args.force)
        cert, key = certs.make_client_cert(ca, config.cluster, args.client, **days)
        certs.write_pair(*paths, cert, key, args.force)
        print(f"client {args.client}: {paths[0]}, {paths[1]}")


def _rel(path: Path, base: Path) -> str:
    try:
        return os.path.relpath(path, base)
    except ValueError:
        return str(path)
