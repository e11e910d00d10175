"""`visio-media load` against a real server process: 2 publishers (audio + video) and 10
subscribers in one room. The generator's simulated participants take the real path (WebSocket
and token, ICE, DTLS, SRTP); the run must lose < 1 % of the packets, and the server's own
/metrics counters must agree with the generator's within 1 % over the same window."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers.load_server import run_load, server_process

pytestmark = [pytest.mark.timeout(120)]

ROOM = ("--participants", "12", "--audio-publishers", "2", "--video-publishers", "2",
        "--loud-speakers", "1", "--video-bitrate", "800000", "--join-rate", "50")


async def test_two_publishers_to_ten_subscribers_lose_under_one_percent_and_counters_agree(
    tmp_path: Path,
) -> None:
    async with server_process(tmp_path) as server:
        status, out, err = await run_load(
            server, *ROOM, "--warmup", "1.5", "--duration", "5", "--json"
        )
        assert status == 0, f"load exited {status}\n{out}\n{err}\n{''.join(server.log[-30:])}"
        r = json.loads(out)

        # Every participant joined over its own WebSocket, connected (ICE + DTLS) and got media.
        joins = r["joins"]
        assert (joins["attempted"], joins["succeeded"], joins["failed"]) == (12, 12, 0)
        assert joins["failures"] == {}
        assert joins["connected"] == 12
        for key in ("join_time_p50_s", "join_time_p95_s", "join_time_max_s"):
            assert isinstance(joins[key], float) and 0 < joins[key] < 15, (key, joins)
        fm = r["first_media"]
        assert fm["participants"] == 12
        assert 0 < fm["p50_s"] <= fm["p95_s"] < 15

        # Rates: 2 publishers x (50 audio + ~30 frames x packets) out; 11 receivers each.
        g = r["generator"]
        assert r["window"]["seconds"] == pytest.approx(5, abs=0.5)
        assert g["sent_pps"] > 2 * (50 + 30) * 0.8, g
        assert g["recv_pps"] == pytest.approx(g["sent_pps"] * 11, rel=0.05), g
        assert g["sent_mbps"] > 0 and g["recv_mbps"] > 10 * g["sent_mbps"] * 0.9, g
        assert g["recv_rtp"] > 10_000, g
        assert g["loss_ratio"] < 0.01, g
        assert g["lost"] < 0.01 * g["recv_rtp"], g
        assert g["keyframes_sent"] >= 2, g  # the periodic ones, at least
        for key in ("latency_p50_ms", "latency_p99_ms", "latency_max_ms"):
            assert isinstance(g[key], float) and 0 < g[key] < 1000, (key, g)
        assert g["latency_p50_ms"] <= g["latency_p99_ms"] <= g["latency_max_ms"]
        assert g["latency_samples"] > 10_000
        assert g["cpu_cores"] is not None and g["cpu_cores"] > 0, g

        # The server's process, found from its port: CPU over the window, RSS, pps per core.
        s = r["server"]
        assert s["pid"] == server.proc.pid
        assert s["cpu_cores"] > 0 and s["cpu_percent_of_core"] == pytest.approx(
            s["cpu_cores"] * 100, abs=0.1
        )
        assert s["rss_bytes"] > 10 * 2**20
        assert s["out_pps"] == pytest.approx(g["recv_pps"], rel=0.1)
        assert s["out_pps_per_core"] == pytest.approx(s["out_pps"] / s["cpu_cores"], rel=0.01)

        # The server's own counters beside the generator's, over the same window.
        names = {c["name"]: c for c in r["counters"]}
        assert set(names) == {
            "udp_packets_to_server", "udp_bytes_to_server", "udp_packets_from_server",
            "udp_bytes_from_server", "rtp_forwarded_vs_received",
        }
        for c in r["counters"]:
            assert c["server"] > 1000, c
            assert abs(c["server"] - c["generator"]) <= 0.01 * max(c["server"], c["generator"]), c
            assert c["agree"] is True
        assert r["counters_agree"] is True and r["ok"] is True

        # The human summary carries the same figures.
        status, out, err = await run_load(
            server, *ROOM, "--room-prefix", "human", "--warmup", "0.5", "--duration", "1"
        )
        assert status == 0, f"load exited {status}\n{out}\n{err}"
        for label in ("joins", "join time p50/p95/max", "join -> first media p50/p95", "sent",
                      "received", "loss", "latency p50/p99/max", "generator cpu", "server cpu",
                      "server rss", "server out pps per core", "udp_packets_to_server",
                      "rtp_forwarded_vs_received", "result: ok"):
            assert re.search(rf"^{re.escape(label)}", out, re.MULTILINE), (label, out)
        assert "12/12 ok, 0 failed" in out
        # The live progress line went to stderr.
        assert "joined 12/12" in err


async def test_a_wrong_secret_fails_every_join_with_its_reason(tmp_path: Path) -> None:
    async with server_process(tmp_path) as server:
        status, out, err = await run_load(
            server, "--participants", "3", "--warmup", "0", "--duration", "0.5", "--json",
            "--secret", "an0ther-s3cret-that-the-server-does-not-know-Hk3",
        )
        assert status == 1, (out, err)
        r = json.loads(out)
        assert r["joins"]["failed"] == 3
        assert r["joins"]["failures"] == {"error:unauthorized": 3}
        assert r["ok"] is False


async def test_more_than_a_hundred_participants_all_join_and_the_server_metrics_are_read(
    tmp_path: Path,
) -> None:
    # aiohttp's client pools 100 connections by default: the 101st WebSocket (and every
    # /metrics scrape after the 100th join) would wait for a free one until its time ran out.
    async with server_process(tmp_path, "[room]\nmax_participants = 200\n") as server:
        status, out, err = await run_load(
            server, "--participants", "105", "--audio-publishers", "1", "--video-publishers",
            "0", "--join-rate", "100", "--warmup", "0.5", "--duration", "1", "--json",
        )
        r = json.loads(out)
        assert r["joins"]["failures"] == {}, r["joins"]
        assert r["joins"]["succeeded"] == 105
        assert len(r["counters"]) == 5, r["counters"]
        assert r["server"]["out_pps"] is not None and r["server"]["out_pps"] > 0
        assert status == 0, f"load exited {status}\n{out}\n{err}"
