"""grafana/dashboards/visio-media.json against a REAL Prometheus scraping a live server during a
call: every panel query must be valid PromQL and return data (Debian package `prometheus`,
installed by `make test`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from signalling.live_server import MediaClient, live_server, start_call, wait_until

pytestmark = pytest.mark.timeout(90)

DASHBOARD = Path(__file__).resolve().parents[2] / "grafana" / "dashboards" / "visio-media.json"
# Grafana's variables, as Grafana would expand them with "All" selected. The rate window is wider
# than the call's setup so the join-duration quantiles see both joins.
VARIABLES = {"$__rate_interval": "30s", "$__interval": "30s", "$job": ".*", "$instance": ".*"}
# Rates that may legitimately be zero during a clean call (their series must still exist).
ZERO_OK = ("visio_udp_dropped_packets", "keyframe_requests", "peer_panics", "events_dropped")


def panel_targets(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel, rows' nested panels included."""
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                found.append((p["title"], t["expr"]))

    walk(dashboard["panels"])
    return found


def expand(expr: str) -> str:
    # Longest names first: `$__rate_interval` before `$__interval`.
    for name in sorted(VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, VARIABLES[name])
    assert "$" not in expr, f"unexpanded Grafana variable in {expr!r}"
    return expr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def query(session: aiohttp.ClientSession, base: str, promql: str) -> dict[str, Any]:
    async with session.get(base + "/api/v1/query", params={"query": promql}) as r:
        body = await r.json()
    assert r.status == 200 and body["status"] == "success", (promql, r.status, body)
    return body["data"]


async def scrapes(session: aiohttp.ClientSession, base: str) -> float:
    """How many samples of `up` the target has (one per scrape), 0 before the first scrape."""
    try:
        data = await query(session, base, 'count_over_time(up{job="visio"}[5m])')
    except (aiohttp.ClientError, AssertionError):
        return 0
    return float(data["result"][0]["value"][1]) if data["result"] else 0


async def wait_for(session: aiohttp.ClientSession, base: str, promql: str, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, AssertionError):
            data = await query(session, base, promql)
            if data["result"]:
                return
        await asyncio.sleep(0.25)
    raise AssertionError(f"Prometheus never returned data for {promql!r} within {within}s")


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] == "visio-media"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    targets = panel_targets(dashboard)
    assert len(targets) >= 15
    exprs = " ".join(e for _, e in targets)
    for needed in (
        "visio_ready",
        "visio_participants",
        "visio_rooms",
        "visio_engine_peers",
        "visio_engine_tracks",
        "visio_udp_received_packets_total",
        "visio_udp_sent_packets_total",
        "visio_udp_received_bytes_total",
        "visio_udp_sent_bytes_total",
        "visio_rtp_forwarded_packets_total",
        "visio_udp_dropped_packets_total",
        "visio_keyframe_requests_received_total",
        "visio_peer_panics_total",
        "visio_engine_events_dropped_total",
        "visio_join_duration_seconds_bucket",
    ):
        assert needed in exprs, f"no panel queries {needed}"


@pytest.mark.asyncio(loop_scope="function")
async def test_every_panel_query_returns_data_from_a_real_prometheus(tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(
            "the `prometheus` binary is missing: `make test` installs the Debian package "
            "(or run `apt-get install -y prometheus`)"
        )
    dashboard = json.loads(DASHBOARD.read_text())
    targets = [(title, expand(expr)) for title, expr in panel_targets(dashboard)]

    async with live_server() as srv:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: visio\n    scrape_timeout: 1s\n"
            f"    static_configs:\n      - targets: ['{srv.host}:{srv.port}']\n"
        )
        log = (tmp_path / "prometheus.log").open("wb")
        # Never Prometheus's default 0.0.0.0:9090: loopback, on a free port.
        proc = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        alice = MediaClient(srv.ws_url, "alice", audio_hz=440.0, video=True)
        bob = MediaClient(srv.ws_url, "bob", audio_hz=660.0, video=True)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
                await wait_for(http, base, 'up{job="visio"} == 1', within=20)
                await start_call(alice, bob)
                video = await bob.receiver("alice", "video")
                await wait_until(lambda: video.frames >= 20, 20, what="video at bob")
                # At least 3 scrapes while media flows.
                first = await scrapes(http, base)
                deadline = time.monotonic() + 15
                while await scrapes(http, base) < first + 3:
                    assert time.monotonic() < deadline, "Prometheus stopped scraping"
                    await asyncio.sleep(0.25)
                await wait_for(
                    http, base, 'visio_rtp_forwarded_packets_total{job="visio"} > 0', within=5
                )

                failures = []
                for title, promql in targets:
                    data = await query(http, base, promql)
                    result = data["result"]
                    if not result:
                        failures.append(f"{title}: no series for {promql}")
                        continue
                    values = [float(s["value"][1]) for s in result]
                    if "histogram_quantile" in promql and not all(map(math.isfinite, values)):
                        failures.append(f"{title}: no join observations in {promql}: {values}")
                    elif (
                        "rate(" in promql
                        and not any(z in promql for z in ZERO_OK)
                        and not any(v > 0 for v in values)
                    ):
                        failures.append(f"{title}: all zero during a call: {promql}")
                assert not failures, "\n".join(failures)

                # The $job / $instance variables' queries (label_values) find the target.
                for label in ("job", "instance"):
                    async with http.get(
                        f"{base}/api/v1/label/{label}/values", params={"match[]": "visio_ready"}
                    ) as r:
                        body = await r.json()
                    assert body["status"] == "success" and body["data"], (label, body)
            assert proc.returncode is None, "Prometheus exited early"
        finally:
            await alice.close()
            await bob.close()
            if proc.returncode is None:
                proc.terminate()  # by PID: only the Prometheus this test started
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
            log.close()
