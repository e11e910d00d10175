"""The four scenarios of issue 7, each a real `visio-media serve` process (one shard, 127.0.0.1)
loaded by `visio-media load --with-baseline --json` (the real CLI): out pps per server core,
loss, latency, join times, and the same traffic through the raw relay measured right after, so
every figure comes with its share of the raw ceiling on this machine, now.

Sizes: this is a shared 2-core machine, and the generator (str0m, SRTP, one socket per
participant) shares it with the server. Where the issue's size does not fit, the scenario is
scaled down and says so in `extra_info["scaled_from"]`:

* audio room: 10 speakers (2 loud) -> 200 listeners (issue size);
* meeting: 10 participants, each audio + 1.5 Mbit/s video (issue size);
* webinar: 1 publisher (audio + 1.5 Mbit/s video) -> 300 subscribers (issue size);
* many rooms: 50 rooms x 5 participants, each audio (1 loud) and one 500 kbit/s video per room
  (issue: 100 rooms; 100 would need about 130,000 pps out, more than server and generator
  together carry on these 2 cores).

pytest-benchmark times one run of the whole CLI (joins, warm-up, window, baseline): that time
means little; the figures are in `extra_info`. Run: ``make bench`` or
``python -m pytest benches/test_scenarios.py --benchmark-only``. Results in RESULTS.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from serve import REPO, bench_env, dev_server

SECRET = "b3nch-s3cret-for-the-scenario-runs-Lq8Vw3Zt"  # 42 bytes
WARMUP = "3"
DURATION = "8"


@dataclass(frozen=True)
class Scenario:
    name: str
    args: tuple[str, ...]
    scaled_from: str | None
    join_rate: str = "20"


SCENARIOS = (
    Scenario(
        "audio_room_10_speakers_to_200_listeners",
        ("--participants", "210", "--audio-publishers", "10", "--video-publishers", "0",
         "--loud-speakers", "2"),
        None,
        join_rate="50",
    ),
    Scenario(
        "meeting_10_with_1_5_mbit_video",
        ("--participants", "10", "--audio-publishers", "10", "--video-publishers", "10",
         "--loud-speakers", "2", "--video-bitrate", "1500000"),
        None,
    ),
    Scenario(
        "webinar_1_video_publisher_to_300",
        ("--participants", "301", "--audio-publishers", "1", "--video-publishers", "1",
         "--loud-speakers", "1", "--video-bitrate", "1500000"),
        None,
        join_rate="50",
    ),
    Scenario(
        "rooms_50_of_5",
        ("--rooms", "50", "--participants", "5", "--audio-publishers", "5",
         "--video-publishers", "1", "--loud-speakers", "1", "--video-bitrate", "500000"),
        "100 rooms x 5 participants",
        join_rate="50",
    ),
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[int]:
    """The server under test; yields its HTTP port."""
    with dev_server(tmp_path, SECRET, 400) as port:
        yield port


def _load(port: int, scenario: Scenario) -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "visio_media", "load", "--url", f"ws://127.0.0.1:{port}/ws",
        *scenario.args, "--join-rate", scenario.join_rate, "--warmup", WARMUP,
        "--duration", DURATION, "--room-prefix", scenario.name, "--with-baseline", "--json",
    ]
    done = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, cwd=str(REPO), env=bench_env(SECRET),
        timeout=300, check=False,
    )
    if not done.stdout.strip():
        pytest.fail(f"load exited {done.returncode} without a report:\n{done.stderr.decode()}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(benchmark: Any, server: int, scenario: Scenario) -> None:
    reports: list[dict[str, Any]] = []
    started = time.monotonic()
    benchmark.pedantic(
        lambda: reports.append(_load(server, scenario)), rounds=1, iterations=1
    )
    r = reports[0]
    j, g, s, b = r["joins"], r["generator"], r["server"], r.get("baseline", {})
    benchmark.extra_info.update({
        "scenario": scenario.name,
        "scaled_from": scenario.scaled_from,
        "participants": r["participants"],
        "wall_seconds": round(time.monotonic() - started, 1),
        "joined": j["succeeded"],
        "join_failures": j["failures"],
        "join_time_p50_s": j["join_time_p50_s"],
        "join_time_p95_s": j["join_time_p95_s"],
        "join_time_max_s": j["join_time_max_s"],
        "first_media_p50_s": r["first_media"]["p50_s"],
        "server_cpu_cores": s["cpu_cores"],
        "server_rss_mib": round(s["rss_bytes"] / 2**20, 1) if s["rss_bytes"] else None,
        "server_out_pps": s["out_pps"],
        "server_out_pps_per_core": s["out_pps_per_core"],
        "generator_sent_pps": g["sent_pps"],
        "generator_recv_pps": g["recv_pps"],
        "generator_cpu_cores": g["cpu_cores"],
        "loss_ratio": g["loss_ratio"],
        "latency_p50_ms": g["latency_p50_ms"],
        "latency_p99_ms": g["latency_p99_ms"],
        "counters_agree": r["counters_agree"],
        "relay_out_pps_per_core": b.get("relay_out_pps_per_core"),
        "relay_cpu_cores": b.get("relay_cpu_cores"),
        "relay_loss_ratio": b.get("relay_loss_ratio"),
        "relay_latency_p50_ms": b.get("relay_latency_p50_ms"),
        "relay_latency_p99_ms": b.get("relay_latency_p99_ms"),
        "ratio_to_raw_relay": b.get("ratio"),
    })
    print(f"\n{scenario.name}: {json.dumps(benchmark.extra_info, sort_keys=True)}")
    assert j["failed"] == 0, j
    assert b.get("ok") is True and b.get("ratio") is not None, b
    assert s["out_pps_per_core"] is not None, s
