"""Replayed and tampered SRTP/SRTCP from a real peer's own address are counted (issue 6, item 10).

Alice is a real aiortc peer in a call. Her protected packets are captured where aiortc hands
them to ICE, then sent again through the same ICE transport (so from her validated address):
as they were (replays) and with one bit flipped (tampered). Each must count exactly once as
``peer_rejected`` in the engine's ``stats_snapshot``, and the call must go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pytest

from helpers.peers import MiniRoom, TestPeer, wait_until

log = logging.getLogger(__name__)

pytestmark = pytest.mark.asyncio(loop_scope="function")


def _is_rtcp(d: bytes) -> bool:
    return len(d) > 2 and 64 <= (d[1] & 0x7F) < 96


def _rejected(engine: Any) -> int:
    return int(engine.stats_snapshot()["drops"].get("peer_rejected", 0))


async def _settled(engine: Any, expected: int, within: float) -> int:
    """``peer_rejected`` once it reached ``expected`` (or after ``within`` s), a bit later."""
    with contextlib.suppress(TimeoutError):
        await wait_until(lambda: _rejected(engine) >= expected, within, interval=0.02)
    await asyncio.sleep(0.3)  # a second count per datagram would show up by now
    return _rejected(engine)


@pytest.mark.timeout(90)
async def test_replayed_and_tampered_srtp_and_srtcp_each_count_once_as_peer_rejected(
    engine,
) -> None:
    async with MiniRoom(engine, "r1") as room:
        alice = TestPeer("alice", audio_hz=440, video=True)
        bob = TestPeer("bob", audio_hz=660)
        await asyncio.wait_for(room.join(alice), 15)
        await asyncio.wait_for(room.join(bob), 15)
        await wait_until(
            lambda: ("alice", "video") in bob.receivers and ("alice", "audio") in bob.receivers,
            20,
            what="bob to receive alice's media",
        )
        video = bob.receivers[("alice", "video")]
        assert await video.wait_frames(10, 20), bob.describe_receivers()

        # Alice's ICE transport: what aiortc's DTLS transport sends SRTP/SRTCP through.
        dtls = alice.pc.getTransceivers()[0].sender.transport
        ice = dtls.transport
        original = ice._send
        rtp: list[bytes] = []
        rtcp: list[bytes] = []

        async def capture(data: bytes) -> None:
            if data and 128 <= data[0] <= 191:
                (rtcp if _is_rtcp(data) else rtp).append(bytes(data))
            await original(data)

        ice._send = capture
        try:
            await wait_until(lambda: len(rtp) >= 6 and len(rtcp) >= 4, 15, what="SRTP and SRTCP")
        finally:
            ice._send = original

        # A normal call refuses nothing: the counter is still while media flows.
        quiet = _rejected(engine)
        await asyncio.sleep(1.0)
        assert _rejected(engine) == quiet, "peer_rejected moved without any attack"

        replayed = rtp[:3] + rtcp[:2]
        tampered = []
        for d in rtp[3:6] + rtcp[2:4]:
            bad = bytearray(d)
            bad[-1] ^= 0x01  # the tag (or, for SRTCP under AES-GCM, its authenticated index)
            tampered.append(bytes(bad))
        frames = video.frames
        for d in replayed + tampered:
            await original(d)
            await asyncio.sleep(0.01)
        expected = quiet + len(replayed) + len(tampered)
        got = await _settled(engine, expected, 5.0)
        log.info(
            "peer_rejected %d -> %d for %d replayed and %d tampered datagrams",
            quiet,
            got,
            len(replayed),
            len(tampered),
        )
        assert got == expected, (
            f"{len(replayed)} replayed + {len(tampered)} tampered datagrams moved peer_rejected "
            f"by {got - quiet}"
        )

        # The call goes on.
        await asyncio.sleep(1.0)
        assert video.frames > frames, bob.describe_receivers()
        assert alice.pc.connectionState == "connected"
        room.check()
