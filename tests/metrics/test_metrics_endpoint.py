"""/metrics against a real call: the figures match what happened, and the endpoint is closed
to anonymous callers when the server listens beyond loopback."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from signalling.live_server import MediaClient, admin_token, live_server, start_call, wait_until

pytestmark = [pytest.mark.asyncio(loop_scope="function"), pytest.mark.timeout(90)]


async def scrape(url: str, bearer: str | None = None) -> tuple[int, dict[str, float]]:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    async with aiohttp.ClientSession() as s, s.get(url + "/metrics", headers=headers) as r:
        text = await r.text()
        if r.status != 200:
            return r.status, {}
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return r.status, values


def total(values: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in values.items() if k == prefix or k.startswith(prefix + "{"))


async def test_metrics_add_up_during_a_call_and_return_to_zero() -> None:
    async with live_server() as srv:
        status, before = await scrape(srv.http_url)
        assert status == 200
        assert total(before, "visio_engine_peers") == 0
        assert before["visio_ready"] == 1
        alice = MediaClient(srv.ws_url, "alice", audio_hz=440.0, video=True)
        bob = MediaClient(srv.ws_url, "bob", audio_hz=660.0, video=True)
        try:
            await start_call(alice, bob)
            video = await bob.receiver("alice", "video")
            await wait_until(lambda: video.frames >= 20, 20, what="video at bob")
            _, during = await scrape(srv.http_url)
            assert total(during, "visio_engine_peers") == 2
            assert total(during, "visio_engine_tracks") == 4
            assert during["visio_participants"] == 2
            assert during["visio_rooms"] == 1
            assert during["visio_join_duration_seconds_count"] == 2
            forwarded = during["visio_rtp_forwarded_packets_total"]
            assert forwarded > 100
            assert during["visio_udp_received_packets_total"] > forwarded / 2
            assert during["visio_udp_sent_packets_total"] >= forwarded
            assert during["visio_udp_sent_bytes_total"] > during["visio_udp_sent_packets_total"]
            assert during["visio_peer_panics_total"] == 0
            # The I/O losses the engine counts are exported even when nothing was lost.
            assert during["visio_udp_send_blocked_total"] >= 0
            for reason in ("rx_queue_overflow", "send_buffer_full", "send_failed"):
                key = f"visio_udp_dropped_packets_total{{reason={reason}}}"
                assert key in during, f"no {key}"
            snap = srv.app_engine_stats()
            assert snap["rtp_forwarded"] >= forwarded, "the scrape reads the engine's counters"
            await alice.client.leave()
            await bob.client.leave()
        finally:
            await alice.close()
            await bob.close()
        await wait_until(lambda: srv.app_engine_stats()["peers"] == 0, 10, what="peers gone")
        _, after = await scrape(srv.http_url)
        assert total(after, "visio_engine_peers") == 0
        assert after["visio_participants"] == 0
        assert after["visio_rtp_forwarded_packets_total"] >= forwarded, "counters never go down"


async def test_metrics_need_an_admin_token_when_not_on_loopback() -> None:
    # 127.0.0.2 is loopback too, so "not loopback" is simulated through the config's host
    # check only: the listener itself stays on 127.0.0.1.
    async with live_server() as srv:
        srv.app_config_host("192.0.2.10")
        status, _ = await scrape(srv.http_url)
        assert status == 401
        status, values = await scrape(srv.http_url, admin_token(srv.config.auth.secret))
        assert status == 200 and "visio_ready" in values
