"""Client tokens: a bearer secret that names its holder, stored by servers only as a hash.

A token is ``<name>:<secret>``, the secret 32 random bytes in URL-safe base64. The
configuration lists, per name, ``sha256:<hex>`` of the whole token, so the file that
every machine shares reveals no token; a server hashes what a client presents and
compares digests in constant time. The name says whose client ids the holder may use
(see `paxoi.security.gate`).

Tokens travel in the client's `Hello`, so they are only accepted over TLS (the
configuration refuses `auth.clients: token` without a `tls` section).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from ..core.errors import ConfigError

#: Names of clients (in certificates and tokens). No "-": client ids are "<name>-...",
#: so one name can never be a prefix of another's ids.
NAME_PATTERN: Final = r"^[A-Za-z0-9_.]{1,64}$"
DIGEST_PATTERN: Final = r"^sha256:[0-9a-f]{64}$"
#: Longer tokens are refused before hashing (a real one is about 110 characters).
MAX_TOKEN: Final = 512

_NAME = re.compile(NAME_PATTERN)


def valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def new_token(name: str) -> str:
    if not valid_name(name):
        raise ValueError(f"bad client name {name!r}: letters, digits, '_' and '.' only")
    return f"{name}:{secrets.token_urlsafe(32)}"


def digest(token: str) -> str:
    """What the configuration holds for `token` (auth.tokens.<name>)."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_name(token: str) -> str | None:
    """The name a token claims, or None if it is not of the form <name>:<secret>."""
    name, sep, secret = token.partition(":")
    if not sep or not secret or not valid_name(name):
        return None
    return name


def verify(token: str | None, digests: Mapping[str, str]) -> str | None:
    """The name `token` authenticates, or None. Constant time in the secret."""
    if not token or len(token) > MAX_TOKEN:
        return None
    name = token_name(token)
    if name is None:
        return None
    expected = digests.get(name)
    if expected is None:
        return None
    if hmac.compare_digest(digest(token).encode(), expected.encode()):
        return name
    return None


def read_token_file(path: Path) -> str:
    """The token in `path` (its first line); ConfigError says what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"auth.token_file: {path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"auth.token_file: {path}: cannot read: {e}") from None
    token = text.strip().splitlines()[0].strip() if text.strip() else ""
    if token_name(token) is None:
        raise ConfigError(f"auth.token_file: {path}: not a paxoi token (<name>:<secret>)")
    return token


__all__ = [
    "DIGEST_PATTERN",
    "NAME_PATTERN",
    "digest",
    "new_token",
    "read_token_file",
    "token_name",
    "valid_name",
    "verify",
]
