"""Scenario: the web client's paged grid and speaker view in a room larger than a page, each tile
checked by the colour of the video it shows.

Run inside a network namespace that has only `lo` (see netns.py), with the real server
(`python -m visio_media serve --dev`). The room holds 7 colour publishers (aiortc peers speaking
protocol v2 directly: each sends one solid-colour camera and asks for no receive slots) and 50
more participants that only hold a signalling socket, so the room has 58 people: more than one
`joined` page of the participant list. One Chromium page joins through the UI with `?tiles=4`
(ourselves + 3 others per grid page) and `?video_slots=3`, so every page change must move the
server's slots to the page's participants (protocol v2 `layout` → `slots`).

Checks: the participant list arrives whole (paged); "Page 1 of 19"; each tile of page 1 shows
its publisher's colour; after "Next page" the tiles of page 2 show theirs; in the speaker view,
pinning a participant (a click on the tile) shows them big with their colour and the `layout`
sent names them pinned and first.

Prints one JSON object on its last stdout line; exit 0 (all passed), 1 (some check failed),
2 (crashed or timed out).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import math
import sys
import time
from typing import Any

from scenario_meeting_common import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    REPO,
    Scenario,
    ServerProcess,
    log,
    main,
    open_meeting_page,
    page_debug,
    patch_aioice,
)

sys.path.insert(0, str(REPO / "tests"))

ROOM = "big"
COLOURS = [  # distinct, saturated: VP8 keeps them within a few units
    (220, 40, 40),
    (40, 200, 60),
    (40, 80, 230),
    (230, 210, 40),
    (210, 50, 200),
    (40, 200, 210),
    (240, 140, 30),
]
IDLE_PARTICIPANTS = 50
PAGE_TILES = 4  # ourselves + 3 others
VIDEO_SLOTS = 3
VIEWPORT = {"width": 1000, "height": 640}
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
        self, identity: str, name: str, rgb: tuple[int, int, int] | None, *, speaks: bool = False
    ) -> None:
        self.identity = identity
        self.name = name
        self.rgb = rgb
        self.speaks = speaks  # also publishes a loud sine (the room's active speaker)
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
        if self.speaks:
            from helpers.media import SineAudioTrack

            mic = self.pc.addTransceiver(SineAudioTrack(440.0, amplitude=0.5), direction="sendonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sources[transceiver.mid] = "camera"
        if self.speaks:
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


# JS: the tiles on screen with their sampled colours.
TILES_JS = """() => visio.tileList.map((t) => ({...t, colour: visio.sampleTileColor(t.key)}))"""


class GridPages(Scenario):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__("grid_pages")
        self.args = args
        self.console: list[str] = []
        self.members: list[Member] = []

    async def run(self) -> None:
        import aiohttp
        from playwright.async_api import async_playwright

        from visio_media.auth import mint_token

        patch_aioice()
        server = ServerProcess(self.name)
        self.result["server_log"] = str(server.log_path)
        try:
            await server.start()
            self.mark("server_ready")
            ws_url = f"ws://127.0.0.1:{server.port}/ws"
            async with aiohttp.ClientSession() as http:
                people = [(f"colour-{i}", f"Colour {i}", rgb) for i, rgb in enumerate(COLOURS)]
                speaker = people[-1][0]  # on page 3 of the grid: not in the first strip
                people += [
                    (f"idle-{i:02d}", f"Idle {i:02d}", None) for i in range(IDLE_PARTICIPANTS)
                ]
                for identity, name, rgb in people:
                    m = Member(identity, name, rgb, speaks=identity == speaker)
                    self.members.append(m)
                    token = mint_token(server.secret, identity=identity, room=ROOM, name=name)
                    await m.join(http, ws_url, token)
                self.mark("members_joined")
                async with async_playwright() as pw:
                    browser = await pw.chromium.launch(
                        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
                    )
                    page = await open_meeting_page(
                        browser,
                        server.url,
                        "p1",
                        self.console,
                        viewport=VIEWPORT,
                        query=f"tiles={PAGE_TILES}&video_slots={VIDEO_SLOTS}",
                    )
                    await page.fill("#name-input", "Ada Lovelace")
                    await page.fill("#room-input", ROOM)
                    await page.click("#join-button")
                    await page.wait_for_function(
                        "() => ['joined', 'failed'].includes(visio.state)", timeout=20_000
                    )
                    self.mark("page_joined")
                    try:
                        await self.steps(page)
                    finally:
                        self.result["page"] = await page_debug(page)
                        self.result["member_errors"] = {
                            m.identity: m.errors for m in self.members if m.errors
                        }
                    await browser.close()
        finally:
            self.result["console"] = self.console[-60:]
            for m in self.members:
                await m.close()
            self.result["server_exit"] = await server.stop()
            self.result["server_log_tail"] = server.log_tail(3000)

    async def wait_colours(
        self, page: Any, want: dict[str, tuple[int, int, int]]
    ) -> tuple[bool, Any]:
        """Until every identity in `want` has a tile whose video shows its colour."""
        deadline = time.monotonic() + self.args.media_timeout
        tiles: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            tiles = await page.evaluate(TILES_JS)
            by_id = {t["identity"]: t for t in tiles if t["source"] == "camera"}
            if all(
                ident in by_id
                and by_id[ident]["mid"]
                and colour_distance(by_id[ident]["colour"], rgb) <= COLOUR_TOLERANCE
                for ident, rgb in want.items()
            ):
                return True, [
                    {k: t[k] for k in ("identity", "mid", "colour", "videoWidth", "place")}
                    for t in tiles
                ]
            await asyncio.sleep(0.5)
        return False, {"want": want, "tiles": tiles, "slots": await page.evaluate("visio.slots")}

    async def steps(self, page: Any) -> None:
        state = await page.evaluate("() => ({state: visio.state, error: visio.error})")
        if not self.check("page_joined", state["state"] == "joined", state):
            return
        others = len(self.members)
        try:
            await page.wait_for_function(
                f"() => visio.participantsComplete && visio.participants.length === {others}",
                timeout=15_000,
            )
        except Exception:
            pass
        got = await page.evaluate(
            "() => ({total: visio.participantsTotal, complete: visio.participantsComplete,"
            " n: visio.participants.length, slots: visio.grantedSlots})"
        )
        self.check(
            "participant_list_arrives_whole_in_pages",
            got["total"] == others and got["complete"] and got["n"] == others,
            got,
        )
        self.check(
            "granted_the_slots_asked",
            got["slots"] == {"video": VIDEO_SLOTS, "audio": 3},
            got["slots"],
        )
        pages = math.ceil(others / (PAGE_TILES - 1))
        label = await page.inner_text("#page-label")
        self.check("pager_says_page_1_of_n", label == f"Page 1 of {pages}", label)

        colours = {m.identity: m.rgb for m in self.members if m.rgb is not None}
        ids = list(colours)
        ok, detail = await self.wait_colours(page, {i: colours[i] for i in ids[:3]})
        self.check("page1_tiles_show_their_publishers_colours", ok, detail)

        await page.click("#page-next")
        label = await page.inner_text("#page-label")
        self.check("pager_says_page_2_of_n", label == f"Page 2 of {pages}", label)
        ok, detail = await self.wait_colours(page, {i: colours[i] for i in ids[3:6]})
        self.check("page2_tiles_show_their_publishers_colours", ok, detail)
        shown = await page.evaluate("() => visio.tileList.map((t) => t.identity)")
        self.check("page2_shows_no_page1_participant", not set(ids[:3]) & set(shown), shown)
        sent = await self.wait_layout(
            page, lambda m: [t["identity"] for t in m["tiles"]] == ids[3:6]
        )
        self.check("layout_names_page2_tiles", sent is not None, sent)
        await page.screenshot(path=str(ARTIFACTS / "meeting-grid-pages.png"))
        self.mark("paged")

        # Speaker view: the active speaker (colour-6, who alone publishes a voice) is big.
        await page.click("#view-btn")
        speaker = ids[6]
        try:
            await page.wait_for_function(
                f"() => visio.featured === {json.dumps(speaker)}", timeout=15_000
            )
        except Exception:
            pass
        featured = await page.evaluate("() => ({featured: visio.featured, view: visio.view})")
        self.check(
            "speaker_view_features_the_active_speaker", featured["featured"] == speaker, featured
        )
        ok, detail = await self.wait_colours(page, {speaker: colours[speaker]})
        self.check("active_speaker_tile_shows_its_colour", ok, detail)
        sent = await self.wait_layout(page, lambda m: m["tiles"][0]["identity"] == speaker)
        self.check("layout_names_the_active_speaker_first", sent is not None, sent)

        # Pin colour-4 (in the strip) with a click on its tile: it replaces the speaker.
        target = ids[4]
        await page.click(f'.tile-camera[data-identity="{target}"]')
        big = await page.evaluate(
            "() => [...document.querySelectorAll('#presentation .tile')]"
            ".map(t => t.dataset.identity)"
        )
        self.check("pinned_participant_is_big_in_speaker_view", big == [target], big)
        ok, detail = await self.wait_colours(page, {target: colours[target]})
        self.check("pinned_tile_shows_its_colour", ok, detail)
        sent = await self.wait_layout(
            page, lambda m: m["pinned"] == target and m["tiles"][0]["identity"] == target
        )
        self.check("layout_names_the_pinned_participant_first", sent is not None, sent)
        await page.screenshot(path=str(ARTIFACTS / "meeting-speaker-view.png"))
        self.mark("speaker_view")

    async def wait_layout(self, page: Any, ok: Any, within: float = 5.0) -> Any:
        deadline = time.monotonic() + within
        last = None
        while time.monotonic() < deadline:
            last = await page.evaluate("() => visio.lastLayout")
            if last and ok(last):
                return last
            await asyncio.sleep(0.25)
        log.error("last layout sent: %s", last)
        return None


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timeout", type=float, default=100.0, help="whole scenario, seconds")
    parser.add_argument("--media-timeout", type=float, default=20.0)
    args = parser.parse_args()
    scenario = GridPages(args)
    return main(scenario, scenario.run, args.timeout)


if __name__ == "__main__":
    sys.exit(cli())
