"""Two SDK clients in one room, each publishing a sine (different frequencies) and video through
the real server: each hears the other's tone (FFT) and sees its video in its receive slots; room
state and events are right; ``leave`` reaches the other side and empties the slots it had."""

from __future__ import annotations

import asyncio

import pytest

from helpers.media import dominant_frequencies
from signalling.live_server import LiveServer, MediaClient, start_call, wait_until
from visio_media.client import (
    ParticipantJoined,
    ParticipantLeft,
    SlotsChanged,
    TrackMuted,
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
        await start_call(a, b)

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
            assert set(remote) == {(other, t) for t in me.client.participants[other].tracks}
            assert me.client.connection_state == "connected"
        # alice was there first: she learnt of bob by events; bob found her in `joined`.
        joined = [e for e in a.client.history if isinstance(e, ParticipantJoined)]
        assert [e.participant.identity for e in joined] == ["bob"]
        # track_published: about bob's two tracks, and about alice's own (how a publisher
        # learns its track ids).
        published = [e for e in a.client.history if isinstance(e, TrackPublished)]
        assert sorted((e.identity, e.track.kind) for e in published) == [
            ("alice", "audio"),
            ("alice", "video"),
            ("bob", "audio"),
            ("bob", "video"),
        ]
        for me, other in ((a, b), (b, a)):
            mine = me.client.local_participant
            assert mine is not None
            assert mine.tracks == other.client.participants[me.identity].tracks
            for track in me.local_tracks:
                track_id = me.client.published_track_id(track)
                assert track_id is not None and mine.tracks[track_id].kind == track.kind
        assert not [e for e in b.client.history if isinstance(e, ParticipantJoined)]

        # bob leaves: alice is told, the slots bob was in empty; her slot tracks live on.
        bob_tracks = set(a.client.participants["bob"].tracks)
        bob_slots = {mid for mid, s in a.client.slots.items() if s.identity == "bob"}
        assert len(bob_slots) == 2
        slot_tracks = a.client.slot_tracks
        mark = a.client.event_count
        await b.client.leave()
        left = await a.client.wait_for(ParticipantLeft, timeout=10.0, since=mark)
        assert (left.identity, left.reason) == ("bob", "left")
        await wait_until(
            lambda: all(a.client.slots[mid].empty for mid in bob_slots),
            10.0,
            what=f"bob's slots emptying at alice: {a.client.slots}",
        )
        emptied = {
            s.mid
            for e in a.client.history[mark:]
            if isinstance(e, SlotsChanged)
            for s in e.slots
            if s.empty
        }
        assert bob_slots <= emptied
        assert a.client.participants == {}
        assert a.client.remote_tracks == {}
        assert a.client.slot_tracks == slot_tracks
        assert all(t.readyState == "live" for t in slot_tracks.values())
        assert all(t.identity is None for t in slot_tracks.values())
        unpublished = {
            e.track_id for e in a.client.history[mark:] if isinstance(e, TrackUnpublished)
        }
        assert unpublished == bob_tracks
        assert not [e for e in a.client.history[mark:] if isinstance(e, TrackRemoved)]
        assert not a.client.failures and not b.client.failures
        rooms = await server.rooms()
        assert [p["identity"] for p in rooms["r1"]["participants"]] == ["alice"]
    finally:
        await a.close()
        await b.close()


async def test_late_joiner_receives_tracks_already_published(server: LiveServer) -> None:
    """bob joins a room where alice's tracks are already published: his slots are filled with
    hers, and he must receive them."""
    a = MediaClient(server.ws_url, "alice", audio_hz=FREQ_A, video=True)
    b = MediaClient(server.ws_url, "bob", audio_hz=FREQ_B, video=True)
    try:
        await a.start()
        rooms_deadline = asyncio.get_running_loop().time() + 15.0
        while True:
            rooms = await server.rooms()
            tracks = rooms["r1"]["participants"][0]["tracks"]
            if len(tracks) == 2 or asyncio.get_running_loop().time() > rooms_deadline:
                break
            await asyncio.sleep(0.1)
        assert len(tracks) == 2, rooms
        await b.start()
        for me, other in ((b, "alice"), (a, "bob")):
            for kind in ("audio", "video"):
                r = await me.receiver(other, kind, within=10.0)
                assert await r.wait_frames(20, 10.0), f"{me.identity}: {r.describe()}"
        assert not a.client.failures and not b.client.failures
    finally:
        await a.close()
        await b.close()


async def test_unpublish_and_mute(server: LiveServer) -> None:
    a = MediaClient(server.ws_url, "alice", audio_hz=FREQ_A, video=True)
    b = MediaClient(server.ws_url, "bob")
    try:
        await start_call(b, a)
        audio = await b.receiver("alice", "audio")
        video = await b.receiver("alice", "video")
        assert await video.wait_frames(10, 15.0), video.describe()
        ids = {t.kind: t.track_id for t in b.client.participants["alice"].tracks.values()}
        # The publisher knows them too.
        assert a.client.published_track_id(a.audio) == ids["audio"]
        assert a.client.published_track_id(a.video) == ids["video"]

        # Mute: an announcement to the others.
        mark = b.client.event_count
        await a.client.set_muted(ids["audio"], True)
        muted = await b.client.wait_for(TrackMuted, timeout=5.0, since=mark)
        assert (muted.identity, muted.track_id, muted.muted) == ("alice", ids["audio"], True)
        assert b.client.participants["alice"].tracks[ids["audio"]].muted

        # Unpublish the video: bob is told, his video slot empties, the audio goes on.
        mark = b.client.event_count
        await a.client.unpublish(a.video)
        gone = await b.client.wait_for(TrackUnpublished, timeout=10.0, since=mark)
        assert (gone.identity, gone.track_id) == ("alice", ids["video"])
        await wait_until(
            lambda: ("alice", "video") not in b.receivers,
            5.0,
            what=f"alice's video leaving bob's slots: {b.client.slots}",
        )
        assert not video.ended  # the slot's track lives on, empty
        frames = audio.frames
        assert await audio.wait_frames(frames + 25, 5.0), audio.describe()
        assert set(b.client.remote_tracks) == {("alice", ids["audio"])}
        assert set(b.client.participants["alice"].tracks) == {ids["audio"]}
        me = a.client.local_participant
        assert me is not None
        await wait_until(
            lambda: set(me.tracks) == {ids["audio"]},
            5.0,
            what="alice learning that her video is unpublished",
        )
        assert not a.client.failures and not b.client.failures
    finally:
        await a.close()
        await b.close()


async def test_glare_server_yields_and_sends_a_fresh_offer(server: LiveServer) -> None:
    """protocol.md "Glare": bob's offer crosses the server's slot offer to him (he leaves the
    server offer unanswered, as a client with its own offer in flight does); the server must
    answer bob, then send a fresh offer, so that bob still ends up receiving alice. Several
    rounds, because the server's handling is timing-sensitive."""
    rounds = 6
    for i in range(rounds):
        room = f"glare-{i}"
        a = MediaClient(server.ws_url, f"alice{i}", room, audio_hz=FREQ_A)
        b = MediaClient(server.ws_url, f"bob{i}", room, audio_hz=FREQ_B)
        try:
            await a.start()
            await b.client.connect()
            held: list[str] = []
            answer_offer = b.client._on_server_offer
            b.client._on_server_offer = held.append  # type: ignore[method-assign]
            await b.client.publish()  # the server's slot offer follows its answer
            await wait_until(lambda held=held: bool(held), 10.0, what="the server's offer to bob")
            b.client._on_server_offer = answer_offer  # type: ignore[method-assign]
            await b.publish_tracks()  # crosses the unanswered server offer
            r = await b.receiver(a.identity, "audio", within=10.0)
            assert await r.wait_frames(25, 10.0), f"round {i}: {r.describe()}"
            r2 = await a.receiver(b.identity, "audio", within=10.0)
            assert await r2.wait_frames(25, 10.0), f"round {i}: {r2.describe()}"
        finally:
            await a.close()
            await b.close()


async def test_video_publisher_that_started_receive_only_still_decodes_its_video_slots(
    server: LiveServer,
) -> None:
    """Regression: aiortc numbers its codecs its own way in every offer (Opus 96, VP8 97,
    RTX 98). A client whose first offer had audio only was offered its slot lines with VP8 on
    98 — str0m had moved its default VP8 96 away from the client's Opus — and once it published
    video it took 98 for RTX: every packet of its video slots was dropped as RTX from an unknown
    SSRC, no frame decoded. Failed in every run before the fix (VP8 offered on 97/98 now).
    Several rounds, since the order of the offers depends on timing."""
    for round in range(4):
        room = f"r{round}"
        bob = MediaClient(server.ws_url, "bob", room, audio_hz=FREQ_B, video=True)
        alice = MediaClient(server.ws_url, "alice", room, audio_hz=FREQ_A, video=True)
        try:
            # Both receive first; then each publishes, bob right away: his video offer may
            # cross the server's slot offer.
            await start_call(bob, alice)
            video = await bob.receiver(alice.identity, "video")
            assert await video.wait_frames(10, 15.0), f"round {round}: {video.describe()}"
            assert (video.width, video.height) == (320, 240), video.describe()
        finally:
            await alice.close()
            await bob.close()
