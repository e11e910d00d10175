"""Join time as one room fills to 14, 50, 150 and 500 participants, and the shard's control
work per join: the method of tests/load/test_load_fill.py (`visio_media.load.fill`), on a real
`visio-media serve --dev` process (one shard, rooms of up to 500, 127.0.0.1).

Publishers join first: 3 audio (1 loud; 2 quiet with DTX, 3-byte frames every 400 ms) and one
100 kbit/s VP8 video (the loud speaker's). Then, at each size N, a batch of 10 receive-only
joins, one at a time, takes the room from N - 10 to N (the joins in between are not measured,
8 at a time). Media is kept modest so that 500 load-generator participants and the server fit
on this 2-core machine: each receiver gets about 50 (loud audio) + 5 (DTX) + 30 (video) packets
a second, ~42 k out-pps at 500. The measured joiners run in a process of their own with their
own load generator (`visio_media.load.joiner`): their join time does not include this
process's work for the crowd (receiving its media, reading its sockets). After the step at 500
the publishers stop sending and one more batch takes the room to 510 with no media: the same
signalling work per join at 510, without the media load.

Per step: join time p50/p95/max (from sending `join` to answering the server's slot offer),
the mean of each phase (`joined`, answer to the publish offer, slot offer answered), the
server's offer size, and from the engine's counters over the batch: control commands per join
and shard seconds per join (`visio_engine_command_seconds_total`, wall-clock time the shard
thread spent in commands: preemption by other processes counts). Ratios are to the step at 14
of the same run. The v1 estimate (one m-line per track, renegotiated with everyone on every
join) uses the issue's figure of 75 us per m-line; it is an estimate, not a measurement.

pytest-benchmark times the whole fill (one round); the figures are in `extra_info`. Run:
``python -m pytest benches/test_join_scaling.py --benchmark-only -s``. Results in RESULTS.md.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serve import dev_server
from visio_media.load.fill import Step, fill_steps, measured_batch
from visio_media.load.joiner import JoinerProcess
from visio_media.load.runner import LoadOptions, LoadRun

SECRET = "b3nch-s3cret-for-the-join-scaling-run-Rt5Kq9Wm"  # 46 bytes
SIZES = (14, 50, 150, 500)
BATCH = 10
# After the last step, media paused (the publishers stop sending, so the shard forwards
# nothing): one more batch of joins, taking the room to this size.
QUIET = SIZES[-1] + BATCH
# The figure for a v1 per-track negotiation, per m-line (estimate).
V1_SECONDS_PER_MLINE = 75e-6


@pytest.fixture
def server(tmp_path: Path) -> Iterator[int]:
    """The server under test; yields its HTTP port."""
    with dev_server(tmp_path, SECRET, QUIET) as port:
        yield port


def v1_estimate_seconds(size: int) -> float:
    """Shard time one join would cost under v1 (every participant publishing audio + camera,
    everyone subscribed to every track, one m-line per track): the joiner negotiates 2 m-lines
    of its own + 2 per other participant, and each of the others renegotiates its whole SDP
    (2 + 2 * (size - 1) m-lines) to add the joiner's two tracks. An estimate from the issue's
    75 us per m-line, for comparison only."""
    lines = 2 + 2 * (size - 1)
    return V1_SECONDS_PER_MLINE * lines * size


async def _fill(port: int) -> list[Step]:
    run = LoadRun(
        LoadOptions(
            url=f"ws://127.0.0.1:{port}/ws",
            secret=SECRET,
            participants=0,
            dtx=True,
            video_bitrate_bps=100_000,
            keyframe_interval_s=2.0,
            room_prefix="joins",
            progress=False,
            max_frame_bytes=65536,
        )
    )
    async with run.connected(), JoinerProcess(run.o) as joiner:
        steps = await fill_steps(run, SIZES, batch=BATCH, audio=3, video=1, loud=1,
                                 joiner=joiner)
        run.gen.set_sending(False)
        await asyncio.sleep(1.0)
        steps.append(await measured_batch(run, QUIET, BATCH, joiner=joiner))
        return steps


def test_join_time_and_shard_time_per_join_as_a_room_fills(benchmark: Any, server: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # a WebSocket and a UDP socket per participant
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results: list[list[Step]] = []
    started = time.monotonic()
    benchmark.pedantic(lambda: results.append(asyncio.run(_fill(server))), rounds=1, iterations=1)
    steps = results[0]
    base = steps[0]
    rows = []
    for s in steps:
        row = s.summary()
        for key, value, ref in (
            ("p50_vs_first", s.p50(), base.p50()),
            ("p95_vs_first", s.p95(), base.p95()),
            ("command_seconds_vs_first", s.command_seconds, base.command_seconds),
        ):
            row[key] = round(value / ref, 2) if value is not None and ref else None
        row["v1_estimate_shard_ms_per_join"] = round(v1_estimate_seconds(s.size) * 1e3, 1)
        row["media"] = "paused" if s.size == QUIET else "flowing"
        rows.append(row)
    benchmark.extra_info.update({
        "sizes": list(SIZES),
        "media_paused_size": QUIET,
        "batch": BATCH,
        "media": "3 audio publishers (1 loud, 2 quiet DTX) + 1 video 100 kbit/s",
        "wall_seconds": round(time.monotonic() - started, 1),
        "steps": rows,
    })
    print("\n" + "\n".join(json.dumps(r, sort_keys=True) for r in rows))
    for s in steps:
        assert [p.failure for p in s.joiners if p.failure] == [], s.summary()
        assert len(s.join_times()) == BATCH
    assert len({n for s in steps for n in s.offer_bytes()}) >= 1
