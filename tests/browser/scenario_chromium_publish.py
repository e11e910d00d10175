"""Scenario: headless Chromium publishes its fake camera and microphone through the engine; an
aiortc peer in the same room, with one video and one audio receive slot (automatic mode: the
engine fills them with the room's tracks), decodes both.

Run it inside a network namespace that has only `lo` (see netns.py); Chromium gathers no loopback
candidates otherwise. It prints one JSON object on its last stdout line and exits with
0 (every check passed), 1 (ran to the end, some check failed: see "failures") or 2 (crashed or
timed out: see "error"). Diagnostics go to stderr.

    unshare -n -- bash -c 'ip link set lo up && exec "$@"' bash python scenario_chromium_publish.py

`--direct` replaces the engine by an aiortc peer that answers Chromium itself: a self-check of
the harness (page, namespace, decoding, stats) that does not depend on the engine.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PAGE = HERE / "publisher.html"
ARTIFACTS = Path(os.environ.get("VISIO_ARTIFACTS_DIR", REPO / "artifacts"))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
    "--allow-loopback-in-peer-connection",
]

ROOM = "r"
MIN_VIDEO_FRAMES = 30
MIN_AUDIO_FRAMES = 50
AUDIO_ANALYSIS_FRAMES = 100  # 2 s of 20 ms frames
# Chromium's fake microphone beeps: 20 ms of 400 Hz every 500 ms
# (media/audio/fake_audio_input_stream.cc).
# The beeps are short, so the spectral peak is broad: allow a little more than the usual ±5 Hz.
FAKE_BEEP_HZ = 400.0
BEEP_TOLERANCE_HZ = 10.0

log = logging.getLogger("scenario")
T0 = time.monotonic()


def now() -> float:
    return round(time.monotonic() - T0, 3)


def patch_aioice() -> None:
    """aioice skips 127.0.0.1 when gathering; in the namespace it is the only address."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]


class ReceivedTrack:
    """What arrived on one remote track."""

    def __init__(self, track: Any, mid: str | None) -> None:
        self.track = track
        self.kind: str = track.kind
        self.mid = mid
        self.added_at = now()
        self.frames = 0
        self.first_at: float | None = None
        self.sizes: collections.Counter[str] = collections.Counter()
        self.audio_format: dict[str, Any] | None = None
        self.audio_chunks: list[Any] = []
        self.error: str | None = None

    def add(self, frame: Any) -> None:
        self.frames += 1
        if self.first_at is None:
            self.first_at = now()
            log.info("first %s frame on mid %s", self.kind, self.mid)
        if self.kind == "video":
            self.sizes[f"{frame.width}x{frame.height}"] += 1
            return
        if self.audio_format is None:
            self.audio_format = {
                "sample_rate": frame.sample_rate,
                "layout": frame.layout.name,
                "format": frame.format.name,
                "samples": frame.samples,
            }
        # Skip the first half second (encoder ramp-up), then keep 2 s for analysis.
        if 25 < self.frames <= 25 + AUDIO_ANALYSIS_FRAMES:
            arr = frame.to_ndarray()
            channels = len(frame.layout.channels)
            self.audio_chunks.append(arr.reshape(-1, channels).mean(axis=1))

    def audio_analysis(self) -> dict[str, Any] | None:
        if not self.audio_chunks or not self.audio_format:
            return None
        import numpy as np

        x = np.concatenate(self.audio_chunks).astype(np.float64) / 32768.0
        rms = float(np.sqrt(np.mean(x * x)))
        spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
        freqs = np.fft.rfftfreq(len(x), 1.0 / self.audio_format["sample_rate"])
        spectrum[freqs < 50] = 0
        return {
            "seconds": round(len(x) / self.audio_format["sample_rate"], 3),
            "rms": round(rms, 5),
            "peak_hz": round(float(freqs[int(np.argmax(spectrum))]), 1),
        }

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "id": self.track.id,
            "mid": self.mid,
            "added_at": self.added_at,
            "frames": self.frames,
            "first_frame_at": self.first_at,
        }
        if self.kind == "video":
            out["sizes"] = dict(self.sizes)
        else:
            out["audio_format"] = self.audio_format
        if self.error:
            out["error"] = self.error
        return out


class MediaSink:
    """Consumes every track aiortc receives and measures it. The thresholds apply to the best
    single track of each kind, so two tracks cannot add up to a pass."""

    def __init__(self) -> None:
        self.received: list[ReceivedTrack] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.changed = asyncio.Event()

    def attach(self, pc: Any) -> None:
        @pc.on("track")
        def on_track(track: Any) -> None:
            mid = next((t.mid for t in pc.getTransceivers() if t.receiver.track is track), None)
            rec = ReceivedTrack(track, mid)
            self.received.append(rec)
            log.info("aiortc got %s track %s on mid %s", track.kind, track.id, mid)
            self.tasks.append(asyncio.ensure_future(self._consume(rec)))

    async def _consume(self, rec: ReceivedTrack) -> None:
        from aiortc.mediastreams import MediaStreamError

        while True:
            try:
                frame = await rec.track.recv()
            except MediaStreamError:
                return
            except Exception as exc:  # a decoder failure is a finding, not a crash
                rec.error = repr(exc)
                return
            rec.add(frame)
            self.changed.set()

    def best(self, kind: str) -> ReceivedTrack | None:
        tracks = [r for r in self.received if r.kind == kind]
        return max(tracks, key=lambda r: r.frames) if tracks else None

    def frames(self, kind: str) -> int:
        best = self.best(kind)
        return best.frames if best else 0

    def enough(self) -> bool:
        audio = self.best("audio")
        return (
            self.frames("video") >= MIN_VIDEO_FRAMES
            and self.frames("audio") >= MIN_AUDIO_FRAMES
            and audio is not None
            and len(audio.audio_chunks) >= AUDIO_ANALYSIS_FRAMES
        )

    async def wait_enough(self, limit_s: float) -> bool:
        deadline = time.monotonic() + limit_s
        while not self.enough():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                return self.enough()
        return True

    def summary(self) -> dict[str, Any]:
        video, audio = self.best("video"), self.best("audio")
        return {
            "video_frames": video.frames if video else 0,
            "video_sizes": dict(video.sizes) if video else {},
            "audio_frames": audio.frames if audio else 0,
            "audio_format": audio.audio_format if audio else None,
            "audio_analysis": audio.audio_analysis() if audio else None,
            "first_video_at": video.first_at if video else None,
            "first_audio_at": audio.first_at if audio else None,
            "tracks": [r.summary() for r in self.received],
            "errors": [f"{r.kind} mid {r.mid}: {r.error}" for r in self.received if r.error],
        }

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def aiortc_srtp_profile(pc: Any) -> str | None:
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        ssl = getattr(transport, "_ssl", None)
        if ssl is not None:
            try:
                profile = ssl.get_selected_srtp_profile()
            except Exception:
                continue
            if profile:
                return profile.decode() if isinstance(profile, bytes) else str(profile)
    return None


def new_aiortc_pc() -> Any:
    """No ICE servers (the default adds Google's STUN server) and max-bundle (one transport for
    every m-line, as an SFU expects), like tests/helpers/peers.py."""
    from aiortc import RTCConfiguration, RTCPeerConnection
    from aiortc.rtcconfiguration import RTCBundlePolicy

    return RTCPeerConnection(
        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


class Scenario:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.direct = args.direct
        self.result: dict[str, Any] = {
            "scenario": "chromium_publish",
            "mode": "direct" if self.direct else "engine",
            "timings": {},
            "events": [],
            "errors": [],
        }
        self.engine: Any = None
        self.ev: Any = None  # the visio_media.engine module
        self.browser_peer_id: int | None = None
        self.aiortc_peer_id: int | None = None
        self.aiortc_pc: Any = None
        self.direct_pc: Any = None  # --direct: the aiortc peer that answers Chromium
        self.sink = MediaSink()
        self.published: dict[int, list[dict[str, Any]]] = collections.defaultdict(list)
        # Server offers (OfferNeeded) per peer id: an offer may come before create_peer() returned.
        self.offers: dict[int, asyncio.Queue[str]] = collections.defaultdict(asyncio.Queue)
        self.tasks: list[asyncio.Task[Any]] = []
        # Every SDP exchanged, for post-mortems (the result JSON is kept in artifacts/).
        self.result["sdp_log"] = self.sdp_log = []

    def mark(self, name: str) -> None:
        self.result["timings"][name] = now()
        log.info("-- %s at %.3fs", name, now())

    def log_sdp(self, who: str, kind: str, sdp: str) -> None:
        self.sdp_log.append({"at": now(), "who": who, "type": kind, "sdp": sdp})

    def error(self, msg: str) -> None:
        log.error("%s", msg)
        self.result["errors"].append(msg)

    # ---------------------------------------------------------------- engine events

    async def dispatch_events(self, queue: asyncio.Queue[Any]) -> None:
        ev = self.ev
        while True:
            event = await queue.get()
            name = type(event).__name__
            record: dict[str, Any] = {"at": now(), "type": name}
            if dataclasses.is_dataclass(event):
                fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
            else:
                fields = dict(getattr(event, "__dict__", {}))
            for key, value in fields.items():
                if key == "sdp":
                    record["sdp_len"] = len(value)
                elif isinstance(value, (int, float, str, bool)) or value is None:
                    record[key] = value
                else:
                    record[key] = repr(value)
            self.result["events"].append(record)
            log.info("engine event %s", record)
            try:
                if isinstance(event, ev.TrackPublished):
                    self.published[event.peer_id].append(
                        {"track_id": event.track_id, "kind": event.kind, "mid": event.mid}
                    )
                elif isinstance(event, ev.OfferNeeded):
                    self.offers[event.peer_id].put_nowait(event.sdp)
            except Exception as exc:
                self.error(f"handling {name}: {exc!r}")

    async def answer_aiortc_offers(self) -> None:
        """Server-initiated renegotiation of the aiortc peer, one offer at a time."""
        from aiortc import RTCSessionDescription

        count = 0
        while True:
            sdp = await self.offers[self.aiortc_peer_id].get()
            count += 1
            self.log_sdp("engine->aiortc", "offer", sdp)
            try:
                await self.aiortc_pc.setRemoteDescription(
                    RTCSessionDescription(sdp=sdp, type="offer")
                )
                answer = await self.aiortc_pc.createAnswer()
                await self.aiortc_pc.setLocalDescription(answer)
                self.log_sdp("aiortc->engine", "answer", self.aiortc_pc.localDescription.sdp)
                await self.engine.apply_answer(
                    self.aiortc_peer_id, self.aiortc_pc.localDescription.sdp
                )
                self.mark(f"aiortc_renegotiated_{count}")
            except Exception as exc:
                self.error(f"aiortc renegotiation {count}: {exc!r}")
                if self.args.verbose:
                    log.error("offer was:\n%s", sdp)

    # ---------------------------------------------------------------- HTTP signalling

    def make_app(self) -> Any:
        from aiohttp import web

        async def page(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(PAGE, headers={"cache-control": "no-store"})

        async def offer(request: web.Request) -> web.StreamResponse:
            body = await request.json()
            self.mark("browser_offer_received")
            self.log_sdp("chromium->engine", "offer", body["sdp"])
            self.result["browser_offer_candidates"] = [
                line for line in body["sdp"].splitlines() if line.startswith("a=candidate")
            ]
            try:
                if self.direct:
                    peer_id, answer = 0, await self.direct_answer(body["sdp"])
                else:
                    peer_id, answer = await self.engine.create_peer(
                        room=body.get("room", ROOM),
                        identity=body.get("identity", "chrome"),
                        offer_sdp=body["sdp"],
                    )
            except Exception as exc:
                self.error(f"create_peer(browser): {exc!r}")
                return web.json_response({"error": repr(exc)}, status=400)
            self.browser_peer_id = peer_id
            self.result["browser_peer_id"] = peer_id
            self.log_sdp("engine->chromium", "answer", answer)
            self.result["engine_answer_candidates"] = [
                line for line in answer.splitlines() if line.startswith("a=candidate")
            ]
            self.mark("browser_answer_sent")
            return web.json_response({"peer_id": peer_id, "sdp": answer})

        async def events(request: web.Request) -> web.StreamResponse:
            try:
                peer_id = int(request.query["peer"])
            except (KeyError, ValueError):
                return web.Response(status=400, text="peer=ID required")
            if peer_id != self.browser_peer_id:
                return web.Response(status=410)
            queue = self.offers[peer_id]
            try:
                sdp = await asyncio.wait_for(queue.get(), 10)
            except TimeoutError:
                return web.Response(status=204)
            self.mark("browser_server_offer_delivered")
            self.log_sdp("engine->chromium", "offer", sdp)
            return web.json_response({"events": [{"type": "offer", "sdp": sdp}]})

        async def answer(request: web.Request) -> web.StreamResponse:
            body = await request.json()
            self.log_sdp("chromium->engine", "answer", body["sdp"])
            try:
                await self.engine.apply_answer(int(body["peer_id"]), body["sdp"])
            except Exception as exc:
                self.error(f"apply_answer(browser): {exc!r}")
                return web.json_response({"error": repr(exc)}, status=400)
            self.mark("browser_renegotiated")
            return web.json_response({})

        async def favicon(request: web.Request) -> web.StreamResponse:
            return web.Response(status=204)

        app = web.Application()
        app.router.add_get("/publisher.html", page)
        app.router.add_get("/favicon.ico", favicon)
        app.router.add_post("/offer", offer)
        app.router.add_get("/events", events)
        app.router.add_post("/answer", answer)
        return app

    async def direct_answer(self, offer_sdp: str) -> str:
        """--direct: aiortc answers Chromium. aiortc is then the DTLS client and Chromium the
        server, and libwebrtc as server prefers AES_CM_128_HMAC_SHA1_80 whenever the client offers
        it; offering only AES-GCM proves that this Chromium negotiates GCM at all."""
        import aiortc.rtcdtlstransport as dtls
        from aiortc import RTCSessionDescription

        dtls.SRTP_PROFILES = [dtls.SRTP_AEAD_AES_128_GCM]
        pc = self.direct_pc = new_aiortc_pc()
        self.sink.attach(pc)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    # ---------------------------------------------------------------- aiortc subscriber

    async def join_aiortc(self) -> None:
        from aiortc import RTCSessionDescription

        pc = self.aiortc_pc = new_aiortc_pc()
        self.sink.attach(pc)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            self.mark(f"aiortc_{pc.connectionState}")

        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        self.log_sdp("aiortc->engine", "offer", pc.localDescription.sdp)
        peer_id, answer = await self.engine.create_peer(
            room=ROOM,
            identity="aiortc",
            offer_sdp=pc.localDescription.sdp,
            video_slots=1,
            audio_slots=1,
        )
        self.aiortc_peer_id = peer_id
        self.result["aiortc_peer_id"] = peer_id
        self.log_sdp("engine->aiortc", "answer", answer)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        self.mark("aiortc_joined")
        self.tasks.append(asyncio.ensure_future(self.answer_aiortc_offers()))

    # ---------------------------------------------------------------- the run

    async def run(self) -> int:
        from aiohttp import web
        from playwright.async_api import async_playwright

        patch_aioice()
        if not self.direct:
            import visio_media.engine as ev

            self.ev = ev
            self.engine = ev.Engine(
                ev.EngineConfig(
                    shards=1, bind_ip="127.0.0.1", announce_ip=None, port_min=0, port_max=0
                )
            )
            await self.engine.start()
            self.tasks.append(asyncio.ensure_future(self.dispatch_events(self.engine.listen())))
            self.mark("engine_started")

        runner = web.AppRunner(self.make_app(), shutdown_timeout=0.25)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/publisher.html?room={ROOM}&identity=chrome"
        self.mark("http_started")

        browser = None
        console: list[str] = []
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
                )
                self.result["chromium_version"] = browser.version
                page = await browser.new_page(viewport={"width": 700, "height": 720})
                page.on("console", lambda m: console.append(f"{now()} {m.type}: {m.text}"))
                page.on("pageerror", lambda e: console.append(f"{now()} pageerror: {e}"))
                self.mark("chromium_launched")
                await page.goto(url)

                try:
                    await page.wait_for_function(
                        "() => ['connected', 'error'].includes(window.vm && window.vm.state)",
                        timeout=self.args.connect_timeout * 1000,
                    )
                except Exception:
                    self.error(f"browser did not connect within {self.args.connect_timeout}s")
                vm = await page.evaluate(
                    "() => ({state: vm.state, error: vm.error, tracks: vm.tracks,"
                    " peerId: vm.peerId, connectionState: vm.pc && vm.pc.connectionState,"
                    " log: vm.log, remoteTracks: vm.remoteTracks})"
                )
                self.result["browser"] = vm
                if vm["state"] == "connected":
                    self.mark("browser_connected")
                else:
                    self.error(f"browser state {vm['state']}: {vm['error']}")

                if vm["state"] == "connected":
                    if not self.direct:
                        await self.join_aiortc()
                    if not await self.sink.wait_enough(self.args.media_timeout):
                        self.error(
                            f"media: {self.sink.frames('video')} video / "
                            f"{self.sink.frames('audio')} audio frames "
                            f"after {self.args.media_timeout}s"
                        )
                    else:
                        self.mark("media_enough")

                stats = await page.evaluate("stats()")
                self.result["browser_stats"] = stats
                self.result["browser_log"] = await page.evaluate("vm.log")
                self.result["browser_renegotiations"] = await page.evaluate("vm.renegotiations")
                self.result["browser_remote_tracks"] = await page.evaluate("vm.remoteTracks")
                self.result["browser_srtp_cipher"] = (stats.get("transport") or {}).get(
                    "srtpCipher"
                )

                shot = ARTIFACTS / f"chromium_publisher{'_direct' if self.direct else ''}.png"
                await page.screenshot(path=str(shot))
                self.result["screenshot"] = str(shot)

                if not self.direct:
                    snap = self.engine.stats_snapshot()
                    self.result["engine_stats"] = snap
                    self.result["engine_srtp_profile"] = self.engine_srtp_profile(snap)
                pc = self.aiortc_pc if not self.direct else self.direct_pc
                if pc is not None:
                    self.result["aiortc_srtp_profile"] = aiortc_srtp_profile(pc)

                await page.evaluate("closePeer()")
                await browser.close()
                browser = None
        finally:
            self.result["browser_console"] = console[-50:]
            self.result["media"] = self.sink.summary()
            await self.cleanup(runner)

        return self.verdict()

    def engine_srtp_profile(self, snap: Any) -> Any:
        if not isinstance(snap, dict):
            return None
        peers = snap.get("peer_stats")
        if not isinstance(peers, dict) or self.browser_peer_id is None:
            return None
        entry = peers.get(self.browser_peer_id, peers.get(str(self.browser_peer_id)))
        return entry.get("srtp_profile") if isinstance(entry, dict) else None

    async def cleanup(self, runner: Any) -> None:
        started = time.monotonic()
        await self.sink.stop()
        for pc in (self.aiortc_pc, self.direct_pc):
            if pc is not None:
                try:
                    await asyncio.wait_for(pc.close(), 5)
                except Exception as exc:
                    self.error(f"aiortc close: {exc!r}")
        if self.engine is not None:
            for peer_id in (self.aiortc_peer_id, self.browser_peer_id):
                if peer_id is None:
                    continue
                try:
                    await asyncio.wait_for(self.engine.close_peer(peer_id), 5)
                except Exception as exc:
                    # The peer may already be gone (PeerClosed after the browser hung up).
                    self.result.setdefault("close_peer_errors", []).append(f"{peer_id}: {exc!r}")
            await asyncio.sleep(0.2)  # let PeerClosed events arrive
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(runner.cleanup(), 5)
        except Exception as exc:
            self.error(f"http cleanup: {exc!r}")
        if self.engine is not None:
            try:
                await asyncio.wait_for(self.engine.stop(), 10)
            except Exception as exc:
                self.error(f"engine.stop: {exc!r}")
        self.result["timings"]["cleanup_s"] = round(time.monotonic() - started, 3)

    def verdict(self) -> int:
        r = self.result
        media = r["media"]
        failures = []
        if (r.get("browser") or {}).get("state") != "connected":
            failures.append("browser did not reach connectionState=connected")
        if media["video_frames"] < MIN_VIDEO_FRAMES:
            failures.append(f"video frames {media['video_frames']} < {MIN_VIDEO_FRAMES}")
        if media["audio_frames"] < MIN_AUDIO_FRAMES:
            failures.append(f"audio frames {media['audio_frames']} < {MIN_AUDIO_FRAMES}")
        analysis = media["audio_analysis"] or {}
        peak = analysis.get("peak_hz")
        if peak is None or abs(peak - FAKE_BEEP_HZ) > BEEP_TOLERANCE_HZ:
            failures.append(f"audio peak {peak} Hz, expected {FAKE_BEEP_HZ}±{BEEP_TOLERANCE_HZ} Hz")
        if media["errors"]:
            failures.append(f"decode errors: {media['errors']}")
        if "GCM" not in str(r.get("browser_srtp_cipher")):
            failures.append(f"browser srtpCipher {r.get('browser_srtp_cipher')!r} is not AES-GCM")
        if not self.direct and "GCM" not in str(r.get("engine_srtp_profile")).upper():
            failures.append(f"engine srtp_profile {r.get('engine_srtp_profile')!r} is not AES-GCM")
        if r["errors"]:
            failures.append(f"errors: {r['errors']}")
        # Oddities that do not fail the acceptance criteria but deserve a look.
        warnings = []
        if r.get("browser_remote_tracks"):
            warnings.append(
                f"the publisher got {len(r['browser_remote_tracks'])} remote track(s) it never "
                f"subscribed to: {r['browser_remote_tracks']}"
            )
        silent = [t for t in media["tracks"] if t["frames"] == 0]
        if silent:
            warnings.append(f"aiortc got track(s) that carried no frame: {silent}")
        r["warnings"] = warnings
        r["failures"] = failures
        r["ok"] = not failures
        return 0 if not failures else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--direct", action="store_true", help="aiortc answers Chromium, no engine")
    parser.add_argument("--timeout", type=float, default=75.0, help="whole scenario, seconds")
    parser.add_argument("--connect-timeout", type=float, default=15.0)
    parser.add_argument("--media-timeout", type=float, default=20.0)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(relativeCreated)8.0fms %(name)s %(levelname)s %(message)s",
    )
    for noisy in ("aioice", "aiortc", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    scenario = Scenario(args)

    async def run() -> int:
        return await asyncio.wait_for(scenario.run(), args.timeout)

    try:
        code = asyncio.run(run())
    except BaseException as exc:  # the JSON line must be printed whatever happens
        scenario.result["ok"] = False
        scenario.result["error"] = f"{type(exc).__name__}: {exc}"
        scenario.result["traceback"] = traceback.format_exc()
        traceback.print_exc(file=sys.stderr)
        code = 2
    scenario.result["elapsed_s"] = now()
    sys.stdout.flush()
    print(json.dumps(scenario.result, default=repr), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
