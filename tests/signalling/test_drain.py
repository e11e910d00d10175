"""Graceful shutdown of the real server process (``python -m visio_media serve``) on SIGTERM:
``/readyz`` turns 503 at once while ``/healthz`` stays 200, new joins are refused, the calls in
progress keep their media until ``drain.deadline_seconds``, then everyone gets ``left``
(``server_shutdown``, close 1001) and the process exits 0. A second SIGTERM exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from signalling.live_server import SECRET, MediaClient, RawSocket, start_call, token, wait_until
from visio_media.client import Draining, Left

pytestmark = [pytest.mark.asyncio(loop_scope="function"), pytest.mark.timeout(60)]

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 5.0
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)/")


@dataclass
class ServerProcess:
    proc: asyncio.subprocess.Process
    port: int = 0
    log: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return "".join(self.log[-60:])

    async def wait_exit(self, within: float) -> int | None:
        try:
            async with asyncio.timeout(within):
                return await self.proc.wait()
        except TimeoutError:
            return None


async def _read_log(server: ServerProcess, listening: asyncio.Future[int]) -> None:
    stream = server.proc.stderr
    assert stream is not None
    while line := (await stream.readline()).decode(errors="replace"):
        server.log.append(line)
        m = LISTENING.search(line)
        if m and not listening.done():
            listening.set_result(int(m.group(1)))
    if not listening.done():
        listening.set_exception(RuntimeError("the server exited before listening"))


@contextlib.asynccontextmanager
async def server_process(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    config = tmp_path / "visio.toml"
    config.write_text(
        f"[drain]\ndeadline_seconds = {DEADLINE}\n\n"
        '[media]\nshards = 1\nbind_ip = "127.0.0.1"\n\n'
        "[room]\nreconnect_grace_seconds = 20.0\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISIO_")}
    env["VISIO_SECRET"] = SECRET
    env["PYTHONUNBUFFERED"] = "1"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "visio_media",
        "serve",
        "--dev",
        "--config",
        str(config),
        "--port",
        "0",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(REPO),
        env=env,
    )
    server = ServerProcess(proc)
    listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    server.reader = asyncio.create_task(_read_log(server, listening))
    try:
        try:
            async with asyncio.timeout(20):
                server.port = await listening
        except (TimeoutError, RuntimeError) as e:
            raise AssertionError(f"server did not start: {e}\n{server.output()}") from e
        yield server
    finally:
        if proc.returncode is None:
            proc.kill()  # only the process this fixture started, by its handle
            await proc.wait()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(5):
                await server.reader


async def http_status(session: aiohttp.ClientSession, url: str) -> int:
    async with asyncio.timeout(2):
        async with session.get(url) as r:
            await r.read()
            return r.status


async def test_sigterm_drains_then_exits(tmp_path: Path) -> None:
    async with server_process(tmp_path) as server:
        a = MediaClient(server.ws_url, "alice", audio_hz=440.0, video=True)
        b = MediaClient(server.ws_url, "bob", audio_hz=660.0, video=True)
        http = aiohttp.ClientSession()
        try:
            assert await http_status(http, server.http_url + "/readyz") == 200
            await start_call(a, b)
            video_at_b = await b.receiver("alice", "video")
            video_at_a = await a.receiver("bob", "video")
            assert await video_at_b.wait_frames(10, 15.0), video_at_b.describe()
            assert await video_at_a.wait_frames(10, 15.0), video_at_a.describe()

            sigterm_at = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)

            # Not ready within 1 s, but alive.
            while await http_status(http, server.http_url + "/readyz") != 503:
                assert time.monotonic() - sigterm_at < 1.0, "readyz still 200 after 1 s"
                await asyncio.sleep(0.05)
            assert time.monotonic() - sigterm_at < 1.0
            assert await http_status(http, server.http_url + "/healthz") == 200

            # Everyone in a call is warned.
            for c in (a, b):
                warned = await c.client.wait_for(Draining, timeout=2.0)
                assert warned.deadline_seconds == DEADLINE

            # A newcomer is refused (or cannot even connect).
            try:
                late = await RawSocket.open(server.ws_url)
            except (aiohttp.ClientError, OSError):
                late = None
            if late is not None:
                try:
                    reply = await late.request({"type": "join", "token": token("carol")})
                    assert (reply["type"], reply.get("code")) == ("error", "shutting_down")
                    assert await late.wait_closed() == 1001
                finally:
                    await late.close()

            # Media keeps flowing during the first seconds of the drain.
            frames_b = [video_at_b.frames]
            frames_a = [video_at_a.frames]
            while time.monotonic() - sigterm_at < DEADLINE - 1.5:
                await asyncio.sleep(0.5)
                frames_b.append(video_at_b.frames)
                frames_a.append(video_at_a.frames)
            assert all(y > x for x, y in itertools.pairwise(frames_b)), frames_b
            assert all(y > x for x, y in itertools.pairwise(frames_a)), frames_a
            assert await http_status(http, server.http_url + "/healthz") == 200

            # At the deadline: left (server_shutdown), close 1001.
            for c in (a, b):
                left = await c.client.wait_for(Left, timeout=DEADLINE + 3.0)
                assert left.reason == "server_shutdown"
                await asyncio.sleep(0)
            left_after = time.monotonic() - sigterm_at
            assert DEADLINE - 1.0 <= left_after <= DEADLINE + 3.0, left_after
            for c in (a, b):
                await wait_until(lambda c=c: not c.client.connected, 3.0, what="socket closed")
                assert c.client.close_code == 1001, c.client.close_code

            code = await server.wait_exit(DEADLINE + 5.0 - (time.monotonic() - sigterm_at))
            assert code == 0, f"exit {code} after SIGTERM\n{server.output()}"
            assert time.monotonic() - sigterm_at <= DEADLINE + 5.0
            for c in (a, b):
                assert not c.client.failures, c.client.failures
        finally:
            await http.close()
            await a.close()
            await b.close()


async def test_drain_ends_early_when_everyone_leaves(tmp_path: Path) -> None:
    async with server_process(tmp_path) as server:
        a = MediaClient(server.ws_url, "alice", audio_hz=440.0)
        try:
            await a.start()
            sigterm_at = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            await a.client.wait_for(Draining, timeout=2.0)
            await a.client.leave()
            code = await server.wait_exit(DEADLINE)
            assert code == 0, f"exit {code}\n{server.output()}"
            assert time.monotonic() - sigterm_at < DEADLINE - 1.0
        finally:
            await a.close()


async def test_second_sigterm_exits_at_once(tmp_path: Path) -> None:
    async with server_process(tmp_path) as server:
        a = MediaClient(server.ws_url, "alice", audio_hz=440.0)
        try:
            await a.start()
            server.proc.send_signal(signal.SIGTERM)
            await a.client.wait_for(Draining, timeout=2.0)
            assert server.proc.returncode is None  # draining: waits for the deadline
            second_at = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            code = await server.wait_exit(2.0)
            assert code is not None, (
                f"still running 2 s after the second SIGTERM\n{server.output()}"
            )
            assert time.monotonic() - second_at < 2.0
            assert code != -signal.SIGTERM, "killed by the signal rather than exiting"
        finally:
            await a.close()
