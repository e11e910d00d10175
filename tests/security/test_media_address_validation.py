"""A participant cannot point the SFU's media at someone else's address (issue 6, item 7).

Bob, a real aiortc peer in a real call, knows his own ICE credentials (they are in his SDP
exchange). He signs a STUN Binding Request with USE-CANDIDATE and a high PRIORITY and sends it
from a second UDP socket, as if that were his new address. Were the engine to follow it, the
fan-out of the room would go to that socket: a reflection of about ten times his input. The
socket must get at most the STUN answers and our own small checks, no SRTP, while bob's media
keeps flowing to his real address.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from helpers.hostile import HostileSocket, stun_binding_request
from helpers.peers import LOOPBACK, MiniRoom, TestPeer, ice_ufrag_of, parse_sdp, wait_until

log = logging.getLogger(__name__)

pytestmark = pytest.mark.asyncio(loop_scope="function")

FORGED_CHECKS = 5
# What the forged socket may receive: one STUN answer per forged check, and the engine's own
# checks to it (at most one per 500 ms per peer over the ~4 s the test watches), ~100 bytes each.
MAX_STUN_DATAGRAMS = FORGED_CHECKS + 10
MAX_BYTES = MAX_STUN_DATAGRAMS * 150


def _session_value(sdp: str, attr: str) -> str:
    session, sections = parse_sdp(sdp)
    if attr in session:
        return session[attr]
    for s in sections:
        value = s.ice_pwd if attr == "ice-pwd" else s.ice_ufrag
        if value:
            return value
    raise ValueError(f"no a={attr} in SDP")


@pytest.mark.timeout(90)
async def test_a_nomination_signed_with_a_participants_own_credentials_moves_no_media(
    engine,
) -> None:
    async with MiniRoom(engine, "r1") as room:
        alice = TestPeer("alice", audio_hz=440, video=True)
        bob = TestPeer("bob", audio_hz=660)
        await asyncio.wait_for(room.join(alice), 15)
        await asyncio.wait_for(room.join(bob), 15)
        await wait_until(
            lambda: ("alice", "audio") in bob.receivers and ("alice", "video") in bob.receivers,
            20,
            what="bob to receive alice's audio and video",
        )
        receivers = [bob.receivers[("alice", "audio")], bob.receivers[("alice", "video")]]
        ok = await asyncio.gather(*(r.wait_frames(10, 20) for r in receivers))
        assert all(ok), "media did not start: " + bob.describe_receivers()

        assert bob.answer_sdp is not None and bob.offer_sdp is not None
        username = f"{ice_ufrag_of(bob.answer_sdp)}:{ice_ufrag_of(bob.offer_sdp)}"
        server_pwd = _session_value(bob.answer_sdp, "ice-pwd").encode()
        before = dict(engine.stats_snapshot()["drops"])
        frames_before = [r.frames for r in receivers]
        forged = HostileSocket(LOOPBACK)
        try:
            target = tuple(engine.udp_addrs()[0])
            for _ in range(FORGED_CHECKS):
                request = stun_binding_request(
                    username,
                    integrity_key=server_pwd,
                    use_candidate=True,
                    priority=0xFFFFFFFE,
                )
                forged.sendto(request, target)
                await asyncio.sleep(0.4)
            await asyncio.sleep(2.0)
        finally:
            forged.close()

        got = [d for d, _ in forged.received]
        srtp = [d for d in got if d and 128 <= d[0] <= 191]
        answers = [d for d in got if d[:2] == b"\x01\x01"]
        log.info(
            "forged socket got %d datagrams (%d bytes): %d SRTP, %d STUN answers",
            len(got),
            sum(map(len, got)),
            len(srtp),
            len(answers),
        )
        # The forged checks were authentic: the engine answered them.
        assert answers, "the engine did not answer the signed check: the test forged nothing"
        assert srtp == [], f"{len(srtp)} SRTP/SRTCP datagrams went to the forged address"
        assert len(got) <= MAX_STUN_DATAGRAMS, f"{len(got)} datagrams to the forged address"
        assert sum(map(len, got)) <= MAX_BYTES, f"{sum(map(len, got))} bytes"

        # Bob's media kept flowing to his real address, and keeps flowing.
        frames_after = [r.frames for r in receivers]
        assert all(a > b for a, b in zip(frames_after, frames_before, strict=True)), (
            "bob's media stalled: " + bob.describe_receivers()
        )
        await asyncio.sleep(2.0)
        assert all(r.frames > n for r, n in zip(receivers, frames_after, strict=True)), (
            "bob's media stopped: " + bob.describe_receivers()
        )
        assert bob.pc.connectionState == "connected"
        after = dict(engine.stats_snapshot()["drops"])
        held = after.get("unverified_address", 0) - before.get("unverified_address", 0)
        assert held >= FORGED_CHECKS, f"held-back checks counted: {held}"
        room.check()
