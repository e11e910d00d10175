"""Reconnection against the real server: a participant whose WebSocket drops (no ``leave``)
stays in the room, media flowing, for ``room.reconnect_grace_seconds``; ``join`` with
``resume`` takes the session back (``resumed: true``) without the others noticing; after the
grace period it leaves with reason ``disconnected``.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from signalling.live_server import MediaClient, live_server, start_call, wait_until
from visio_media.client import (
    ClientError,
    Disconnected,
    Event,
    ParticipantJoined,
    ParticipantLeft,
    TrackRemoved,
    TrackUnpublished,
)

pytestmark = [pytest.mark.asyncio(loop_scope="function"), pytest.mark.timeout(60)]


def presence(rooms: dict[str, dict[str, object]]) -> dict[str, bool]:
    participants = rooms["r1"]["participants"]
    assert isinstance(participants, list)
    return {p["identity"]: p["present"] for p in participants}


async def sample_frames(receiver_frames: list[int], get: object, period: float) -> None:
    """Appends ``get()`` every ``period`` s until cancelled."""
    assert callable(get)
    while True:
        receiver_frames.append(get())
        await asyncio.sleep(period)


def of_type(events: list[Event], kind: type[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, kind)]


async def test_resume_within_grace_keeps_media_and_is_invisible_to_others() -> None:
    async with live_server(room__reconnect_grace_seconds=20.0) as server:
        a = MediaClient(server.ws_url, "alice", audio_hz=440.0, video=True)
        b = MediaClient(server.ws_url, "bob", audio_hz=660.0, video=True)
        sampler: asyncio.Task[None] | None = None
        try:
            await start_call(a, b)
            video_at_b = await b.receiver("alice", "video")
            video_at_a = await a.receiver("bob", "video")
            assert await video_at_b.wait_frames(10, 15.0), video_at_b.describe()
            assert await video_at_a.wait_frames(10, 15.0), video_at_a.describe()
            session = a.client.session
            b_mark = b.client.event_count

            samples: list[int] = []
            sampler = asyncio.create_task(sample_frames(samples, lambda: video_at_b.frames, 0.5))

            # Cut alice's socket: no close handshake, no leave.
            a_mark = a.client.event_count
            await a.client.abort()
            await a.client.wait_for(Disconnected, timeout=5.0, since=a_mark)
            assert not a.client.connected
            rooms = await server.rooms()
            deadline = time.monotonic() + 5.0
            while presence(rooms)["alice"] and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                rooms = await server.rooms()
            assert presence(rooms) == {"alice": False, "bob": True}, rooms

            await asyncio.sleep(2.0)  # well inside the grace period; media goes on
            await a.client.resume()
            assert a.client.resumed
            assert a.client.session == session
            assert a.client.connected
            assert await a.client.ping() < 1.0
            assert presence(await server.rooms()) == {"alice": True, "bob": True}
            await asyncio.sleep(1.5)
            sampler.cancel()

            # bob's view: alice's video never stopped, nobody left or joined.
            increases = [b2 - b1 for b1, b2 in itertools.pairwise(samples)]
            assert len(increases) >= 6, samples
            assert all(d > 0 for d in increases), f"frames at bob per 0.5 s: {samples}"
            since_cut = b.client.history[b_mark:]
            assert not of_type(since_cut, ParticipantLeft), since_cut
            assert not of_type(since_cut, ParticipantJoined), since_cut
            assert not of_type(since_cut, TrackRemoved), since_cut
            assert set(b.client.participants) == {"alice"}
            # alice still receives bob, on the same peer connection.
            frames = video_at_a.frames
            assert await video_at_a.wait_frames(frames + 10, 5.0), video_at_a.describe()
            assert not video_at_a.ended and not video_at_b.ended
            assert set(a.client.participants) == {"bob"}
            assert not a.client.failures and not b.client.failures
        finally:
            if sampler is not None:
                sampler.cancel()
            await a.close()
            await b.close()


async def test_resume_catches_up_with_what_happened_meanwhile() -> None:
    """While alice is away, bob unpublishes his video and carol joins with audio: on resume
    alice learns both (from ``joined``), the slot that carried bob's video empties, and the full
    ``slots`` frame sent on resume puts carol's audio in one of hers."""
    async with live_server(room__reconnect_grace_seconds=20.0) as server:
        a = MediaClient(server.ws_url, "alice", audio_hz=440.0)
        b = MediaClient(server.ws_url, "bob", audio_hz=660.0, video=True)
        c = MediaClient(server.ws_url, "carol", audio_hz=880.0)
        try:
            await start_call(a, b)
            bob_video = await a.receiver("bob", "video")
            assert await bob_video.wait_frames(5, 15.0), bob_video.describe()
            bob_video_id = next(
                t.track_id
                for t in a.client.participants["bob"].tracks.values()
                if t.kind == "video"
            )
            a_mark = a.client.event_count
            await a.client.abort()
            await b.client.unpublish(b.video)
            await c.start()

            def carol_publishes_audio() -> bool:
                carol = b.client.participants.get("carol")
                return carol is not None and any(t.kind == "audio" for t in carol.tracks.values())

            await wait_until(carol_publishes_audio, 15.0, what="carol's audio published")
            await a.client.resume()
            after = a.client.history[a_mark:]
            assert [e.participant.identity for e in of_type(after, ParticipantJoined)] == [
                "carol"
            ], after
            assert [(e.identity, e.track_id) for e in of_type(after, TrackUnpublished)] == [
                ("bob", bob_video_id)
            ], after
            await wait_until(
                lambda: ("bob", "video") not in a.receivers,
                5.0,
                what="alice's slot that carried bob's video to empty",
            )
            carol_audio = await a.receiver("carol", "audio", within=10.0)
            assert await carol_audio.wait_frames(25, 10.0), carol_audio.describe()
            assert set(a.client.participants) == {"bob", "carol"}
            assert not a.client.failures
        finally:
            await a.close()
            await b.close()
            await c.close()


async def test_no_resume_within_grace_means_disconnected() -> None:
    grace = 2.0
    async with live_server(room__reconnect_grace_seconds=grace) as server:
        a = MediaClient(server.ws_url, "alice", audio_hz=440.0, video=True)
        b = MediaClient(server.ws_url, "bob")
        try:
            await start_call(b, a)
            video_at_b = await b.receiver("alice", "video")
            assert await video_at_b.wait_frames(5, 15.0), video_at_b.describe()
            mark = b.client.event_count
            cut_at = time.monotonic()
            await a.client.abort()
            left = await b.client.wait_for(ParticipantLeft, timeout=grace + 5.0, since=mark)
            elapsed = time.monotonic() - cut_at
            assert (left.identity, left.reason) == ("alice", "disconnected")
            assert grace - 0.5 <= elapsed <= grace + 3.0, elapsed
            await wait_until(
                lambda: ("alice", "video") not in b.receivers,
                5.0,
                what="bob's slot that carried alice's video to empty",
            )
            assert b.client.remote_tracks == {}
            assert set(b.client.participants) == set()
            rooms = await server.rooms()
            assert presence(rooms) == {"bob": True}
            # Too late to resume.
            with pytest.raises(ClientError) as late:
                await a.client.resume()
            assert late.value.code == "not_found", late.value
        finally:
            await a.close()
            await b.close()
