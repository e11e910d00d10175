"""Scenario: turning the camera off releases it; turning it back on captures and sends again.

Run inside a network namespace that has only `lo` (see netns.py), with the real server
(`python -m visio_media serve --dev`) and two headless Chromium pages joined through the UI.

1. page 2 decodes page 1's video;
2. page 1 clicks the camera button (off): the capture track it had is `ended` (the device is
   released: the light goes off), the camera sender sends no track, page 2 shows the camera
   muted and decodes no more frames from page 1 (nothing is sent: no black frames);
3. page 1 clicks again (on): a new, live capture track is on the same sender (same server track
   id, no new m-line), and page 2 decodes page 1's video again;
4. page 2 turned its camera off on the join screen, before joining: it joined with no capture
   track and its camera published muted; it turns the camera on: page 1 decodes its video.

Prints one JSON object on its last stdout line; exit 0 (all passed), 1 (some check failed),
2 (crashed or timed out).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from scenario_meeting_common import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Scenario,
    ServerProcess,
    join_via_ui,
    main,
    open_meeting_page,
    page_debug,
    tile_stats,
    wait_remote_media,
)

ROOM = "camera"
NAMES = ["Ada Lovelace", "Grace Hopper"]
VIEWPORT = {"width": 960, "height": 600}

# Page 1: remember the capture track, then press the camera button (off).
CAMERA_OFF_JS = """async () => {
  window.__camBefore = visio.cameraTrack;
  const before = {id: __camBefore && __camBefore.id,
                  readyState: __camBefore && __camBefore.readyState,
                  sent: visio.sentTrack('camera') === __camBefore};
  document.querySelector('#cam-btn').click();
  const t0 = performance.now();
  while (visio.sentTrack('camera') !== null || __camBefore.readyState !== 'ended') {
    if (performance.now() - t0 > 10000) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return {before, afterReadyState: __camBefore.readyState, cameraTrack: visio.cameraTrack,
          sentTrack: visio.sentTrack('camera'),
          button: document.querySelector('#cam-btn').getAttribute('aria-pressed'),
          local: visio.localTracks};
}"""

CAMERA_ON_JS = """async () => {
  document.querySelector('#cam-btn').click();
  const t0 = performance.now();
  while (!visio.cameraTrack || visio.sentTrack('camera') !== visio.cameraTrack) {
    if (performance.now() - t0 > 10000) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const cam = visio.cameraTrack;
  return {id: cam && cam.id, readyState: cam && cam.readyState, oldId: __camBefore.id,
          sentIsCapture: !!cam && visio.sentTrack('camera') === cam,
          button: document.querySelector('#cam-btn').getAttribute('aria-pressed'),
          local: visio.localTracks};
}"""

CAM_STATE_JS = """(identity) => {
  const tile = document.querySelector(`.tile-camera[data-identity="${identity}"]`);
  return tile ? tile.dataset.cam : null;
}"""


class CameraOffOn(Scenario):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__("camera_off_on")
        self.args = args
        self.console: list[str] = []

    async def run(self) -> None:
        from playwright.async_api import async_playwright

        server = ServerProcess(self.name)
        self.result["server_log"] = str(server.log_path)
        try:
            await server.start()
            self.mark("server_ready")
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
                )
                pages = [
                    await open_meeting_page(
                        browser, server.url, f"p{i + 1}", self.console, viewport=VIEWPORT
                    )
                    for i in range(2)
                ]
                # Page 2 turns its camera off in the preview, before joining.
                await pages[1].click("#preview-cam")
                await pages[1].wait_for_function("() => visio.cameraTrack === null")
                ids = [await join_via_ui(p, n, ROOM) for p, n in zip(pages, NAMES, strict=True)]
                self.result["identities"] = ids
                self.mark("joined")
                await self.steps(pages, ids)
                for i, page in enumerate(pages):
                    self.result[f"page{i + 1}"] = await page_debug(page)
                await browser.close()
        finally:
            self.result["console"] = self.console[-60:]
            self.result["server_exit"] = await server.stop()
            self.result["server_log_tail"] = server.log_tail(3000)

    async def frames_from(self, page: Any, identity: str) -> int:
        stats = await tile_stats(page)
        return int(stats.get(identity, {}).get("videoFramesDecoded", 0))

    async def steps(self, pages: list[Any], ids: list[str]) -> None:
        a, b = pages
        ok, detail = await wait_remote_media(b, [ids[0]], within=self.args.media_timeout)
        self.check("page2_sees_page1_camera", ok, detail)
        before = await a.evaluate("() => visio.localTracks")

        off = await a.evaluate(CAMERA_OFF_JS)
        self.check(
            "camera_off_ends_the_capture_track",
            off["before"]["readyState"] == "live"
            and off["before"]["sent"]
            and off["afterReadyState"] == "ended"
            and off["cameraTrack"] is None,
            off,
        )
        self.check(
            "camera_off_sends_no_track",
            off["sentTrack"] is None and off["button"] == "false",
            off,
        )
        try:
            await b.wait_for_function(
                f"(id) => ({CAM_STATE_JS})(id) === 'muted'", arg=ids[0], timeout=10_000
            )
        except Exception:
            pass
        self.check(
            "page2_shows_page1_camera_off",
            await b.evaluate(CAM_STATE_JS, ids[0]) == "muted",
            await b.evaluate(CAM_STATE_JS, ids[0]),
        )
        # Nothing is sent while off: after the last frames in flight, the count stands still.
        await asyncio.sleep(1.5)
        f0 = await self.frames_from(b, ids[0])
        await asyncio.sleep(2.0)
        f1 = await self.frames_from(b, ids[0])
        self.check("page2_decodes_no_frames_while_camera_off", f1 - f0 <= 1, [f0, f1])
        self.mark("camera_off")

        on = await a.evaluate(CAMERA_ON_JS)
        self.check(
            "camera_on_sends_a_new_live_track",
            on["readyState"] == "live"
            and on["id"] != on["oldId"]
            and on["sentIsCapture"]
            and on["button"] == "true",
            on,
        )
        cam_ids = {t["source"]: t["trackId"] for t in before}
        cam_ids_after = {t["source"]: t["trackId"] for t in on["local"]}
        self.check(
            "camera_on_keeps_the_published_track",
            cam_ids.get("camera") is not None and cam_ids == cam_ids_after,
            {"before": before, "after": on["local"]},
        )
        frames_at_on = await self.frames_from(b, ids[0])
        ok = False
        got = frames_at_on
        for _ in range(int(self.args.media_timeout * 2)):
            got = await self.frames_from(b, ids[0])
            if got - frames_at_on >= 30:
                ok = True
                break
            await asyncio.sleep(0.5)
        self.check("page2_decodes_page1_again_after_camera_on", ok, [frames_at_on, got])
        self.check(
            "page2_shows_page1_camera_on",
            await b.evaluate(CAM_STATE_JS, ids[0]) == "on",
            await b.evaluate(CAM_STATE_JS, ids[0]),
        )
        self.mark("camera_on")

        # 4. Page 2 joined with its camera off: a muted camera line, no capture; now on.
        local = await b.evaluate("() => visio.localTracks")
        cam = next((t for t in local if t["source"] == "camera"), None)
        self.check(
            "camera_off_at_join_publishes_a_muted_line",
            cam is not None
            and cam["muted"]
            and not cam["capturing"]
            and cam["trackId"] is not None
            and await b.evaluate("() => visio.cameraTrack === null"),
            local,
        )
        self.check(
            "page1_shows_page2_camera_off",
            await a.evaluate(CAM_STATE_JS, ids[1]) == "muted",
            await a.evaluate(CAM_STATE_JS, ids[1]),
        )
        on2 = await b.evaluate(CAMERA_ON_JS.replace("__camBefore.id", "null"))
        self.check("page2_camera_on_after_joining_with_it_off", on2["sentIsCapture"], on2)
        start = await self.frames_from(a, ids[1])
        ok = False
        got = start
        for _ in range(int(self.args.media_timeout * 2)):
            got = await self.frames_from(a, ids[1])
            if got - start >= 30:
                ok = True
                break
            await asyncio.sleep(0.5)
        self.check("page1_decodes_page2_after_its_camera_on", ok, [start, got])


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timeout", type=float, default=80.0, help="whole scenario, seconds")
    parser.add_argument("--media-timeout", type=float, default=20.0)
    args = parser.parse_args()
    scenario = CameraOffOn(args)
    return main(scenario, scenario.run, args.timeout)


if __name__ == "__main__":
    sys.exit(cli())
