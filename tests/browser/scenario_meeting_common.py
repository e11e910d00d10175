"""Shared parts of the meeting scenarios (scenario_meeting_*.py): the real server as a
subprocess, headless Chromium driving the web client through its UI, and the JSON verdict.

Everything here runs inside the network namespace made by netns.py (only `lo`): the server
(`python -m visio_media serve --dev`), Chromium and any aiortc peer talk over 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
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
    "--autoplay-policy=no-user-gesture-required",
    # getDisplayMedia without a picker: the fake UI picks a source, the fake device provides it.
    "--auto-select-desktop-capture-source=Entire screen",
    # Three pages share two cores: keep every page's timers and rendering going.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
# Small camera frames: three browsers each encode one stream and decode several on two cores.
VIDEO_PARAM = "video=480x270@15"

log = logging.getLogger("scenario")
T0 = time.monotonic()


def now() -> float:
    return round(time.monotonic() - T0, 3)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def patch_aioice() -> None:
    """aioice skips 127.0.0.1 when gathering; in the namespace it is the only address."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]


class ServerProcess:
    """`python -m visio_media serve --dev --port P` with a known token secret."""

    def __init__(self, name: str) -> None:
        self.port = free_port()
        self.secret = secrets.token_urlsafe(32)
        self.log_path = ARTIFACTS / f"{name}_server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def _launch(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ, VISIO_SECRET=self.secret, PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "wb")  # closed in stop()
        return subprocess.Popen(
            [sys.executable, "-m", "visio_media", "serve", "--dev", "--port", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )

    async def start(self, within: float = 20.0) -> None:
        self.proc = self._launch()
        deadline = time.monotonic() + within
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_tail()}")
            status = await asyncio.to_thread(self._get_status, "/readyz")
            if status == 200:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after {within}s: {self.log_tail()}")
            await asyncio.sleep(0.2)

    def _get_status(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as e:
            return int(e.code)
        except OSError:
            return None

    def log_tail(self, size: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    async def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)
        self._log.close()
        return self.proc.returncode


class Scenario:
    """Marks, errors, failures and the JSON result line."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.result: dict[str, Any] = {
            "scenario": name,
            "timings": {},
            "errors": [],
            "failures": [],
            "checks": {},
        }

    def mark(self, name: str) -> None:
        self.result["timings"][name] = now()
        log.info("== %s", name)

    def error(self, msg: str) -> None:
        log.error(msg)
        self.result["errors"].append(f"{now()} {msg}")

    def check(self, name: str, ok: bool, detail: Any = None) -> bool:
        self.result["checks"][name] = {"ok": bool(ok), "at": now(), "detail": detail}
        (log.info if ok else log.error)("check %s: %s %s", name, "ok" if ok else "FAILED", detail)
        if not ok:
            self.result["failures"].append(f"{name}: {detail}")
        return ok


def main(scenario: Scenario, run: Callable[[], Awaitable[None]], timeout: float) -> int:
    """Run, print the JSON result as the last stdout line, exit 0 (all checks passed),
    1 (some failed) or 2 (crashed or timed out)."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(relativeCreated)8.0fms %(name)s %(levelname)s %(message)s",
    )
    for noisy in ("aioice", "aiortc", "asyncio", "visio_media.client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    code = 0
    try:
        asyncio.run(asyncio.wait_for(run(), timeout))
        code = 1 if scenario.result["failures"] or scenario.result["errors"] else 0
    except BaseException as exc:  # the JSON line must be printed whatever happens
        scenario.result["error"] = f"{type(exc).__name__}: {exc}"
        scenario.result["traceback"] = traceback.format_exc()
        traceback.print_exc(file=sys.stderr)
        code = 2
    scenario.result["ok"] = code == 0
    scenario.result["elapsed_s"] = now()
    sys.stdout.flush()
    print(json.dumps(scenario.result, default=repr), flush=True)
    return code


# ---------------------------------------------------------------------------- page helpers


async def open_meeting_page(
    browser: Any,
    base_url: str,
    label: str,
    console: list[str],
    *,
    viewport: dict[str, int],
    query: str = "",
) -> Any:
    context = await browser.new_context(viewport=viewport)
    page = await context.new_page()
    page.on("console", lambda m: console.append(f"{now()} [{label}] {m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"{now()} [{label}] pageerror: {e}"))
    await page.goto(f"{base_url}/?{VIDEO_PARAM}{'&' + query if query else ''}")
    await page.wait_for_function("() => window.visio !== undefined", timeout=10_000)
    return page


async def join_via_ui(page: Any, name: str, room: str, within: float = 20.0) -> str:
    """Fill the join form, click Join, wait until joined. Returns our identity."""
    await page.fill("#name-input", name)
    await page.fill("#room-input", room)
    await page.click("#join-button")
    await page.wait_for_function(
        "() => ['joined', 'failed'].includes(window.visio.state)", timeout=within * 1000
    )
    state = await page.evaluate("() => ({state: visio.state, error: visio.error})")
    if state["state"] != "joined":
        raise RuntimeError(f"{name} could not join: {state['error']}")
    return str(await page.evaluate("() => visio.identity"))


async def tile_stats(page: Any) -> dict[str, Any]:
    return dict(await page.evaluate("() => visio.refreshStats()"))


async def wait_remote_media(
    page: Any,
    keys: list[str],
    *,
    within: float,
    min_frames: int = 30,
    min_audio_packets: int = 50,
    audio: bool = True,
) -> tuple[bool, dict[str, Any]]:
    """Wait until every tile in `keys` has decoded `min_frames` video frames (and received
    `min_audio_packets` audio packets), and both still grow over one more second."""
    deadline = time.monotonic() + within
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        first = await tile_stats(page)
        enough = all(
            k in first
            and first[k]["videoFramesDecoded"] >= min_frames
            and (not audio or first[k]["audioPacketsReceived"] >= min_audio_packets)
            for k in keys
        )
        if enough:
            await asyncio.sleep(1.0)
            second = await tile_stats(page)
            growing = {
                k: {
                    "frames": [first[k]["videoFramesDecoded"], second[k]["videoFramesDecoded"]],
                    "rendered": [first[k]["framesRendered"], second[k]["framesRendered"]],
                    "audio_packets": [
                        first[k]["audioPacketsReceived"],
                        second[k]["audioPacketsReceived"],
                    ],
                    "size": f"{second[k]['frameWidth']}x{second[k]['frameHeight']}",
                }
                for k in keys
                if k in second
            }
            ok = len(growing) == len(keys) and all(
                g["frames"][1] > g["frames"][0]
                and (not audio or g["audio_packets"][1] > g["audio_packets"][0])
                for g in growing.values()
            )
            if ok:
                return True, growing
            last = {"growing": growing}
        else:
            last = {k: first.get(k) for k in keys} | {"tiles": sorted(first)}
        await asyncio.sleep(0.5)
    return False, last


async def page_debug(page: Any) -> dict[str, Any]:
    try:
        return dict(
            await page.evaluate(
                "() => ({state: visio.state, error: visio.error, identity: visio.identity,"
                " mediaState: visio.mediaState, offersBeforeAnswer: visio.offersBeforeAnswer,"
                " participants: visio.participants,"
                " localTracks: visio.localTracks, tiles: visio.tiles, log: visio.log.slice(-60)})"
            )
        )
    except Exception as e:  # the page may be gone
        return {"error": repr(e)}
