"""The CS 380D master program (`paxoi master`) and its client processes.

The UT Austin CS 380D "Paxos Project" tested chat rooms through a master program that
reads commands on standard input (start, sendMessage, crashServer, restartServer,
allClear, timeBombLeader, printChatLog) and prints the clients' views of the log. This
package is that master for paxoi, so the course's tests, and any written in its format,
run unchanged against paxoi's real servers and clients. See docs/cs380d.md.
"""

from __future__ import annotations

from .commands import parse_command
from .master import Master, Settings, cluster_config

__all__ = ["Master", "Settings", "cluster_config", "parse_command"]
