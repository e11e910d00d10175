"""The SDK's reading of protocol v2 frames, fed through its own frame reader (JSON text as it
comes off the socket): ``slots`` (full, then changes), the paged participant list, slot lines in
a server offer, and the ``layout`` it writes. End-to-end behaviour against the real server is in
test_client_slots.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiortc import AudioStreamTrack, VideoStreamTrack

from visio_media.client import (
    Client,
    RemoteTrack,
    SlotInfo,
    SlotsChanged,
    Tile,
    slot_lines,
)
from visio_media.client.state import tile_message

pytestmark = [pytest.mark.timeout(30)]


def _client(**kwargs: Any) -> Client:
    return Client("ws://127.0.0.1:9/ws", "unused-token", **kwargs)


def _feed(client: Client, frame: dict[str, Any]) -> None:
    """One text frame from the server, through the reader's dispatch."""
    client._signalling._dispatch(json.dumps(frame))


def _slot(
    mid: str,
    kind: str,
    identity: str | None = None,
    track_id: int | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    return {"mid": mid, "kind": kind, "identity": identity, "track_id": track_id, "source": source}


async def test_slots_frames_update_the_slots_and_the_slot_tracks_follow_their_occupant() -> None:
    client = _client()
    video = RemoteTrack(VideoStreamTrack(), mid="0", slots=client._slots)
    audio = RemoteTrack(AudioStreamTrack(), mid="1", slots=client._slots)
    try:
        assert video.identity is None and video.slot is None
        _feed(
            client,
            {"type": "slots", "full": True, "slots": [_slot("0", "video"), _slot("1", "audio")]},
        )
        assert client.slots == {"0": SlotInfo("0", "video"), "1": SlotInfo("1", "audio")}
        first = client.history[-1]
        assert first == SlotsChanged((SlotInfo("0", "video"), SlotInfo("1", "audio")), True)

        _feed(
            client,
            {"type": "slots", "full": False, "slots": [_slot("0", "video", "bob", 7, "camera")]},
        )
        change = client.history[-1]
        assert change == SlotsChanged((SlotInfo("0", "video", "bob", 7, "camera"),), False)
        assert (video.identity, video.track_id, video.source) == ("bob", 7, "camera")
        assert audio.identity is None and client.slots["1"].empty

        # The same track object follows the next occupant.
        _feed(
            client,
            {
                "type": "slots",
                "full": False,
                "slots": [
                    _slot("0", "video", "carol", 9, "screen_share"),
                    _slot("1", "audio", "bob", 8, "microphone"),
                ],
            },
        )
        assert (video.identity, video.track_id, video.source) == ("carol", 9, "screen_share")
        assert (audio.identity, audio.track_id) == ("bob", 8)
        # A listed slot that did not change is not reported as changed.
        count = client.event_count
        _feed(
            client,
            {
                "type": "slots",
                "full": False,
                "slots": [_slot("1", "audio", "bob", 8, "microphone")],
            },
        )
        assert client.event_count == count

        # A full snapshot replaces what was known (e.g. after a resume).
        _feed(client, {"type": "slots", "full": True, "slots": [_slot("0", "video")]})
        assert client.slots == {"0": SlotInfo("0", "video")}
        assert video.identity is None and audio.identity is None
    finally:
        video.stop()
        audio.stop()
        await client.close()


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "slots", "slots": []},  # no "full"
        {"type": "slots", "full": "no", "slots": []},
        {"type": "slots", "full": False, "slots": {}},
        {"type": "slots", "full": False, "slots": [_slot("0", "data")]},
        {"type": "slots", "full": False, "slots": [{"kind": "video"}]},
        {
            "type": "slots",
            "full": False,
            "slots": [_slot("0", "video", "dan", 1), _slot("1", "audio", 5)],
        },  # identity int
        {"type": "slots", "full": False, "slots": [_slot("0", "video", "dan", True)]},
        {"type": "slots", "full": False, "slots": ["0"]},
    ],
    ids=[
        "no-full",
        "full-str",
        "slots-object",
        "bad-kind",
        "no-mid",
        "identity-int",
        "track-bool",
        "slot-str",
    ],
)
async def test_a_malformed_slots_frame_is_dropped_whole(frame: dict[str, Any]) -> None:
    client = _client()
    try:
        _feed(client, {"type": "slots", "full": True, "slots": [_slot("0", "video", "eve", 3)]})
        before, count = client.slots, client.event_count
        _feed(client, frame)
        assert client.slots == before and client.event_count == count
        assert not client.failures
    finally:
        await client.close()


def _participant(i: int) -> dict[str, Any]:
    return {
        "identity": f"p{i}",
        "name": f"P {i}",
        "tracks": [{"track_id": i, "kind": "audio", "source": "microphone", "muted": False}],
    }


def _joined(first: list[dict[str, Any]], total: int) -> dict[str, Any]:
    return {
        "type": "joined",
        "room": "r1",
        "session": "s1",
        "resumed": False,
        "protocol": 2,
        "participant": {"identity": "me", "name": "me", "tracks": []},
        "participants": first,
        "participants_total": total,
        "ice_servers": [],
        "video_slots": 4,
        "audio_slots": 3,
    }


async def test_paged_participants_are_collected_before_the_join_completes() -> None:
    client = _client()
    everyone = [_participant(i) for i in range(120)]
    joined = _joined(everyone[:50], 120)
    try:
        client._on_joined_reply(joined)  # what the reader does when `joined` arrives
        assert not client._pages_done.is_set()
        _feed(client, {"type": "participants", "participants": everyone[50:100], "more": True})
        assert not client._pages_done.is_set()
        _feed(client, {"type": "participants", "participants": everyone[100:], "more": False})
        assert client._pages_done.is_set()
        client._apply_joined(joined, resumed=False)
        assert sorted(client.participants) == sorted(f"p{i}" for i in range(120))
        assert client.participants["p119"].tracks[119].source == "microphone"
        assert client.participants_total == 120
        assert (client.video_slots, client.audio_slots) == (4, 3)
        # No ParticipantJoined for people who were there before us.
        assert client.history == []
    finally:
        await client.close()


async def test_a_single_page_needs_no_participants_frames() -> None:
    client = _client()
    joined = _joined([_participant(1)], 1)
    try:
        client._on_joined_reply(joined)
        assert client._pages_done.is_set()
        client._apply_joined(joined, resumed=False)
        assert list(client.participants) == ["p1"]
    finally:
        await client.close()


def test_slot_lines_are_the_lines_the_server_sends_on() -> None:
    sdp = (
        "v=0\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=sendonly\r\na=msid:slot 0\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendonly\r\na=msid:slot 1\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:2\r\na=sendonly\r\n"
        "m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=mid:3\r\na=sendonly\r\n"  # rejected
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:4\r\na=inactive\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:5\r\na=recvonly\r\n"
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:6\r\n"
    )
    assert slot_lines(sdp) == {"0": "video", "1": "video", "2": "audio"}


def test_layout_tiles_are_written_as_the_protocol_says() -> None:
    assert tile_message("bob") == {"identity": "bob", "source": "camera"}
    assert tile_message(("bob", "screen_share")) == {"identity": "bob", "source": "screen_share"}
    assert tile_message(Tile("carol", width=640, height=0)) == {
        "identity": "carol",
        "source": "camera",
        "width": 640,
        "height": 0,
    }
    for bad in (
        Tile("x", width=-1),
        Tile("x", height=16385),
        Tile("x", width=True),
        ("a", "b", "c"),
    ):
        with pytest.raises(ValueError):
            tile_message(bad)  # type: ignore[arg-type]


async def test_bad_layouts_and_slot_counts_are_refused_before_anything_is_sent() -> None:
    for bad in (-1, True, 2.0, "3"):
        with pytest.raises(ValueError):
            _client(video_slots=bad)
        with pytest.raises(ValueError):
            _client(audio_slots=bad)
    client = _client(video_slots=0, audio_slots=9)
    assert client.requested_slots == (0, 9)
    try:
        with pytest.raises(ValueError):
            await client.set_layout([Tile(f"p{i}") for i in range(257)])
        with pytest.raises(ValueError):
            await client.set_layout([], pinned=5)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await client.set_layout([Tile("x", width=20000)])
    finally:
        await client.close()
