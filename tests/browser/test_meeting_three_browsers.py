"""Acceptance (issue 3): three headless Chromium pages meet through the web client served at `/`.

The scenario (scenario_meeting_three_browsers.py) runs inside a fresh network namespace with only
`lo`, together with the real server (`python -m visio_media serve --dev`). Each page joins through
the join form; every page then sees and hears the two others; page 1 mutes (pages 2 and 3 show
the icon), presents its screen (a new tile with moving video on 2 and 3), stops presenting (the
tile goes) and leaves (its tiles go away). The screenshot of the three-person grid is kept in
artifacts/meeting-grid.png and docs/images/meeting-grid.png (used by the README).
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

SCENARIO = HERE / "scenario_meeting_three_browsers.py"
ARTIFACTS = Path(os.environ.get("VISIO_ARTIFACTS_DIR", HERE.parent.parent / "artifacts"))
TIMEOUT_S = 90.0  # the scenario gives up by itself after 80 s

pytestmark = pytest.mark.browser


def run_scenario() -> NetnsResult:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    res = run_in_netns([sys.executable, str(SCENARIO)], timeout=TIMEOUT_S, env=env, cwd=HERE)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "meeting_three_browsers_result.json").write_text(
        json.dumps(res.result, indent=2, default=repr)
    )
    (ARTIFACTS / "meeting_three_browsers_stderr.txt").write_text(res.stderr)
    return res


@pytest.mark.timeout(120)
def test_three_browsers_meet_mute_share_and_leave() -> None:
    res = run_scenario()
    assert not res.timed_out, res.describe()
    r = res.result
    assert isinstance(r, dict), f"no JSON result line\n{res.describe()}"
    print(f"timings={r.get('timings')} screen_share_mode={r.get('screen_share_mode')}")
    assert not r.get("error"), f"scenario crashed: {r.get('error')}\n{r.get('traceback')}"
    checks = r["checks"]
    failed = {name: c["detail"] for name, c in checks.items() if not c["ok"]}
    expected = [
        *(f"page{i}_sees_and_hears_two_others" for i in (1, 2, 3)),
        *(f"page{i}_three_tiles" for i in (1, 2, 3)),
        "page1_own_tile_muted",
        *(f"page{i}_shows_page1_muted" for i in (2, 3)),
        *(f"page{i}_sees_screen_share" for i in (2, 3)),
        *(f"page{i}_screen_tile_in_presentation" for i in (2, 3)),
        *(f"page{i}_screen_tile_gone_after_stop" for i in (2, 3)),
        *(f"page{i}_page1_tiles_gone" for i in (2, 3)),
        "page1_shows_ended_view",
    ]
    missing = [name for name in expected if name not in checks]
    assert not missing, f"checks never ran: {missing}; failed: {failed}; errors: {r['errors']}"
    assert not failed, f"failed checks: {json.dumps(failed, indent=1, default=repr)}"
    assert not r["errors"], r["errors"]
    assert Path(r["screenshot"]).is_file()
    assert res.returncode == 0, res.describe()
