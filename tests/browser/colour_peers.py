"""Peers whose video tells who they are: the colour-publisher side of the browser scenarios
(scenario_grid_pages.py, scenario_room_of_sixty.py).

* `Member`: a participant speaking protocol v2 over a plain WebSocket; with a colour it publishes
  a solid-colour camera through aiortc (and optionally a voice), without one it only holds its
  signalling socket (a cheap member of a big room).
* `SwitchableSine`: a voice that is loud (a sine) or silent on command and records when its
  first loud frame left the source (the start of a speaker change, measured at the source).
* `write_solid_y4m`: a one-colour Y4M file for Chromium's `--use-file-for-fake-video-capture`,
  so browser publishers are told apart by colour too.
* `TILES_JS` / `colour_distance`: what the web client's tiles show, judged by colour.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: helpers.media

from helpers.media import SineAudioTrack

COLOUR_TOLERANCE = 60.0  # Euclidean RGB distance to the expected colour


def colour_distance(a: dict[str, int] | None, rgb: tuple[int, int, int]) -> float:
    if not a:
        return math.inf
    return math.dist((a["r"], a["g"], a["b"]), rgb)


class SolidColourTrack:
    """A video track of one solid colour (aiortc MediaStreamTrack, built lazily)."""

    @staticmethod
    def make(rgb: tuple[int, int, int], fps: int = 10) -> Any:
        import numpy as np
        from aiortc import MediaStreamTrack
        from av import VideoFrame

        frame_rgb = np.zeros((120, 160, 3), dtype=np.uint8)
        frame_rgb[:, :] = rgb

        class Track(MediaStreamTrack):
            kind = "video"

            def __init__(self) -> None:
                super().__init__()
                self.start: float | None = None
                self.n = 0

            async def recv(self) -> Any:
                if self.start is None:
                    self.start = time.monotonic()
                else:
                    self.n += 1
                    wait = self.start + self.n / fps - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                frame = VideoFrame.from_ndarray(frame_rgb, format="rgb24")
                frame.pts = self.n * (90000 // fps)
                frame.time_base = fractions.Fraction(1, 90000)
                return frame

        return Track()


class Member:
    """One participant speaking protocol v2 over a plain WebSocket; with a colour it publishes
    a solid-colour camera (aiortc), without one it only holds its signalling socket."""

    def __init__(
        self, identity: str, name: str, rgb: tuple[int, int, int] | None, *, voice: Any = None
    ) -> None:
        self.identity = identity
        self.name = name
        self.rgb = rgb
        self.voice = voice  # an aiortc audio track it also publishes (a microphone), or None
        self.ws: Any = None
        self.pc: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.errors: list[str] = []
        self.answered = asyncio.Event()  # our offer is answered: server offers can be taken

    async def join(self, session: Any, ws_url: str, token: str) -> None:
        self.ws = await session.ws_connect(ws_url, heartbeat=None)
        await self.ws.send_json(
            {"type": "join", "token": token, "video_slots": 0, "audio_slots": 0}
        )
        msg = await self._next_reply()
        if msg.get("type") != "joined":
            raise RuntimeError(f"{self.identity}: join answered {msg}")
        self.reader = asyncio.create_task(self._read(), name=f"reader {self.identity}")
        if self.rgb is None:
            return
        from aiortc import RTCPeerConnection, RTCSessionDescription
        from aiortc.rtcconfiguration import RTCConfiguration

        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        transceiver = self.pc.addTransceiver(SolidColourTrack.make(self.rgb), direction="sendonly")
        sources = {}
        if self.voice is not None:
            mic = self.pc.addTransceiver(self.voice, direction="sendonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sources[transceiver.mid] = "camera"
        if self.voice is not None:
            sources[mic.mid] = "microphone"
        await self.ws.send_json(
            {
                "type": "offer",
                "id": "o1",
                "sdp": self.pc.localDescription.sdp,
                "sources": sources,
            }
        )
        answer = await asyncio.wait_for(self.replies.get(), 15)
        if answer.get("type") != "answer":
            raise RuntimeError(f"{self.identity}: offer answered {answer}")
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        self.answered.set()

    async def _next_reply(self) -> dict[str, Any]:
        while True:
            msg = await asyncio.wait_for(self.ws.receive_json(), 15)
            if msg.get("type") in ("joined", "error"):
                return dict(msg)

    async def _read(self) -> None:
        from aiohttp import WSMsgType

        async for raw in self.ws:
            if raw.type != WSMsgType.TEXT:
                break
            try:
                await self._handle(json.loads(raw.data))
            except Exception as e:  # recorded: the scenario fails on member errors
                self.errors.append(f"handling a frame: {e!r}")

    async def _handle(self, msg: dict[str, Any]) -> None:
        from aiortc import RTCSessionDescription

        kind = msg.get("type")
        if kind in ("answer",) or (kind == "error" and msg.get("ref") == "o1"):
            await self.replies.put(msg)
        elif kind == "offer" and self.pc is not None:
            # Our receive slots (none asked): answer so the exchange completes, after the answer
            # to our own offer is applied (it reaches us first).
            await asyncio.wait_for(self.answered.wait(), 15)
            await self.pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            await self.ws.send_json({"type": "answer", "sdp": self.pc.localDescription.sdp})
        elif kind == "error":
            self.errors.append(f"{msg.get('code')}: {msg.get('message')}")

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        if self.pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pc.close(), 5)
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)


# JS: the tiles on screen with their sampled colours, and the receive slots.
TILES_JS = """() => visio.tileList.map((t) => ({...t, colour: visio.sampleTileColor(t.key)}))"""
SHOWN_JS = f"""() => ({{tiles: ({TILES_JS})(), slots: visio.slots}})"""


def shows(
    tiles: list[dict[str, Any]],
    slots: list[dict[str, Any]],
    identity: str,
    rgb: tuple[int, int, int],
    name: str | None = None,
) -> bool:
    """`identity` has a camera tile playing a slot that the server says carries `identity`,
    and the tile's picture is `rgb` (and the tile shows `name`, if given)."""
    slot_of = {s["mid"]: s for s in slots}
    for t in tiles:
        if t["identity"] != identity or t["source"] != "camera" or not t["mid"]:
            continue
        slot = slot_of.get(t["mid"])
        return (
            slot is not None
            and slot["identity"] == identity
            and colour_distance(t["colour"], rgb) <= COLOUR_TOLERANCE
            and (name is None or t["name"] == name)
        )
    return False


async def wait_tile_colours(
    page: Any,
    want: dict[str, tuple[int, int, int]],
    within: float,
    names: dict[str, str] | None = None,
) -> tuple[bool, Any]:
    """Until every identity in `want` has a tile whose video shows its colour, from a slot the
    server's `slots` frames name it in (and, with `names`, whose name is that identity's).
    Returns (ok, the tiles then or what was missing)."""
    deadline = time.monotonic() + within
    shown: dict[str, Any] = {"tiles": [], "slots": []}
    while time.monotonic() < deadline:
        shown = await page.evaluate(SHOWN_JS)
        names = names or {}
        if all(
            shows(shown["tiles"], shown["slots"], i, rgb, names.get(i)) for i, rgb in want.items()
        ):
            return True, [
                {k: t[k] for k in ("identity", "name", "mid", "colour", "videoWidth", "place")}
                for t in shown["tiles"]
            ]
        await asyncio.sleep(0.3)
    return False, {"want": want} | shown


class SwitchableSine(SineAudioTrack):
    """A sine voice that can be made silent (zero samples) and loud again. `loud_at` is the
    wall-clock time (time.time(), comparable with the pages' Date.now()) at which the first
    loud frame after `set_loud(True)` was produced: when the speaker starts being loud at its
    source."""

    def __init__(self, frequency: float, *, loud: bool, amplitude: float = 0.5) -> None:
        super().__init__(frequency, amplitude=amplitude)
        self.loud = loud
        self.loud_at: float | None = None

    def set_loud(self, loud: bool) -> None:
        if loud and not self.loud:
            self.loud_at = None
        self.loud = loud

    def _samples(self, first: int, count: int) -> Any:
        pcm = super()._samples(first, count)
        if not self.loud:
            return pcm * 0
        if self.loud_at is None:
            self.loud_at = time.time()
        return pcm


def write_solid_y4m(
    path: Path,
    rgb: tuple[int, int, int],
    width: int = 320,
    height: int = 180,
    frames: int = 15,
    fps: int = 15,
) -> Path:
    """A Y4M (4:2:0, BT.601 limited range) file of `frames` frames of one colour."""
    r, g, b = rgb
    y = round(16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255)
    u = round(128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255)
    v = round(128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255)
    frame = (
        b"FRAME\n"
        + bytes([y]) * (width * height)
        + bytes([u]) * (width * height // 4)
        + bytes([v]) * (width * height // 4)
    )
    header = f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420\n".encode()
    path.write_bytes(header + frame * frames)
    return path
