"""Property tests of the codec: round trips, and no input raises anything but DecodeError.

Example counts are modest so the wire suite stays fast in CI; the long fuzz runs belong
to the (separate, documented) atheris harness.
"""

from __future__ import annotations

import typing
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_strategies import MESSAGE_STRATEGIES, messages, msgpack_leaves, msgpack_trees

from paxoi.wire.codec import MESSAGE_TYPES, Message, decode, encode, to_wire
from paxoi.wire.values import DecodeError

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_strategies_cover_every_message_type() -> None:
    assert set(MESSAGE_STRATEGIES) == set(MESSAGE_TYPES) == set(typing.get_args(Message))


@FAST
@given(messages)
def test_round_trip(msg: Message) -> None:
    data = encode(msg)
    back = decode(data)
    assert back == msg
    assert type(back) is type(msg)
    assert encode(back) == data  # one message, one encoding


def _decode_or_refuse(data: bytes) -> None:
    """The contract under attack: a message (which re-encodes to itself) or DecodeError."""
    try:
        msg = decode(data)
    except DecodeError:
        return
    assert decode(encode(msg)) == msg


@FAST
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data: bytes) -> None:
    _decode_or_refuse(data)


@FAST
@given(msgpack_trees)
def test_arbitrary_msgpack(obj: Any) -> None:
    _decode_or_refuse(msgpack.packb(obj, use_bin_type=True))


@FAST
@given(st.integers(-2, 30), st.lists(msgpack_trees, max_size=9))
def test_arbitrary_fields_under_a_real_tag(tag: int, fields: list[Any]) -> None:
    # Random trees rarely start with a valid tag; this reaches every field decoder.
    _decode_or_refuse(msgpack.packb([tag, *fields], use_bin_type=True))


def _paths(obj: Any, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    out = [prefix]
    if isinstance(obj, list):
        for i, x in enumerate(obj):
            out.extend(_paths(x, (*prefix, i)))
    return out


def _replace(obj: Any, path: tuple[int, ...], new: Any) -> Any:
    if not path:
        return new
    copy = list(obj)
    copy[path[0]] = _replace(obj[path[0]], path[1:], new)
    return copy


@FAST
@given(messages, st.data())
def test_valid_message_with_one_part_replaced(msg: Message, data: st.DataObject) -> None:
    # Near misses (one field, one nested element wrong) probe each check in turn.
    wire = to_wire(msg)
    path = data.draw(st.sampled_from(_paths(wire)), label="path")
    new = data.draw(st.one_of(msgpack_leaves, msgpack_trees), label="replacement")
    _decode_or_refuse(msgpack.packb(_replace(wire, path, new), use_bin_type=True))


@FAST
@given(messages, st.data())
def test_valid_message_truncated_or_corrupted(msg: Message, data: st.DataObject) -> None:
    raw = bytearray(encode(msg))
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
    _decode_or_refuse(bytes(raw[:cut]))
    i = data.draw(st.integers(0, len(raw) - 1), label="index")
    raw[i] = data.draw(st.integers(0, 255), label="byte")
    _decode_or_refuse(bytes(raw))
