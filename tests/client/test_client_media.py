"""Two SDK clients in one room, each publishing a sine (different frequencies) and video through
the real server: each hears the other's tone (FFT) and sees its video; room state and events are
right; ``leave`` reaches the other side and ends the remote tracks."""

from __future__ import annotations

import asyncio

import pytest

from helpers.media import dominant_frequencies
from signalling.live_server import LiveServer, MediaClient, wait_until
from visio_media.client import (
    ParticipantJoined,
    ParticipantLeft,
    TrackPublished,
    TrackRemoved,
    TrackUnpublished,
)

pytestmark = [pytest.mark.asyncio(loop_scope="function"), pytest.mark.timeout(60)]

FREQ_A = 440.0
FREQ_B = 660.0


async def test_two_clients_exchange_audio_and_video(server: LiveServer) -> None:
    a = MediaClient(server.ws_url, "alice", audio_hz=FREQ_A, video=True)
    b = MediaClient(server.ws_url, "bob", audio_hz=FREQ_B, video=True)
    try:
        await a.start()
        await b.start()

        # Each receives the other's two tracks, and only those.
        for me, other in ((a, "bob"), (b, "alice")):
            await me.receiver(other, "audio")
            await me.receiver(other, "video")
        for me, other, hz in ((a, "bob", FREQ_B), (b, "alice", FREQ_A)):
            video = me.receivers[(other, "video")]
            audio = me.receivers[(other, "audio")]
            assert await video.wait_frames(20, 20.0), f"{me.identity}: {video.describe()}"
            assert (video.width, video.height) == (320, 240), video.describe()
            assert await audio.wait_frames(100, 20.0), f"{me.identity}: {audio.describe()}"
            # Let the jitter buffer settle, then look at the last second of sound.
            await asyncio.sleep(1.0)
            peak = dominant_frequencies(audio.recent_audio(1.0), audio.sample_rate)[0]
            assert abs(peak - hz) <= 5.0, f"{me.identity} hears {peak:.1f} Hz from {other}"
            assert set(me.receivers) == {(other, "audio"), (other, "video")}

        # Room state: each sees the other with an audio and a video track.
        for me, other in ((a, "bob"), (b, "alice")):
            assert set(me.client.participants) == {other}
            kinds = sorted(t.kind for t in me.client.participants[other].tracks.values())
            assert kinds == ["audio", "video"], me.client.participants
            sources = sorted(t.source for t in me.client.participants[other].tracks.values())
            assert sources == ["camera", "microphone"]
            remote = me.client.remote_tracks
            assert {key[0] for key in remote} == {other}
            assert set(remote) == {
                (other, t) for t in me.client.participants[other].tracks
            }
            assert me.client.connection_state == "connected"
        # alice was there first: she learnt of bob by events; bob found her in `joined`.
        joined = [e for e in a.client.history if isinstance(e, ParticipantJoined)]
        assert [e.participant.identity for e in joined] == ["bob"]
        published = [e for e in a.client.history if isinstance(e, TrackPublished)]
        assert sorted((e.identity, e.track.kind) for e in published) == [
            ("bob", "audio"),
            ("bob", "video"),
        ]
        assert not [e for e in b.client.history if isinstance(e, ParticipantJoined)]

        # bob leaves: alice is told, bob's tracks end at alice's.
        bob_tracks = set(a.client.participants["bob"].tracks)
        mark = len(a.client.history)
        await b.client.leave()
        left = await a.client.wait_for(ParticipantLeft, timeout=10.0, since=mark)
        assert (left.identity, left.reason) == ("bob", "left")
        for kind in ("audio", "video"):
            r = a.receivers[("bob", kind)]
            await wait_until(lambda r=r: r.ended, 5.0, what=f"bob's {kind} ending at alice")
            assert r.error is None, r.error
        assert a.client.participants == {}
        assert a.client.remote_tracks == {}
        unpublished = {
            e.track_id for e in a.client.history[mark:] if isinstance(e, TrackUnpublished)
        }
        assert unpublished == bob_tracks
        removed = {e.track_id for e in a.client.history[mark:] if isinstance(e, TrackRemoved)}
        assert removed == bob_tracks
        assert not a.client.failures and not b.client.failures
        rooms = await server.rooms()
        assert [p["identity"] for p in rooms["r1"]["participants"]] == ["alice"]
    finally:
        await a.close()
        await b.close()
