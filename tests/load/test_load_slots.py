"""Receive slots checked by source, with the load generator against a real server process:
rooms of 12 and of 150 participants, 4 audio publishers of which 3 speak loudly, 4 video
publishers; everyone asks for 3 audio and 4 video slots. Every synthetic packet carries its
sender's generator client id, so what each slot line carries is read from the packets
themselves, then compared with what the server's `slots` frames say about that line."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from helpers.load_server import SECRET, run_load, server_process
from visio_media.load.runner import LoadOptions, LoadRun, Participant
from visio_media.load.slots import SlotBook, SlotCheck, SlotState, by_identity

pytestmark = [pytest.mark.timeout(120)]

LOUD = {"slots-0-p0", "slots-0-p1", "slots-0-p2"}
QUIET = "slots-0-p3"  # publishes audio (quiet) and video
VIDEO = {"slots-0-p0", "slots-0-p1", "slots-0-p2", "slots-0-p3"}
AUDIO_SLOTS, VIDEO_SLOTS = 3, 4
WINDOW_SECONDS = 2.0


def expected(me: str) -> tuple[set[str], set[str]]:
    """(audio, video) identities `me` should receive: the loud speakers (never oneself); a
    loud speaker's free third audio slot carries the only other audio track, the quiet one;
    every other video (4 slots hold all of them)."""
    audio = LOUD - {me}
    if me in LOUD:
        audio |= {QUIET}
    return audio, VIDEO - {me}


def source_problems(participants: list[Participant], who: Mapping[int, str]) -> list[str]:
    """This test's own reading: for each participant, the identities the slots frames name
    and the identities the packets came from, line by line (`who`: client id -> identity)."""
    problems: list[str] = []
    for p in participants:
        want_audio, want_video = expected(p.identity)
        got = by_identity(p.received, who)
        heard: dict[str, set[str]] = {"audio": set(), "video": set()}
        for mid, slot in sorted(p.window_slots.slots.items()):
            senders = got.get(mid, {})
            if slot.identity is None:
                if senders:
                    problems.append(f"{p.identity}: empty slot {mid} got {senders}")
                continue
            if set(senders) != {slot.identity}:
                problems.append(
                    f"{p.identity}: {slot.kind} slot {mid} named {slot.identity!r}, "
                    f"packets from {senders}"
                )
            least = 50 if slot.kind == "audio" else 30  # 50 audio / 30 video frames a second
            if senders.get(slot.identity, 0) < least:
                problems.append(f"{p.identity}: {slot.kind} slot {mid} carried {senders}")
            heard[slot.kind] |= set(senders)
        if heard["audio"] != want_audio or set(p.window_slots.identities("audio")) != want_audio:
            problems.append(
                f"{p.identity}: audio from {sorted(heard['audio'])}, slots "
                f"{p.window_slots.identities('audio')}, want {sorted(want_audio)}"
            )
        if heard["video"] != want_video or set(p.window_slots.identities("video")) != want_video:
            problems.append(
                f"{p.identity}: video from {sorted(heard['video'])}, slots "
                f"{p.window_slots.identities('video')}, want {sorted(want_video)}"
            )
        if extra := set(got) - set(p.window_slots.slots):
            problems.append(f"{p.identity}: packets on lines no slots frame named: {extra}")
    return problems


def runner_check(run: LoadRun, who: Mapping[int, str], books: list[SlotBook]) -> SlotCheck:
    """The runner's own check (what `visio-media load` reports) over the same data."""
    check = SlotCheck()
    assert run.sources_since_ns is not None
    for p, book in zip(run.participants, books, strict=True):
        check.add(p.identity, book, p.received, who, run.sources_since_ns)
    return check


# The server's offer holds the slot lines and the participant's own lines: about 10 KB here,
# whatever the room's size.
OFFER_BYTES_LIMIT = 12_000


@pytest.mark.parametrize("participants", [12, 150])
async def test_every_slot_carries_exactly_the_source_its_slots_frame_names(
    tmp_path: Path, participants: int
) -> None:
    async with server_process(tmp_path, "[room]\nmax_participants = 200\n") as server:
        run = LoadRun(
            LoadOptions(
                url=server.ws_url,
                secret=SECRET,
                participants=participants,
                audio_publishers=4,
                video_publishers=4,
                loud_speakers=3,
                video_bitrate_bps=300_000,
                keyframe_interval_s=1.0,
                join_rate=50,
                warmup_s=3.0,
                duration_s=WINDOW_SECONDS,
                room_prefix="slots",
                progress=False,
                video_slots=VIDEO_SLOTS,
                audio_slots=AUDIO_SLOTS,
            )
        )
        report = await run.run()
        log = server.output()

    assert report["joins"]["succeeded"] == participants, (report["joins"], log)
    assert report["joins"]["signalling_errors"] == {}, report["joins"]
    slots = report["slots"]
    assert slots["video_slots_granted"] == [VIDEO_SLOTS]
    assert slots["audio_slots_granted"] == [AUDIO_SLOTS]
    assert slots["participants_with_slots"] == participants
    # One server offer each: the 7 slot lines, plus the participant's own published lines
    # (publishers' offers are the larger ones), nothing per other participant.
    assert slots["participants_with_offer"] == participants
    assert 1000 < slots["server_offer_bytes_min"] <= slots["server_offer_bytes_max"]
    assert slots["server_offer_bytes_max"] < 1.25 * slots["server_offer_bytes_min"], slots
    assert slots["server_offer_bytes_max"] < OFFER_BYTES_LIMIT, slots
    for p in run.participants:
        kinds = sorted(s.kind for s in p.window_slots.slots.values())
        assert kinds == ["audio"] * AUDIO_SLOTS + ["video"] * VIDEO_SLOTS, p.window_slots
        assert p.server_offers == 1, p.identity

    # Client ids map to identities one to one.
    who = run.who()
    assert sorted(who.values()) == sorted(p.identity for p in run.participants)
    for p in run.participants:
        assert p.client_id is not None and run.identity_of(p.client_id) == p.identity

    # The slots settled before the window and stayed: every line is compared.
    assert slots["changed_in_window"] == 0, slots
    assert slots["slots_checked"] == participants * (AUDIO_SLOTS + VIDEO_SLOTS), slots
    # Non-publishers: 3 + 4 filled; the 3 loud: 3 + 3; the quiet one: 3 + 3.
    assert slots["slots_filled"] == (participants - 4) * 7 + 4 * 6, slots
    assert slots["silent_slots"] == 0 and slots["untagged_packets"] == 0, slots
    assert slots["mismatches"] == 0 and slots["ok"] is True, slots
    assert report["ok"] is True, report

    # This test's own reading agrees: each line carries only the identity its latest slots
    # frame names, the loud speakers are the ones heard, every other video is seen.
    assert source_problems(run.participants, who) == []

    # Both checks catch a server that put the wrong source in a slot. Simulated on the same
    # data: (a) two publishers' packets attributed to each other (as if the server had swapped
    # their streams under unchanged slots frames); (b) slots frames naming the wrong identity
    # for one participant's video lines (rotated).
    ids = {p.identity: p.client_id for p in run.participants}
    swapped = dict(who)
    a, b = ids["slots-0-p0"], ids["slots-0-p3"]
    assert a is not None and b is not None
    swapped[a], swapped[b] = who[b], who[a]
    assert len(source_problems(run.participants, swapped)) >= participants - 2
    books = [p.window_slots for p in run.participants]
    wrong = runner_check(run, swapped, books)
    # Every receiver of p0's or p3's audio or video (all but those two themselves, per kind).
    assert wrong.mismatches >= 2 * (participants - 2), wrong.report()
    assert wrong.report()["ok"] is False

    listener = run.participants[-1]
    true_books = [p.window_slots for p in run.participants]
    assert runner_check(run, who, true_books).mismatches == 0
    video = sorted(m for m, s in listener.window_slots.slots.items() if s.kind == "video")
    rotated = SlotBook(dict(listener.window_slots.slots), listener.window_slots.frames)
    for i, mid in enumerate(video):
        old = listener.window_slots.slots[video[(i + 1) % len(video)]]
        rotated.slots[mid] = SlotState(old.kind, old.identity, old.since_ns)
    books = [rotated if p is listener else p.window_slots for p in run.participants]
    wrong = runner_check(run, who, books)
    assert wrong.mismatches == len(video), wrong.report()
    listener.window_slots = rotated
    misnamed = [x for x in source_problems(run.participants, who) if " named " in x]
    assert len(misnamed) == len(video), misnamed


async def test_the_cli_asks_for_slots_and_reports_them_checked_by_source(tmp_path: Path) -> None:
    async with server_process(tmp_path) as server:
        status, out, err = await run_load(
            server, "--participants", "8", "--audio-publishers", "3", "--video-publishers", "3",
            "--loud-speakers", "2", "--video-bitrate", "200000", "--join-rate", "50",
            "--video-slots", "2", "--audio-slots", "1", "--warmup", "2.5", "--duration", "1.5",
            "--json",
        )
        assert status == 0, f"load exited {status}\n{out}\n{err}\n{server.output()}"
        slots = json.loads(out)["slots"]
        assert (slots["video_slots_asked"], slots["audio_slots_asked"]) == (2, 1)
        assert (slots["video_slots_granted"], slots["audio_slots_granted"]) == ([2], [1])
        assert slots["participants_with_slots"] == 8
        assert slots["slots_checked"] + slots["changed_in_window"] == 8 * 3, slots
        assert slots["slots_checked"] > 0 and slots["slots_filled"] > 0, slots
        assert slots["mismatches"] == 0 and slots["ok"] is True, slots
        assert slots["server_offer_bytes_max"] < 1.25 * slots["server_offer_bytes_min"], slots

        # More slots than the server allows: every join is refused with its reason.
        status, out, err = await run_load(
            server, "--participants", "2", "--video-slots", "999", "--room-prefix", "big",
            "--warmup", "0", "--duration", "0.5", "--json",
        )
        assert status == 1, (out, err)
        r = json.loads(out)
        assert r["joins"]["failures"] == {"error:bad_message": 2}, r["joins"]
        assert r["ok"] is False


async def test_video_slots_carry_the_tiles_each_participant_asked_for_by_source(
    tmp_path: Path,
) -> None:
    # 6 video publishers, 4 video slots; each participant asks for 2 tiles, a different pair
    # for neighbours: those two must be in its video slots, and each line carry its named source.
    async with server_process(tmp_path) as server:
        run = LoadRun(
            LoadOptions(
                url=server.ws_url,
                secret=SECRET,
                participants=12,
                audio_publishers=4,
                video_publishers=6,
                loud_speakers=3,
                video_bitrate_bps=200_000,
                keyframe_interval_s=1.0,
                join_rate=50,
                warmup_s=3.0,
                duration_s=WINDOW_SECONDS,
                room_prefix="tiles",
                progress=False,
                video_slots=VIDEO_SLOTS,
                audio_slots=AUDIO_SLOTS,
                layout_tiles=2,
            )
        )
        report = await run.run()
        log = server.output()

    assert report["joins"]["succeeded"] == 12, (report["joins"], log)
    assert report["joins"]["signalling_errors"] == {}, report["joins"]
    slots = report["slots"]
    assert slots["changed_in_window"] == 0, slots
    assert slots["slots_checked"] == 12 * (AUDIO_SLOTS + VIDEO_SLOTS), slots
    assert slots["silent_slots"] == 0, slots
    assert (slots["mismatches"], slots["layout_unmet"], slots["ok"]) == (0, 0, True), slots
    who = run.who()
    pairs = set()
    for p in run.participants:
        assert len(p.layout) == 2 and p.identity not in p.layout, p.layout
        pairs.add(tuple(p.layout))
        shown = p.window_slots.identities("video")
        assert set(p.layout) <= set(shown), (p.identity, p.layout, shown)
        got = by_identity(p.received, who)
        for mid, state in p.window_slots.slots.items():
            if state.kind == "video" and state.identity is not None:
                assert set(got.get(mid, {})) == {state.identity}, (p.identity, mid, got)
    assert len(pairs) >= 6, pairs  # the layouts really differ

    # A participant whose layout named someone its slots do not show fails the check.
    q = run.participants[-1]
    absent = next(
        x.identity for x in run.participants
        if x.video and x.identity not in q.window_slots.identities("video")
        and x.identity != q.identity
    )
    q.layout = [q.layout[0], absent]
    wrong = run.slot_check()
    assert (wrong.mismatches, wrong.layout_unmet) == (1, 1), wrong.report()
