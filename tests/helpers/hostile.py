"""Hand-built datagrams for robustness tests: STUN (RFC 8489), DTLS and RTP look-alikes.

Everything is framed correctly where it matters (so a parser gets past the header) and wrong
where the test wants it wrong (unknown ufrag, bad MESSAGE-INTEGRITY, truncation, unknown source).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import random
import socket
import struct
import zlib

STUN_MAGIC_COOKIE = 0x2112A442
STUN_BINDING_REQUEST = 0x0001
ATTR_USERNAME = 0x0006
ATTR_MESSAGE_INTEGRITY = 0x0008
ATTR_PRIORITY = 0x0024
ATTR_USE_CANDIDATE = 0x0025
ATTR_FINGERPRINT = 0x8028
ATTR_ICE_CONTROLLING = 0x802A
FINGERPRINT_XOR = 0x5354554E


def _attr(attr_type: int, value: bytes) -> bytes:
    pad = (-len(value)) % 4
    return struct.pack("!HH", attr_type, len(value)) + value + b"\x00" * pad


def stun_binding_request(
    username: str | None,
    *,
    integrity_key: bytes | None = None,
    garbage_integrity: bool = True,
    fingerprint: bool = True,
    transaction_id: bytes | None = None,
    use_candidate: bool = False,
    priority: int = 0x6E7F00FF,
) -> bytes:
    """A Binding Request as an ICE agent in the controlling role would send it.

    MESSAGE-INTEGRITY is HMAC-SHA1 with ``integrity_key`` if given, else 20 random bytes when
    ``garbage_integrity``, else absent. FINGERPRINT is always correct when present.
    ``priority`` is the PRIORITY attribute (a forged nomination wants it high).
    """
    tid = transaction_id if transaction_id is not None else os.urandom(12)
    if len(tid) != 12:
        raise ValueError("transaction id must be 12 bytes")
    body = b""
    if username is not None:
        body += _attr(ATTR_USERNAME, username.encode())
    body += _attr(ATTR_PRIORITY, struct.pack("!I", priority))
    body += _attr(ATTR_ICE_CONTROLLING, os.urandom(8))
    if use_candidate:
        body += _attr(ATTR_USE_CANDIDATE, b"")

    def header(length: int) -> bytes:
        return struct.pack("!HHI", STUN_BINDING_REQUEST, length, STUN_MAGIC_COOKIE) + tid

    if integrity_key is not None or garbage_integrity:
        # The length in the header covers everything up to and including MESSAGE-INTEGRITY.
        length = len(body) + 24
        if integrity_key is not None:
            mac = hmac.new(integrity_key, header(length) + body, hashlib.sha1).digest()
        else:
            mac = os.urandom(20)
        body += _attr(ATTR_MESSAGE_INTEGRITY, mac)
    if fingerprint:
        length = len(body) + 8
        crc = (zlib.crc32(header(length) + body) & 0xFFFFFFFF) ^ FINGERPRINT_XOR
        body += _attr(ATTR_FINGERPRINT, struct.pack("!I", crc))
    return header(len(body)) + body


def dtls_truncated_record() -> bytes:
    """A DTLS 1.2 handshake record header that promises 200 bytes and delivers 5."""
    return (
        bytes([22, 0xFE, 0xFD])
        + b"\x00\x00"
        + b"\x00\x00\x00\x00\x00\x01"
        + struct.pack("!H", 200)
        + b"\x01\x00\x00\xc4\x00"
    )


def dtls_client_hello_lookalike() -> bytes:
    """A well-framed DTLS handshake record whose ClientHello body is random."""
    rnd = os.urandom(120)
    handshake = bytes([1]) + len(rnd).to_bytes(3, "big") + b"\x00\x00" + b"\x00\x00\x00"
    handshake += len(rnd).to_bytes(3, "big") + rnd
    return (
        bytes([22, 0xFE, 0xFF])
        + b"\x00\x00"
        + b"\x00" * 6
        + struct.pack("!H", len(handshake))
        + handshake
    )


def rtp_lookalike(ssrc: int, *, seq: int = 1, payload_type: int = 96, size: int = 200) -> bytes:
    header = struct.pack("!BBHII", 0x80, payload_type & 0x7F, seq & 0xFFFF, seq * 960, ssrc)
    return header + os.urandom(max(0, size - len(header)))


def rtcp_sender_report_lookalike(ssrc: int) -> bytes:
    return struct.pack("!BBHIIIIII", 0x80, 200, 6, ssrc, 0, 0, 0, 0, 0) + os.urandom(10)


def random_datagrams(seed: int, sizes: list[int]) -> list[bytes]:
    rng = random.Random(seed)
    return [bytes(rng.getrandbits(8) for _ in range(n)) for n in sizes]


class HostileSocket:
    """A plain UDP socket on 127.0.0.1 that records whatever arrives (it should be nothing).

    Not an asyncio datagram transport: on Python 3.11 ``DatagramTransport.sendto(b"")`` silently
    sends nothing, and a zero-length datagram is one of the inputs under test.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.received: list[tuple[bytes, tuple]] = []
        self.errors: list[OSError] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                return
            except OSError as exc:  # e.g. ECONNREFUSED from an ICMP error: not engine data
                self.errors.append(exc)
                return
            self.received.append((data, addr))

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        sent = self.sock.sendto(data, addr)
        if sent != len(data):
            raise OSError(f"short send: {sent} of {len(data)} bytes")

    def close(self) -> None:
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
