"""`visio-media load --baseline relay`: the same traffic in plain RTP through the raw relay (a
recvmmsg -> sendmmsg thread inside the generator, no server). On loopback nothing may be lost,
and with media paused and drained at both edges the relay's counts and the generator's are the
same datagrams: exactly equal. A server run with `--with-baseline` carries the ratio of its out
pps per core to the relay's, both measured in the same invocation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.load_server import run_load, server_process

pytestmark = [pytest.mark.timeout(120)]

# 2 publishers (audio + video) and 10 subscribers: each publisher's packets go to the 11 others.
ROOM = ("--participants", "12", "--audio-publishers", "2", "--video-publishers", "2",
        "--loud-speakers", "1", "--video-bitrate", "800000", "--join-rate", "50")


async def test_relay_baseline_loses_nothing_and_its_counts_equal_the_generators_exactly() -> None:
    status, out, err = await run_load(
        None, "--baseline", "relay", *ROOM, "--warmup", "1", "--duration", "3", "--json"
    )
    assert status == 0, f"load exited {status}\n{out}\n{err}"
    r = json.loads(out)
    assert r["mode"] == "baseline_relay" and r["ok"] is True
    assert r["participants"] == 12
    assert r["setup"] == {"clients": 12, "routes": 2, "seconds": r["setup"]["seconds"]}

    g = r["generator"]
    assert r["window"]["seconds"] == pytest.approx(3, abs=0.5)
    assert g["sent_pps"] > 2 * (50 + 30) * 0.8, g
    assert g["recv_pps"] == pytest.approx(g["sent_pps"] * 11, rel=0.05), g
    assert g["lost"] == 0 and g["loss_ratio"] == 0.0 and g["duplicates"] == 0, g
    assert g["send_failures"] == 0, g
    assert g["latency_samples"] > 5_000, g
    assert 0 < g["latency_p50_ms"] <= g["latency_p99_ms"] <= g["latency_max_ms"] < 1000, g

    # Over the counter window (paused and drained at both edges): the same datagrams, exactly.
    names = {c["name"]: c for c in r["counters"]}
    assert set(names) == {"udp_packets_to_relay", "udp_bytes_to_relay",
                          "udp_packets_from_relay", "udp_bytes_from_relay"}
    for c in r["counters"]:
        assert c["relay"] == c["generator"] > 500, c
        assert c["equal"] is True
    # Every datagram in went to the 11 others of the room.
    assert names["udp_packets_from_relay"]["relay"] == 11 * names["udp_packets_to_relay"]["relay"]
    # And over the whole run (warm-up included).
    t = r["totals"]
    assert t["generator_datagrams_out"] == t["relay_datagrams_in"] > 0, t
    assert t["relay_datagrams_out"] == t["generator_datagrams_in"] == 11 * t["relay_datagrams_in"]
    assert t["relay_unrouted"] == 0
    assert r["counters_exact"] is True

    # The relay thread's own CPU and its out pps per core.
    rl = r["relay"]
    assert isinstance(rl["thread_id"], int) and rl["thread_id"] > 0
    assert rl["out_pps"] == pytest.approx(g["recv_pps"], rel=0.01), rl
    assert rl["in_pps"] == pytest.approx(g["sent_pps"], rel=0.01), rl
    assert 0 < rl["cpu_cores"] < 1, rl
    assert rl["out_pps_per_core"] == pytest.approx(rl["out_pps"] / rl["cpu_cores"], rel=0.01)
    assert rl["send_failures"] == 0 and rl["unrouted"] == 0
    b = r["baseline"]
    assert b["kind"] == "relay"
    assert b["relay_out_pps_per_core"] == rl["out_pps_per_core"]
    assert b["relay_out_pps"] == rl["out_pps"] and b["relay_cpu_cores"] == rl["cpu_cores"]
    assert b["relay_loss_ratio"] == 0.0


async def test_a_server_run_with_baseline_reports_its_share_of_the_raw_ceiling(
    tmp_path: Path,
) -> None:
    async with server_process(tmp_path) as server:
        status, out, err = await run_load(
            server, *ROOM, "--warmup", "1", "--duration", "2", "--with-baseline", "--json"
        )
        assert status == 0, f"load exited {status}\n{out}\n{err}\n{''.join(server.log[-30:])}"
        r = json.loads(out)
        assert r["ok"] is True and r["counters_agree"] is True
        s, b = r["server"], r["baseline"]
        assert b["ok"] is True and b["counters_exact"] is True
        assert b["server_out_pps_per_core"] == s["out_pps_per_core"] > 0
        assert b["relay_out_pps_per_core"] > 0
        assert b["ratio"] == pytest.approx(
            s["out_pps_per_core"] / b["relay_out_pps_per_core"], rel=1e-3
        )
        assert b["relay_loss_ratio"] == 0.0
        # The same traffic through the relay: its out pps is the server's (media only).
        assert b["relay_out_pps"] == pytest.approx(r["generator"]["recv_pps"], rel=0.1)

        # The summary says it in words.
        status, out, err = await run_load(
            server, *ROOM, "--room-prefix", "human", "--warmup", "0.5", "--duration", "1",
            "--with-baseline", "--no-progress",
        )
        assert status == 0, f"load exited {status}\n{out}\n{err}"
        assert "of the raw relay's out pps per core, measured now" in out, out


async def test_baseline_and_with_baseline_exclude_each_other() -> None:
    status, out, err = await run_load(None, "--baseline", "relay", "--with-baseline")
    assert status == 2, (status, out, err)
    assert "exclude each other" in err
