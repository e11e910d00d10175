"""`LoadRun.crowd`: the load generator's participants held in a room around other clients (the
browser meeting of 60 uses it), against a real server process: they all join, connect their
media and publish until told to leave, then leave."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from helpers.load_server import SECRET, server_process
from visio_media.auth import mint_token
from visio_media.load.runner import LoadOptions, LoadRun

pytestmark = [pytest.mark.timeout(90)]

CROWD = 12


async def frames_until(ws: aiohttp.ClientWebSocketResponse, kind: str, n: int) -> list[Any]:
    got: list[Any] = []
    async with asyncio.timeout(20):
        while len(got) < n:
            msg = await ws.receive_json()
            if msg.get("type") == kind:
                got.append(msg)
    return got


async def test_a_crowd_joins_publishes_until_told_and_then_leaves(tmp_path: Path) -> None:
    async with server_process(tmp_path) as server:
        options = LoadOptions(
            url=server.ws_url,
            secret=SECRET,
            participants=CROWD,
            audio_publishers=CROWD,
            video_publishers=0,
            loud_speakers=0,
            video_slots=0,
            audio_slots=0,
            join_rate=50.0,
            room_prefix="crowd",
            progress=False,
        )
        run = LoadRun(options)
        joined, leave = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(run.crowd(joined, leave))
        async with aiohttp.ClientSession() as http:
            await asyncio.wait_for(joined.wait(), 30)
            failures = {p.identity: p.failure for p in run.participants if p.failure}
            assert not failures, failures
            token = mint_token(SECRET, identity="observer", room="crowd-0")
            ws = await http.ws_connect(server.ws_url)
            await ws.send_json({"type": "join", "token": token, "video_slots": 0})
            first = await ws.receive_json()
            assert first["type"] == "joined", first
            assert first["participants_total"] == CROWD

            # Their media is up and flowing while they are held.
            deadline = time.monotonic() + 20
            while True:
                clients = run.gen.stats()["clients"]
                sending = [c for c in clients.values() if c["connected"] and c["sent_rtp"] > 50]
                if len(sending) == CROWD or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert len(sending) == CROWD, clients
            assert not task.done()

            leave.set()
            participants = await asyncio.wait_for(task, 20)
            assert len(participants) == CROWD
            gone = await frames_until(ws, "participant_left", CROWD)
            assert {m["reason"] for m in gone} == {"left"}
            assert {m["identity"] for m in gone} == {p.identity for p in participants}
            await ws.close()
