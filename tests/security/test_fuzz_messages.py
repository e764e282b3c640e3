"""Property-based fuzzing of the message decoder, beyond tests/wire/test_codec_props.py:
maps, floats, extension types, huge integers, deep nesting, amplifying headers, and the
Hello token field.

The contract (paxoi.wire.codec.decode): any bytes give a message that re-encodes to
itself, or DecodeError; nothing else escapes, nothing is allocated out of proportion to
the input, and nothing takes long. The coverage-guided counterpart is
fuzz/fuzz_messages.py.
"""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from paxoi.wire.codec import PROTOCOL_VERSION, TAG_HELLO, decode, encode
from paxoi.wire.messages import KIND_CLIENT, KIND_SERVER, Hello
from paxoi.wire.values import DecodeError, decode_batch

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)),
)
trees = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers(-5, 5)), inner, max_size=4),
    ),
    max_leaves=20,
)
tags = st.one_of(st.integers(-3, 40), st.sampled_from([2**32, 2**64 - 1, -(2**63)]))


def decode_or_refuse(data: bytes) -> None:
    started = time.monotonic()
    try:
        msg = decode(data)
    except DecodeError:
        pass
    else:
        assert decode(encode(msg)) == msg
    assert time.monotonic() - started < 1.0


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


@FAST
@given(trees)
def test_any_msgpack_tree(obj: Any) -> None:
    decode_or_refuse(pack(obj))


@FAST
@given(tags, st.lists(trees, max_size=6))
def test_any_fields_under_any_tag(tag: int, fields: list[Any]) -> None:
    decode_or_refuse(pack([tag, *fields]))


@FAST
@given(tags, st.binary(max_size=200))
@example(TAG_HELLO, b"\xdd\xff\xff\xff\xff")
def test_a_real_array_header_then_noise(tag: int, noise: bytes) -> None:
    for n in range(1, 10):  # an array of n fields, the tag, then anything
        decode_or_refuse(bytes([0x90 | n]) + pack(tag) + noise)
    decode_or_refuse(b"\xdd\x00\x01\x00\x00" + pack(tag) + noise)  # claims 65536


@pytest.mark.parametrize(
    "header",
    [
        b"\xdd\xff\xff\xff\xff",  # array32 of 2**32-1
        b"\xdc\xff\xff",  # array16 of 65535
        b"\xdf\xff\xff\xff\xff",  # map32
        b"\xc6\xff\xff\xff\xff",  # bin32
        b"\xdb\xff\xff\xff\xff",  # str32
        b"\xc9\xff\xff\xff\xff\x01",  # ext32
    ],
)
def test_amplifying_headers_allocate_nothing_much(header: bytes) -> None:
    """Headers that claim huge containers, nested 1,000 deep in a 5 KB payload: refused
    without allocating in proportion to what they claim."""
    payload = header * 1000
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError):
            decode(payload)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024


def test_a_million_nested_arrays() -> None:
    for data in (b"\x91" * 1_000_000 + b"\xc0", b"\x81\xa1k" * 300_000 + b"\xc0"):
        with pytest.raises(DecodeError):
            decode(data)
        with pytest.raises(DecodeError):
            decode_batch(data)


def test_a_big_message_still_decodes() -> None:
    """The limits follow the payload's size, so legitimately large messages still pass."""
    from paxoi.core.messages import CatchupReply
    from paxoi.core.types import Command

    batch = tuple(Command(f"c{i}", i + 1, b"x" * 10) for i in range(20_000))
    msg = CatchupReply(1, tuple((s, batch) for s in range(5)))
    assert decode(encode(msg)) == msg


# ---------------------------------------------------------------- Hello and its token

hellos = st.builds(
    Hello,
    st.integers(0, 2**64 - 1),
    st.text(max_size=16),
    st.just(KIND_CLIENT),
    st.none() | st.integers(0, 2**64 - 1),
    st.text(max_size=24),
    st.just(0) | st.integers(1, 2**56),
    st.none() | st.text(max_size=120),
) | st.builds(
    Hello,
    st.integers(0, 2**64 - 1),
    st.text(max_size=16),
    st.just(KIND_SERVER),
    st.integers(0, 2**64 - 1),
    st.none() | st.text(max_size=24),
    st.just(0) | st.integers(1, 2**56),
    st.none() | st.text(max_size=120),
)


@FAST
@given(hellos)
def test_hello_round_trips_with_or_without_a_token(hello: Hello) -> None:
    data = encode(hello)
    assert decode(data) == hello
    assert encode(decode(data)) == data
    # Without a token, the layout is the one every version knows (6 or 7 fields).
    fields = msgpack.unpackb(data)
    assert len(fields) == (8 if hello.token is not None else 7 if hello.incarnation else 6)


def test_old_hellos_decode_as_before() -> None:
    # Frozen layouts (tests/wire/test_codec.py has the byte-exact forms).
    assert decode(pack([TAG_HELLO, 1, "c", "server", 3, None])) == Hello(1, "c", "server", 3)
    assert decode(pack([TAG_HELLO, 1, "c", "client", None, "a", 5])).incarnation == 5
    with pytest.raises(DecodeError, match="explicit zero incarnation"):
        decode(pack([TAG_HELLO, 1, "c", "client", None, "a", 0]))


@pytest.mark.parametrize(
    "fields",
    [
        [1, "c", "client", None, "a", 0, 7],  # token not a string
        [1, "c", "client", None, "a", 0, b"bytes"],
        [1, "c", "client", None, "a", -1, "t"],  # bad incarnation
        [1, "c", "client", None, "a", 0, "t", "extra"],
        [1, "c", "client", None, None, 0, "t"],  # a client without an id
    ],
)
def test_malformed_hello_tokens_are_refused(fields: list[Any]) -> None:
    with pytest.raises(DecodeError):
        decode(pack([TAG_HELLO, *fields]))


def test_a_hello_with_a_token_is_what_clients_send() -> None:
    hello = Hello(PROTOCOL_VERSION, "prod", KIND_CLIENT, None, "alice-1", token="alice:s3cret")
    assert msgpack.unpackb(encode(hello))[-2:] == [0, "alice:s3cret"]
