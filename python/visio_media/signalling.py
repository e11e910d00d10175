"""The WebSocket signalling edge: JSON frames in, validated, mapped onto rooms; errors out.

Protocol: docs/protocol.md. Domain errors become protocol error codes here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from visio_media.auth import AccessToken
from visio_media.config import SignallingConfig
from visio_media.errors import (
    AuthError,
    EngineFailure,
    ForbiddenError,
    InvalidStateError,
    NotFoundError,
    ProtocolError,
    RoomFullError,
    ShuttingDownError,
    TrackLimitError,
    VisioError,
)
from visio_media.listener import EvictionLog
from visio_media.participants import Layout, LayoutTile, Participant, encode
from visio_media.rooms import SOURCE_KINDS, RoomManager

log = logging.getLogger(__name__)

MAX_SDP = 64 * 1024
MAX_STRING = 256
MAX_ID = 64
# A `layout`: at most this many tiles, each at most this many CSS pixels wide and high.
MAX_TILES = 256
MAX_TILE_PIXELS = 16384
# Outgoing frames queued per connection before the client counts as stuck and is cut.
SEND_QUEUE = 1024
CLOSE_POLICY = WSCloseCode.POLICY_VIOLATION
CLOSE_UNSUPPORTED = WSCloseCode.UNSUPPORTED_DATA
CLOSE_TRY_AGAIN = WSCloseCode.TRY_AGAIN_LATER
# Evictions from the lobby are summed up in one warning at most this often.


class WsLink:
    """A participant's link: a bounded queue of encoded frames drained by one writer task.

    A broadcast queues one shared ``bytes`` object on every link (``send_encoded``): the
    message is encoded once, not once per recipient."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[bytes | tuple[int, str]] = asyncio.Queue(SEND_QUEUE)
        self.closing = False
        self._waiting = False

    def send(self, message: dict[str, Any]) -> None:
        if self.closing:
            return
        self.send_encoded(encode(message))

    def send_encoded(self, frame: bytes) -> None:
        if self.closing:
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("client too slow to read signalling; closing")
            self.closing = True
            self.queue = asyncio.Queue(1)
            self.queue.put_nowait((WSCloseCode.TRY_AGAIN_LATER, "too slow"))

    def close(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait((code, reason))

    @property
    def idle(self) -> bool:
        """True when the writer waits for work and none is queued."""
        return self._waiting and self.queue.empty()

    async def run_writer(self) -> None:
        while True:
            self._waiting = True
            try:
                item = await self.queue.get()
            finally:
                self._waiting = False
            if isinstance(item, tuple):
                code, reason = item
                await self.ws.close(code=code, message=reason.encode()[:120])
                return
            try:
                await self.ws.send_frame(item, WSMsgType.TEXT)
            except ConnectionError:
                return


class Lobby:
    """WebSockets upgraded but not joined yet, oldest first, at most ``limit``.

    A newcomer past the limit closes the oldest (``server_busy``, close 1013): connections that
    never join cannot crowd out a real client, whose ``join`` follows its upgrade at once. Time is
    bounded separately by ``signalling.handshake_timeout_seconds``.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._waiting: dict[Session, None] = {}
        self._log = EvictionLog("WebSocket(s) that had not joined (signalling.max_unjoined)")

    @property
    def evicted(self) -> int:
        return self._log.total

    def __len__(self) -> int:
        return len(self._waiting)

    def enter(self, session: Session) -> None:
        self._waiting.pop(session, None)
        while len(self._waiting) >= self.limit:
            oldest = next(iter(self._waiting))
            del self._waiting[oldest]
            oldest.evict()
            self._log.evicted()
        self._waiting[session] = None
        self._log.report(self.limit)

    def leave(self, session: Session) -> None:
        self._waiting.pop(session, None)


class _NotJoined(InvalidStateError):
    def __init__(self) -> None:
        super().__init__("join first")


class _AlreadyJoined(InvalidStateError):
    def __init__(self) -> None:
        super().__init__("this connection has joined already")


def error_code(e: Exception) -> str:
    match e:
        case _NotJoined():
            return "not_joined"
        case _AlreadyJoined():
            return "already_joined"
        case ShuttingDownError():
            return "shutting_down"
        case RoomFullError():
            return "room_full"
        case TrackLimitError():
            return "too_many_tracks"
        case ForbiddenError():
            return "forbidden"
        case AuthError():
            return "unauthorized"
        case NotFoundError():
            return "not_found"
        case EngineFailure():
            return "bad_sdp"
        case InvalidStateError():
            return "invalid_state"
        case ProtocolError():
            return "bad_message"
    return "internal"


def _field(msg: dict[str, Any], name: str, kind: type, *, optional: bool = False) -> Any:
    if name not in msg:
        if optional:
            return None
        raise ProtocolError(f"missing field {name!r}")
    value = msg[name]
    # bool is an int in Python: never accept one for the other.
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ProtocolError(f"field {name!r} must be an integer")
    if not isinstance(value, kind):
        raise ProtocolError(f"field {name!r} must be {kind.__name__}")
    if isinstance(value, str):
        limit = MAX_SDP if name == "sdp" else (8192 if name == "token" else MAX_STRING)
        if len(value) > limit:
            raise ProtocolError(f"field {name!r} is longer than {limit} characters")
    return value


def _sources(msg: dict[str, Any]) -> dict[str, str]:
    raw = _field(msg, "sources", dict, optional=True) or {}
    if len(raw) > 64:
        raise ProtocolError("too many sources")
    out: dict[str, str] = {}
    for mid, source in raw.items():
        if not isinstance(source, str) or len(mid) > MAX_ID:
            raise ProtocolError("sources must map mids to source names")
        if source not in SOURCE_KINDS:
            raise ProtocolError(f"unknown source {source!r}")
        out[mid] = source
    return out


def _slots(msg: dict[str, Any], name: str) -> int | None:
    """A `join` slot count as asked (range checked by the room manager, which knows the
    limits); None when not given."""
    value: int | None = _field(msg, name, int, optional=True)
    return value


def _size(tile: dict[str, Any], name: str, where: str) -> int | None:
    if name not in tile:
        return None
    value = tile[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"{where}: field {name!r} must be an integer")
    if not 0 <= value <= MAX_TILE_PIXELS:
        raise ProtocolError(f"{where}: field {name!r} must be 0–{MAX_TILE_PIXELS}")
    return value


def _parse_layout(msg: dict[str, Any]) -> Layout:
    """A `layout` message (docs/protocol.md), fully checked; ProtocolError names what is wrong."""
    raw = _field(msg, "tiles", list)
    if len(raw) > MAX_TILES:
        raise ProtocolError(f"a layout has at most {MAX_TILES} tiles, not {len(raw)}")
    tiles: list[LayoutTile] = []
    for i, tile in enumerate(raw):
        where = f"tiles[{i}]"
        if not isinstance(tile, dict):
            raise ProtocolError(f"{where} must be an object")
        try:
            identity = _field(tile, "identity", str)
            source = _field(tile, "source", str, optional=True)
        except ProtocolError as e:
            raise ProtocolError(f"{where}: {e}") from None
        if source is None:
            source = "camera"
        elif source not in SOURCE_KINDS:
            raise ProtocolError(f"{where}: unknown source {source[:MAX_ID]!r}")
        tiles.append(
            LayoutTile(
                identity,
                source,
                _size(tile, "width", where),
                _size(tile, "height", where),
            )
        )
    pinned = msg.get("pinned")
    if pinned is not None:
        pinned = _field(msg, "pinned", str)
    return Layout(tuple(tiles), pinned)


class Session:
    """One WebSocket: the join handshake, then request dispatch until it closes."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        rooms: RoomManager,
        config: SignallingConfig,
        verify: Callable[[str], AccessToken],
        observe_join: Callable[[float], None] | None = None,
        lobby: Lobby | None = None,
    ) -> None:
        self.observe_join = observe_join
        self.lobby = lobby
        self._handshake: asyncio.Timeout | None = None
        self._evicted = False
        self.ws = ws
        self.link = WsLink(ws)
        self.rooms = rooms
        self.config = config
        self.verify = verify
        self.participant: Participant | None = None
        self.left = False

    async def run(self) -> None:
        writer = asyncio.create_task(self.link.run_writer(), name="ws-writer")
        try:
            try:
                async with asyncio.timeout(self.config.handshake_timeout_seconds) as handshake:
                    self._handshake = handshake
                    if self.lobby is not None:
                        self.lobby.enter(self)
                    while self.participant is None and not self.link.closing:
                        msg = await self.ws.receive()
                        if not await self._frame(msg):
                            return
            except TimeoutError:
                if self._evicted:
                    self.link.send(
                        {
                            "type": "error",
                            "code": "server_busy",
                            "message": "too many connections waiting to join; try again",
                        }
                    )
                    self.link.close(CLOSE_TRY_AGAIN, "server busy")
                else:
                    self.link.send(
                        {"type": "error", "code": "unauthorized", "message": "join timed out"}
                    )
                    self.link.close(CLOSE_POLICY, "join timeout")
                return
            finally:
                self._handshake = None
                if self.lobby is not None:
                    self.lobby.leave(self)
            while not self.link.closing:
                msg = await self.ws.receive()
                if not await self._frame(msg):
                    return
        finally:
            p = self.participant
            if p is not None and not self.left:
                self.rooms.link_lost(p, self.link)
            self.link.closing = True
            if self.ws.closed or self.link.idle:
                writer.cancel()  # no one to flush to, or nothing left to flush
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(writer, 2.0)
            if not self.ws.closed:
                await self.ws.close()

    def evict(self) -> None:
        """Called by the lobby: end the handshake now, as if it had timed out."""
        handshake = self._handshake
        if handshake is None or handshake.expired():
            return
        self._evicted = True
        handshake.reschedule(asyncio.get_running_loop().time())

    async def _frame(self, msg: Any) -> bool:
        """Handles one frame; False when the connection is over."""
        if msg.type == WSMsgType.TEXT:
            await self._text(msg.data)
            return True
        if msg.type == WSMsgType.BINARY:
            self.link.close(CLOSE_UNSUPPORTED, "binary frames are not supported")
            return False
        if msg.type == WSMsgType.ERROR:
            # aiohttp already closed with 1009 for a frame over max_msg_size.
            log.info("websocket error: %s", self.ws.exception())
        return False

    async def _text(self, data: str) -> None:
        ref: Any = None
        try:
            try:
                msg = json.loads(data)
            except (ValueError, RecursionError):
                # RecursionError: nesting deeper than the parser's stack (a hostile frame).
                self._error("bad_json", "not JSON", None)
                return
            if not isinstance(msg, dict):
                self._error("bad_json", "a frame must be a JSON object", None)
                return
            ref = msg.get("id")
            if not (ref is None or isinstance(ref, str | int)) or isinstance(ref, bool):
                ref = None
            elif len(ref if isinstance(ref, str) else str(ref)) > MAX_ID:
                ref = None
            kind = msg.get("type")
            if not isinstance(kind, str):
                raise ProtocolError("missing field 'type'")
            await self._dispatch(kind, msg, ref)
        except VisioError as e:
            code = error_code(e)
            self._error(code, str(e), ref)
            if self.participant is None and code in (
                "unauthorized",
                "forbidden",
                "room_full",
                "shutting_down",
            ):
                self.link.close(WSCloseCode.GOING_AWAY if code == "shutting_down"
                                else CLOSE_POLICY, code)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("signalling handler failed")
            self._error("internal", "internal error", ref)

    def _error(self, code: str, message: str, ref: Any) -> None:
        frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if ref is not None:
            frame["ref"] = ref
        self.link.send(frame)

    def _reply(self, frame: dict[str, Any], ref: Any) -> None:
        if ref is not None:
            frame["ref"] = ref
        self.link.send(frame)

    async def _dispatch(self, kind: str, msg: dict[str, Any], ref: Any) -> None:
        if kind == "ping":
            self._reply({"type": "pong"}, ref)
            return
        if kind == "join":
            await self._join(msg, ref)
            return
        handlers = {
            "offer": self._offer,
            "answer": self._answer,
            "mute": self._mute,
            "layout": self._layout,
            "leave": self._leave,
        }
        handler = handlers.get(kind)
        if handler is None:
            raise ProtocolError(f"unknown message type {kind[:MAX_ID]!r}")
        p = self.participant
        if p is None:
            raise _NotJoined()
        await handler(p, msg, ref)

    async def _join(self, msg: dict[str, Any], ref: Any) -> None:
        if self.participant is not None:
            raise _AlreadyJoined()
        token_text = _field(msg, "token", str)
        resume = _field(msg, "resume", str, optional=True)
        video_slots = _slots(msg, "video_slots")
        audio_slots = _slots(msg, "audio_slots")
        started = time.monotonic()
        # A join in progress is out of the lobby: it is never evicted half-way.
        if self.lobby is not None:
            self.lobby.leave(self)
        try:
            token = self.verify(token_text)
            p, resumed = await self.rooms.join(
                token,
                self.link,
                resume=resume,
                video_slots=video_slots,
                audio_slots=audio_slots,
            )
        except BaseException:
            if self.lobby is not None and self._handshake is not None and not self.link.closing:
                self.lobby.enter(self)
            raise
        self.participant = p
        # `joined` and the pages of the participant list, queued before anything else.
        for frame in self.rooms.joined_frames(
            p, resumed, max_frame_bytes=self.config.max_message_bytes, ref=ref
        ):
            self.link.send_encoded(frame)
        if not resumed:
            self.rooms.announce(p)
        if self.observe_join is not None:
            self.observe_join(time.monotonic() - started)
        if resumed:
            self.rooms.resend_pending(p)

    async def _offer(self, p: Participant, msg: dict[str, Any], ref: Any) -> None:
        sdp = _field(msg, "sdp", str)
        try:
            answer = await self.rooms.client_offer(p, sdp, _sources(msg))
            self._reply({"type": "answer", "sdp": answer}, ref)
        finally:
            self.rooms.release_offers(p)

    async def _answer(self, p: Participant, msg: dict[str, Any], ref: Any) -> None:
        await self.rooms.client_answer(p, _field(msg, "sdp", str))

    async def _mute(self, p: Participant, msg: dict[str, Any], ref: Any) -> None:
        track_id = _field(msg, "track_id", int)
        muted = _field(msg, "muted", bool)
        self.rooms.set_muted(p.room, p.identity, track_id, muted)
        self._reply({"type": "ok"}, ref)

    async def _layout(self, p: Participant, msg: dict[str, Any], ref: Any) -> None:
        await self.rooms.set_layout(p, _parse_layout(msg))
        self._reply({"type": "ok"}, ref)

    async def _leave(self, p: Participant, msg: dict[str, Any], ref: Any) -> None:
        self.left = True
        await self.rooms.leave(p, "left")
