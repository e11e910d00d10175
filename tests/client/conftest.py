"""Fixtures for tests against the real server, in-process: ``server`` has the default config;
tests that need other settings use ``signalling.live_server.live_server(**overrides)``."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from signalling.live_server import LiveServer, live_server


@pytest_asyncio.fixture(loop_scope="function")
async def server() -> AsyncIterator[LiveServer]:
    async with live_server() as s:
        yield s
