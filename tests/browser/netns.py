"""Run a command inside a fresh network namespace that has only `lo` (127.0.0.1/8, ::1).

Chromium only gathers loopback ICE candidates when no other interface exists, so every browser
scenario runs, together with the server under test, inside `unshare -n` after `ip link set lo up`.
Nothing in the namespace can reach outside it, which also guarantees that tests never touch a real
network. Reusable by any multi-process test: everything that must talk over loopback (server,
browsers, aiortc peers) has to live in the same namespace, i.e. be started by the one command.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# `"$@"` keeps the argv intact (no shell quoting issues); `exec` makes the command the namespace's
# main process so signals reach it directly.
_NS_SCRIPT = 'ip link set lo up && exec "$@"'


def netns_unavailable_reason() -> str | None:
    """None if `run_in_netns` can work here, else a human-readable reason (for pytest.skip)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces (unshare -n) need root"
    for tool in ("unshare", "ip", "bash"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    return None


@dataclass
class NetnsResult:
    argv: list[str]
    returncode: int | None  # None when killed on timeout
    stdout: str
    stderr: str
    elapsed_s: float
    timed_out: bool
    result: Any = field(default=None)  # JSON of the last stdout line that parses as JSON

    def describe(self, tail: int = 6000) -> str:
        """Everything useful for an assertion message."""
        return (
            f"argv={self.argv}\nreturncode={self.returncode} timed_out={self.timed_out} "
            f"elapsed={self.elapsed_s:.1f}s\n--- stdout (tail) ---\n{self.stdout[-tail:]}\n"
            f"--- stderr (tail) ---\n{self.stderr[-tail:]}"
        )


def _last_json_line(stdout: str) -> Any:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if not line:
            continue
        try:
            return json.loads(line)
        except ValueError:
            return None
    return None


def netns_argv(argv: Sequence[str]) -> list[str]:
    """The argv that runs `argv` inside a new network namespace with `lo` up."""
    return ["unshare", "--net", "--", "bash", "-c", _NS_SCRIPT, "bash", *argv]


def run_in_netns(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> NetnsResult:
    """Run `argv` in a fresh network namespace; kill its whole process group on timeout.

    The child gets its own session (process group), so on timeout every process it started
    (Chromium and its helpers, the Playwright driver) is killed with it, by group id.
    """
    full = netns_argv(argv)
    started = time.monotonic()
    proc = subprocess.Popen(
        full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )
    timed_out = False
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc.pid, signal.SIGTERM)
        try:
            stdout, stderr = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
    finally:
        # Leftovers (e.g. a Chromium helper that outlived its parent) die with the group.
        _kill_group(proc.pid, signal.SIGKILL)
    return NetnsResult(
        argv=full,
        returncode=None if timed_out else proc.returncode,
        stdout=stdout or "",
        stderr=stderr or "",
        elapsed_s=time.monotonic() - started,
        timed_out=timed_out,
        result=_last_json_line(stdout or ""),
    )


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
