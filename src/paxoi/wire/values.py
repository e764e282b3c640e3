"""msgpack forms of the protocol's values, shared by the wire codec and the storage.

A Ballot is [round, node]; a Command is [client, seq, payload]; a Batch is a list of
commands; a PValue is [ballot, slot, batch]. Decoding is strict: anything that is not exactly that shape raises
DecodeError, never anything else, because these bytes come from peers and from disk.
"""

from __future__ import annotations

import reprlib
from typing import Any

import msgpack

from ..core.errors import PaxoiError
from ..core.types import Ballot, Batch, Command, PValue

#: Hard limits on what one decode may allocate (a hostile length prefix cannot OOM us).
MAX_BIN = 16 * 1024 * 1024
MAX_ARRAY = 1_000_000
MAX_STR = 1024 * 1024


class DecodeError(PaxoiError, ValueError):
    """Bytes that are not a valid paxoi value or message (from a peer, or a damaged file)."""


class _ShortRepr(reprlib.Repr):
    """reprlib, plus bytes: error messages must not copy a 16 MiB payload to show 40 bytes."""

    def repr_bytes(self, x: bytes, level: int) -> str:
        s = repr(x[: self.maxstring])
        return s + "..." if len(x) > self.maxstring else s


_short_repr = _ShortRepr()
_short_repr.maxstring = 40
_short_repr.maxother = 40
_short_repr.maxlevel = 3

#: `new_command(Command, fields)` builds a Command from its three checked fields without
#: the namedtuple's `__new__`, a Python function: a third of decoding a command, and the
#: decoders build one per command (a follower's every Accept, a leader's every Submits).
new_command = tuple.__new__


def short(x: Any) -> str:
    """A bounded repr of untrusted decoded data, for DecodeError messages (cost ~ O(1))."""
    return _short_repr.repr(x)


def unpack(data: bytes) -> Any:
    # No container can hold more elements than there are bytes left to encode them, so
    # the limits never exceed len(data): msgpack allocates an array's list from its
    # header, before reading the elements, and 1,000 nested headers each claiming the
    # maximum would otherwise reserve gigabytes for a 5 KB payload.
    n = len(data)
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_bin_len=min(MAX_BIN, n),
            max_str_len=min(MAX_STR, n),
            max_array_len=min(MAX_ARRAY, n),
            max_map_len=min(1024, n),
            max_ext_len=0,
        )
    except Exception as e:  # msgpack raises many types on bad input; they all mean one thing
        raise DecodeError(f"not valid msgpack: {e}") from None


def pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def ballot_to_wire(b: Ballot) -> list[int]:
    return [b.round, b.node]


def ballot_from_wire(obj: Any) -> Ballot:
    if type(obj) is not list or len(obj) != 2 or type(obj[0]) is not int or type(obj[1]) is not int:
        raise DecodeError(f"bad ballot: {short(obj)}")
    return Ballot(obj[0], obj[1])


def batch_to_wire(batch: Batch) -> Batch:
    """The batch as it is: a Command is a (client, seq, payload) tuple, which msgpack
    packs as the array above without a copy."""
    return batch


def batch_from_wire(obj: Any) -> Batch:
    # Tuples too: `to_wire` forms hold the batch's own tuples (msgpack yields lists).
    if not isinstance(obj, (list, tuple)):
        raise DecodeError(f"bad batch: {short(obj)}")
    return tuple([command_from_wire(c) for c in obj])


def command_to_wire(c: Command) -> Command:
    """The command as it is (see `batch_to_wire`)."""
    return c


def command_from_wire(c: Any) -> Command:
    """One command outside a batch (a client's submit, a log entry); same form as in a batch."""
    if (
        not isinstance(c, (list, tuple))
        or len(c) != 3
        or type(c[0]) is not str
        or type(c[1]) is not int
        or type(c[2]) is not bytes
    ):
        raise DecodeError(f"bad command: {short(c)}")
    return new_command(Command, c)


def pvalue_to_wire(p: PValue) -> list[Any]:
    return [[p.ballot.round, p.ballot.node], p.slot, batch_to_wire(p.value)]


def pvalue_from_wire(obj: Any) -> PValue:
    """A pvalue; its slot must be a non-negative int (slots are log positions)."""
    if type(obj) is not list or len(obj) != 3:
        raise DecodeError(f"bad pvalue: {short(obj)}")
    slot = obj[1]
    if type(slot) is not int or slot < 0:
        raise DecodeError(f"bad pvalue slot: {short(slot)}")
    return PValue(ballot_from_wire(obj[0]), slot, batch_from_wire(obj[2]))


def encode_batch(batch: Batch) -> bytes:
    return pack(batch_to_wire(batch))


def decode_batch(data: bytes) -> Batch:
    return batch_from_wire(unpack(data))
