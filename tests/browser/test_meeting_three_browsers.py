"""Acceptance (issue 3): three headless Chromium pages meet through the web client served at `/`.

The scenario (scenario_meeting_three_browsers.py) runs inside a fresh network namespace with only
`lo`, together with the real server (`python -m visio_media serve --dev`). Each page joins through
the join form; every page then sees and hears the two others; page 1 mutes (pages 2 and 3 show
the icon), presents its screen (a new tile with moving video on 2 and 3), stops presenting (the
tile goes) and leaves (its tiles go away). The screenshot of the three-person grid is kept in
artifacts/meeting-grid.png and docs/images/meeting-grid.png (used by the README).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from meeting_scenarios import checked_result, run_scenario  # noqa: E402

pytestmark = pytest.mark.browser


@pytest.mark.timeout(120)
def test_three_browsers_meet_mute_share_and_leave() -> None:
    res = run_scenario("scenario_meeting_three_browsers.py")
    expected = [
        *(f"page{i}_sees_and_hears_two_others" for i in (1, 2, 3)),
        *(f"page{i}_three_tiles" for i in (1, 2, 3)),
        *(f"page{i}_receives_on_16_video_and_3_audio_slots" for i in (1, 2, 3)),
        "page1_own_tile_muted",
        *(f"page{i}_shows_page1_muted" for i in (2, 3)),
        "page1_share_offer_fits_the_frame_limit",
        *(f"page{i}_sees_screen_share" for i in (2, 3)),
        *(f"page{i}_screen_tile_in_presentation" for i in (2, 3)),
        *(f"page{i}_screen_tile_gone_after_stop" for i in (2, 3)),
        *(f"page{i}_page1_tiles_gone" for i in (2, 3)),
        "page1_shows_ended_view",
    ]
    r = checked_result(res, expected, "screen_share_mode")
    assert not r["errors"], r["errors"]
    assert Path(r["screenshot"]).is_file()
    assert res.returncode == 0, res.describe()
