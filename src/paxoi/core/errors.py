"""Errors raised by the core.

Like h11, the core separates local misuse (a bug in the code driving it) from
evidence that the protocol's safety was broken (a bug in the protocol, or in a peer).
"""

from __future__ import annotations


class PaxoiError(Exception):
    """Base of every error paxoi raises on purpose."""


class ConfigError(PaxoiError, ValueError):
    """A configuration that cannot work; the message names the offending field."""


class UsageError(PaxoiError):
    """The core was driven in a way its contract forbids (local misuse)."""


class InvariantViolation(PaxoiError, AssertionError):
    """A safety invariant does not hold: two values for one slot, a ballot going back.

    Raised by assertions inside the core (TigerBeetle-style); the simulator reports it
    as a violation with the seed that produced it.
    """
