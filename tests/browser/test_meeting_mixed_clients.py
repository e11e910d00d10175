"""Acceptance (issue 3): two Chromium pages (the web client) and two Python SDK peers
(`visio_media.client.Client` on aiortc) in one room; everyone sees and hears everyone.

The scenario (scenario_meeting_mixed_clients.py) runs inside a fresh network namespace with only
`lo`, together with the real server (`python -m visio_media serve --dev`). Pages join through the
join form, SDK peers with tokens minted by `visio_media.auth.mint_token`. Each page must show
three remote tiles with advancing video and growing audio packet counts; each SDK peer must decode
video and audio from the three others, the other SDK peer's sine recognised by its frequency and
Chromium's fake-microphone beep by its. Then one SDK peer leaves and another joins: its tracks
go into the receive slots (protocol v2: the slots are fixed, the SDP does not change) and
everyone must see and hear the newcomer, not the leaver. Along the way the page's error paths
are checked: a refused token and an unreachable server say so on the join screen, and a
watch-only token joins as a viewer.
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
def test_browsers_and_sdk_peers_see_and_hear_everyone() -> None:
    res = run_scenario("scenario_meeting_mixed_clients.py", timeout=130.0)
    expected = [
        "page1_sees_and_hears_three_others",
        "page2_sees_and_hears_three_others",
        "bot-440_sees_and_hears_three_others",
        "bot-660_sees_and_hears_three_others",
        "page1_sees_the_newcomer_on_the_same_slots",
        "page2_sees_the_newcomer_on_the_same_slots",
        "bot-440_hears_the_newcomer_on_reused_lines",
        "bad_token_message",
        "viewer_token_joins_watch_only",
        "unreachable_message",
    ]
    r = checked_result(res, expected, "bots")
    assert not r["errors"], r["errors"]
    assert res.returncode == 0, res.describe()
