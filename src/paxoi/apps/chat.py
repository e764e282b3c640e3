"""A replicated chat room: every decided command is one message, in slot order.

All replicas that applied the same decided commands hold byte-identical logs, which
`canonical()` and `digest()` make easy to compare (the simulator and tests do).
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import TypeAlias

import msgpack

from paxoi.core.types import ClientId, Command, Seq, Slot

from .jsondoc import load_versioned

#: Entries per sealed chunk of the log, each encoded for the snapshot once, when it
#: fills: spread over the applies, the encoding never stalls the event loop, and a
#: snapshot reuses every full chunk's bytes as they are.
_SEGMENT_ENTRIES = 2048
#: The first msgpack object of a snapshot (version 2); each one after it is a chunk.
_SNAPSHOT_HEAD = msgpack.packb(["paxoi-chat", 2])
#: Version 1, still read: one JSON document, {"version": 1, "entries": [...]}.
_V1_VERSION = 1
#: Lone surrogates (a client id may carry one) are stored, not refused.
_UNICODE_ERRORS = "surrogatepass"

_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
#: Unicode categories escaped so an entry stays on one line (controls, line/paragraph
#: separators) and always encodes as UTF-8 (lone surrogates).
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


#: Everything `escape` changes: Cc, Cs, Zl and Zp, spelled out (a test checks it against
#: the categories on every code point). Ordinary text goes through untouched.
_NEEDS_ESCAPE = re.compile(r"[\\\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")


#: One line of `canonical()` for a row that needs no escaping.
_LINE_FORMAT = "%d\t%s\t%d\t%s\n"
#: Printable ASCII but the backslash: the bytes that never need escaping.
_PLAIN_ASCII = bytes(range(0x20, 0x7F)).replace(b"\\", b"")
#: What a line of plain fields leaves once those bytes are deleted.
_SEPARATORS = b"\t\t\t\n"


def escape(text: str) -> str:
    """`text` on one line: backslash, tab, CR, LF and other line breaks escaped, C-style."""
    if _plain(text):
        return text
    return _NEEDS_ESCAPE.sub(_escape_one, text)


def _plain(text: str) -> bool:
    """Whether `escape` leaves `text` as it is.

    `isprintable()` first: it is false for every category escaped here (Cc, Cs, Zl,
    Zp), and faster than the regex (3.6 against 5.3 ns a character here; a follower
    once spent 8-10% of its time in that regex with 1 KiB messages). Only text it cannot
    clear (a Cf or Zs character, say) is searched. For whole batches of ASCII lines
    `ChatLog.canonical_bytes` has a faster check still."""
    if text.isprintable():
        return "\\" not in text
    return _NEEDS_ESCAPE.search(text) is None


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

    The entries are kept in sealed chunks of `_SEGMENT_ENTRIES` and a tail list of
    rows. A chunk is encoded once, when sealed, and kept only as those bytes: every
    later snapshot reuses them, and reading an old entry decodes its chunk again (the
    latest chunk sealed or read stays decoded, so the rows a replica writes to chat.log
    as they seal, and a reader going through the log, decode each chunk once). Keeping
    the rows too doubled the chat's memory, and on this project's virtual machines
    every fresh page a growing heap touches is costly: at 1 KiB per message a quarter
    of a follower's CPU went to zeroing new pages. Bytes also cost a full garbage
    collection nothing to walk (one list of a million rows cost each one tens of ms).

    Snapshot (version 2): msgpack objects one after another: `["paxoi-chat", 2]`, then
    one array of `[slot, sender, seq, message]` entries per chunk, the tail last.
    """

    def __init__(self) -> None:
        self._tail: list[_Row] = []
        #: `_encoded[k]` is sealed chunk k's snapshot bytes.
        self._encoded: list[bytes] = []
        #: (k, rows) of the sealed chunk last sealed or decoded.
        self._decoded: tuple[int, tuple[_Row, ...]] = (-1, ())

    # -- StateMachine -------------------------------------------------------------------

    def apply(self, slot: Slot, command: Command) -> bytes:
        message = command.payload.decode("utf-8", errors="replace")
        tail = self._tail
        tail.append((slot, command.client, command.seq, message))
        if len(tail) >= _SEGMENT_ENTRIES:
            self._seal()
        return str(slot).encode("ascii")

    def _seal(self) -> None:
        chunk = tuple(self._tail)
        self._tail = []
        self._decoded = (len(self._encoded), chunk)
        self._encoded.append(_pack(chunk))

    def _chunk(self, k: int) -> Sequence[_Row]:
        """The rows of chunk k (the tail when k is past the sealed ones)."""
        if k >= len(self._encoded):
            return self._tail
        if self._decoded[0] != k:
            rows = msgpack.unpackb(self._encoded[k], use_list=False, unicode_errors=_UNICODE_ERRORS)
            self._decoded = (k, rows)
        return self._decoded[1]

    def snapshot(self) -> bytes:
        """The entries as version 2 (see the class docstring), from the cached encoding
        of every sealed chunk: only the tail is encoded now."""
        return b"".join(self.snapshot_segments())

    def snapshot_segments(self) -> list[bytes]:
        """`snapshot()` in pieces whose concatenation it is: the sealed chunks' bytes are
        the same objects from one snapshot to the next."""
        segments = [_SNAPSHOT_HEAD, *self._encoded]
        if self._tail:
            segments.append(_pack(self._tail))
        return segments

    def sealed_segments(self, start: int) -> list[bytes]:
        """The head and every sealed chunk's bytes from segment `start` on."""
        if start == 0:
            return [_SNAPSHOT_HEAD, *self._encoded]
        return self._encoded[start - 1 :]

    def restore(self, data: bytes) -> None:
        rows = _read_v2(data) if data.startswith(_SNAPSHOT_HEAD) else _read_v1(data)
        n = _SEGMENT_ENTRIES
        full = len(rows) // n
        # Encoded again rather than kept as read: every replica's bytes stay the same
        # whoever wrote the snapshot, and a restore is a stall of this size anyway.
        self._encoded = [_pack(rows[k * n : (k + 1) * n]) for k in range(full)]
        self._decoded = (-1, ())
        self._tail = rows[full * n :]

    # -- Queries ------------------------------------------------------------------------

    def _rows(self, index: int = 0, stop: int | None = None) -> Iterator[_Row]:
        """The rows at positions [index, stop), as slices of the chunks that hold them:
        what precedes `index` in its chunk is never walked (a replica asks for the few
        newest rows after every apply, and stepping through the tail to reach them cost
        a leader about 25 us of CPU per command at 1 x 1)."""
        span = range(len(self))[index:stop]
        n = _SEGMENT_ENTRIES
        parts: list[Sequence[_Row]] = []
        pos = span.start
        while pos < span.stop:
            k, offset = divmod(pos, n)
            chunk = self._chunk(k)
            end = min(len(chunk), offset + span.stop - pos)
            parts.append(chunk[offset:end])
            pos += end - offset
        return chain.from_iterable(parts)

    @property
    def entries(self) -> list[ChatEntry]:
        """The messages in apply order (a copy: mutating it does not change the log)."""
        return [ChatEntry(*row) for row in self._rows()]

    def __len__(self) -> int:
        return len(self._encoded) * _SEGMENT_ENTRIES + len(self._tail)

    def since(self, index: int, stop: int | None = None) -> list[ChatEntry]:
        """Entries from position `index` (not slot: a slot may hold several entries) up
        to position `stop` (the end)."""
        return [ChatEntry(*row) for row in self._rows(index, stop)]

    def canonical(self) -> bytes:
        """The log as UTF-8 text, one line per entry: slot, sender, seq, message, tab-separated.

        Sender and message are escaped (see `escape`), so every entry is exactly one line.
        """
        return self.canonical_bytes()

    def canonical_text(self, index: int = 0, stop: int | None = None) -> str:
        """The lines of `canonical()` for the entries at positions [index, stop), as text."""
        return self.canonical_bytes(index, stop).decode("utf-8")

    def canonical_bytes(self, index: int = 0, stop: int | None = None) -> bytes:
        """The lines of `canonical()` for the entries at positions [index, stop), UTF-8
        encoded: what a replica appends to its log file as entries arrive (straight from
        the stored tuples, with no `ChatEntry` built per line).

        Almost always nothing needs escaping, and the text is ASCII. Then the lines are
        formatted in one operation, and one pass over the encoded bytes checks them all:
        deleting every printable ASCII byte but the backslash must leave exactly three
        tabs and a newline per line, the separators. Formatting line by line, joining the
        fields to search them, `isprintable()` (a Unicode lookup per character) and a
        text file's encoding cost a follower 3-4 us per 1 KiB message, a fifth of its CPU."""
        rows = list(self._rows(index, stop))
        if not rows:
            return b""
        text = (_LINE_FORMAT * len(rows)) % tuple(chain.from_iterable(rows))
        if text.isascii():  # O(1): a str knows whether it is ASCII
            data = text.encode("ascii")
            if data.translate(None, _PLAIN_ASCII) == _SEPARATORS * len(rows):
                return data
        return "".join([_line(*row) for row in rows]).encode("utf-8")

    def digest(self) -> str:
        """SHA-256 (hex) of `canonical()`: equal logs, equal digests."""
        return hashlib.sha256(self.canonical()).hexdigest()

    def render(self) -> str:
        """Human-readable text: one line "<slot> <sender>: <message>" per entry."""
        return "".join(
            f"{slot} {escape(who)}: {escape(text)}\n" for slot, who, _, text in self._rows()
        )


def _pack(rows: tuple[_Row, ...] | list[_Row]) -> bytes:
    return msgpack.packb(rows, unicode_errors=_UNICODE_ERRORS)


def _row(item: object) -> _Row:
    """`item` as a log row; ValueError if it is not [slot, sender, seq, message]."""
    if not (
        isinstance(item, (list, tuple))
        and len(item) == 4
        and type(item[0]) is int
        and isinstance(item[1], str)
        and type(item[2]) is int
        and isinstance(item[3], str)
    ):
        raise ValueError(f"bad entry {item!r}")
    return (item[0], item[1], item[2], item[3])


def _read_v2(data: bytes) -> list[_Row]:
    """The rows of a version 2 snapshot (its head already matched)."""
    unpacker = msgpack.Unpacker(
        io.BytesIO(data),
        use_list=False,
        unicode_errors=_UNICODE_ERRORS,
        max_buffer_size=max(len(data), 1),
    )
    rows: list[_Row] = []
    try:
        unpacker.skip()
        end = unpacker.tell()
        for chunk in unpacker:
            end = unpacker.tell()
            if not isinstance(chunk, tuple):
                raise ValueError(f"a chunk is a {type(chunk).__name__}, not an array")
            rows.extend(_row(item) for item in chunk)
        if end != len(data):  # iteration stops quietly at a cut-short object
            raise ValueError(f"{len(data) - end} bytes of a cut-short chunk at the end")
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ValueError(f"not a chat snapshot: {exc}") from exc
    return rows


def _read_v1(data: bytes) -> list[_Row]:
    """The rows of a version 1 snapshot (one JSON document), as older paxoi stored them."""
    raw = load_versioned(data, _V1_VERSION, "a chat snapshot").get("entries")
    if not isinstance(raw, list):
        raise ValueError("not a chat snapshot: entries must be a list")
    try:
        return [_row(item) for item in raw]
    except ValueError as exc:
        raise ValueError(f"not a chat snapshot: {exc}") from exc
