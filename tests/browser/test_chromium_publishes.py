"""Acceptance: headless Chromium publishes its fake camera and microphone; an aiortc peer in the
same room receives both and decodes frames; the negotiated SRTP profile is AES-GCM.

Everything (engine, HTTP signalling, Chromium, aiortc) runs in one scenario process inside a fresh
network namespace with only `lo` (Chromium gathers no loopback candidates otherwise); see
scenario_chromium_publish.py for the steps and netns.py for the namespace. The scenario prints its
findings as JSON on its last stdout line; the full result is also kept in artifacts/.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from netns import NetnsResult, netns_unavailable_reason, run_in_netns  # noqa: E402

SCENARIO = HERE / "scenario_chromium_publish.py"
ARTIFACTS = Path(os.environ.get("VISIO_ARTIFACTS_DIR", HERE.parent.parent / "artifacts"))
TIMEOUT_S = 85.0  # the scenario gives up by itself after 75 s

pytestmark = pytest.mark.browser


def run_scenario(*args: str) -> NetnsResult:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    res = run_in_netns([sys.executable, str(SCENARIO), *args], timeout=TIMEOUT_S, env=env, cwd=HERE)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = "_".join(["chromium_publish", *(a.strip("-").replace("-", "_") for a in args)])
    (ARTIFACTS / f"{name}_result.json").write_text(json.dumps(res.result, indent=2, default=repr))
    (ARTIFACTS / f"{name}_stderr.txt").write_text(res.stderr)
    return res


def summary(r: dict) -> str:
    media = r.get("media") or {}
    return (
        f"mode={r.get('mode')} elapsed={r.get('elapsed_s')}s video={media.get('video_frames')} "
        f"{media.get('video_sizes')} audio={media.get('audio_frames')} "
        f"{media.get('audio_analysis')} "
        f"browser srtpCipher={r.get('browser_srtp_cipher')} engine={r.get('engine_srtp_profile')} "
        f"aiortc={r.get('aiortc_srtp_profile')} timings={r.get('timings')} "
        f"warnings={r.get('warnings')}"
    )


def check_common(res: NetnsResult) -> dict:
    assert not res.timed_out, res.describe()
    r = res.result
    assert isinstance(r, dict), f"no JSON result line\n{res.describe()}"
    print(summary(r))
    assert not r.get("error"), (
        f"scenario crashed: {r.get('error')}\n{r.get('traceback')}\n{res.describe()}"
    )
    browser = r.get("browser") or {}
    assert browser.get("state") == "connected", (
        f"Chromium never connected: {browser.get('error')} log={browser.get('log')} "
        f"errors={r['errors']}"
    )
    assert any(" 127.0.0.1 " in c for c in r["browser_offer_candidates"]), r[
        "browser_offer_candidates"
    ]
    media = r["media"]
    assert media["video_frames"] >= 30, (
        f"video frames {media['video_frames']}: {summary(r)} {r['errors']}"
    )
    assert media["audio_frames"] >= 50, (
        f"audio frames {media['audio_frames']}: {summary(r)} {r['errors']}"
    )
    assert not media["errors"], media["errors"]
    # Chromium's fake camera is 640x480; every decoded frame is 4:3 and no larger.
    for size in media["video_sizes"]:
        w, h = map(int, size.split("x"))
        assert w * 3 == h * 4 and w <= 640, media["video_sizes"]
    assert media["audio_format"]["sample_rate"] == 48000, media["audio_format"]
    peak = (media["audio_analysis"] or {}).get("peak_hz")
    assert peak is not None and abs(peak - 400.0) <= 10.0, (
        f"fake microphone beep at {peak} Hz, not 400"
    )
    assert "GCM" in str(r["browser_srtp_cipher"]).upper(), (
        f"Chromium srtpCipher {r['browser_srtp_cipher']!r}"
    )
    assert Path(r["screenshot"]).is_file()
    return r


@pytest.mark.timeout(120)
def test_chromium_publishes_camera_and_microphone_to_aiortc_through_engine() -> None:
    res = run_scenario()
    r = check_common(res)
    assert "GCM" in str(r["engine_srtp_profile"]).upper(), (
        f"engine srtp_profile {r['engine_srtp_profile']!r}; "
        f"peer_stats={(r.get('engine_stats') or {}).get('peer_stats')}"
    )
    published = {e["kind"] for e in r["events"] if e["type"] == "TrackPublished"}
    assert published >= {"audio", "video"}, r["events"]
    assert res.returncode == 0, f"failures={r['failures']}\n{res.describe()}"


@pytest.mark.timeout(120)
def test_harness_chromium_to_aiortc_direct() -> None:
    """Self-check of the harness without the engine: aiortc answers Chromium itself, offering
    only AES-GCM. If this fails, the problem is the environment or the harness, not the engine."""
    res = run_scenario("--direct")
    r = check_common(res)
    assert r["aiortc_srtp_profile"] == "SRTP_AEAD_AES_128_GCM", r["aiortc_srtp_profile"]
    assert res.returncode == 0, f"failures={r['failures']}\n{res.describe()}"
