"""Issue 8 (item 6): the web client's camera button really stops the camera and restarts it.

The scenario (scenario_camera_off_on.py) runs two Chromium pages and the real server in a fresh
network namespace with only `lo`. Camera off: the capture track is `ended` (the device is
released), nothing is sent, the other page shows the camera off and decodes no frames. Camera
on: a new live track goes on the same sender (same server track, no new m-line) and the other
page decodes frames again. A camera turned off before joining publishes a muted line with no
capture, and turning it on later sends video the same way.
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
def test_camera_off_releases_the_device_and_camera_on_sends_a_new_track() -> None:
    res = run_scenario("scenario_camera_off_on.py", timeout=100.0)
    expected = [
        "page2_sees_page1_camera",
        "camera_off_ends_the_capture_track",
        "camera_off_sends_no_track",
        "page2_shows_page1_camera_off",
        "page2_decodes_no_frames_while_camera_off",
        "camera_on_sends_a_new_live_track",
        "camera_on_keeps_the_published_track",
        "page2_decodes_page1_again_after_camera_on",
        "page2_shows_page1_camera_on",
        "camera_off_at_join_publishes_a_muted_line",
        "page1_shows_page2_camera_off",
        "page2_camera_on_after_joining_with_it_off",
        "page1_decodes_page2_after_its_camera_on",
    ]
    r = checked_result(res, expected)
    assert not r["errors"], r["errors"]
    assert res.returncode == 0, res.describe()
