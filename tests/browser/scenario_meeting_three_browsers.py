"""Scenario: three headless Chromium pages meet in one room through the web client's UI.

Run inside a network namespace that has only `lo` (see netns.py). It starts the real server
(`python -m visio_media serve --dev`), opens http://127.0.0.1:P/ in three browser contexts, and for
each page fills the join form and clicks Join. Then:

1. every page shows two remote tiles whose video advances and receives audio from both;
2. page 1 mutes its microphone with the control bar: pages 2 and 3 show the mute icon;
3. a screenshot of the three-person grid goes to artifacts/meeting-grid.png (and docs/images/);
4. page 1 presents its screen: pages 2 and 3 get a separate tile whose video advances; it
   stops presenting: the tile goes away;
5. page 1 leaves: its tiles disappear from pages 2 and 3.

Prints one JSON object on its last stdout line; exit 0 (all passed), 1 (some check failed),
2 (crashed or timed out).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from typing import Any

from scenario_meeting_common import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    REPO,
    Scenario,
    ServerProcess,
    join_via_ui,
    main,
    open_meeting_page,
    page_debug,
    tile_stats,
    wait_remote_media,
)

ROOM = "standup"
NAMES = ["Ada Lovelace", "Grace Hopper", "Alan Turing"]
VIEWPORT = {"width": 1280, "height": 720}

# JS: is the microphone of `identity` shown muted on this page (attribute and visible icon)?
MIC_MUTED_JS = """(identity) => {
  const tile = document.querySelector(`.tile-camera[data-identity="${identity}"]`);
  if (!tile) return {tile: false};
  const icon = tile.querySelector('.tile-mic');
  return {tile: true, mic: tile.dataset.mic,
          iconVisible: !!icon && getComputedStyle(icon).display !== 'none'};
}"""

# A canvas animation published as the screen share, for when getDisplayMedia cannot capture.
CANVAS_SHARE_JS = """async () => {
  const c = document.createElement('canvas');
  c.width = 640; c.height = 360;
  const g = c.getContext('2d');
  let n = 0;
  setInterval(() => {
    g.fillStyle = '#1b2a4a'; g.fillRect(0, 0, 640, 360);
    g.fillStyle = '#5b8cff'; g.fillRect((n * 8) % 640, 120, 80, 120);
    g.fillStyle = '#fff'; g.font = '28px sans-serif'; g.fillText('slide ' + n, 24, 48);
    n++;
  }, 66);
  return visio.shareStream(c.captureStream(15));
}"""


class ThreeBrowsers(Scenario):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__("meeting_three_browsers")
        self.args = args
        self.console: list[str] = []

    async def run(self) -> None:
        from playwright.async_api import async_playwright

        server = ServerProcess(self.name)
        self.result["server_log"] = str(server.log_path)
        browser = None
        pages: list[Any] = []
        try:
            await server.start()
            self.mark("server_ready")
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
                )
                self.result["chromium_version"] = browser.version
                for i in range(3):
                    pages.append(
                        await open_meeting_page(
                            browser, server.url, f"p{i + 1}", self.console, viewport=VIEWPORT
                        )
                    )
                self.mark("pages_loaded")
                await self.steps(pages)
                for i, page in enumerate(pages):
                    self.result[f"page{i + 1}"] = await page_debug(page)
                await browser.close()
                browser = None
        finally:
            self.result["console"] = self.console[-80:]
            code = await server.stop()
            self.result["server_exit"] = code
            self.result["server_log_tail"] = server.log_tail(3000)

    async def steps(self, pages: list[Any]) -> None:
        ids: list[str] = []
        for page, name in zip(pages, NAMES, strict=True):
            ids.append(await join_via_ui(page, name, ROOM))
        self.result["identities"] = ids
        self.mark("all_joined")

        # 1. Everyone sees and hears the two others.
        ok_all = True
        for i, page in enumerate(pages):
            others = [x for j, x in enumerate(ids) if j != i]
            ok, detail = await wait_remote_media(page, others, within=self.args.media_timeout)
            self.check(f"page{i + 1}_sees_and_hears_two_others", ok, detail)
            if not ok:
                self.result[f"page{i + 1}_at_media_failure"] = await page_debug(page)
            ok_all &= ok
            tiles = await page.evaluate(
                "() => [...document.querySelectorAll('#grid .tile')].map(t => t.dataset.identity)"
            )
            self.check(f"page{i + 1}_three_tiles", sorted(tiles) == sorted(ids), tiles)
            slots = await page.evaluate(
                "() => ({slots: visio.slots, mlines: visio.remoteMLines, tiles: visio.tileList})"
            )
            kinds = [x["kind"] for x in slots["slots"]]
            carried = {x["identity"] for x in slots["slots"] if x["kind"] == "video"} - {None}
            shown = {t["identity"] for t in slots["tiles"] if t["mid"]}
            # Protocol v2: 16 video + 3 audio receive slots, our 2 lines: 21 m-lines, whatever
            # the room; the two others' cameras are in slots and their tiles play those slots.
            self.check(
                f"page{i + 1}_receives_on_16_video_and_3_audio_slots",
                kinds.count("video") == 16
                and kinds.count("audio") == 3
                and slots["mlines"] == 21
                and carried == set(others) == shown,
                {
                    "kinds": kinds,
                    "mlines": slots["mlines"],
                    "carried": sorted(carried),
                    "shown": sorted(shown),
                },
            )
        self.mark("media_flowing")

        # 2. Page 1 mutes its microphone; 2 and 3 show it.
        await pages[0].click("#mic-btn")
        own = await pages[0].evaluate(MIC_MUTED_JS, ids[0])
        self.check(
            "page1_own_tile_muted", own.get("mic") == "muted" and own.get("iconVisible"), own
        )

        async def seen_muted(page: Any) -> None:
            try:
                await page.wait_for_function(
                    f"(id) => ({MIC_MUTED_JS})(id).mic === 'muted'", arg=ids[0], timeout=10_000
                )
            except Exception:
                pass

        await asyncio.gather(seen_muted(pages[1]), seen_muted(pages[2]))
        for i in (1, 2):
            state = await pages[i].evaluate(MIC_MUTED_JS, ids[0])
            self.check(
                f"page{i + 1}_shows_page1_muted",
                state.get("mic") == "muted" and state.get("iconVisible"),
                state,
            )
        self.result["page1_local_tracks"] = await pages[0].evaluate("() => visio.localTracks")
        self.mark("mute_seen")

        # 3. The screenshot for the README: Ada's view, her microphone muted.
        await asyncio.sleep(1.0)
        shot = ARTIFACTS / "meeting-grid.png"
        await pages[0].screenshot(path=str(shot))
        docs_images = REPO / "docs" / "images"
        docs_images.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, docs_images / "meeting-grid.png")
        self.result["screenshot"] = str(shot)
        self.mark("screenshot")

        # 4. Page 1 presents its screen (the control bar button → getDisplayMedia).
        await pages[0].click("#share-btn")
        try:
            await pages[0].wait_for_function(
                "() => document.querySelector('#share-btn').classList.contains('active')",
                timeout=8_000,
            )
            self.result["screen_share_mode"] = "getDisplayMedia"
        except Exception:
            self.result["screen_share_mode"] = "canvas captureStream (getDisplayMedia failed)"
            self.result["getDisplayMedia_log"] = [
                line
                for line in await pages[0].evaluate("() => visio.log")
                if "DisplayMedia" in line
            ]
            shared = await pages[0].evaluate(CANVAS_SHARE_JS)
            self.check("canvas_share_started", shared is True, shared)
        self.mark("screen_share_started")
        # Its offer carries our 3 lines and all the receive slots' lines (16 video + 3 audio):
        # with each limited to the server's codecs it stays far under the 64 KiB frame limit.
        offer_bytes = await pages[0].evaluate("() => visio.lastOfferBytes")
        self.check("page1_share_offer_fits_the_frame_limit", 0 < offer_bytes < 32_768, offer_bytes)
        screen_key = f"{ids[0]}#screen"
        for i in (1, 2):
            ok, detail = await wait_remote_media(
                pages[i],
                [screen_key],
                within=self.args.media_timeout,
                min_frames=10,
                audio=False,
            )
            self.check(f"page{i + 1}_sees_screen_share", ok, detail)
            in_dom = await pages[i].evaluate(
                '(k) => !!document.querySelector(`#presentation .tile[data-key="${k}"]`)',
                screen_key,
            )
            self.check(f"page{i + 1}_screen_tile_in_presentation", in_dom, screen_key)
        await asyncio.sleep(0.5)
        await pages[1].screenshot(path=str(ARTIFACTS / "meeting-screen-share.png"))
        self.mark("screen_share_seen")

        # 4b. Page 1 stops presenting: the screen tile goes away on 2 and 3.
        await pages[0].click("#share-btn")

        async def screen_gone(page: Any) -> bool:
            try:
                await page.wait_for_function(
                    '(k) => !document.querySelector(`.tile[data-key="${k}"]`)',
                    arg=screen_key,
                    timeout=10_000,
                )
                return True
            except Exception:
                return False

        gone = await asyncio.gather(screen_gone(pages[1]), screen_gone(pages[2]))
        for i, ok in zip((1, 2), gone, strict=True):
            self.check(f"page{i + 1}_screen_tile_gone_after_stop", ok, screen_key)
        self.mark("screen_share_stopped")

        # 5. Page 1 leaves: its tiles vanish from 2 and 3.
        await pages[0].click("#leave-btn")
        for i in (1, 2):
            try:
                await pages[i].wait_for_function(
                    '(id) => !document.querySelector(`.tile[data-identity="${id}"]`)',
                    arg=ids[0],
                    timeout=10_000,
                )
                gone = True
            except Exception:
                gone = False
            keys = sorted(await tile_stats(pages[i]))
            self.check(f"page{i + 1}_page1_tiles_gone", gone, keys)
        left_view = await pages[0].evaluate("() => document.body.dataset.view")
        self.check("page1_shows_ended_view", left_view == "ended", left_view)
        await pages[1].screenshot(path=str(ARTIFACTS / "meeting-after-leave.png"))
        self.mark("leave_seen")


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timeout", type=float, default=80.0, help="whole scenario, seconds")
    parser.add_argument("--media-timeout", type=float, default=20.0)
    args = parser.parse_args()
    scenario = ThreeBrowsers(args)
    return main(scenario, scenario.run, args.timeout)


if __name__ == "__main__":
    sys.exit(cli())
