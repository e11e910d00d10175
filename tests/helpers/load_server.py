"""A real `visio-media serve` process for load tests and benchmarks, and `visio-media load` as
a subprocess (the real CLI), both on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SECRET = "l0ad-t3st-s3cret-for-the-smoke-run-Xq7Pw2Zr"  # 42 bytes
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)/")


@dataclass
class Server:
    proc: asyncio.subprocess.Process
    port: int = 0
    log: list[str] = field(default_factory=list)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def output(self) -> str:
        return "".join(self.log[-40:])


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISIO_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextlib.asynccontextmanager
async def server_process(
    tmp_path: Path,
    extra_config: str = "",
    *,
    secret: str = SECRET,
    nofile: tuple[int, int] | None = None,
) -> AsyncIterator[Server]:
    """`visio-media serve --dev` on 127.0.0.1, a free port, with a known VISIO_SECRET; one
    shard, and `extra_config` (TOML) appended to the config; started with RLIMIT_NOFILE =
    `nofile` if given."""
    config = tmp_path / "visio.toml"
    config.write_text('[media]\nshards = 1\nbind_ip = "127.0.0.1"\n' + extra_config)
    env = _env()
    env["VISIO_SECRET"] = secret

    def limit_fds() -> None:  # in the child, before exec
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "visio_media", "serve", "--dev", "--config", str(config),
        "--port", "0",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(REPO),
        env=env,
        preexec_fn=limit_fds if nofile is not None else None,
    )
    server = Server(proc)
    listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def read_log() -> None:
        assert proc.stderr is not None
        while line := (await proc.stderr.readline()).decode(errors="replace"):
            if len(server.log) < 10_000:
                server.log.append(line)
            m = LISTENING.search(line)
            if m and not listening.done():
                listening.set_result(int(m.group(1)))
        if not listening.done():
            listening.set_exception(RuntimeError("the server exited before listening"))

    reader = asyncio.create_task(read_log())
    try:
        try:
            async with asyncio.timeout(30):
                server.port = await listening
        except (TimeoutError, RuntimeError) as e:
            raise AssertionError(f"server did not start: {e}\n{server.output()}") from e
        yield server
    finally:
        if proc.returncode is None:
            proc.kill()  # only the process this fixture started, by its handle
            await proc.wait()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            async with asyncio.timeout(5):
                await reader


async def run_load(
    server: Server | None, *args: str, limit_seconds: float = 60
) -> tuple[int, str, str]:
    """`python -m visio_media load` as a subprocess (against `server`, or with no --url for
    `--baseline relay`); (exit status, stdout, stderr)."""
    env = _env()
    env["VISIO_SECRET"] = SECRET
    url = ("--url", server.ws_url) if server is not None else ()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "visio_media", "load", *url, *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(REPO),
        env=env,
    )
    try:
        async with asyncio.timeout(limit_seconds):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
