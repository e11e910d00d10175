"""The TCP listener of the HTTP edge, hardened against connection floods.

* :class:`ConnectionGuard` counts the HTTP connections that are *idle*: opened (or done with their
  last response) but without a complete request head yet. Past ``server.max_pending_connections``
  a new connection closes the oldest idle one, so thousands of silent or slowloris connections
  cannot hold every file descriptor: a real client, whose request follows its connection at once,
  always gets in. Time is bounded by aiohttp's keep-alive timer, which we set to
  ``server.header_timeout_seconds`` (see :func:`handler_args`): it runs from the moment a
  connection opens (or its previous response ends) and is not reset by incoming bytes, so a
  client sending its headers a byte at a time is closed when it expires.
* :class:`GuardedSite` is an aiohttp TCP site whose connections the guard sees.
* :func:`raise_fd_limit` lifts the process' RLIMIT_NOFILE soft limit to the hard limit, and
  :func:`fd_share` bounds a cap to a share of it.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

#: A cap on connections that have not authenticated is at most this share of the fd limit.
FD_SHARE = 4
#: Evictions are summed up in one warning at most this often.
WARN_EVERY_SECONDS = 10.0


def raise_fd_limit() -> tuple[int, int, int]:
    """Raises the soft RLIMIT_NOFILE to the hard limit; (soft before, soft now, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return soft, soft, hard
    target = hard
    if hard == resource.RLIM_INFINITY:
        # The kernel refuses an infinite NOFILE; its own ceiling is fs.nr_open.
        try:
            with open("/proc/sys/fs/nr_open") as f:
                target = int(f.read().strip())
        except (OSError, ValueError):
            target = 1 << 20
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as e:
        log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, e)
        return soft, soft, hard
    return soft, target, hard


def fd_share(cap: int) -> int:
    """``cap``, lowered to 1/FD_SHARE of the current open-file limit (but not below 16)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return cap
    return min(cap, max(16, soft // FD_SHARE))


def handler_args(header_timeout_seconds: float) -> dict[str, Any]:
    """aiohttp request-handler settings: the header-read (and idle keep-alive) timeout."""
    return {"keepalive_timeout": header_timeout_seconds}


class EvictionLog:
    """Counts connections closed to stay within a limit, and says so in the log at most every
    ``WARN_EVERY_SECONDS`` (a flood must not flood the log too)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.total = 0
        self._unreported = 0
        self._reported_at = 0.0

    def evicted(self) -> None:
        self.total += 1
        self._unreported += 1

    def report(self, limit: int) -> None:
        if not self._unreported:
            return
        now = time.monotonic()
        if now - self._reported_at >= WARN_EVERY_SECONDS:
            log.warning("%d %s closed to stay within its limit, %d", self._unreported,
                        self.what, limit)
            self._unreported = 0
            self._reported_at = now


class ConnectionGuard:
    """Idle HTTP connections, oldest first, at most ``limit`` of them."""

    def __init__(self, limit: int, what: str = "server.max_pending_connections") -> None:
        self.limit = limit
        self.what = what
        self._open: dict[object, asyncio.BaseTransport] = {}
        self._idle: dict[object, asyncio.BaseTransport] = {}
        self._log = EvictionLog(f"idle connection(s) ({what})")

    @property
    def evicted(self) -> int:
        return self._log.total

    @property
    def open(self) -> int:
        return len(self._open)

    @property
    def idle(self) -> int:
        return len(self._idle)

    def opened(self, key: object, transport: asyncio.BaseTransport) -> None:
        self._open[key] = transport
        self._make_room()
        self._idle[key] = transport

    def closed(self, key: object) -> None:
        self._open.pop(key, None)
        self._idle.pop(key, None)

    def busy(self, key: object) -> None:
        """A request head arrived on this connection: it is no longer idle."""
        self._idle.pop(key, None)

    def done(self, key: object) -> None:
        """The request finished; the connection (if still open) is idle again, as the newest."""
        transport = self._open.get(key)
        if transport is not None and not transport.is_closing():
            self._make_room()
            self._idle[key] = transport

    def _make_room(self) -> None:
        while len(self._idle) >= self.limit:
            key, transport = next(iter(self._idle.items()))
            del self._idle[key]
            transport.close()
            self._log.evicted()
        self._log.report(self.limit)


class _GuardedProtocol(asyncio.Protocol):
    """Forwards everything to aiohttp's request handler, telling the guard of open and close."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)
        self._guard.opened(self._inner, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.closed(self._inner)
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class GuardedSite(web.BaseSite):
    """A TCP site (like ``web.TCPSite``) whose connections ``guard`` counts."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard
    ) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._guard = guard

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        if server is None:
            raise RuntimeError("call runner.setup() before starting a site")
        guard = self._guard

        def factory() -> asyncio.Protocol:
            return _GuardedProtocol(guard, server())

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            factory, self._host, self._port, backlog=self._backlog, reuse_address=True
        )


def guard_middleware(guard: ConnectionGuard) -> Any:
    """An aiohttp middleware marking the connection busy while a request runs."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        key = request.protocol
        guard.busy(key)
        try:
            response: web.StreamResponse = await handler(request)
            return response
        finally:
            guard.done(key)

    return middleware


__all__ = [
    "ConnectionGuard",
    "GuardedSite",
    "fd_share",
    "guard_middleware",
    "handler_args",
    "raise_fd_limit",
]
