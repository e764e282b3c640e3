"""Example applications: state machines that run on top of paxoi.

Each implements `paxoi.core.statemachine.StateMachine` with the standard library only.
"""

from __future__ import annotations

from paxoi.apps.chat import ChatEntry, ChatLog
from paxoi.apps.kv import KVStore

__all__ = ["ChatEntry", "ChatLog", "KVStore"]
