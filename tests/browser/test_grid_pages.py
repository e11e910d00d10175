"""Issue 8 (item 6): the web client's paged grid and speaker view in a room of 58, each tile
identified by the colour of its video.

The scenario (scenario_grid_pages.py) runs the real server, 7 colour publishers and 50
signalling-only participants (protocol v2 over plain WebSockets, aiortc for media) and one
Chromium page in a fresh network namespace with only `lo`. The page asks 3 video slots and shows
3 others per page, so each page change must move the server's slots (`layout` → `slots`): the
tiles of page 1, then of page 2, show their publishers' colours; the speaker view shows the
active speaker (the one publisher with a voice) big, with its colour, and names it first in
`layout`; pinning another (a click on its tile) puts that one big and first instead.
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


@pytest.mark.timeout(150)
def test_paged_grid_and_speaker_view_show_the_right_people() -> None:
    res = run_scenario("scenario_grid_pages.py", timeout=130.0)
    expected = [
        "page_joined",
        "participant_list_arrives_whole_in_pages",
        "granted_the_slots_asked",
        "pager_says_page_1_of_n",
        "page1_tiles_show_their_publishers_colours",
        "pager_says_page_2_of_n",
        "page2_tiles_show_their_publishers_colours",
        "page2_shows_no_page1_participant",
        "layout_names_page2_tiles",
        "speaker_view_features_the_active_speaker",
        "active_speaker_tile_shows_its_colour",
        "layout_names_the_active_speaker_first",
        "pinned_participant_is_big_in_speaker_view",
        "pinned_tile_shows_its_colour",
        "layout_names_the_pinned_participant_first",
    ]
    r = checked_result(res, expected)
    assert not r["errors"], r["errors"]
    assert not r.get("member_errors"), r["member_errors"]
    assert res.returncode == 0, res.describe()
