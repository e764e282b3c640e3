"""The CS 380D master's input language: one command per line, parsed without side effects.

Parsing is separate from running so every way a line can be wrong is decided in one
place and can be unit-tested without processes. A line that is not a well-formed
command yields a `Rejected` with the reason: the course's tester forbids any output
beyond `printChatLog`'s, so the master logs the reason and carries on rather than
complaining on stderr.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Upper bounds for `start`: far above what the course tests use, low enough that a typo
#: (`start 3000 2`) cannot fork hundreds of Python processes on a shared machine.
MAX_SERVERS = 15
MAX_CLIENTS = 32


@dataclass(frozen=True, slots=True)
class Start:
    servers: int
    clients: int


@dataclass(frozen=True, slots=True)
class SendMessage:
    client: int
    #: Every token after the index, joined by single spaces (the handout's definition).
    text: str


@dataclass(frozen=True, slots=True)
class CrashServer:
    server: int


@dataclass(frozen=True, slots=True)
class RestartServer:
    server: int


@dataclass(frozen=True, slots=True)
class AllClear:
    pass


@dataclass(frozen=True, slots=True)
class TimeBombLeader:
    messages: int


@dataclass(frozen=True, slots=True)
class PrintChatLog:
    client: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """Not a command; `reason` goes to the master's log, never to the output."""

    line: str
    reason: str


MasterCommand = (
    Start | SendMessage | CrashServer | RestartServer | AllClear | TimeBombLeader | PrintChatLog
)


def _index(token: str) -> int | None:
    """A non-negative decimal integer, or None. ASCII digits only: `int()` alone would
    also take "+1", " 1", "1_0" and non-ASCII digits, none of which a test means."""
    if not token.isascii() or not token.isdigit():
        return None
    return int(token)


def parse_command(line: str) -> MasterCommand | Rejected | None:
    """One input line: a command, a `Rejected` saying why not, or None for a blank line.

    Range checks that depend on the running system (a client index beyond those started)
    are the master's job; here only the shape of the line is checked.
    """
    tokens = line.split()
    if not tokens:
        return None
    name, args = tokens[0], tokens[1:]

    def reject(reason: str) -> Rejected:
        return Rejected(line.rstrip("\r\n"), reason)

    def ints(count: int) -> list[int] | Rejected:
        if len(args) != count:
            plural = "s" if count != 1 else ""
            return reject(f"{name} takes {count} integer argument{plural}, got {len(args)}")
        values = [_index(a) for a in args]
        if any(v is None for v in values):
            return reject(f"{name}: arguments must be non-negative integers")
        return [v for v in values if v is not None]

    if name == "sendMessage":
        if len(args) < 2:
            return reject("sendMessage takes a client index and a message")
        client = _index(args[0])
        if client is None:
            return reject("sendMessage: the client index must be a non-negative integer")
        return SendMessage(client, " ".join(args[1:]))
    if name == "allClear":
        return AllClear() if not args else reject("allClear takes no arguments")
    arity = {
        "start": 2,
        "crashServer": 1,
        "restartServer": 1,
        "timeBombLeader": 1,
        "printChatLog": 1,
    }
    if name not in arity:
        return reject(f"unknown command {name!r}")
    values = ints(arity[name])
    if isinstance(values, Rejected):
        return values
    if name == "start":
        servers, clients = values
        if not 1 <= servers <= MAX_SERVERS:
            return reject(f"start: between 1 and {MAX_SERVERS} servers, not {servers}")
        if clients > MAX_CLIENTS:
            return reject(f"start: at most {MAX_CLIENTS} clients, not {clients}")
        return Start(servers, clients)
    if name == "crashServer":
        return CrashServer(values[0])
    if name == "restartServer":
        return RestartServer(values[0])
    if name == "timeBombLeader":
        return TimeBombLeader(values[0])
    return PrintChatLog(values[0])


__all__ = [
    "MAX_CLIENTS",
    "MAX_SERVERS",
    "AllClear",
    "CrashServer",
    "MasterCommand",
    "PrintChatLog",
    "Rejected",
    "RestartServer",
    "SendMessage",
    "Start",
    "TimeBombLeader",
    "parse_command",
]
