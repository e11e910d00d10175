"""The Python ↔ Rust bridge (issue 7): what the control plane pays per engine call.

Each figure has a baseline measured in the same process and run, so that the ratio means
something on a shared, noisy machine:

* ``create_peer`` + ``close_peer`` through the asyncio wrapper (a worker thread per call, the
  GIL released while the shard works) against the same two executor round trips doing nothing:
  the bridge's own cost is the difference, the rest is the shard's (SDP, DTLS certificate...).
* ``drain_events`` of 1,000 queued events into Python tuples, against building the same
  1,000 tuples in Python.
* ``stats_snapshot`` with 1,000 peers against building a dict of the same shape in Python.

Run: ``make bench`` (or ``python -m pytest benches --benchmark-only``). Figures in RESULTS.md.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers.media import SineAudioTrack
from visio_media import _native
from visio_media.engine import Engine, EngineConfig

PEERS = 1000


async def _client_offer() -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sine = SineAudioTrack(440)
    try:
        pc.addTransceiver(sine, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp
    finally:
        await pc.close()
        sine.stop()


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def offer(loop: asyncio.AbstractEventLoop) -> str:
    return loop.run_until_complete(_client_offer())


@pytest.fixture(scope="module")
def engine(loop: asyncio.AbstractEventLoop) -> Iterator[Engine]:
    e = Engine(EngineConfig(shards=1, bind_ip="127.0.0.1"))
    loop.run_until_complete(e.start())
    yield e
    loop.run_until_complete(e.stop())


def test_create_and_close_peer(benchmark: Any, loop: asyncio.AbstractEventLoop, engine: Engine,
                               offer: str) -> None:
    async def once() -> None:
        peer, _answer = await engine.create_peer("bench", "p", offer)
        await engine.close_peer(peer)

    benchmark(lambda: loop.run_until_complete(once()))


def test_baseline_two_executor_round_trips(benchmark: Any,
                                           loop: asyncio.AbstractEventLoop) -> None:
    async def once() -> None:
        await loop.run_in_executor(None, lambda: None)
        await loop.run_in_executor(None, lambda: None)

    benchmark(lambda: loop.run_until_complete(once()))


def _queue_events(native: _native.Engine, offer: str, n: int) -> None:
    """``n`` PeerClosed events waiting in the engine's queue (and nothing else)."""
    peers = [native.create_peer("bench-events", f"p{i}", offer)[0] for i in range(n)]
    for p in peers:
        native.close_peer(p)
    native.drain_events()  # whatever came before
    for _ in range(n):
        peer, _ = native.create_peer("bench-events", "q", offer)
        native.close_peer(peer)


def test_drain_1000_events(benchmark: Any, offer: str) -> None:
    native = _native.Engine(shards=1, bind_ip="127.0.0.1", announce_ip=None, port_min=0,
                            port_max=0)
    native.start()
    try:
        native.drain_events()
        sizes: list[int] = []

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            native.drain_events()
            _queue_events(native, offer, PEERS // 2)  # a create and a close each: ~1,000
            return (), {}

        def drain() -> None:
            sizes.append(len(native.drain_events()))

        benchmark.pedantic(drain, setup=setup, rounds=20)
        assert min(sizes) >= PEERS // 2, sizes
        benchmark.extra_info["events_per_drain"] = min(sizes)
    finally:
        native.stop()


def test_baseline_build_1000_event_tuples(benchmark: Any) -> None:
    def build() -> list[tuple[str, int, dict[str, str | int]]]:
        return [("peer_closed", i, {"reason": "closed"}) for i in range(PEERS)]

    benchmark(build)


def test_stats_snapshot_with_1000_peers(benchmark: Any, offer: str) -> None:
    native = _native.Engine(shards=2, bind_ip="127.0.0.1", announce_ip=None, port_min=0,
                            port_max=0)
    native.start()
    try:
        for i in range(PEERS):
            native.create_peer("bench-stats", f"p{i}", offer)
        snap = native.stats_snapshot()
        peer_stats = snap["peer_stats"]
        assert isinstance(peer_stats, dict) and len(peer_stats) == PEERS
        benchmark(native.stats_snapshot)
    finally:
        native.stop()


def test_baseline_build_a_1000_peer_dict(benchmark: Any) -> None:
    keys = ("packets_in", "bytes_in", "packets_out", "bytes_out", "rtp_in", "rtp_out",
            "nacks_in", "plis_in", "rtt_seconds", "loss", "srtp_profile", "connected")

    def build() -> dict[int, dict[str, int]]:
        return {i: dict.fromkeys(keys, i) for i in range(PEERS)}

    benchmark(build)
