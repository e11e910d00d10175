"""A client that vanishes is removed within a bounded time (issue 6, defect 11).

A participant killed with SIGKILL (no `leave`, no close frame, media stops at once) used to stay
in the room, silent, for 12 s or more (until ICE consent ran out or the 20 s reconnect grace
ended). Now a participant whose signalling link is gone *and* whose media is silent is removed
after `room.vanished_timeout_seconds` (default 5 s) and the others are told; one whose link
dropped but whose media still flows keeps its grace to resume (tests/signalling/test_reconnect).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from signalling.live_server import MediaClient, live_server, token
from visio_media.client import ParticipantLeft
from visio_media.server import STATE

pytestmark = pytest.mark.asyncio(loop_scope="function")

SCRIPT = Path(__file__).resolve().parent.parent / "helpers" / "sdk_process.py"


async def _spawn(url: str, identity: str, hz: float) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), url, token(identity), str(hz),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        line = await proc.stdout.readline()
    assert line.strip() == b"published", line
    return proc


@pytest.mark.parametrize("vanish", [5.0, 2.0])
async def test_a_killed_participant_is_removed_within_the_vanished_timeout(vanish: float) -> None:
    async with live_server(room__vanished_timeout_seconds=vanish) as server:
        watcher = MediaClient(server.ws_url, "watcher")
        proc: asyncio.subprocess.Process | None = None
        left: list[tuple[float, ParticipantLeft]] = []
        someone_left = asyncio.Event()

        def on_left(e: ParticipantLeft) -> None:
            left.append((time.monotonic(), e))
            someone_left.set()

        watcher.client.on(ParticipantLeft, on_left)
        try:
            await watcher.start_receiving()
            proc = await _spawn(server.ws_url, "doomed", 520.0)
            audio = await watcher.receiver("doomed", "audio", within=20)
            assert await audio.wait_frames(25, 20.0), audio.describe()
            killed_at = time.monotonic()
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
            async with asyncio.timeout(30):
                await someone_left.wait()
            at, event = left[0]
            took = at - killed_at
            assert event.identity == "doomed"
            assert event.reason == "disconnected"
            # The link drops at once (the kernel closes the socket), the media goes silent:
            # removal follows the vanished timeout, with a poll step of slack.
            assert took <= vanish + 2.0, f"removed {took:.1f} s after the kill"
            assert took >= vanish - 0.5, f"removed {took:.1f} s after the kill: too early"
            room = server.app[STATE].rooms.rooms["r1"]
            assert set(room.participants) == {"watcher"}
        finally:
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
            await watcher.close()
