"""IP multicast transport: one group per role, datagrams of msgpack-framed messages.

Used by the atomic-broadcast adapter (the USI course harness), where proposers,
acceptors, learners and clients are separate processes that only ever talk through
four multicast groups. A datagram carries a destination node id (or -1: everyone in
the group) and a list of encoded messages, so a burst of messages to one group costs
one send. Loss is the protocol's problem (the core retransmits); this layer only keeps
datagrams under the size limit and never lets a bad datagram take the process down.

Loopback mode (the default) sets the outgoing interface to 127.0.0.1 and TTL 0 and
joins the groups on 127.0.0.1: it works on one machine even when the loopback interface
has no MULTICAST flag. Set PAXOI_MULTICAST_IF to an interface address (and optionally
PAXOI_MULTICAST_TTL) to run across real networks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import struct
from collections.abc import Callable, Iterable
from typing import Any

from ..wire.values import DecodeError, pack, unpack

log = logging.getLogger("paxoi.multicast")

#: Keep datagrams well under the 65,507-byte UDP limit (headers, and IPv4 reassembly).
MAX_DATAGRAM = 60_000
BROADCAST = -1
RCVBUF = 16 * 1024 * 1024

Group = tuple[str, int]
Deliver = Callable[[list[bytes]], None]


def multicast_interface() -> str:
    return os.environ.get("PAXOI_MULTICAST_IF", "127.0.0.1")


def _ttl(interface: str) -> int:
    default = "0" if interface.startswith("127.") else "1"
    return int(os.environ.get("PAXOI_MULTICAST_TTL", default))


def receiver_socket(group: Group, interface: str) -> socket.socket:
    """A socket that receives `group`'s datagrams; several processes may share a group."""
    ip, port = group
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    _big_buffer(sock, socket.SO_RCVBUF, getattr(socket, "SO_RCVBUFFORCE", None))
    sock.bind((ip, port))
    mreq = struct.pack("4s4s", socket.inet_aton(ip), socket.inet_aton(interface))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    sock.setblocking(False)
    return sock


def sender_socket(interface: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, _ttl(interface))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    _big_buffer(sock, socket.SO_SNDBUF, getattr(socket, "SO_SNDBUFFORCE", None))
    sock.setblocking(False)
    return sock


def _big_buffer(sock: socket.socket, opt: int, force: int | None) -> None:
    """Large buffers absorb bursts; FORCE (root only) goes past the sysctl maximum."""
    for option in (force, opt):
        if option is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, RCVBUF)
            return
        except OSError:
            continue


def encode_datagrams(dst: int, payloads: Iterable[bytes]) -> list[bytes]:
    """Pack encoded messages for one destination into as few datagrams as fit."""
    out: list[bytes] = []
    batch: list[bytes] = []
    size = 0
    for p in payloads:
        if len(p) > MAX_DATAGRAM - 64:
            log.error("dropping a %d-byte message: larger than a datagram", len(p))
            continue
        if batch and size + len(p) + 8 > MAX_DATAGRAM - 64:
            out.append(pack([dst, batch]))
            batch, size = [], 0
        batch.append(p)
        size += len(p) + 8
    if batch:
        out.append(pack([dst, batch]))
    return out


def decode_datagram(data: bytes) -> tuple[int, list[bytes]]:
    """(destination, encoded messages); DecodeError if it is not one of ours."""
    obj: Any = unpack(data)
    if (
        type(obj) is not list
        or len(obj) != 2
        or type(obj[0]) is not int
        or type(obj[1]) is not list
        or not all(type(p) is bytes for p in obj[1])
    ):
        raise DecodeError("not a paxoi datagram")
    return obj[0], obj[1]


class MulticastEndpoint(asyncio.DatagramProtocol):
    """Receives one group (for one node id) and sends to any group.

    Drops (seeded, from PAXOI_DROP_RATE / PAXOI_DROP_SEED) apply to what is received,
    so loss can be tested without firewall rules.
    """

    def __init__(self, me: int, deliver: Deliver) -> None:
        self.me = me
        self._deliver = deliver
        self.interface = multicast_interface()
        self._tx = sender_socket(self.interface)
        self.drop_rate = float(os.environ.get("PAXOI_DROP_RATE", "0") or 0)
        self._drop_rng = random.Random(os.environ.get("PAXOI_DROP_SEED", f"{me}/{os.getpid()}"))
        self.dropped = 0
        self.malformed = 0
        self.sent = 0

    async def listen(self, group: Group) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(
            lambda: self, sock=receiver_socket(group, self.interface)
        )

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.drop_rate and self._drop_rng.random() < self.drop_rate:
            self.dropped += 1
            return
        try:
            dst, payloads = decode_datagram(data)
        except DecodeError:
            self.malformed += 1
            return
        if dst == BROADCAST or dst == self.me:
            self._deliver(payloads)

    def error_received(self, exc: Exception) -> None:
        log.warning("multicast receive error: %s", exc)

    def send(self, group: Group, dst: int, payloads: Iterable[bytes]) -> None:
        for datagram in encode_datagrams(dst, payloads):
            try:
                self._tx.sendto(datagram, group)
                self.sent += 1
            except (BlockingIOError, InterruptedError):
                self.dropped += 1  # the send buffer is full: loss, which the protocol tolerates
            except OSError as e:
                log.warning("multicast send to %s failed: %s", group, e)

    def close(self) -> None:
        self._tx.close()
