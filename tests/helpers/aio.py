"""Small asyncio utilities for the test helpers."""

from __future__ import annotations

import asyncio


async def stop_task(task: asyncio.Task | None, within: float = 5.0) -> None:
    """Cancel ``task`` and wait for it to finish, re-cancelling if a cancellation got lost.

    On Python 3.11, ``asyncio.wait_for`` can swallow a cancellation that arrives just as its
    inner awaitable completes; the task then carries on as if nothing happened. A single
    ``cancel()`` followed by ``await task`` would wait forever.
    """
    if task is None:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
        if loop.time() > deadline:
            raise TimeoutError(f"{task!r} did not stop within {within}s")
    if not task.cancelled():
        task.exception()  # retrieved: the owner records task failures itself
