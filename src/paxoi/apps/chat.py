"""A replicated chat room: every decided command is one message, in slot order.

All replicas that applied the same decided commands hold byte-identical logs, which
`canonical()` and `digest()` make easy to compare (the simulator and tests do).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import TypeAlias

from paxoi.core.types import ClientId, Command, Seq, Slot

_SNAPSHOT_VERSION = 1
#: Cached snapshot segments before they are joined into one.
_MAX_SEGMENTS = 64
#: Entries encoded for the snapshot as they are applied, this many at a time: spread
#: over the applies, the encoding never stalls the event loop (100,000 entries at once
#: took 100-180 ms).
_SEGMENT_ENTRIES = 2048
_SNAPSHOT_HEAD = b'{"version":%d,"entries":[' % _SNAPSHOT_VERSION

_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
#: Unicode categories escaped so an entry stays on one line (controls, line/paragraph
#: separators) and always encodes as UTF-8 (lone surrogates).
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


#: Everything `escape` changes: Cc, Cs, Zl and Zp, spelled out (a test checks it against
#: the categories on every code point). Ordinary text goes through untouched.
_NEEDS_ESCAPE = re.compile(r"[\\\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")


def escape(text: str) -> str:
    """`text` on one line: backslash, tab, CR, LF and other line breaks escaped, C-style."""
    if _NEEDS_ESCAPE.search(text) is None:
        return text
    return _NEEDS_ESCAPE.sub(_escape_one, text)


def _escape_one(match: re.Match[str]) -> str:
    ch = match.group()
    named = _ESCAPES.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


@dataclass(frozen=True, slots=True)
class ChatEntry:
    """One chat message: who sent it, the sender's sequence number, and where it landed."""

    slot: Slot
    sender: ClientId
    seq: Seq
    message: str

    def command(self) -> Command:
        """The command that put this entry in the log."""
        return Command(self.sender, self.seq, self.message.encode("utf-8"))


#: How the log holds an entry: a plain tuple of atoms, which the garbage collector stops
#: tracking after one look (`ChatEntry` objects would be scanned on every full
#: collection, and a long chat made each one a stall of the event loop).
_Row: TypeAlias = tuple[Slot, ClientId, Seq, str]


def canonical_line(e: ChatEntry) -> str:
    """One entry of `ChatLog.canonical()`; a replica's log file is these lines, appended."""
    return _line(e.slot, e.sender, e.seq, e.message)


def _line(slot: Slot, sender: ClientId, seq: Seq, message: str) -> str:
    return f"{slot}\t{escape(sender)}\t{seq}\t{escape(message)}\n"


class ChatLog:
    """The chat room's state machine: an append-only list of messages.

    A slot holds a batch, so several entries may share a slot; they keep batch order.
    `apply` returns the slot as ASCII digits, so a sender learns where its message landed.
    """

    def __init__(self) -> None:
        self._entries: list[_Row] = []
        # The snapshot's JSON of entries [0, _encoded_upto), in segments: a snapshot
        # encodes only the entries applied since the last one (a chat's snapshot is the
        # whole chat, and encoding a million entries takes seconds of the event loop).
        self._encoded: list[bytes] = []
        self._encoded_upto = 0

    # -- StateMachine -------------------------------------------------------------------

    def apply(self, slot: Slot, command: Command) -> bytes:
        message = command.payload.decode("utf-8", errors="replace")
        self._entries.append((slot, command.client, command.seq, message))
        if len(self._entries) - self._encoded_upto >= _SEGMENT_ENTRIES:
            self._encode_new()
        return str(slot).encode("ascii")

    def snapshot(self) -> bytes:
        """{"version": 1, "entries": [[slot, sender, seq, message], ...]} as compact
        ASCII JSON, built from the cached encoding of the entries it already covered."""
        self._encode_new()
        parts = [_SNAPSHOT_HEAD]
        for i, segment in enumerate(self._encoded):
            if i:
                parts.append(b",")
            parts.append(segment)
        parts.append(b"]}")
        return b"".join(parts)

    def _encode_new(self) -> None:
        new = self._entries[self._encoded_upto :]
        if not new:
            return
        text = json.dumps(new, ensure_ascii=True, separators=(",", ":"))
        self._encoded.append(text[1:-1].encode("ascii"))
        self._encoded_upto = len(self._entries)
        if len(self._encoded) > _MAX_SEGMENTS:
            self._encoded = [b",".join(self._encoded)]

    def restore(self, data: bytes) -> None:
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"not a chat snapshot: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("version") != _SNAPSHOT_VERSION:
            raise ValueError("not a chat snapshot: missing or unknown version")
        raw = doc.get("entries")
        if not isinstance(raw, list):
            raise ValueError("not a chat snapshot: entries must be a list")
        entries: list[_Row] = []
        for item in raw:
            if not (
                isinstance(item, list)
                and len(item) == 4
                and type(item[0]) is int
                and isinstance(item[1], str)
                and type(item[2]) is int
                and isinstance(item[3], str)
            ):
                raise ValueError(f"not a chat snapshot: bad entry {item!r}")
            entries.append((item[0], item[1], item[2], item[3]))
        self._entries = entries
        self._encoded, self._encoded_upto = [], 0
        if (
            entries
            and doc.keys() == {"version", "entries"}
            and data.startswith(_SNAPSHOT_HEAD)
            and data.endswith(b"]}")
        ):
            # Our own form: its middle is the entries' encoding; keep it, so the next
            # snapshot after a restart or an install does not encode them all again.
            self._encoded = [bytes(data[len(_SNAPSHOT_HEAD) : -2])]
            self._encoded_upto = len(entries)

    # -- Queries ------------------------------------------------------------------------

    @property
    def entries(self) -> list[ChatEntry]:
        """The messages in apply order (a copy: mutating it does not change the log)."""
        return [ChatEntry(*row) for row in self._entries]

    def __len__(self) -> int:
        return len(self._entries)

    def since(self, index: int, stop: int | None = None) -> list[ChatEntry]:
        """Entries from position `index` (not slot: a slot may hold several entries) up
        to position `stop` (the end)."""
        return [ChatEntry(*row) for row in self._entries[index:stop]]

    def canonical(self) -> bytes:
        """The log as UTF-8 text, one line per entry: slot, sender, seq, message, tab-separated.

        Sender and message are escaped (see `escape`), so every entry is exactly one line.
        """
        return self.canonical_text().encode("utf-8")

    def canonical_text(self, index: int = 0, stop: int | None = None) -> str:
        """The lines of `canonical()` for the entries at positions [index, stop), as
        text: what a replica appends to its log file as entries arrive (straight from
        the stored tuples, with no `ChatEntry` built per line)."""
        return "".join([_line(*row) for row in self._entries[index:stop]])

    def digest(self) -> str:
        """SHA-256 (hex) of `canonical()`: equal logs, equal digests."""
        return hashlib.sha256(self.canonical()).hexdigest()

    def render(self) -> str:
        """Human-readable text: one line "<slot> <sender>: <message>" per entry."""
        return "".join(
            f"{slot} {escape(who)}: {escape(text)}\n" for slot, who, _, text in self._entries
        )
