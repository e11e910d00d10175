"""The signalling WebSocket: open it, read frames in the background, send, and match replies to
requests (each request carries an ``id``; the server echoes it as ``ref``)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from visio_media.client.errors import ClientError, ConnectionLost

__all__ = ["MAX_INCOMING_FRAME", "Signalling"]

log = logging.getLogger(__name__)

# Frames bigger than this from the server are refused by aiohttp (the server's own limit applies
# to what we send; v2 bounds every frame it sends by that limit too).
MAX_INCOMING_FRAME = 4 * 1024 * 1024

#: Reply types: a frame of one of these types may answer a request.
REPLY_TYPES = frozenset({"joined", "answer", "pong", "ok", "error"})


@dataclass
class _Pending:
    future: asyncio.Future[dict[str, Any]]
    replies: frozenset[str]
    kind: str
    on_reply: Callable[[dict[str, Any]], None] | None
    sent_at: float = field(default_factory=time.monotonic)


MessageHandler = Callable[[dict[str, Any]], None]
ClosedHandler = Callable[["aiohttp.ClientWebSocketResponse", "BaseException | None"], None]


class Signalling:
    """One signalling connection at a time (a resume opens a new one on the same object).

    Frames that answer a pending request resolve it; every other frame goes to ``on_message``
    (in order, from the reader task). ``on_closed(ws, error)`` is called by the reader when the
    current socket ends, after the pending requests failed with :class:`ConnectionLost`.
    Failures of the reader are logged and appended to ``failures``.
    """

    def __init__(
        self,
        on_message: MessageHandler,
        on_closed: ClosedHandler,
        *,
        request_timeout: float,
        failures: list[BaseException],
    ) -> None:
        self._on_message = on_message
        self._on_closed = on_closed
        self.request_timeout = request_timeout
        self.failures = failures
        self._http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._send_lock = asyncio.Lock()
        self.close_code: int | None = None

    @property
    def connected(self) -> bool:
        return self.ws is not None and not self.ws.closed

    def next_id(self) -> int:
        return next(self._ids)

    async def open(self, url: str, name: str) -> None:
        """Open the WebSocket and start reading it (task ``name``)."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        ws = await self._http.ws_connect(
            url, autoping=True, max_msg_size=MAX_INCOMING_FRAME, heartbeat=None
        )
        self.ws = ws
        self.close_code = None
        self.reader = asyncio.get_running_loop().create_task(self._read(ws), name=name)

    async def request(
        self,
        message: dict[str, Any],
        replies: set[str],
        *,
        bounded: bool = True,
        on_reply: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Send ``message`` with an ``id``; the reply of a type in ``replies`` (or ``error``)
        carrying that ``ref``. Raises :class:`ClientError` on ``error``. ``on_reply(reply)``
        runs in the reader as soon as the reply is read, before the frames that follow it."""
        request_id = self.next_id()
        message = {**message, "id": request_id}
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = _Pending(future, frozenset(replies), message["type"], on_reply)
        try:
            # Unbounded only where the caller has its own asyncio.timeout (connect, resume).
            async with asyncio.timeout(self.request_timeout if bounded else None):
                await self.send(message)
                reply = await future
        finally:
            self._pending.pop(request_id, None)
        if reply.get("type") == "error":
            raise ClientError(
                str(reply.get("code", "internal")),
                str(reply.get("message", "")),
                request_id,
            )
        return reply

    async def send(self, message: dict[str, Any]) -> None:
        ws = self.ws
        if ws is None or ws.closed:
            raise ConnectionLost("not connected")
        async with self._send_lock:
            await ws.send_str(json.dumps(message, separators=(",", ":")))

    def fail_pending(self, exc: BaseException) -> None:
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_exception(exc)
        self._pending.clear()

    async def drop(self) -> None:
        """Close the socket (bounded), stop the reader, fail what waits on a reply."""
        ws, reader = self.ws, self.reader
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(3.0):
                    await ws.close()
        if reader is not None and reader is not asyncio.current_task():
            if not reader.done():
                reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
        self.fail_pending(ConnectionLost())

    async def close(self) -> None:
        """:meth:`drop`, then release the HTTP session."""
        await self.drop()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def abort(self) -> None:
        """Break the socket without a close handshake, as a network failure would."""
        ws = self.ws
        if ws is None:
            return
        conn = ws._response.connection  # aiohttp keeps the transport there
        transport = conn.transport if conn is not None else None
        if transport is not None:
            transport.abort()
        reader = self.reader
        if reader is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await asyncio.wait({reader})

    # ------------------------------------------------------------------ reading

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        error: BaseException | None = None
        try:
            async for frame in ws:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    self._dispatch(frame.data)
                elif frame.type == aiohttp.WSMsgType.ERROR:
                    error = ws.exception()
                    log.warning("signalling socket error: %r", error)
                    break
                else:
                    log.warning("unexpected frame of type %s ignored", frame.type)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("the signalling reader failed")
            self.failures.append(exc)
            error = exc
        finally:
            if self.ws is ws:
                self.close_code = ws.close_code
                self.fail_pending(
                    ConnectionLost(f"closed with {ws.close_code}: {error or ''}".strip())
                )
                self._on_closed(ws, error)

    def _dispatch(self, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            log.warning("server frame is not JSON: %.100r", data)
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            log.warning("server frame without a type: %.100r", data)
            return
        if message["type"] in REPLY_TYPES:
            pending = self._take_pending(message)
            if pending is not None:
                if pending.on_reply is not None:
                    pending.on_reply(message)
                if not pending.future.done():
                    pending.future.set_result(message)
                return
        try:
            self._on_message(message)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("malformed %s frame from the server: %s", message["type"], exc)

    def _take_pending(self, message: dict[str, Any]) -> _Pending | None:
        ref = message.get("ref")
        if isinstance(ref, int) and not isinstance(ref, bool) and ref in self._pending:
            pending = self._pending[ref]
            if message["type"] == "error" or message["type"] in pending.replies:
                return self._pending.pop(ref)
            return None
        if ref is not None or message["type"] == "error":
            return None
        # No ref (a server that does not echo ids): the oldest request that expects it.
        for request_id, pending in self._pending.items():
            if message["type"] in pending.replies:
                return self._pending.pop(request_id)
        return None
