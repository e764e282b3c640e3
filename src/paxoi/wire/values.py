"""msgpack forms of the protocol's values, shared by the wire codec and the storage.

A Ballot is [round, node]; a Command is [client, seq, payload]; a Batch is a list of
commands. Decoding is strict: anything that is not exactly that shape raises
DecodeError, never anything else, because these bytes come from peers and from disk.
"""

from __future__ import annotations

from typing import Any

import msgpack

from ..core.errors import PaxoiError
from ..core.types import Ballot, Batch, Command

#: Hard limits on what one decode may allocate (a hostile length prefix cannot OOM us).
MAX_BIN = 16 * 1024 * 1024
MAX_ARRAY = 1_000_000
MAX_STR = 1024 * 1024


class DecodeError(PaxoiError, ValueError):
    """Bytes that are not a valid paxoi value or message (from a peer, or a damaged file)."""


def unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_bin_len=MAX_BIN,
            max_str_len=MAX_STR,
            max_array_len=MAX_ARRAY,
            max_map_len=1024,
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
        raise DecodeError(f"bad ballot: {obj!r:.80}")
    return Ballot(obj[0], obj[1])


def batch_to_wire(batch: Batch) -> list[list[Any]]:
    return [[c.client, c.seq, c.payload] for c in batch]


def batch_from_wire(obj: Any) -> Batch:
    if type(obj) is not list:
        raise DecodeError(f"bad batch: {obj!r:.80}")
    out = []
    for c in obj:
        if (
            type(c) is not list
            or len(c) != 3
            or type(c[0]) is not str
            or type(c[1]) is not int
            or type(c[2]) is not bytes
        ):
            raise DecodeError(f"bad command: {c!r:.80}")
        out.append(Command(c[0], c[1], c[2]))
    return tuple(out)


def encode_batch(batch: Batch) -> bytes:
    return pack(batch_to_wire(batch))


def decode_batch(data: bytes) -> Batch:
    return batch_from_wire(unpack(data))
