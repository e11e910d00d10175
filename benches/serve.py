"""A real `visio-media serve --dev` for the scenario benches: 127.0.0.1, a free port, one shard,
rooms of up to ``max_participants``; stopped by its own handle."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)/")


def bench_env(secret: str) -> dict[str, str]:
    """This environment without VISIO_* settings, with the bench's secret."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISIO_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["VISIO_SECRET"] = secret
    return env


@contextmanager
def dev_server(tmp_path: Path, secret: str, max_participants: int) -> Iterator[int]:
    """Starts the server and yields its HTTP port."""
    config = tmp_path / "visio.toml"
    config.write_text(
        '[media]\nshards = 1\nbind_ip = "127.0.0.1"\n'
        f"[room]\nmax_participants = {max_participants}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "visio_media", "serve", "--dev", "--config", str(config),
         "--port", "0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        cwd=str(REPO), env=bench_env(secret),
    )
    port: list[int] = []
    ready = threading.Event()

    def read_log() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:  # read to the end, so the pipe never fills
            m = LISTENING.search(raw.decode(errors="replace"))
            if m and not port:
                port.append(int(m.group(1)))
                ready.set()
        ready.set()

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        if not ready.wait(30) or not port:
            pytest.fail("the server did not start listening")
        yield port[0]
    finally:
        proc.kill()
        proc.wait(10)
        reader.join(5)
