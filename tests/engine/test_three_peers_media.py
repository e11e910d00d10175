"""Three aiortc peers in one room: everyone decodes everyone else's video and hears their sine.

Each peer publishes a sine at its own frequency plus a 320x240 moving pattern. The test's
MiniRoom gives every peer receive slots (automatic mode: the engine fills them with everyone
else) and answers the engine's offers. Then one peer leaves: the slots that carried it empty,
the others keep receiving each other; finally everyone leaves and the engine stops with nothing
left behind.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from helpers.media import TrackReceiver, dominant_frequencies, rms
from helpers.peers import MiniRoom, TestPeer, wait_until

log = logging.getLogger(__name__)

pytestmark = pytest.mark.asyncio(loop_scope="function")

FREQUENCIES = {"alice": 440.0, "bob": 660.0, "carol": 880.0}
MIN_VIDEO_FRAMES = 20
AUDIO_ANALYSIS_SECONDS = 1.0
FREQUENCY_TOLERANCE_HZ = 5.0


def _expected_keys(me: str) -> list[tuple[str, str]]:
    return [(other, kind) for other in FREQUENCIES if other != me for kind in ("audio", "video")]


def _check_audio(listener: str, receiver: TrackReceiver, sender: str) -> None:
    samples = receiver.recent_audio(AUDIO_ANALYSIS_SECONDS)
    assert samples.size >= int(0.9 * AUDIO_ANALYSIS_SECONDS * receiver.sample_rate), (
        f"{listener} got only {samples.size} samples from {sender}"
    )
    assert rms(samples) > 0.02, f"{listener} hears silence from {sender} (rms {rms(samples):.4f})"
    (peak,) = dominant_frequencies(samples, receiver.sample_rate, 1)
    expected = FREQUENCIES[sender]
    assert abs(peak - expected) <= FREQUENCY_TOLERANCE_HZ, (
        f"{listener} hears {peak:.1f} Hz from {sender}, expected {expected} Hz"
    )


async def _frames_increase(receivers: list[TrackReceiver], seconds: float) -> list[str]:
    """Receivers whose frame count did not grow within ``seconds``."""
    before = {id(r): r.frames for r in receivers}
    await asyncio.sleep(seconds)
    return [r.describe() for r in receivers if r.frames <= before[id(r)]]


@pytest.mark.timeout(120)
async def test_three_peers_receive_each_others_video_and_audio_and_leave_nothing_behind(
    engine_harness,
) -> None:
    engine = engine_harness.engine
    async with MiniRoom(engine, "r1") as room:
        peers = {name: TestPeer(name, audio_hz=hz, video=True) for name, hz in FREQUENCIES.items()}
        for peer in peers.values():
            await asyncio.wait_for(room.join(peer), 15)

        stats = engine.stats_snapshot()
        assert stats["peers"] == 3, stats
        assert stats["rooms"] == 1, stats

        # Every peer gets a receiver for each of the other two peers' audio and video.
        await wait_until(
            lambda: all(k in p.receivers for p in peers.values() for k in _expected_keys(p.name)),
            25,
            what="every peer to be offered the other peers' audio and video: "
            + " | ".join(f"{p.name}: {sorted(p.receivers)}" for p in peers.values()),
        )
        room.check()

        video = [
            (p, p.receivers[(o, "video")])
            for p in peers.values()
            for o, k in _expected_keys(p.name)
            if k == "video"
        ]
        audio = [
            (p, o, p.receivers[(o, "audio")])
            for p in peers.values()
            for o, k in _expected_keys(p.name)
            if k == "audio"
        ]
        results = await asyncio.gather(*(r.wait_frames(MIN_VIDEO_FRAMES, 25) for _, r in video))
        assert all(results), "video did not arrive: " + "; ".join(
            f"{p.name} <- {r.describe()}" for p, r in video
        )
        for p, r in video:
            assert r.width > 0 and r.height > 0, f"{p.name} <- {r.describe()}"
            assert (r.width, r.height) == (320, 240), f"{p.name} <- {r.describe()}"

        # Audio: wait for 2 s of decoded audio per stream, analyse the last second.
        results = await asyncio.gather(*(r.wait_frames(100, 20) for _, _, r in audio))
        assert all(results), "audio did not arrive: " + "; ".join(
            f"{p.name} <- {r.describe()}" for p, _, r in audio
        )
        for p, sender, r in audio:
            _check_audio(p.name, r, sender)

        # The engine saw the three peers connect and publish six tracks.
        connected = {e.peer_id: e for _, e in room.events if type(e).__name__ == "PeerConnected"}
        assert set(connected) == {p.peer_id for p in peers.values()}, room.events
        assert all(e.srtp_profile for e in connected.values()), connected
        published = [e for _, e in room.events if type(e).__name__ == "TrackPublished"]
        assert sorted((e.peer_id, e.kind) for e in published) == sorted(
            (p.peer_id, kind) for p in peers.values() for kind in ("audio", "video")
        ), published
        stats = engine.stats_snapshot()
        for p in peers.values():
            ps = stats["peer_stats"][p.peer_id]
            assert ps["packets_in"] > 0 and ps["packets_out"] > 0, (p.name, ps)
            assert ps["srtp_profile"], (p.name, ps)
        assert stats["packets_in"] > 0 and stats["packets_out"] > 0, stats

        # --- carol leaves -------------------------------------------------------------------
        carol = peers.pop("carol")
        carol_receivers = [
            p.receivers[("carol", k)] for p in peers.values() for k in ("audio", "video")
        ]
        await room.leave(carol)
        await wait_until(
            lambda: engine.stats_snapshot()["peers"] == 2,
            5,
            what="stats peers to drop to 2 after carol left",
        )
        await wait_until(
            lambda: not any(
                ("carol", k) in p.receivers for p in peers.values() for k in ("audio", "video")
            ),
            10,
            what="the slots that carried carol to empty",
        )
        await room.wait_idle(10)
        room.check()
        # Nothing from carol any more; alice and bob still receive each other.
        await asyncio.sleep(0.5)  # packets already in flight
        before = [r.frames for r in carol_receivers]
        still = [
            p.receivers[(o, k)]
            for p in peers.values()
            for o, k in _expected_keys(p.name)
            if o != "carol"
        ]
        stalled = await _frames_increase(still, 3.0)
        assert not stalled, f"media between remaining peers stopped after carol left: {stalled}"
        assert [r.frames for r in carol_receivers] == before, (
            "media from carol still arrives after she left: "
            + "; ".join(r.describe() for r in carol_receivers)
        )
        for p in peers.values():
            _check_audio(p.name, p.receivers[(_other(p.name), "audio")], _other(p.name))

        # --- everyone leaves ---------------------------------------------------------------
        for p in list(peers.values()):
            await room.leave(p)
        await wait_until(
            lambda: engine.stats_snapshot()["peers"] == 0, 5, what="stats peers to reach 0"
        )
        await wait_until(
            lambda: engine.stats_snapshot()["rooms"] == 0,
            5,
            what=f"the empty room to be removed (stats {engine.stats_snapshot()})",
        )
        room.check()

    await engine_harness.stop()
    problems = await engine_harness.leak_report()
    assert not problems, "\n".join(problems)


def _other(name: str) -> str:
    return next(n for n in ("alice", "bob") if n != name)
