"""Write the seed corpora of the fuzz harnesses: fuzz/corpus/{frames,messages,config}.

    python fuzz/seeds.py

Seeds are small valid inputs (one of each message, frames of them, configurations with
and without TLS) that give the fuzzer a head start; libFuzzer adds what it finds to
the same directories. Re-running overwrites only the seed-*.bin files.
"""

from __future__ import annotations

from pathlib import Path

from paxoi.core.messages import (
    Accept,
    Accepted,
    CatchupReply,
    CatchupRequest,
    ClientReply,
    Decide,
    Preempted,
    Prepare,
    Promise,
    ReplyStatus,
    SnapshotChunk,
    SnapshotRequest,
)
from paxoi.core.types import Ballot, Command, PValue
from paxoi.server.config import dump_config, local_config
from paxoi.wire.codec import PROTOCOL_VERSION, Message, encode
from paxoi.wire.framing import frame
from paxoi.wire.messages import (
    Control,
    ControlReply,
    ErrorReply,
    Hello,
    HelloAck,
    LogEntries,
    StatusRequest,
    Submit,
    Subscribe,
)

HERE = Path(__file__).resolve().parent
B = Ballot(3, 1)
CMD = Command("alice-1", 7, b"hello")

MESSAGES: list[Message] = [
    Prepare(1, B, 0),
    Promise(0, B, 0, (PValue(B, 4, (CMD,)),)),
    Accept(1, B, 4, (CMD, CMD)),
    Accepted(2, B, 4),
    Preempted(0, B, Ballot(5, 2)),
    Decide(1, 4, (CMD,)),
    CatchupRequest(2, 0, 10),
    CatchupReply(1, ((4, (CMD,)), (5, ()))),
    ClientReply("alice-1", 7, ReplyStatus.OK, b"4", None),
    Hello(PROTOCOL_VERSION, "paxoi", "server", 2, None, 12345),
    Hello(PROTOCOL_VERSION, "paxoi", "client", None, "alice-1", token="alice:s3cret"),
    HelloAck(PROTOCOL_VERSION, "paxoi", 0, 1),
    ErrorReply("unauthorized", "no"),
    Submit(CMD),
    Subscribe(3),
    LogEntries(((4, CMD, b"4"),)),
    StatusRequest(),
    Control("partition", (1, 2), 0),
    ControlReply(True, "done"),
    Promise(0, B, 0, (PValue(B, 40, (CMD,)),), 40),
    SnapshotChunk(2, 40, 100, 0, b"PXSN\x01" + bytes(27)),
    SnapshotRequest(1, 40, 32),
]


def write(kind: str, seeds: list[bytes]) -> None:
    directory = HERE / "corpus" / kind
    directory.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(seeds):
        (directory / f"seed-{i:02d}.bin").write_bytes(data)


def main() -> None:
    payloads = [encode(m) for m in MESSAGES]
    # fuzz_messages reads a first byte (raw or structured mode) before the payload.
    write("messages", [b"\x01" + p for p in payloads])
    # fuzz_frames: one byte picks the default max_frame, then the stream.
    write("frames", [b"\x00" + frame(p) for p in payloads] + [b"\x00" + frame(b"x") * 20])
    plain = local_config(1, 7000, Path("data"))
    tls = local_config(
        1,
        7000,
        Path("data"),
        tls={"ca": "certs/ca.pem", "client_cert": "certs/client-admin.pem"},
        auth={"clients": "cert"},
    )
    token = local_config(
        1,
        7000,
        Path("data"),
        tls={"ca": "certs/ca.pem"},
        auth={"clients": "token", "tokens": {"alice": "sha256:" + "0" * 64}, "token_file": "t"},
    )
    minimal = "servers:\n  0: {port: 7000}\n"
    write("config", [dump_config(c).encode() for c in (plain, tls, token)] + [minimal.encode()])
    print(f"seeds written under {HERE / 'corpus'}")


if __name__ == "__main__":
    main()
