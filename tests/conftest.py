"""Shared fixtures: aioice on loopback, an engine on 127.0.0.1 with leak checks.

* ``aioice_loopback`` (autouse): aioice skips 127.0.0.1 when gathering; make it use only that.
* ``engine_harness``: a started ``visio_media.engine.Engine`` (1 shard, 127.0.0.1, port 0) plus
  the resources it created; its teardown stops the engine and fails the test if a shard thread
  or an engine fd survived ``stop()``, or if the process has clearly more native threads / fds
  than before the test (a small tolerance covers aiortc's own codec threads and sockets).
* ``engine``: just the engine of ``engine_harness``.

Async tests use pytest-asyncio with a fresh loop per test:
``pytestmark = pytest.mark.asyncio(loop_scope="function")``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from pathlib import Path

import pytest
import pytest_asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers.engines import make_engine
from helpers.peers import _loopback_host_addresses
from helpers.resources import (
    Snapshot,
    new_fds,
    new_threads,
    still_open,
    still_running,
)

# How many extra native threads / fds (compared with before the engine started) are tolerated at
# teardown: aiortc's codecs (libvpx, ffmpeg thread pools, unnamed: comm "python") may outlive
# their peer connection for a while on a loaded machine. Engine threads are checked exactly:
# by thread id (those born in start()) and by name (the engine names its threads "visio-...").
NATIVE_THREAD_TOLERANCE = 6
FD_TOLERANCE = 6
ENGINE_THREAD_PREFIX = "visio"


def pytest_configure(config: pytest.Config) -> None:
    # Registered here too so that the marks are known even without the pytest-timeout plugin.
    if not config.pluginmanager.hasplugin("timeout"):
        config.addinivalue_line("markers", "timeout(seconds): per-test timeout (pytest-timeout)")


@pytest.fixture(autouse=True)
def aioice_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", _loopback_host_addresses)


class EngineHarness:
    """A started engine plus what it created, so that leaks can be attributed precisely."""

    def __init__(
        self, engine, baseline: Snapshot, constructed: Snapshot, started: Snapshot
    ) -> None:
        self.engine = engine
        self.baseline = baseline
        self.started = started
        self.engine_threads = new_threads(baseline, started)
        # What start() opened must be closed by stop(). What the constructor opened (the event
        # fd) lives as long as the object: test_peer_lifecycle checks it is closed on drop.
        self.constructor_fds = new_fds(baseline, constructed)
        self.engine_fds = new_fds(constructed, started)
        self.fd_baseline = len(constructed.fds)
        self.stopped = False

    async def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            await self.engine.stop()

    async def leak_report(self, settle: float = 10.0) -> list[str]:
        """Problems after stop(); waits up to ``settle`` s for aiortc leftovers to go away.

        The threads and fds that appeared during ``start()`` must be gone (stop joins the shard
        threads and closes the sockets); overall, the process may keep only a few more native
        threads and fds than before (aiortc's own leftovers).
        """
        problems: list[str] = []
        deadline = time.monotonic() + settle
        while True:
            gc.collect()
            now = Snapshot.take()
            threads = still_running(self.engine_threads)
            threads |= {
                t: n
                for t, n in new_threads(self.baseline, now).items()
                if n.startswith(ENGINE_THREAD_PREFIX)
            }
            fds = still_open(self.engine_fds)
            extra_threads = len(now.native_threads) - len(self.baseline.native_threads)
            extra_fds = len(now.fds) - self.fd_baseline
            ok = (
                not threads
                and not fds
                and extra_threads <= NATIVE_THREAD_TOLERANCE
                and extra_fds <= FD_TOLERANCE
            )
            if ok or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        logging.getLogger(__name__).info(
            "after engine.stop(): %d extra native threads, %d extra fds", extra_threads, extra_fds
        )
        if threads:
            problems.append(f"engine threads still running after stop(): {threads}")
        if fds:
            problems.append(f"fds opened by engine.start() still open after stop(): {fds}")
        if extra_threads > NATIVE_THREAD_TOLERANCE:
            added = new_threads(self.baseline, now)
            problems.append(
                f"{extra_threads} more native threads than before the engine started "
                f"(tolerance {NATIVE_THREAD_TOLERANCE}): {added}"
            )
        if extra_fds > FD_TOLERANCE:
            added = new_fds(self.baseline, now)
            problems.append(
                f"{extra_fds} more fds than before the engine started "
                f"(tolerance {FD_TOLERANCE}): {added}"
            )
        return problems


def dump_asyncio_tasks(reason: str) -> str:
    """Every pending task with its coroutine stack (pytest-timeout only shows threads)."""
    import io

    out = io.StringIO()
    out.write(f"--- asyncio tasks ({reason}) ---\n")
    for task in asyncio.all_tasks():
        out.write(f"{task!r}\n")
        task.print_stack(limit=12, file=out)
    return out.getvalue()


def _test_timeout(request: pytest.FixtureRequest) -> float | None:
    marker = request.node.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    try:
        value = request.config.getini("timeout")  # pytest-timeout's ini option
    except ValueError:
        return None
    return float(value) if value else None


@pytest_asyncio.fixture(loop_scope="function")
async def engine_harness(request: pytest.FixtureRequest):
    gc.collect()
    baseline = Snapshot.take()
    engine = make_engine()
    constructed = Snapshot.take()
    await engine.start()
    harness = EngineHarness(engine, baseline, constructed, Snapshot.take())
    # Shortly before pytest-timeout fires, log where every coroutine is waiting.
    limit = _test_timeout(request)
    watchdog = None
    if limit:
        watchdog = asyncio.get_running_loop().call_later(
            max(1.0, limit - 3.0),
            lambda: logging.getLogger(__name__).error(dump_asyncio_tasks("test about to time out")),
        )
    logging.getLogger(__name__).debug(
        "engine started: threads %s fds %s", harness.engine_threads, harness.engine_fds
    )
    try:
        yield harness
    finally:
        if watchdog is not None:
            watchdog.cancel()
        await harness.stop()
        problems = await harness.leak_report()
        if problems:
            pytest.fail("resource leak after engine.stop():\n" + "\n".join(problems))


@pytest_asyncio.fixture(loop_scope="function")
async def engine(engine_harness):
    return engine_harness.engine
