"""The issue's SDK acceptance test: two SDK clients in a room of 40 (a real `visio-media serve`
process). The FFT of their audio slots shows the loud speakers' frequencies and never their own;
the slot events match what arrives (audio by frequency, video by colour); set_layout gives a
listener exactly the videos it asks for.

The room: 5 SDK speakers (a sine each at its own frequency, and a video of their own colour;
they receive nothing), 2 SDK listeners (who also speak, a sine and a video of their own), and
33 load-generator participants publishing quiet audio (RFC 6464 level -127) and receiving 3
audio + 2 video slots each, so the server ranks 40 audio tracks for 40 receivers. Who is loud
changes twice during the test, and the slots have to follow.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from helpers.crowd import QuietCrowd
from helpers.load_server import SECRET, server_process
from helpers.media import (
    PatternVideoTrack,
    SineAudioTrack,
    TrackReceiver,
    dominant_frequencies,
    rms,
)
from helpers.peers import wait_until
from visio_media.auth import mint_token
from visio_media.client import Client, SlotInfo, SlotsChanged, TrackReceived

pytestmark = [pytest.mark.timeout(150)]

ROOM = "forty"
ROOM_SIZE = 40
AUDIO_SLOTS, VIDEO_SLOTS = 3, 2
LOUD, SILENT = 0.25, 0.0  # sine amplitudes (0.25: about -15 dBov; 0: level -127)
# identity -> (sine Hz, video seed). Multiples of 50 Hz fill each 20 ms frame with whole periods,
# so every loud voice has the same level, frame after frame.
SPEAKERS = {
    "s1": (300.0, 1),
    "s2": (450.0, 2),
    "s3": (600.0, 3),
    "s4": (750.0, 4),
    "s5": (900.0, 5),
}
LISTENERS = {"lis-a": (1050.0, 6), "lis-b": (1200.0, 7)}
PEOPLE = SPEAKERS | LISTENERS
CROWD = ROOM_SIZE - len(PEOPLE)
FREQ_TOLERANCE_HZ = 5.0
# Audio is compared over the last second, in quarters, once the slot has not changed for this
# long; a clean tone of someone else is a failure once the slot has been stable for longer.
STABLE_SECONDS = 1.6
WRONG_AFTER_SECONDS = 6.0
FFT_SECONDS = 1.0
CHUNKS = 4
AUDIO_RATE = 48_000
LOUD_RMS = 0.05  # a loud sine (amplitude 0.25) arrives with an rms of about 0.125
QUIET_RMS = 0.01
# A slot whose last decoded frame is older than this is not flowing (20 ms frames).
FLOWING_SECONDS = 0.5
# What a phase's slots may still show of the previous phase, once who speaks has changed.
SETTLE_SECONDS = 2.0


def colour(seed: int) -> tuple[float, float]:
    """The (U, V) of PatternVideoTrack(seed=seed): its chroma planes are constant."""
    return float((64 + seed * 50) % 256), float((192 - seed * 30) % 256)


def colour_owner(u: float, v: float) -> str | None:
    """The person whose video colour this is (within 20 of its U/V), or None."""

    def distance(person: str) -> float:
        cu, cv = colour(PEOPLE[person][1])
        return float(np.hypot(u - cu, v - cv))

    best = min(PEOPLE, key=distance)
    return best if distance(best) <= 20.0 else None


@dataclass
class Person:
    """An SDK client that speaks (a sine whose amplitude can change) and shows its colour; a
    listener also records what its slots carry."""

    identity: str
    client: Client
    voice: SineAudioTrack
    video: PatternVideoTrack
    audio: dict[str, TrackReceiver] = field(default_factory=dict)
    # mid -> (slot identity when the frame was decoded, owner of the frame's colour)
    frames: dict[str, collections.deque[tuple[str | None, str | None]]] = field(
        default_factory=dict
    )
    # mid -> when its occupant last changed (time.monotonic())
    changed_at: dict[str, float] = field(default_factory=dict)
    # (time, {mid: identity}) of the audio slots after every SlotsChanged
    audio_states: list[tuple[float, dict[str, str | None]]] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def make(
        cls, url: str, identity: str, *, loud: bool, video_slots: int, audio_slots: int
    ) -> Person:
        hz, seed = PEOPLE[identity]
        client = Client(
            url,
            mint_token(SECRET, identity=identity, room=ROOM),
            video_slots=video_slots,
            audio_slots=audio_slots,
        )
        voice = SineAudioTrack(hz, amplitude=LOUD if loud else SILENT)
        video = PatternVideoTrack(width=160, height=120, fps=10.0, seed=seed)
        person = cls(identity, client, voice, video)
        client.on(TrackReceived, person._on_track)
        client.on(SlotsChanged, person._on_slots)
        return person

    def speak(self, loud: bool) -> None:
        self.voice.amplitude = LOUD if loud else SILENT

    def _on_track(self, event: TrackReceived) -> None:
        if event.kind == "audio":
            self.audio[event.mid] = TrackReceiver(event.track, ("slot", event.mid)).start()
        else:
            frames: collections.deque[tuple[str | None, str | None]] = collections.deque(maxlen=30)
            self.frames[event.mid] = frames
            self.tasks.append(asyncio.ensure_future(self._read_video(event, frames)))

    def _on_slots(self, event: SlotsChanged) -> None:
        now = time.monotonic()
        for s in event.slots:
            self.changed_at[s.mid] = now  # restated or changed: either way, start afresh
        self.audio_states.append((now, self.slot_map("audio")))

    async def _read_video(
        self, event: TrackReceived, frames: collections.deque[tuple[str | None, str | None]]
    ) -> None:
        from aiortc.mediastreams import MediaStreamError

        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await event.track.recv()
                yuv = frame.to_ndarray(format="yuv420p")
                h = frame.height
                u = float(np.mean(yuv[h : h + h // 4]))
                v = float(np.mean(yuv[h + h // 4 : h + h // 2]))
                frames.append((event.track.identity, colour_owner(u, v)))

    def slot_map(self, kind: str) -> dict[str, str | None]:
        return {m: s.identity for m, s in sorted(self.client.slots.items()) if s.kind == kind}

    def heard(self) -> set[str | None]:
        return set(self.slot_map("audio").values())

    def seen(self) -> set[str | None]:
        return set(self.slot_map("video").values())

    async def start(self) -> Person:
        await self.client.connect()
        await self.client.publish(self.voice, self.video)
        return self

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.close()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for r in self.audio.values():
            await r.stop()
        self.voice.stop()
        self.video.stop()


def replay(events: Iterable[object]) -> dict[str, SlotInfo]:
    slots: dict[str, SlotInfo] = {}
    for e in events:
        if isinstance(e, SlotsChanged):
            if e.full:
                slots = {}
            slots.update({s.mid: s for s in e.slots})
    return slots


def tone_chunks(samples: np.ndarray) -> list[tuple[float, float]]:
    """(peak Hz, rms) of each CHUNKS-th of ``samples`` (peak 0 for digital silence)."""
    out = []
    for chunk in np.array_split(samples, CHUNKS):
        peaks = dominant_frequencies(chunk, AUDIO_RATE)
        out.append((peaks[0] if peaks else 0.0, rms(chunk)))
    return out


def is_tone(chunks: list[tuple[float, float]], hz: float) -> bool:
    return all(abs(peak - hz) <= FREQ_TOLERANCE_HZ and level > LOUD_RMS for peak, level in chunks)


async def hears_by_frequency(
    listener: Person,
    loud: set[str],
    *,
    exactly: set[str] | None = None,
    silent: frozenset[str] = frozenset(),
    since: float = 0.0,
    within: float = 20.0,
) -> dict[str, float]:
    """Waits until every audio slot of ``listener`` is filled with one of ``loud`` (or, with
    ``exactly``, the slots hold exactly that set) and has not changed for STABLE_SECONDS
    (``since``: when someone's voice last changed counts as a change too); then the FFT peak of
    each slot's last second is, in each quarter of it, the frequency of the identity the latest
    slot event names (±5 Hz), or, for an identity in ``silent``, the slot is quiet.

    Until a slot has been stable for WRONG_AFTER_SECONDS its last second may still hold what
    arrived before the change (the way through encoder, network, jitter buffer and decoder
    takes a while on a busy machine): it is measured again. After that, a clean tone of
    someone else fails at once. The listener's own tone fails at once, in any quarter.
    Returns {identity: peak Hz}."""
    own_hz = PEOPLE[listener.identity][0]
    allowed = loud | silent
    deadline = time.monotonic() + within
    last = ""
    while time.monotonic() < deadline:
        now = time.monotonic()
        slots = listener.slot_map("audio")
        who = set(slots.values())
        stable_for = min([now - since] + [now - listener.changed_at.get(m, now) for m in slots])
        right = None not in who and who <= allowed and (exactly is None or who == exactly)
        if not right or stable_for < STABLE_SECONDS:
            last = f"slots {slots} (want {sorted(exactly or loud)}), stable {stable_for:.1f} s"
            await asyncio.sleep(0.1)
            continue
        heard: dict[str, list[tuple[float, float]]] = {}
        for mid, identity in slots.items():
            assert identity is not None
            receiver = listener.audio[mid]
            samples = receiver.recent_audio(FFT_SECONDS)
            if samples.size < 0.9 * FFT_SECONDS * AUDIO_RATE:
                break
            age = now - (receiver.last_frame_at or 0.0)
            if age > FLOWING_SECONDS:
                last = f"slot {mid} ({identity}): no audio for {age:.1f} s ({receiver.describe()})"
                break
            heard[identity] = chunks = tone_chunks(samples)
            own = [
                peak
                for peak, level in chunks
                if abs(peak - own_hz) <= FREQ_TOLERANCE_HZ and level > LOUD_RMS
            ]
            assert not own, f"{listener.identity} hears its own voice in slot {mid}: {chunks}"
        if len(heard) < len(slots):
            last = last if "no audio" in last else f"slots {slots}: not enough audio yet"
            await asyncio.sleep(0.1)
            continue
        if any(listener.changed_at.get(m, 0.0) > now for m in slots):
            continue  # a slot changed while we measured: measure again
        wrong = {
            identity: chunks
            for identity, chunks in heard.items()
            if not (
                all(level < QUIET_RMS for _, level in chunks)
                if identity in silent
                else is_tone(chunks, PEOPLE[identity][0])
            )
        }
        if not wrong:
            return {
                i: float(np.median([p for p, _ in c])) for i, c in heard.items() if i not in silent
            }
        last = f"slots {slots}: (peak Hz, rms) by quarter of the last second: {wrong}"
        someone_else = [
            i
            for i, chunks in wrong.items()
            if any(is_tone(chunks, hz) for p, (hz, _) in PEOPLE.items() if p != i)
        ]
        assert not (someone_else and stable_for >= WRONG_AFTER_SECONDS), (
            f"{listener.identity}: a slot carries someone else's tone: {last}"
        )
        await asyncio.sleep(0.1)
    raise AssertionError(f"{listener.identity}: audio slots never settled: {last}")


async def sees_by_colour(
    viewer: Person, allowed: set[str], *, exactly: set[str] | None = None, within: float = 30.0
) -> None:
    """Waits until the video slots hold ``exactly`` (or are all filled from ``allowed``) and the
    last 5 decoded frames of each show the colour of the identity the slot events name.

    The limit is generous: on a starved machine the kernel may drop packets for the test's
    aiortc peers (one event loop for all of them); aiortc asks for a lost packet once, and if
    that is lost too its jitter buffer waits for 128 more packets (about 13 s at 10 frames/s)
    before it asks for a keyframe."""

    def problem() -> str | None:
        seen = viewer.seen()
        if None in seen or not seen <= allowed or (exactly is not None and seen != exactly):
            return f"slots hold {seen}"
        for mid, identity in viewer.slot_map("video").items():
            tail = list(viewer.frames.get(mid, ()))[-5:]
            if len(tail) < 5 or any(f != (identity, identity) for f in tail):
                return f"slot {mid} ({identity}): last frames (slot identity, colour) {tail}"
        return None

    await eventually(problem, within, f"{viewer.identity}'s video slots {exactly or allowed}")


async def eventually(problem: Callable[[], object], within: float, what: str) -> None:
    """Polls until ``problem()`` is falsy; AssertionError with its last value otherwise."""
    deadline = time.monotonic() + within
    while found := problem():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}, after {within} s: {found}")
        await asyncio.sleep(0.1)


def quiet_only_when_loud_run_out(
    listener: Person, loud: set[str], start: float, end: float
) -> None:
    """Over [start, end] (nobody changed their voice in it), every state of the listener's
    audio slots carried a quiet participant only if it carried every loud one too."""
    others = loud - {listener.identity}
    states = [s for t, s in listener.audio_states if t <= start][-1:]
    states += [s for t, s in listener.audio_states if start < t <= end]
    assert states, listener.identity
    for state in states:
        who = {i for i in state.values() if i is not None}
        quiet = who - others
        carried = who & others
        if quiet:
            assert carried == others, (
                f"{listener.identity}: a quiet participant {sorted(quiet)} in a slot while only "
                f"{sorted(carried)} of the loud {sorted(others)} are carried: {state}"
            )
        assert listener.identity not in who, (listener.identity, state)


def crowd_hears(crowd: QuietCrowd, loud: set[str], *, exactly: bool) -> list[str]:
    """Problems with the crowd's audio slots (their `slots` frames): filled from ``loud`` only
    (``exactly``: every slot holds one of them and together they are the whole set)."""
    problems = []
    for m in crowd.members:
        who = set(m.slots.identities("audio"))
        n = sum(1 for s in m.slots.slots.values() if s.kind == "audio")
        if n != AUDIO_SLOTS or not who <= loud or len(who) != min(AUDIO_SLOTS, len(loud)):
            problems.append(f"{m.identity}: {sorted(who)} in {n} slots")
        elif exactly and who != loud:
            problems.append(f"{m.identity}: {sorted(who)}, want {sorted(loud)}")
    return problems


async def test_two_sdk_listeners_in_a_room_of_40_hear_the_loud_speakers_their_slots_name(
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    async with server_process(tmp_path, "[room]\nmax_participants = 60\n") as server:
        crowd = QuietCrowd(
            server.ws_url, SECRET, ROOM, CROWD, audio_slots=AUDIO_SLOTS, video_slots=VIDEO_SLOTS
        )
        speakers = {
            name: Person.make(server.ws_url, name, loud=name != "s5", video_slots=0, audio_slots=0)
            for name in SPEAKERS
        }
        listeners = {
            name: Person.make(
                server.ws_url, name, loud=True, video_slots=VIDEO_SLOTS, audio_slots=AUDIO_SLOTS
            )
            for name in LISTENERS
        }
        people = speakers | listeners
        try:
            await crowd.start()
            for p in speakers.values():
                await p.start()
            await asyncio.sleep(1.0)  # the speakers' levels reach the server
            for p in listeners.values():
                await p.start()
            await wait_until(
                lambda: crowd.connected() == CROWD, 20.0, what="the crowd's media connected"
            )
            a, b = listeners["lis-a"], listeners["lis-b"]
            await wait_until(
                lambda: all(len(x.client.participants) == ROOM_SIZE - 1 for x in (a, b)),
                10.0,
                what="each listener knows the 39 others",
            )
            for lis in listeners.values():
                granted = (lis.client.video_slots, lis.client.audio_slots)
                assert granted == (VIDEO_SLOTS, AUDIO_SLOTS), granted
            setup_done = time.monotonic()

            # Phase 1: s1..s4 and both listeners are loud, s5 and the crowd quiet. Each listener
            # has 5 loud others for 3 slots: every slot holds one of them, never itself.
            loud = {"s1", "s2", "s3", "s4", "lis-a", "lis-b"}
            for lis in listeners.values():
                peaks = await hears_by_frequency(lis, loud - {lis.identity})
                assert len(peaks) == AUDIO_SLOTS, (lis.identity, peaks)
                await sees_by_colour(lis, loud - {lis.identity})
            await eventually(
                lambda: crowd_hears(crowd, loud, exactly=False), 15.0, "the crowd hears the loud"
            )
            phase1_end = time.monotonic()
            for lis in listeners.values():
                quiet_only_when_loud_run_out(lis, loud, setup_done, phase1_end)

            # Phase 2: s1..s3 fall silent, s5 speaks up. Each listener now has exactly 3 loud
            # others: s4, s5 and the other listener, and its slots must follow (content too).
            for name in ("s1", "s2", "s3"):
                speakers[name].speak(False)
            speakers["s5"].speak(True)
            changed = time.monotonic()
            loud = {"s4", "s5", "lis-a", "lis-b"}
            for lis in listeners.values():
                others = loud - {lis.identity}
                await hears_by_frequency(lis, others, exactly=others, since=changed)
                await sees_by_colour(lis, others)
            await eventually(
                lambda: crowd_hears(crowd, loud, exactly=False), 15.0, "the crowd follows"
            )
            phase2_end = time.monotonic()
            for lis in listeners.values():
                quiet_only_when_loud_run_out(lis, loud, changed + SETTLE_SECONDS, phase2_end)

            # Phase 3: s4 falls silent too. Two loud others for three slots: the third keeps
            # s4, the most recent speaker (silent now), and never a crowd member who never spoke.
            speakers["s4"].speak(False)
            changed = time.monotonic()
            loud = {"s5", "lis-a", "lis-b"}
            for lis in listeners.values():
                others = loud - {lis.identity}
                await hears_by_frequency(
                    lis, others, exactly=others | {"s4"}, silent=frozenset({"s4"}), since=changed
                )
            await eventually(
                lambda: crowd_hears(crowd, loud, exactly=True), 15.0, "the crowd hears s5, a, b"
            )
            phase3_end = time.monotonic()
            for lis in listeners.values():
                quiet_only_when_loud_run_out(lis, loud, changed + SETTLE_SECONDS, phase3_end)

            # set_layout: a listener asks for specific people's video and gets exactly those.
            await a.client.set_layout(tiles=["s1", "s3"])
            await sees_by_colour(a, set(PEOPLE), exactly={"s1", "s3"})
            await b.client.set_layout(tiles=["lis-a"], pinned="s2")
            await sees_by_colour(b, set(PEOPLE), exactly={"s2", "lis-a"})
            # Asking for oneself gives the next tile instead: own video is never in own slots.
            await a.client.set_layout(tiles=["lis-a", "s5", "s2"])
            await sees_by_colour(a, set(PEOPLE), exactly={"s5", "s2"})

            # The slot events tell the same story as client.slots, never name the listener
            # itself, and the tracks follow them.
            for lis in listeners.values():
                assert replay(lis.client.history) == lis.client.slots
                named = {
                    s.identity
                    for e in lis.client.history
                    if isinstance(e, SlotsChanged)
                    for s in e.slots
                }
                assert lis.identity not in named, (lis.identity, named)
                for mid, track in lis.client.slot_tracks.items():
                    assert track.identity == lis.client.slots[mid].identity
                assert not lis.client.failures, (lis.identity, lis.client.failures)
            received = crowd.received_rtp()
            assert all(n > 0 for n in received.values()), received
            assert not crowd.failures, crowd.failures
            assert not [e for m in crowd.members for e in m.errors]
            for p in people.values():
                assert not p.client.failures, (p.identity, p.client.failures)
        finally:
            for p in people.values():
                await p.close()
            await crowd.close()
    elapsed = time.monotonic() - began
    print(f"room of {ROOM_SIZE}: {elapsed:.1f} s")
