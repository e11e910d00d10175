"""Connection floods without authentication (issue 6, defect 4).

Thousands of connections that never join — WebSockets upgraded but silent, and "slowloris"
clients that send their request headers a byte at a time and never finish — must not stop a real
participant from joining and talking, nor /healthz from answering.

The server runs as its own process (``python -m visio_media serve``), started with the open-file
limit most systems give a service by default (soft 1024), so that its file descriptors are what
the attack is after, as in production. The attackers and the real SDK clients (aiortc) run in
this test process, which raises its own limit to the hard limit for the duration.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import resource
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from helpers import load_server
from helpers.media import dominant_frequencies
from signalling.live_server import (
    SECRET,
    MediaClient,
    RawSocket,
    live_server,
    start_call,
    token,
)

pytestmark = [pytest.mark.timeout(120)]  # async tests run in asyncio auto mode

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)/")
DEFAULT_SOFT_LIMIT = 1024  # what systemd and most shells give a process
UNJOINED_WEBSOCKETS = 2000
SLOWLORIS = 1500
FREQ_A, FREQ_B = 440.0, 660.0


@pytest.fixture(autouse=True)
def raised_fd_limit() -> Iterator[int]:
    """This process holds every attacking socket: raise its soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = UNJOINED_WEBSOCKETS + SLOWLORIS + 512
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"the hard open-file limit ({hard}) is below the {need} this test needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ----------------------------------------------------------------------------- the server


def server_process(
    tmp_path: Path, nofile: tuple[int, int]
) -> contextlib.AbstractAsyncContextManager[load_server.Server]:
    """``visio-media serve --dev`` on 127.0.0.1, started with RLIMIT_NOFILE = ``nofile``."""
    return load_server.server_process(tmp_path, secret=SECRET, nofile=nofile)


ServerProcess = load_server.Server


# ----------------------------------------------------------------------------- the attackers


def upgrade_request(port: int) -> bytes:
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    return (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


@dataclass
class Flood:
    """Raw TCP attackers: ``unjoined`` WebSockets (upgrade, then silence) and ``slowloris``
    clients (a request line, then one header byte per second, never the end of the headers)."""

    port: int
    upgraded: int = 0  # WebSockets the server upgraded (101)
    slow_open: int = 0  # slowloris connections established
    closed_by_server: int = 0
    failed: int = 0  # could not even connect
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            async with asyncio.timeout(3):
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except (OSError, TimeoutError):
            self.failed += 1
            return None
        self.writers.append(writer)
        return reader, writer

    async def _unjoined(self, gate: asyncio.Semaphore) -> None:
        async with gate:
            conn = await self._connect()
            if conn is None:
                return
            reader, writer = conn
            writer.write(upgrade_request(self.port))
        with contextlib.suppress(OSError):
            head = await reader.readuntil(b"\r\n\r\n")
            if head.startswith(b"HTTP/1.1 101"):
                self.upgraded += 1
            while await reader.read(4096):  # never answer anything, never join
                pass
        self.closed_by_server += 1

    async def _slowloris(self, gate: asyncio.Semaphore) -> None:
        async with gate:
            conn = await self._connect()
            if conn is None:
                return
            reader, writer = conn
            self.slow_open += 1
            writer.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nX-".encode())

        async def trickle() -> None:
            while True:
                await asyncio.sleep(1.0)
                writer.write(b"a")

        dripping = asyncio.create_task(trickle())
        try:
            with contextlib.suppress(OSError):
                while await reader.read(4096):
                    pass
            self.closed_by_server += 1
        finally:
            dripping.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await dripping

    def start(self, unjoined: int, slowloris: int) -> None:
        gate = asyncio.Semaphore(100)
        for i in range(max(unjoined, slowloris)):
            if i < unjoined:
                self.tasks.append(asyncio.create_task(self._unjoined(gate)))
            if i < slowloris:
                self.tasks.append(asyncio.create_task(self._slowloris(gate)))

    async def settle(self, within: float) -> None:
        """Waits until the flood stops making progress (every WebSocket answered or closed and
        nothing changed for 3 s — a starved server answers nothing), at most ``within`` s."""
        deadline = time.monotonic() + within
        last: tuple[int, ...] = ()
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            now = (self.upgraded, self.slow_open, self.closed_by_server, self.failed)
            if now != last:
                last, stable_since = now, time.monotonic()
            elif time.monotonic() - stable_since >= 3.0:
                return
            await asyncio.sleep(0.2)

    def describe(self) -> str:
        return (
            f"{self.upgraded} WebSockets upgraded, {self.slow_open} slowloris open, "
            f"{self.closed_by_server} closed by the server, {self.failed} could not connect"
        )

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for w in self.writers:
            w.transport.abort()
        self.writers.clear()


# ----------------------------------------------------------------------------- the real users


async def healthz(url: str, within: float = 10.0) -> int:
    async with aiohttp.ClientSession() as s, asyncio.timeout(within):
        async with s.get(url + "/healthz") as r:
            return r.status


async def real_call_works(server: ServerProcess) -> None:
    """Two SDK clients join a room and each hears the other's tone."""
    a = MediaClient(server.ws_url, "alice", audio_hz=FREQ_A)
    b = MediaClient(server.ws_url, "bob", audio_hz=FREQ_B)
    try:
        async with asyncio.timeout(40):
            await start_call(a, b, within=20.0)
        for me, other, hz in ((a, "bob", FREQ_B), (b, "alice", FREQ_A)):
            audio = me.receivers[(other, "audio")]
            assert await audio.wait_frames(50, 20.0), f"{me.identity}: {audio.describe()}"
            await asyncio.sleep(0.5)
            peak = dominant_frequencies(audio.recent_audio(0.5), audio.sample_rate)[0]
            assert abs(peak - hz) <= 5.0, f"{me.identity} hears {peak:.1f} Hz from {other}"
    finally:
        await a.close()
        await b.close()


async def attack_then_call(server: ServerProcess) -> None:
    assert await healthz(server.http_url) == 200
    flood = Flood(server.port)
    flood.start(UNJOINED_WEBSOCKETS, SLOWLORIS)
    try:
        await flood.settle(within=25.0)
        log.info("under attack: %s; server holds %d fds", flood.describe(), server.fds())
        try:
            status = await healthz(server.http_url)
        except (TimeoutError, aiohttp.ClientError) as e:
            raise AssertionError(
                f"/healthz did not answer under attack ({flood.describe()}): {e!r}\n"
                + server.output()
            ) from e
        assert status == 200
        try:
            await real_call_works(server)
        except (TimeoutError, aiohttp.ClientError) as e:
            raise AssertionError(
                f"a real call failed under attack ({flood.describe()}): {e!r}\n" + server.output()
            ) from e
        assert await healthz(server.http_url) == 200
    finally:
        await flood.stop()


async def test_real_call_survives_unjoined_and_slowloris_floods(
    tmp_path: Path, raised_fd_limit: int
) -> None:
    """The default service limit (soft 1024): the server raises it to the hard limit, and its
    caps bound what the attackers hold."""
    async with server_process(tmp_path, (DEFAULT_SOFT_LIMIT, raised_fd_limit)) as server:
        await attack_then_call(server)
        assert any("open files" in line for line in server.log), server.output()


async def test_real_call_survives_floods_when_the_fd_limit_cannot_be_raised(
    tmp_path: Path,
) -> None:
    """Hard limit 1024 as well: nothing to raise, the caps alone keep fds for real users."""
    limit = (DEFAULT_SOFT_LIMIT, DEFAULT_SOFT_LIMIT)
    async with server_process(tmp_path, limit) as server:
        await attack_then_call(server)
        assert server.fds() < DEFAULT_SOFT_LIMIT


# ------------------------------------------------------------------ the bounds, one by one


async def scrape(http_url: str) -> dict[str, float]:
    """``/metrics`` as {series (name and labels): value}."""
    async with aiohttp.ClientSession() as http:
        async with asyncio.timeout(10):
            async with http.get(http_url + "/metrics") as r:
                assert r.status == 200, r.status
                text = await r.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


async def read_until_closed(reader: asyncio.StreamReader, within: float) -> bytes:
    """Everything the server sends until it closes the connection (TimeoutError if it does
    not within ``within`` s)."""
    data = b""
    async with asyncio.timeout(within):
        while chunk := await reader.read(4096):
            data += chunk
    return data


async def test_slowloris_connection_is_closed_after_the_header_timeout() -> None:
    async with live_server(server__header_timeout_seconds=1.0) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        try:
            writer.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nX-".encode())
            started = time.monotonic()

            async def trickle() -> None:
                while True:
                    await asyncio.sleep(0.2)
                    writer.write(b"a")

            dripping = asyncio.create_task(trickle())
            try:
                await read_until_closed(reader, within=10.0)
            finally:
                dripping.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await dripping
            # Bytes keep arriving, yet the timer that started with the connection ends it.
            assert 0.9 <= time.monotonic() - started < 8.0
            assert await healthz(srv.http_url) == 200, "a complete request is served"
        finally:
            writer.transport.abort()


async def test_oldest_idle_connections_make_room_for_new_ones() -> None:
    async with live_server(server__max_pending_connections=5) as srv:
        silent = [await asyncio.open_connection("127.0.0.1", srv.port) for _ in range(8)]
        try:
            # The three oldest were closed to let the five newest in.
            for i, (reader, _) in enumerate(silent[:3]):
                assert await read_until_closed(reader, within=5.0) == b"", i
            for reader, _ in silent[3:]:
                assert not reader.at_eof()
            # A real request gets in (closing the oldest idle one), and is served.
            assert await healthz(srv.http_url) == 200
            assert await read_until_closed(silent[3][0], within=5.0) == b""
            # An SRE sees it: every eviction counted (the scrape may evict one more).
            metrics = await scrape(srv.http_url)
            assert metrics['visio_connections_evicted_total{kind="idle_http"}'] >= 4, metrics
        finally:
            for _, w in silent:
                w.transport.abort()


async def test_oldest_unjoined_websocket_is_closed_with_1013_for_a_new_one() -> None:
    async with live_server(signalling__max_unjoined=3) as srv:
        socks = [await RawSocket.open(srv.ws_url) for _ in range(3)]
        real = await RawSocket.open(srv.ws_url)
        try:
            error = await socks[0].recv()
            assert error["type"] == "error" and error["code"] == "server_busy", error
            assert await socks[0].wait_closed() == 1013
            # The real client joins; the other two are still waiting.
            reply = await real.request({"type": "join", "token": token("alice")})
            assert reply["type"] == "joined", reply
            for s in socks[1:]:
                assert (await s.request({"type": "ping"}))["type"] == "pong"
            metrics = await scrape(srv.http_url)
            assert metrics['visio_connections_evicted_total{kind="unjoined_websocket"}'] == 1
            assert metrics["visio_websockets_unjoined"] == 2, metrics
        finally:
            for s in (*socks, real):
                await s.close()


@pytest.mark.parametrize(
    "key,value",
    [
        ("server.header_timeout_seconds", 0),
        ("server.header_timeout_seconds", -1.0),
        ("server.header_timeout_seconds", 7200),
        ("server.header_timeout_seconds", "10"),
        ("server.max_pending_connections", 0),
        ("server.max_pending_connections", 1.5),
        ("signalling.max_unjoined", 0),
        ("signalling.max_unjoined", True),
    ],
)
def test_bad_flood_limits_are_refused_naming_the_key(key: str, value: object) -> None:
    from visio_media.config import load_config
    from visio_media.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(None, env={}, dev=True, overrides={key: value})
