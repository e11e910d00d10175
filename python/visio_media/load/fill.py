"""One room filled step by step: a few publishers first, then receive-only participants, with
a measured batch of joins at each size; the join time of each (from sending `join` to answering
the server's slot offer) and the engine's control work per join (its `commands` and
`command_seconds` counters, read from the server's /metrics before and after the batch).

Used by `tests/load/test_load_fill.py` (sizes up to 150) and `benches/test_join_scaling.py`
(up to 500); see docs/load.md, "A room filled step by step"."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from visio_media.load import probe
from visio_media.load.joiner import JoinerProcess
from visio_media.load.report import percentile
from visio_media.load.runner import LoadRun, Participant, join_seconds

log = logging.getLogger(__name__)

COMMANDS = "visio_engine_commands_total"
COMMAND_SECONDS = "visio_engine_command_seconds_total"
# After a measured batch, before reading the server's counters: the last joiner's answer is
# applied by the shard after we sent it.
AFTER_BATCH_SECONDS = 0.5


class FillError(Exception):
    """A step could not be taken (a join failed, or the sizes do not fit)."""


@dataclass
class Step:
    """One measured batch: the joins that took the room to `size` participants."""

    size: int
    joiners: list[Participant]
    wall_seconds: float
    # Deltas of the engine's counters over the batch (None if /metrics could not be read).
    commands: float | None
    command_seconds: float | None

    def join_times(self) -> list[float]:
        return [t for p in self.joiners if (t := join_seconds(p)) is not None]

    def p50(self) -> float | None:
        return percentile(self.join_times(), 0.5)

    def p95(self) -> float | None:
        return percentile(self.join_times(), 0.95)

    def phases_ms(self) -> dict[str, float | None]:
        """Mean over the batch, in ms from sending `join`: `joined` received, the answer to
        our offer received, the server's slot offer answered."""
        def mean(field: str) -> float | None:
            vals = [(getattr(p, field) - p.join_sent_ns) / 1e6 for p in self.joiners
                    if getattr(p, field) is not None and p.join_sent_ns is not None]
            return round(sum(vals) / len(vals), 2) if vals else None

        return {"joined": mean("joined_ns"), "answer": mean("answered_ns"),
                "slot_offer_answered": mean("slots_answered_ns")}

    def offer_bytes(self) -> list[int]:
        return [p.first_offer_bytes for p in self.joiners if p.first_offer_bytes is not None]

    def summary(self) -> dict[str, Any]:
        joins = len(self.joiners)
        times = self.join_times()
        return {
            "size": self.size,
            "joins": joins,
            "failures": [p.failure for p in self.joiners if p.failure is not None],
            "join_p50_s": _rnd(self.p50()),
            "join_p95_s": _rnd(self.p95()),
            "join_max_s": _rnd(max(times) if times else None),
            "offer_bytes": sorted(set(self.offer_bytes())),
            "commands_per_join": _rnd(self.commands / joins if self.commands is not None
                                      and joins else None, 2),
            "command_us_per_join": _rnd(self.command_seconds / joins * 1e6
                                        if self.command_seconds is not None and joins
                                        else None, 1),
            "phases_ms": self.phases_ms(),
            "wall_seconds": _rnd(self.wall_seconds, 3),
        }


def _rnd(v: float | None, digits: int = 4) -> float | None:
    return None if v is None else round(v, digits)


async def _counters(run: LoadRun) -> dict[str, float] | None:
    if run.session is None:
        return None
    try:
        return await probe.scrape_samples(run.session, run.o.metrics())
    except (aiohttp.ClientError, TimeoutError) as e:
        log.warning("cannot read the server's metrics: %s", e)
        return None


def _delta(a: dict[str, float] | None, b: dict[str, float] | None, key: str) -> float | None:
    if a is None or b is None or key not in a or key not in b:
        return None
    return b[key] - a[key]


async def fill_steps(
    run: LoadRun,
    sizes: Sequence[int],
    *,
    batch: int = 10,
    audio: int = 4,
    video: int = 4,
    loud: int = 2,
    warmup_s: float = 2.0,
    fill_concurrency: int = 8,
    batch_concurrency: int = 1,
    settle_s: float = 1.0,
    joiner: JoinerProcess | None = None,
) -> list[Step]:
    """Inside `run.connected()`: joins max(audio, video) publishers (the first `loud` of the
    audio ones loud), lets media flow `warmup_s`, then for each size N of `sizes` (ascending)
    joins receive-only participants up to N − `batch` (`fill_concurrency` at a time, not
    measured), waits `settle_s` (their connections settle), and joins a measured batch of
    `batch` receive-only participants, `batch_concurrency` at a time, that takes the room to N:
    in `joiner`'s process if given (their join times are then not the crowd's reading and
    media time in this process), else in `run`. Raises FillError when a join fails (the steps
    so far are in its args[1])."""
    publishers = max(audio, video)
    if not sizes or sizes[0] - batch < publishers or list(sizes) != sorted(set(sizes)):
        raise FillError(f"sizes {list(sizes)} must ascend, the first >= publishers + batch")
    steps: list[Step] = []

    def check(joined: list[Participant]) -> None:
        if failed := [f"{p.identity}: {p.failure}" for p in joined if p.failure is not None]:
            raise FillError(f"{len(failed)} joins failed: {failed[:5]}", steps)

    check(await run.join_more(publishers, audio=audio, video=video, loud=loud,
                              concurrency=fill_concurrency))
    await asyncio.sleep(warmup_s)
    for size in sizes:
        fill = size - batch - len(run.participants) - (joiner.count if joiner else 0)
        if fill > 0:
            check(await run.join_more(fill, concurrency=fill_concurrency))
        await asyncio.sleep(settle_s)
        steps.append(await measured_batch(run, size, batch, concurrency=batch_concurrency,
                                          joiner=joiner))
        check(steps[-1].joiners)
    return steps


async def measured_batch(
    run: LoadRun,
    size: int,
    batch: int,
    *,
    concurrency: int = 1,
    joiner: JoinerProcess | None = None,
) -> Step:
    """Joins `batch` receive-only participants (in `joiner`'s process if given, else in
    `run`), `concurrency` at a time, measured: the Step that takes the room to `size`."""
    before = await _counters(run)
    t0 = time.monotonic()
    if joiner is not None:
        joiners = await joiner.join(batch, concurrency=concurrency)
    else:
        joiners = await run.join_more(batch, concurrency=concurrency)
    wall = time.monotonic() - t0
    await asyncio.sleep(AFTER_BATCH_SECONDS)
    after = await _counters(run)
    return Step(size, joiners, wall, _delta(before, after, COMMANDS),
                _delta(before, after, COMMAND_SECONDS))
