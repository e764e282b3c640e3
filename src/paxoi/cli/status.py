"""`paxoi status`: a table of the servers: up/down, roles, leader, ballot, progress."""

from __future__ import annotations

import argparse
from typing import Any

from paxoi.cli.common import add_config_arg, config_from
from paxoi.server.config import PaxoiConfig
from paxoi.server.local import query_statuses


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "status",
        help="show every server's state",
        description="Ask every server of the configuration for its state and print a table.",
    )
    add_config_arg(parser)
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds per server")
    parser.set_defaults(func=run)


def render(config: PaxoiConfig, timeout: float = 1.0) -> str:
    statuses = query_statuses(config, timeout)
    applied = [s.applied for s in statuses.values() if s is not None]
    top = max(applied, default=0)
    rows = [("id", "address", "state", "roles", "leader", "ballot", "chosen", "applied", "lag")]
    for node, entry in sorted(config.servers.items()):
        st = statuses[node]
        address = f"{entry.host}:{entry.port}"
        if st is None:
            rows.append((str(node), address, "down", "", "", "", "", "", ""))
            continue
        roles = ",".join(r[0] for r in st.roles)  # p, a, l
        rows.append(
            (
                str(node),
                address,
                "LEADER" if st.is_leader else "up",
                roles,
                "" if st.leader is None else str(st.leader),
                "" if st.ballot is None else str(st.ballot),
                str(st.chosen),
                str(st.applied),
                str(top - st.applied),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def run(args: argparse.Namespace) -> int:
    config = config_from(args, "status")
    print(render(config, args.timeout))
    return 0
