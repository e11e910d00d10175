"""Peer lifecycle at the engine API: bad SDP, unknown ids, closing peers in every state."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable

import pytest

from helpers.peers import TestPeer, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="function")

UNKNOWN_PEER_ID = 987_654_321


async def expect_error(aw: Awaitable[object], what: str) -> Exception:
    """``aw`` must raise an ``Exception`` whose message says something."""
    try:
        result = await aw
    except Exception as exc:
        assert str(exc).strip(), f"{what}: {type(exc).__name__} with an empty message"
        return exc
    raise AssertionError(f"{what}: no exception, returned {result!r}")


async def _aiortc_offer(name: str = "probe", **kw) -> tuple[TestPeer, str]:
    peer = TestPeer(name, audio_hz=kw.pop("audio_hz", 440), video=kw.pop("video", True))
    return peer, await peer.make_offer()


def _drop_lines(sdp: str, pattern: str) -> str:
    return "".join(
        line for line in sdp.splitlines(keepends=True) if not re.match(pattern, line.strip())
    )


GARBAGE = {
    "empty": lambda offer: "",
    "prose": lambda offer: "this is not an SDP offer",
    "version_line_only": lambda offer: "v=0\r\n",
    "binary_noise": lambda offer: "".join(chr(c) for c in range(1, 256)) * 8,
    "truncated_in_first_media_section": lambda offer: offer[: offer.index("m=") + 12],
    "no_ice_credentials": lambda offer: _drop_lines(offer, r"a=ice-(ufrag|pwd):"),
    "no_dtls_fingerprint": lambda offer: _drop_lines(offer, r"a=fingerprint:"),
    "broken_media_line": lambda offer: (
        offer.replace("m=audio 9 UDP/TLS/RTP/SAVPF", "m=audio nine", 1)
        if "m=audio 9 UDP/TLS/RTP/SAVPF" in offer
        else re.sub(r"m=audio [^\r\n]*", "m=audio nine", offer, count=1)
    ),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", sorted(GARBAGE))
async def test_create_peer_with_bad_sdp_raises_a_clear_error_and_creates_nothing(
    engine, case
) -> None:
    peer, offer = await _aiortc_offer()
    try:
        bad = GARBAGE[case](offer)
        assert bad != offer
        exc = await expect_error(
            engine.create_peer(room="r1", identity="mallory", offer_sdp=bad), f"{case} SDP"
        )
        # The message may reach a client: no memory addresses in it.
        assert not re.search(r"0x[0-9a-fA-F]{8,}", str(exc)), f"address leaked: {exc!r}"
        stats = engine.stats_snapshot()
        assert stats["peers"] == 0, stats
        assert stats["rooms"] == 0, stats

        # The engine still accepts a good offer afterwards.
        peer_id, answer = await engine.create_peer(room="r1", identity="alice", offer_sdp=offer)
        assert "a=ice-ufrag:" in answer and "a=fingerprint:" in answer
        assert engine.stats_snapshot()["peers"] == 1
        await engine.close_peer(peer_id)
        assert engine.stats_snapshot()["peers"] == 0
    finally:
        await peer.close()


@pytest.mark.timeout(30)
async def test_close_peer_of_an_unknown_id_raises(engine) -> None:
    await expect_error(engine.close_peer(UNKNOWN_PEER_ID), "close_peer(unknown id)")
    assert engine.stats_snapshot()["peers"] == 0


@pytest.mark.timeout(30)
async def test_commands_for_an_unknown_peer_raise(engine) -> None:
    peer, offer = await _aiortc_offer()
    try:
        calls = {
            "apply_offer": lambda: engine.apply_offer(UNKNOWN_PEER_ID, offer),
            "apply_answer": lambda: engine.apply_answer(UNKNOWN_PEER_ID, offer),
            "set_layout": lambda: engine.set_layout(UNKNOWN_PEER_ID, [1], automatic=False),
        }
        for name, call in calls.items():
            await expect_error(call(), f"{name}(unknown peer)")
        assert engine.stats_snapshot()["peers"] == 0
    finally:
        await peer.close()


@pytest.mark.timeout(30)
async def test_a_layout_naming_unknown_tracks_is_ignored_and_keeps_the_peer(engine) -> None:
    peer, offer = await _aiortc_offer()
    try:
        peer_id, _ = await engine.create_peer("r1", "alice", offer, video_slots=2, audio_slots=1)
        # Tracks may leave between a client's layout and the engine reading it: not an error.
        await engine.set_layout(peer_id, [UNKNOWN_PEER_ID, 12345], automatic=False)
        assert engine.stats_snapshot()["peers"] == 1
        await engine.close_peer(peer_id)
    finally:
        await peer.close()


@pytest.mark.timeout(30)
async def test_a_peer_that_never_does_ice_can_be_closed(engine) -> None:
    events = engine.listen()
    peer, offer = await _aiortc_offer()
    try:
        # The answer is never given to aiortc, so no STUN/DTLS ever reaches the engine.
        peer_id, answer = await engine.create_peer(room="r1", identity="alice", offer_sdp=offer)
        assert isinstance(peer_id, int)
        assert "a=ice-ufrag:" in answer
        stats = engine.stats_snapshot()
        assert stats["peers"] == 1 and stats["rooms"] == 1, stats
        await engine.close_peer(peer_id)
        stats = engine.stats_snapshot()
        assert stats["peers"] == 0, stats
        await wait_until(lambda: engine.stats_snapshot()["rooms"] == 0, 5, what="room removed")
        await expect_error(engine.close_peer(peer_id), "close_peer(already closed)")
        seen = []
        while not events.empty():
            seen.append(events.get_nowait())
        assert not any(type(e).__name__ == "PeerConnected" for e in seen), seen
    finally:
        await peer.close()


@pytest.mark.timeout(30)
async def test_closing_a_peer_emits_peer_closed_once(engine) -> None:
    events = engine.listen()
    peer, offer = await _aiortc_offer()
    try:
        peer_id, _ = await engine.create_peer(room="r1", identity="alice", offer_sdp=offer)
        await engine.close_peer(peer_id)
        seen = []

        async def until_closed():
            while True:
                ev = await events.get()
                seen.append(ev)
                if type(ev).__name__ == "PeerClosed" and ev.peer_id == peer_id:
                    return ev

        closed = await asyncio.wait_for(until_closed(), 5)
        assert isinstance(closed.reason, str)
        await asyncio.sleep(0.3)
        while not events.empty():
            seen.append(events.get_nowait())
        closes = [e for e in seen if type(e).__name__ in ("PeerClosed", "PeerFailed")]
        assert len(closes) == 1, seen
    finally:
        await peer.close()


@pytest.mark.timeout(60)
async def test_a_connected_publisher_that_closes_unpublishes_its_tracks(engine) -> None:
    from helpers.peers import MiniRoom

    async with MiniRoom(engine, "r1") as room:
        alice = TestPeer("alice", audio_hz=440, video=True)
        await asyncio.wait_for(room.join(alice), 15)
        connected = await room.wait_event(
            lambda e: type(e).__name__ == "PeerConnected" and e.peer_id == alice.peer_id, 15
        )
        assert connected.srtp_profile, connected
        await wait_until(
            lambda: len([e for _, e in room.events if type(e).__name__ == "TrackPublished"]) >= 2,
            15,
            what=f"two TrackPublished events (events: {[e for _, e in room.events]})",
        )
        published = {e.track_id: e for _, e in room.events if type(e).__name__ == "TrackPublished"}
        assert {e.kind for e in published.values()} == {"audio", "video"}, published
        assert all(e.peer_id == alice.peer_id and e.mid for e in published.values()), published
        mids = {s.mid for s in _offer_sections(alice)}
        assert {e.mid for e in published.values()} <= mids, (published, mids)

        mark = len(room.events)
        await room.leave(alice)
        await room.wait_event(
            lambda e: type(e).__name__ == "PeerClosed" and e.peer_id == alice.peer_id,
            5,
            since=mark,
        )
        await wait_until(
            lambda: (
                {
                    e.track_id
                    for _, e in room.events[mark:]
                    if type(e).__name__ == "TrackUnpublished"
                }
                >= set(published)
            ),
            5,
            what=f"TrackUnpublished for {sorted(published)} "
            f"(events: {[e for _, e in room.events[mark:]]})",
        )
        assert engine.stats_snapshot()["peers"] == 0


def _offer_sections(peer: TestPeer):
    from helpers.peers import parse_sdp

    return parse_sdp(peer.offer_sdp)[1]


@pytest.mark.timeout(30)
async def test_a_stopped_engine_closes_every_fd_and_thread_once_dropped() -> None:
    import gc

    from helpers.engines import make_engine
    from helpers.resources import Snapshot, new_fds, new_threads, still_open, still_running

    gc.collect()
    before = Snapshot.take()
    engine = make_engine()
    await engine.start()
    started = Snapshot.take()
    opened, threads = new_fds(before, started), new_threads(before, started)
    assert any(t.startswith("socket:") for t in opened.values()), opened
    assert threads, "engine.start() started no native thread"
    await engine.stop()
    assert not still_running(threads), still_running(threads)
    del engine
    gc.collect()
    assert not still_open(opened), f"fds still open after stop() and drop: {still_open(opened)}"
