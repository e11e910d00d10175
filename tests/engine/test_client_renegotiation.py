"""Client-initiated renegotiation: a peer that joined with audio only starts publishing video."""

from __future__ import annotations

import asyncio

import pytest

from helpers.media import PatternVideoTrack, dominant_frequencies
from helpers.peers import MiniRoom, TestPeer, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="function")


@pytest.mark.timeout(90)
async def test_a_track_added_by_client_renegotiation_is_published_and_reaches_the_others(
    engine,
) -> None:
    async with MiniRoom(engine, "r1") as room:
        alice = TestPeer("alice", audio_hz=440)
        bob = TestPeer("bob", audio_hz=660, video=True)
        await asyncio.wait_for(room.join(alice), 15)
        await asyncio.wait_for(room.join(bob), 15)
        await wait_until(
            lambda: ("alice", "audio") in bob.receivers and ("bob", "video") in alice.receivers,
            20,
            what="the initial subscriptions",
        )
        assert await bob.receivers[("alice", "audio")].wait_frames(50, 20)
        assert ("alice", "video") not in bob.receivers

        # Alice adds a camera and renegotiates herself (engine.apply_offer).
        video = PatternVideoTrack(fps=15, seed=7)
        alice.local_tracks.append(video)
        alice.video_track = video
        alice.pc.addTransceiver(video, direction="sendonly")
        mark = len(room.events)
        await room.renegotiate_from_client(alice)

        published = await room.wait_event(
            lambda e: (
                type(e).__name__ == "TrackPublished"
                and e.peer_id == alice.peer_id
                and e.kind == "video"
            ),
            15,
            since=mark,
        )
        assert published.mid, published
        await wait_until(
            lambda: ("alice", "video") in bob.receivers,
            20,
            what=f"bob to be offered alice's new video (receivers {sorted(bob.receivers)})",
        )
        received = bob.receivers[("alice", "video")]
        assert await received.wait_frames(20, 20), received.describe()
        assert (received.width, received.height) == (320, 240), received.describe()

        # Nothing else was disturbed: alice's audio still reaches bob, bob's video alice.
        audio = bob.receivers[("alice", "audio")]
        before = audio.frames, alice.receivers[("bob", "video")].frames
        await asyncio.sleep(1.5)
        assert audio.frames > before[0] and alice.receivers[("bob", "video")].frames > before[1]
        (peak,) = dominant_frequencies(audio.recent_audio(1.0), audio.sample_rate, 1)
        assert abs(peak - 440) <= 5, peak
        room.check()
