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
import json
import math
import sys
import time
from typing import Any

from colour_peers import Member, SineAudioTrack, wait_tile_colours
from scenario_meeting_common import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    Scenario,
    ServerProcess,
    log,
    main,
    open_meeting_page,
    page_debug,
    patch_aioice,
)

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
                    voice = SineAudioTrack(440.0, amplitude=0.5) if identity == speaker else None
                    m = Member(identity, name, rgb, voice=voice)
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
        return await wait_tile_colours(page, want, self.args.media_timeout)

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
