"""Scenario: two headless Chromium pages (the web client) and two Python SDK peers
(`visio_media.client.Client`, aiortc) in one room; everyone sees and hears everyone.

Run inside a network namespace that has only `lo` (see netns.py). The real server runs as
`python -m visio_media serve --dev` with a known VISIO_SECRET, so that the SDK peers' tokens can
be minted with `visio_media.auth.mint_token`; the pages get theirs from the join form
(`POST /api/dev-token`). Join order mixes the kinds: page, SDK, page, SDK.

Checks:
* each page: 3 remote tiles whose video advances (framesDecoded) and whose audio packets grow;
* each SDK peer: video frames and audio frames from each of the 3 others; the other SDK peer's
  sine is recognised by its frequency (FFT peak ±5 Hz), a Chromium peer's fake-microphone beep
  (400 Hz) within ±10 Hz.

Prints one JSON object on its last stdout line; exit 0 (all passed), 1 (some check failed),
2 (crashed or timed out).
"""

from __future__ import annotations

import argparse
import asyncio
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
    join_via_ui,
    main,
    open_meeting_page,
    page_debug,
    patch_aioice,
    tile_stats,
    wait_remote_media,
)

sys.path.insert(0, str(REPO / "tests"))

ROOM = "mixed"
PAGE_NAMES = ["Ada Lovelace", "Grace Hopper"]
BOTS = [("bot-440", "Robot 440", 440.0, 1), ("bot-660", "Robot 660", 660.0, 2)]
CHROMIUM_BEEP_HZ = 400.0
VIEWPORT = {"width": 960, "height": 600}
MIN_SDK_VIDEO_FRAMES = 30
MIN_SDK_AUDIO_FRAMES = 50


class Bot:
    """One SDK peer publishing a sine and a moving pattern, measuring what it receives."""

    def __init__(self, identity: str, name: str, freq: float, seed: int) -> None:
        self.identity = identity
        self.name = name
        self.freq = freq
        self.seed = seed
        self.client: Any = None
        self.receivers: dict[str, Any] = {}  # slot mid -> receiver

    async def join(self, url: str, secret: str) -> None:
        from helpers.media import PatternVideoTrack, SineAudioTrack, TrackReceiver
        from visio_media.auth import mint_token
        from visio_media.client import Client

        token = mint_token(secret, identity=self.identity, room=ROOM, name=self.name)
        self.client = Client(url, token)

        def on_track(event: Any) -> None:
            # One per receive slot; event.track.identity follows the slot's occupant.
            key = (f"slot {event.mid}", event.kind)
            self.receivers[event.mid] = TrackReceiver(event.track, key, mid=event.mid).start()

        self.client.on("track_received", on_track)
        await self.client.connect()
        self.audio = SineAudioTrack(self.freq)
        self.video = PatternVideoTrack(width=320, height=240, fps=15, seed=self.seed)
        await self.client.publish(self.audio, self.video)

    def by_identity(self) -> dict[str, dict[str, Any]]:
        """identity → {video: frames, audio: frames, size, peak_hz}."""
        from helpers.media import dominant_frequencies

        out: dict[str, dict[str, Any]] = {}
        for rec in self.receivers.values():
            identity = rec.track.identity
            if identity is None:
                continue
            entry = out.setdefault(identity, {"video": 0, "audio": 0})
            if rec.kind == "video":
                entry["video"] = max(entry["video"], rec.frames)
                entry["size"] = f"{rec.width}x{rec.height}"
            else:
                entry["audio"] = max(entry["audio"], rec.frames)
                samples = rec.recent_audio(2.0)
                if samples.size >= 48_000:
                    entry["peak_hz"] = round(dominant_frequencies(samples, rec.sample_rate)[0], 1)
            if rec.error is not None:
                entry["error"] = repr(rec.error)
        return out

    async def close(self) -> None:
        for rec in self.receivers.values():
            await rec.stop()
        client, self.client = self.client, None
        if client is not None:
            try:
                await asyncio.wait_for(client.leave(), 5)
            except Exception:
                await client.close()


class MixedClients(Scenario):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__("meeting_mixed_clients")
        self.args = args
        self.console: list[str] = []
        self.bots = [Bot(*b) for b in BOTS]

    async def run(self) -> None:
        from playwright.async_api import async_playwright

        patch_aioice()
        server = ServerProcess(self.name)
        self.result["server_log"] = str(server.log_path)
        pages: list[Any] = []
        try:
            await server.start()
            self.mark("server_ready")
            ws_url = f"ws://127.0.0.1:{server.port}/ws"
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
                )
                self.result["chromium_version"] = browser.version
                for i in range(2):
                    pages.append(
                        await open_meeting_page(
                            browser, server.url, f"p{i + 1}", self.console, viewport=VIEWPORT
                        )
                    )
                self.mark("pages_loaded")
                ids = [await join_via_ui(pages[0], PAGE_NAMES[0], ROOM)]
                await self.bots[0].join(ws_url, server.secret)
                ids.append(await join_via_ui(pages[1], PAGE_NAMES[1], ROOM))
                await self.bots[1].join(ws_url, server.secret)
                everyone = [ids[0], self.bots[0].identity, ids[1], self.bots[1].identity]
                self.result["identities"] = everyone
                self.mark("all_joined")
                await self.check_pages(pages, everyone)
                await self.check_bots(everyone, set(ids))
                await pages[0].screenshot(path=str(ARTIFACTS / "meeting-mixed.png"))
                for i, page in enumerate(pages):
                    self.result[f"page{i + 1}"] = await page_debug(page)
                everyone = await self.check_reuse(pages, ids, ws_url, server.secret)
                await self.check_tokens(browser, server, len(everyone))
                for page in pages:
                    await page.click("#leave-btn")
                await self.check_unreachable(pages[0], server)
                await browser.close()
        finally:
            self.result["console"] = self.console[-60:]
            for bot in self.bots:
                try:
                    await bot.close()
                except Exception as e:
                    self.error(f"{bot.identity} close: {e!r}")
            self.result["server_exit"] = await server.stop()
            self.result["server_log_tail"] = server.log_tail(3000)

    async def check_pages(self, pages: list[Any], everyone: list[str]) -> None:
        own = [everyone[0], everyone[2]]

        async def one(i: int) -> None:
            others = [x for x in everyone if x != own[i]]
            ok, detail = await wait_remote_media(pages[i], others, within=self.args.media_timeout)
            self.check(f"page{i + 1}_sees_and_hears_three_others", ok, detail)
            if not ok:
                self.result[f"page{i + 1}_at_media_failure"] = await page_debug(pages[i])

        await asyncio.gather(one(0), one(1))
        self.mark("pages_ok")

    async def check_reuse(
        self, pages: list[Any], ids: list[str], ws_url: str, secret: str
    ) -> list[str]:
        """A bot leaves and a new one joins: the newcomer's tracks go into the receive slots the
        leaver's held (protocol v2: no SDP change, the m-lines stay the same). Pages must show
        the newcomer with its own media and no tile for the leaver; the other SDK peer must hear
        the newcomer's sine."""
        lines_before = [await p.evaluate("() => visio.remoteMLines") for p in pages]
        gone = self.bots.pop()
        await gone.close()
        newcomer = Bot("bot-880", "Robot 880", 880.0, 3)
        self.bots.append(newcomer)
        await newcomer.join(ws_url, secret)
        everyone = [ids[0], self.bots[0].identity, ids[1], newcomer.identity]

        async def one(i: int) -> None:
            others = [x for x in everyone if x != ids[i]]
            ok, detail = await wait_remote_media(pages[i], others, within=self.args.media_timeout)
            tiles = sorted(await tile_stats(pages[i]))
            lines = await pages[i].evaluate("() => visio.remoteMLines")
            self.check(
                f"page{i + 1}_sees_the_newcomer_on_the_same_slots",
                ok and gone.identity not in tiles and lines == lines_before[i],
                {"media": detail, "tiles": tiles, "m_lines": [lines_before[i], lines]},
            )

        await asyncio.gather(one(0), one(1))
        listener = self.bots[0]
        deadline = time.monotonic() + self.args.media_timeout
        got: dict[str, Any] = {}
        while time.monotonic() < deadline:
            got = listener.by_identity().get(newcomer.identity, {})
            if (
                got.get("audio", 0) >= MIN_SDK_AUDIO_FRAMES
                and got.get("video", 0) >= MIN_SDK_VIDEO_FRAMES
                and abs(got.get("peak_hz", 0.0) - newcomer.freq) <= 5.0
            ):
                break
            await asyncio.sleep(0.5)
        self.check(
            f"{listener.identity}_hears_the_newcomer_on_reused_lines",
            abs(got.get("peak_hz", 0.0) - newcomer.freq) <= 5.0
            and got.get("video", 0) >= MIN_SDK_VIDEO_FRAMES,
            got,
        )
        self.mark("reuse_ok")
        return everyone

    async def check_tokens(self, browser: Any, server: ServerProcess, others: int) -> None:
        """A refused token says so on the join screen; a watch-only token joins as a viewer."""
        from visio_media.auth import Grants, mint_token

        page = await open_meeting_page(
            browser, server.url, "p3", self.console, viewport=VIEWPORT, query="token=not-a-jwt"
        )
        await page.click("#join-button")
        await page.wait_for_function("() => visio.state === 'failed'", timeout=10_000)
        text = await page.inner_text("#join-error")
        visible = await page.is_visible("#join-error")
        self.check("bad_token_message", visible and "not valid" in text, text)
        await page.screenshot(path=str(ARTIFACTS / "meeting-bad-token.png"))

        viewer = mint_token(
            server.secret, identity="viewer", room=ROOM, name="Viewer", grants=Grants(publish=False)
        )
        await page.goto(f"{server.url}/?token={viewer}")
        await page.wait_for_function("() => window.visio !== undefined")
        await page.click("#join-button")
        try:
            await page.wait_for_function(
                f"() => visio.state === 'joined' && "
                f"document.querySelectorAll('#grid .tile').length === {others + 1}",
                timeout=15_000,
            )
        except Exception:
            pass
        info = await page.evaluate(
            "() => ({state: visio.state, error: visio.error, local: visio.localTracks,"
            " tiles: document.querySelectorAll('#grid .tile').length,"
            " toasts: [...document.querySelectorAll('.toast')].map(t => t.innerText),"
            " log: visio.log.slice(-15)})"
        )
        self.check(
            "viewer_token_joins_watch_only",
            info["state"] == "joined" and not info["local"] and info["tiles"] == others + 1,
            info,
        )
        await page.click("#leave-btn")
        await page.context.close()

    async def check_unreachable(self, page: Any, server: ServerProcess) -> None:
        """With the server gone, joining again says the server cannot be reached."""
        for bot in self.bots:  # an empty server stops at once
            await bot.close()
        await server.stop()
        await page.click("#rejoin-btn")
        await page.wait_for_function("() => visio.state === 'failed'", timeout=15_000)
        text = await page.inner_text("#join-error")
        self.check("unreachable_message", "reach" in text, text)
        await page.screenshot(path=str(ARTIFACTS / "meeting-unreachable.png"))

    async def check_bots(self, everyone: list[str], browsers: set[str]) -> None:
        deadline = time.monotonic() + self.args.media_timeout
        stats: dict[str, Any] = {}
        while time.monotonic() < deadline:
            stats = {bot.identity: bot.by_identity() for bot in self.bots}
            if all(
                self._bot_ok(bot, stats[bot.identity], everyone, browsers)[0] for bot in self.bots
            ):
                break
            await asyncio.sleep(0.5)
        for bot in self.bots:
            ok, problems = self._bot_ok(bot, stats[bot.identity], everyone, browsers)
            self.check(
                f"{bot.identity}_sees_and_hears_three_others",
                ok,
                {"received": stats[bot.identity], "problems": problems},
            )
        self.result["bots"] = stats
        for bot in self.bots:
            c = bot.client
            if c is None:
                continue
            pc = c.pc
            self.result[f"{bot.identity}_client"] = {
                "events": [type(e).__name__ for e in c.history][-40:],
                "failures": [repr(f) for f in c.failures],
                "signaling_state": pc.signalingState if pc else None,
                "transceivers": [
                    (t.mid, t.kind, t.direction, t.currentDirection) for t in pc.getTransceivers()
                ]
                if pc
                else None,
                "connection_state": c.connection_state,
            }
        self.mark("bots_ok")

    def _bot_ok(
        self, bot: Bot, got: dict[str, Any], everyone: list[str], browsers: set[str]
    ) -> tuple[bool, list[str]]:
        problems = []
        for other in everyone:
            if other == bot.identity:
                continue
            entry = got.get(other)
            if entry is None:
                problems.append(f"nothing from {other}")
                continue
            if entry["video"] < MIN_SDK_VIDEO_FRAMES:
                problems.append(f"{other}: {entry['video']} video frames")
            if entry["audio"] < MIN_SDK_AUDIO_FRAMES:
                problems.append(f"{other}: {entry['audio']} audio frames")
            peak = entry.get("peak_hz")
            if other in browsers:
                want, tol = CHROMIUM_BEEP_HZ, 10.0
            else:
                want, tol = next(b.freq for b in self.bots if b.identity == other), 5.0
            if peak is None or abs(peak - want) > tol:
                problems.append(f"{other}: audio peak {peak} Hz, expected {want}±{tol}")
            if "error" in entry:
                problems.append(f"{other}: {entry['error']}")
        return not problems, problems


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timeout", type=float, default=110.0, help="whole scenario, seconds")
    parser.add_argument("--media-timeout", type=float, default=25.0)
    args = parser.parse_args()
    scenario = MixedClients(args)
    return main(scenario, scenario.run, args.timeout)


if __name__ == "__main__":
    sys.exit(cli())
