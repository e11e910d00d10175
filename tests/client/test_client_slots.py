"""Receive slots end to end, SDK clients against the real server (protocol v2): what arrives in
each slot is the participant the server says is there (video by its colour, audio by its
frequency), set_layout moves identities into the video slots, a participant's own tracks are
never in its slots, and a long participant list is paged in before connect() returns."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any

import numpy as np
import pytest

from helpers.media import TrackReceiver, dominant_frequencies
from signalling.live_server import LiveServer, MediaClient, token, wait_until
from visio_media.client import (
    Client,
    ParticipantJoined,
    SlotInfo,
    SlotsChanged,
    Tile,
    TrackReceived,
)

pytestmark = [pytest.mark.timeout(120)]

# MediaClient's video is PatternVideoTrack(seed=len(identity)), whose U plane is constant:
# identities of different lengths are told apart by colour.
PUBLISHERS = {"al": 300.0, "bob": 500.0, "carl": 700.0, "diana": 900.0}


def u_of(identity: str) -> int:
    return (64 + len(identity) * 50) % 256


class SlotViewer:
    """A receive-only SDK client that records, for each video slot, (identity the slot had,
    mean U) of every decoded frame, and keeps each audio slot's recent sound."""

    def __init__(self, server: LiveServer, identity: str, **slots: Any) -> None:
        self.identity = identity
        self.client = Client(server.ws_url, token(identity), **slots)
        self.video: dict[str, collections.deque[tuple[str | None, float]]] = {}
        self.audio: dict[str, TrackReceiver] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.client.on(TrackReceived, self._on_track)

    def _on_track(self, event: TrackReceived) -> None:
        if event.kind == "audio":
            self.audio[event.mid] = TrackReceiver(event.track, ("slot", event.mid)).start()
        else:
            frames: collections.deque[tuple[str | None, float]] = collections.deque(maxlen=50)
            self.video[event.mid] = frames
            self.tasks.append(asyncio.ensure_future(self._read_video(event, frames)))

    async def _read_video(
        self, event: TrackReceived, frames: collections.deque[tuple[str | None, float]]
    ) -> None:
        from aiortc.mediastreams import MediaStreamError

        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await event.track.recv()
                yuv = frame.to_ndarray(format="yuv420p")
                height = frame.height
                u_rows = yuv[height : height + height // 4]
                frames.append((event.track.identity, float(np.mean(u_rows))))

    async def start(self) -> SlotViewer:
        await self.client.connect()
        await self.client.publish()
        return self

    def slot_identities(self, kind: str) -> set[str | None]:
        return {s.identity for s in self.client.slots.values() if s.kind == kind}

    async def wait_video_colours(self, within: float = 15.0) -> None:
        """Every occupied video slot shows, in its last 5 frames, its occupant's colour."""

        def right() -> bool:
            for mid, slot in self.client.slots.items():
                if slot.kind != "video" or slot.identity is None:
                    continue
                last = list(self.video.get(mid, ()))[-5:]
                if len(last) < 5 or any(
                    who != slot.identity or abs(u - u_of(slot.identity)) > 12 for who, u in last
                ):
                    return False
            return True

        await wait_until(right, within, what=f"{self.identity}: {self.describe()}")

    def describe(self) -> str:
        return repr(
            {
                mid: (s.identity, list(self.video.get(mid, ()))[-3:])
                for mid, s in self.client.slots.items()
                if s.kind == "video"
            }
        )

    async def close(self) -> None:
        await self.client.close()
        for task in self.tasks:
            task.cancel()
        results = await asyncio.gather(*self.tasks, return_exceptions=True)
        for r in self.audio.values():
            await r.stop()
        failed = [r for r in results if isinstance(r, Exception)]
        assert not failed, failed


def replay(events: list[Any]) -> dict[str, SlotInfo]:
    slots: dict[str, SlotInfo] = {}
    for e in events:
        if isinstance(e, SlotsChanged):
            if e.full:
                slots = {}
            slots.update({s.mid: s for s in e.slots})
    return slots


async def test_each_slot_carries_the_participant_the_slot_events_name(
    server: LiveServer,
) -> None:
    publishers = [
        MediaClient(server.ws_url, name, audio_hz=hz, video=True)
        for name, hz in list(PUBLISHERS.items())[:3]
    ]
    viewer = SlotViewer(server, "viewer", video_slots=3, audio_slots=3)
    try:
        for p in publishers:
            await p.start()
        await viewer.start()
        assert (viewer.client.video_slots, viewer.client.audio_slots) == (3, 3)
        names = {p.identity for p in publishers}
        await wait_until(
            lambda: (
                viewer.slot_identities("video") == names
                and viewer.slot_identities("audio") == names
            ),
            20.0,
            what=f"every publisher in the viewer's slots: {viewer.client.slots}",
        )
        # One TrackReceived per slot line, for the slots the server described.
        received = [e for e in viewer.client.history if isinstance(e, TrackReceived)]
        assert sorted(e.mid for e in received) == sorted(viewer.client.slots)
        assert sorted(e.kind for e in received) == ["audio"] * 3 + ["video"] * 3
        # The events tell the same story as client.slots, and the tracks follow it.
        assert replay(viewer.client.history) == viewer.client.slots
        for e in received:
            slot = viewer.client.slots[e.mid]
            assert (e.track.identity, e.track.track_id) == (slot.identity, slot.track_id)
        # What arrives is who the slot says: colour per video slot, tone per audio slot.
        await viewer.wait_video_colours()
        for r in viewer.audio.values():
            assert await r.wait_frames(100, 15.0), r.describe()
        await asyncio.sleep(1.0)
        for mid, r in viewer.audio.items():
            who = viewer.client.slots[mid].identity
            assert who is not None
            peak = dominant_frequencies(r.recent_audio(1.0), r.sample_rate)[0]
            assert abs(peak - PUBLISHERS[who]) <= 5.0, (mid, who, peak)
        # Own tracks are never in own slots (publishers receive with the default counts).
        for p in publishers:
            others = names - {p.identity}
            await wait_until(
                lambda p=p, others=others: (
                    {s.identity for s in p.client.slots.values() if s.identity} == others
                ),
                15.0,
                what=f"{p.identity}'s slots: {p.client.slots}",
            )
            seen = {
                s.identity for e in p.client.history if isinstance(e, SlotsChanged) for s in e.slots
            }
            assert p.identity not in seen, (p.identity, seen)
        assert not viewer.client.failures
    finally:
        await viewer.close()
        for p in publishers:
            await p.close()


async def test_set_layout_chooses_who_is_in_the_video_slots(server: LiveServer) -> None:
    # Video only: no speakers, so only the layout decides.
    publishers = [MediaClient(server.ws_url, name, video=True) for name in PUBLISHERS]
    viewer = SlotViewer(server, "viewer", video_slots=2, audio_slots=0)
    try:
        for p in publishers:
            await p.start()
        await viewer.start()
        assert (viewer.client.video_slots, viewer.client.audio_slots) == (2, 0)
        assert all(s.kind == "video" for s in viewer.client.slots.values())
        await wait_until(
            lambda: None not in viewer.slot_identities("video"),
            20.0,
            what=f"two publishers in the viewer's slots: {viewer.client.slots}",
        )

        async def layout_gives(wanted: set[str], **layout: Any) -> None:
            await viewer.client.set_layout(**layout)
            await wait_until(
                lambda: viewer.slot_identities("video") == wanted,
                15.0,
                what=f"{layout} -> {wanted}: {viewer.client.slots}",
            )
            await viewer.wait_video_colours()

        await layout_gives({"carl", "diana"}, tiles=[("carl", "camera"), Tile("diana")])
        mark = viewer.client.event_count
        await layout_gives({"al", "bob"}, tiles=["al"], pinned="bob")
        changed = [e for e in viewer.client.history[mark:] if isinstance(e, SlotsChanged)]
        assert changed and not any(e.full for e in changed)
        await layout_gives(
            {"bob", "diana"}, tiles=[Tile("diana", width=640, height=360), Tile("bob")]
        )
        # Someone not in the room is skipped, not an error.
        await layout_gives({"al", "carl"}, tiles=["nobody", "carl", "al"])
        assert replay(viewer.client.history) == viewer.client.slots
        assert not viewer.client.failures
    finally:
        await viewer.close()
        for p in publishers:
            await p.close()


async def test_a_long_participant_list_is_paged_in_before_connect_returns(
    server: LiveServer,
) -> None:
    crowd = [Client(server.ws_url, token(f"idle{i:03d}")) for i in range(60)]
    late = Client(server.ws_url, token("late"))
    later = Client(server.ws_url, token("later"))
    try:
        for c in crowd:
            await c.connect()
        await late.connect()
        assert late.participants_total == 60
        assert sorted(late.participants) == sorted(f"idle{i:03d}" for i in range(60))
        assert not [e for e in late.history if isinstance(e, ParticipantJoined)]
        # Whoever comes after arrives as an event, not in the list.
        await later.connect()
        joined = await late.wait_for(ParticipantJoined, timeout=10.0)
        assert joined.participant.identity == "later"
        assert len(later.participants) == 61 and later.participants_total == 61
        assert not late.failures and not later.failures
    finally:
        await asyncio.gather(*(c.close() for c in [*crowd, late, later]))


async def test_a_video_slot_emptied_and_given_the_same_source_back_has_no_sequence_gap(
    server: LiveServer,
) -> None:
    # Regression: the server kept the slot's numbering offset for a source it had stopped
    # forwarding (slot emptied by a layout), so when the same source came back the sequence
    # numbers jumped over everything it sent meanwhile; aiortc took that for loss and its
    # jitter buffer held every frame back for seconds.
    publishers = [MediaClient(server.ws_url, name, video=True) for name in ("al", "bob")]
    viewer = SlotViewer(server, "viewer", video_slots=2, audio_slots=0)
    try:
        for p in publishers:
            await p.start()
        await viewer.start()
        await viewer.client.set_layout(tiles=["al", "bob"])
        await wait_until(
            lambda: viewer.slot_identities("video") == {"al", "bob"},
            15.0,
            what=f"al and bob in the slots: {viewer.client.slots}",
        )
        await viewer.wait_video_colours()
        (bob_mid,) = [m for m, s in viewer.client.slots.items() if s.identity == "bob"]
        await viewer.client.set_layout(tiles=["al"])
        await wait_until(
            lambda: viewer.client.slots[bob_mid].identity is None,
            15.0,
            what=f"bob's slot emptied: {viewer.client.slots}",
        )
        await asyncio.sleep(1.5)  # bob sends on, nobody forwards it to this slot
        await viewer.client.set_layout(tiles=["al", "bob"])
        await wait_until(
            lambda: viewer.client.slots[bob_mid].identity == "bob",
            15.0,
            what=f"bob back in his slot: {viewer.client.slots}",
        )
        await viewer.wait_video_colours(within=10.0)
        pc = viewer.client.pc
        assert pc is not None
        (transceiver,) = [t for t in pc.getTransceivers() if t.mid == bob_mid]
        stats = await transceiver.receiver.getStats()
        inbound = [s for s in stats.values() if s.type == "inbound-rtp"]
        assert inbound and all(s.packetsLost == 0 for s in inbound), [
            (s.packetsReceived, s.packetsLost) for s in inbound
        ]
        assert not viewer.client.failures
    finally:
        await viewer.close()
        for p in publishers:
            await p.close()


async def test_a_muted_camera_gives_its_video_slot_to_someone_with_video(
    server: LiveServer,
) -> None:
    """In a room larger than one's video slots, a participant who turns the camera off (mute)
    sends nothing: its slot goes to the next publisher, by colour, and comes back on unmute."""
    publishers = [
        MediaClient(server.ws_url, name, video=True) for name in list(PUBLISHERS)[:2]
    ]
    viewer = SlotViewer(server, "viewer", video_slots=1, audio_slots=0)
    try:
        for p in publishers:
            await p.start()
        await viewer.start()
        first, second = (p.identity for p in publishers)
        await wait_until(lambda: viewer.slot_identities("video") == {first}, 15, what="first")
        await viewer.wait_video_colours()
        camera = publishers[0].client.published_track_id(publishers[0].video)
        assert camera is not None
        await publishers[0].client.set_muted(camera, True)
        await wait_until(
            lambda: viewer.slot_identities("video") == {second}, 15, what="the next one"
        )
        await viewer.wait_video_colours()
        await publishers[0].client.set_muted(camera, False)
        await wait_until(lambda: viewer.slot_identities("video") == {first}, 15, what="back")
        await viewer.wait_video_colours()
    finally:
        await viewer.close()
        for p in publishers:
            await p.close()
