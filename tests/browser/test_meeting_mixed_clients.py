"""Acceptance (issue 3): two Chromium pages (the web client) and two Python SDK peers
(`visio_media.client.Client` on aiortc) in one room; everyone sees and hears everyone.

The scenario (scenario_meeting_mixed_clients.py) runs inside a fresh network namespace with only
`lo`, together with the real server (`python -m visio_media serve --dev`). Pages join through the
join form, SDK peers with tokens minted by `visio_media.auth.mint_token`. Each page must show
three remote tiles with advancing video and growing audio packet counts; each SDK peer must decode
video and audio from the three others, the other SDK peer's sine recognised by its frequency and
Chromium's fake-microphone beep by its. Along the way the page's error paths are checked: a
refused token and an unreachable server say so on the join screen, and a watch-only token joins
as a viewer.
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

SCENARIO = HERE / "scenario_meeting_mixed_clients.py"
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
    (ARTIFACTS / "meeting_mixed_clients_result.json").write_text(
        json.dumps(res.result, indent=2, default=repr)
    )
    (ARTIFACTS / "meeting_mixed_clients_stderr.txt").write_text(res.stderr)
    return res


@pytest.mark.timeout(120)
def test_browsers_and_sdk_peers_see_and_hear_everyone() -> None:
    res = run_scenario()
    assert not res.timed_out, res.describe()
    r = res.result
    assert isinstance(r, dict), f"no JSON result line\n{res.describe()}"
    print(f"timings={r.get('timings')} bots={r.get('bots')}")
    assert not r.get("error"), f"scenario crashed: {r.get('error')}\n{r.get('traceback')}"
    checks = r["checks"]
    failed = {name: c["detail"] for name, c in checks.items() if not c["ok"]}
    expected = [
        "page1_sees_and_hears_three_others",
        "page2_sees_and_hears_three_others",
        "bot-440_sees_and_hears_three_others",
        "bot-660_sees_and_hears_three_others",
        "bad_token_message",
        "viewer_token_joins_watch_only",
        "unreachable_message",
    ]
    missing = [name for name in expected if name not in checks]
    assert not missing, f"checks never ran: {missing}; failed: {failed}; errors: {r['errors']}"
    assert not failed, f"failed checks: {json.dumps(failed, indent=1, default=repr)}"
    assert not r["errors"], r["errors"]
    assert res.returncode == 0, res.describe()
