"""Running a meeting scenario script in its own network namespace and judging its checks:
shared by the browser meeting tests (each scenario prints one JSON result line with named
checks)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from netns import NetnsResult, netns_unavailable_reason, run_in_netns

HERE = Path(__file__).resolve().parent
ARTIFACTS = Path(os.environ.get("VISIO_ARTIFACTS_DIR", HERE.parent.parent / "artifacts"))


def run_scenario(script: str, timeout: float = 90.0) -> NetnsResult:
    """Runs ``script`` (a file next to this one) in a fresh namespace; keeps its result and
    stderr under artifacts/ for post-mortems."""
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    res = run_in_netns([sys.executable, str(HERE / script)], timeout=timeout, env=env, cwd=HERE)
    stem = Path(script).stem.removeprefix("scenario_")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{stem}_result.json").write_text(json.dumps(res.result, indent=2, default=repr))
    (ARTIFACTS / f"{stem}_stderr.txt").write_text(res.stderr)
    return res


def checked_result(res: NetnsResult, expected: Sequence[str], *show: str) -> dict[str, Any]:
    """Fails unless the scenario finished, ran every ``expected`` check and all checks passed."""
    assert not res.timed_out, res.describe()
    r = res.result
    assert isinstance(r, dict), f"no JSON result line\n{res.describe()}"
    print(" ".join(f"{key}={r.get(key)}" for key in ("timings", *show)))
    assert not r.get("error"), f"scenario crashed: {r.get('error')}\n{r.get('traceback')}"
    checks = r["checks"]
    failed = {name: c["detail"] for name, c in checks.items() if not c["ok"]}
    missing = [name for name in expected if name not in checks]
    assert not missing, f"checks never ran: {missing}; failed: {failed}; errors: {r['errors']}"
    assert not failed, f"failed checks: {json.dumps(failed, indent=1, default=repr)}"
    return r
