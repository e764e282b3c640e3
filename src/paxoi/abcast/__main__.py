"""`python -m paxoi.abcast ROLE ID CONF`: the lean entry point the USI role scripts use.

It imports only the core, the wire codec and this package (not the whole command line,
with its configuration and server machinery), so a role process is up in a fraction of
a second even on a loaded machine: the harness starts processes a second apart.
"""

from __future__ import annotations

import sys

from ..core.errors import PaxoiError
from .config import node_id, parse_conf

ROLES = {
    "proposer": "proposers",
    "acceptor": "acceptors",
    "learner": "learners",
    "learn": "learners",
    "client": "clients",
}

USAGE = "usage: python -m paxoi.abcast {acceptor,proposer,learner,learn,client} ID CONF"


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ROLES or not argv[1].lstrip("-").isdigit():
        print(USAGE, file=sys.stderr)
        return 2
    role, index = ROLES[argv[0]], int(argv[1])
    try:
        conf = parse_conf(argv[2])
        if role != "clients":
            node_id(role, index)
        elif index < 1:
            raise PaxoiError(f"client id must be 1 or more, not {index}")
    except PaxoiError as e:
        print(f"paxoi abcast: {e}", file=sys.stderr)
        return 2
    from .runtime import main as run

    try:
        run(role, index, conf)
    except OSError as e:
        print(f"paxoi abcast: multicast socket: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
