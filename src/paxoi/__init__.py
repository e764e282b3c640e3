"""paxoi: a Multi-Paxos replicated state machine library.

The protocol lives in `paxoi.core`, a sans-IO core driven by messages and ticks; this
module re-exports the names an application needs.
"""

from __future__ import annotations

from paxoi.core.config import ClusterConfig, ElectionPolicy, Limits, Timing
from paxoi.core.errors import ConfigError, InvariantViolation, PaxoiError, UsageError
from paxoi.core.ready import Ready
from paxoi.core.statemachine import SegmentedStateMachine, StateMachine
from paxoi.core.types import Ballot, Command, Role

__version__ = "0.1.0"

__all__ = [
    "Ballot",
    "ClusterConfig",
    "Command",
    "ConfigError",
    "ElectionPolicy",
    "InvariantViolation",
    "Limits",
    "PaxoiError",
    "Ready",
    "Role",
    "SegmentedStateMachine",
    "StateMachine",
    "Timing",
    "UsageError",
    "__version__",
]
