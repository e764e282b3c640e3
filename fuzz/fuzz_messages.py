"""Coverage-guided fuzzing of the message decoder (paxoi.wire.codec.decode) and of the
stored batch decoder (paxoi.wire.values.decode_batch).

    python fuzz/fuzz_messages.py fuzz/corpus/messages -max_total_time=600 -rss_limit_mb=512

Half the inputs are raw bytes; the other half are turned into a msgpack array
[tag, field, ...] built from the input, so that the fuzzer gets past msgpack (compiled,
so not instrumented) into every field decoder. Anything decoded must re-encode to
itself; nothing but DecodeError may escape. See fuzz/README.md.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import atheris

with atheris.instrument_imports():
    import msgpack

    from paxoi.core.messages import ReplyStatus
    from paxoi.core.types import Role
    from paxoi.wire.codec import decode, encode
    from paxoi.wire.messages import CONTROL_ACTIONS, HELLO_KINDS
    from paxoi.wire.values import DecodeError, decode_batch

#: Strings the decoders look for (enum values), so the fuzzer need not guess them.
WORDS = sorted(
    {s.value for s in ReplyStatus}
    | {r.value for r in Role}
    | CONTROL_ACTIONS
    | HELLO_KINDS
    | {"lease", "stale", ""}
)


def value(fdp: atheris.FuzzedDataProvider, depth: int) -> Any:
    kind = fdp.ConsumeIntInRange(0, 11 if depth < 4 else 8)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeIntInRange(-4, 40)
    if kind == 3:
        return fdp.ConsumeIntInRange(-(2**63), 2**64 - 1)
    if kind == 4:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 24))
    if kind == 5:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 24))
    if kind == 6:
        return fdp.ConsumeRegularFloat()
    if kind == 7:
        return fdp.PickValueInList(WORDS)
    if kind == 8:
        return fdp.ConsumeIntInRange(0, 3)
    if kind in (9, 10):
        return [value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 5))]
    return {
        fdp.ConsumeUnicodeNoSurrogates(4): value(fdp, depth + 1)
        for _ in range(fdp.ConsumeIntInRange(0, 3))
    }


def check(data: bytes) -> None:
    try:
        msg = decode(data)
    except DecodeError:
        pass
    else:
        again = encode(msg)
        if decode(again) != msg:
            raise AssertionError(f"{msg!r} does not survive encode/decode")
    with contextlib.suppress(DecodeError):
        decode_batch(data)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        check(fdp.ConsumeBytes(fdp.remaining_bytes()))
        return
    tag = fdp.ConsumeIntInRange(0, 30)
    fields = [value(fdp, 1) for _ in range(fdp.ConsumeIntInRange(0, 9))]
    check(msgpack.packb([tag, *fields], use_bin_type=True))


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
