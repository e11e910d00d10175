"""The Python client SDK: join a visio-media room over the signalling WebSocket, publish and
receive media with aiortc. Used by the tests, and by users for bots and recorders.

```python
client = Client("ws://127.0.0.1:7880/ws", token)
await client.connect()
await client.publish(microphone_track, camera_track)      # sources default by kind
async for event in client.events:
    if isinstance(event, TrackReceived):
        ...  # event.track is a MediaStreamTrack: `await event.track.recv()`
await client.leave()
```

Protocol: docs/protocol.md. One ``RTCPeerConnection`` per client, max-bundle, non-trickle (aiortc
gathers its candidates in ``setLocalDescription``). Negotiation is serialised: at most one offer
of ours is in flight, and a server ``offer`` that crosses ours (glare) is ignored — the server
yields, answers ours, then sends a fresh offer.

A client that only receives calls ``await client.publish()`` with no tracks (or ``subscribe``):
the server creates the media session on the client's first offer, so one must be sent; with
nothing to send it carries a single ``recvonly`` audio line, which the server answers
``inactive``.

Remote tracks are :class:`RemoteTrack` objects (aiortc ``MediaStreamTrack``) mapped to their
publisher through the server offer's ``a=msid:<identity> track-<id>``. They end (``recv()`` raises
``MediaStreamError``) when the publisher unpublishes or leaves, when the server stops sending them,
and when the client closes.

Every network wait is bounded by ``asyncio.timeout``. Server errors raise :class:`ClientError`
with the protocol's error code; a dropped socket raises :class:`ConnectionLost` for the
requests that were waiting on it (the peer connection stays up: call :meth:`Client.resume`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import aiohttp
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy

from visio_media.errors import VisioError

__all__ = [
    "ActiveSpeaker",
    "Client",
    "ClientError",
    "ConnectionLost",
    "ConnectionState",
    "Disconnected",
    "Draining",
    "Event",
    "EventStream",
    "Left",
    "Participant",
    "ParticipantJoined",
    "ParticipantLeft",
    "RemoteTrack",
    "ServerError",
    "ServerMessage",
    "TrackInfo",
    "TrackMuted",
    "TrackPublished",
    "TrackReceived",
    "TrackRemoved",
    "TrackUnpublished",
    "parse_server_msids",
]

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
SOURCES = ("microphone", "camera", "screen_share", "screen_share_audio")
DEFAULT_REQUEST_TIMEOUT = 15.0
LEAVE_TIMEOUT = 5.0
# Frames bigger than this from the server are refused by aiohttp (a server offer for a big room
# can be large; the server's own limit applies to what we send).
MAX_INCOMING_FRAME = 4 * 1024 * 1024


# ------------------------------------------------------------------------------------ errors


class ClientError(VisioError):
    """The server refused a request (``code`` is the protocol error code), or the client cannot
    do what was asked in its current state (``code`` ``"invalid_state"``)."""

    def __init__(self, code: str, message: str = "", ref: str | int | None = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.ref = ref


class ConnectionLost(ClientError):
    """The signalling socket closed while a request was waiting for its reply."""

    def __init__(self, message: str = "the signalling connection closed") -> None:
        super().__init__("connection_lost", message)


# ------------------------------------------------------------------------------ room state


@dataclass(frozen=True)
class TrackInfo:
    """A published track as the server describes it."""

    track_id: int
    kind: str
    source: str
    muted: bool = False


@dataclass
class Participant:
    identity: str
    name: str
    tracks: dict[int, TrackInfo] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ events


@dataclass(frozen=True)
class Event:
    """Base class of the events a client reports. ``name`` is what :meth:`Client.on` takes."""

    name: ClassVar[str] = "event"


@dataclass(frozen=True)
class ParticipantJoined(Event):
    name: ClassVar[str] = "participant_joined"
    participant: Participant


@dataclass(frozen=True)
class ParticipantLeft(Event):
    name: ClassVar[str] = "participant_left"
    identity: str
    reason: str


@dataclass(frozen=True)
class TrackPublished(Event):
    name: ClassVar[str] = "track_published"
    identity: str
    track: TrackInfo


@dataclass(frozen=True)
class TrackUnpublished(Event):
    name: ClassVar[str] = "track_unpublished"
    identity: str
    track_id: int


@dataclass(frozen=True)
class TrackMuted(Event):
    name: ClassVar[str] = "track_muted"
    identity: str
    track_id: int
    muted: bool


@dataclass(frozen=True)
class ActiveSpeaker(Event):
    name: ClassVar[str] = "active_speaker"
    identities: tuple[str, ...]


@dataclass(frozen=True)
class TrackReceived(Event):
    """A remote track started: ``track`` yields the publisher's frames."""

    name: ClassVar[str] = "track_received"
    identity: str
    track_id: int
    kind: str
    track: RemoteTrack


@dataclass(frozen=True)
class TrackRemoved(Event):
    """A remote track ended (unpublished, publisher left, no longer sent, or client closed)."""

    name: ClassVar[str] = "track_removed"
    identity: str
    track_id: int


@dataclass(frozen=True)
class ConnectionState(Event):
    """The server's view of our media connection (``connected`` or ``failed``)."""

    name: ClassVar[str] = "connection_state"
    state: str
    srtp_profile: str | None = None


@dataclass(frozen=True)
class Draining(Event):
    """The server is shutting down: the meeting ends within ``deadline_seconds``."""

    name: ClassVar[str] = "draining"
    deadline_seconds: float | None


@dataclass(frozen=True)
class Left(Event):
    """The server ended our participation (``reason`` per the protocol's ``left``)."""

    name: ClassVar[str] = "left"
    reason: str


@dataclass(frozen=True)
class Disconnected(Event):
    """The signalling socket closed without ``left`` (``code`` is the WebSocket close code, None
    when the transport broke). The media session survives for the server's reconnect grace
    period: :meth:`Client.resume` takes it back."""

    name: ClassVar[str] = "disconnected"
    code: int | None
    reason: str


@dataclass(frozen=True)
class ServerError(Event):
    """An ``error`` frame that no pending request claimed."""

    name: ClassVar[str] = "server_error"
    code: str
    message: str


@dataclass(frozen=True)
class ServerMessage(Event):
    """A frame of a type this client does not know (kept for forward compatibility)."""

    name: ClassVar[str] = "server_message"
    message: dict[str, Any]


E = TypeVar("E", bound=Event)
EventCallback = Callable[[Any], object]

_EVENT_TYPES: dict[str, type[Event]] = {
    cls.name: cls
    for cls in (
        ParticipantJoined,
        ParticipantLeft,
        TrackPublished,
        TrackUnpublished,
        TrackMuted,
        ActiveSpeaker,
        TrackReceived,
        TrackRemoved,
        ConnectionState,
        Draining,
        Left,
        Disconnected,
        ServerError,
        ServerMessage,
    )
}


class EventStream:
    """The client's events, in order: ``async for event in client.events``.

    Iteration consumes; the iterator ends once the client is closed and every queued event was
    read. At most ``limit`` unread events are kept (a client driven by callbacks alone never
    reads them): beyond that the oldest are dropped and counted in ``dropped``.
    :meth:`Client.wait_for` searches the history instead and consumes nothing.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._closed = False
        self.limit = limit
        self.dropped = 0

    def _put(self, event: Event) -> None:
        if self._closed:
            return
        while self._queue.qsize() >= self.limit:
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # every later reader ends too
            raise StopAsyncIteration
        return item

    async def get(self, timeout: float | None = None) -> Event:  # noqa: ASYNC109
        """The next event; ``TimeoutError`` after ``timeout``; ``EOFError`` once closed."""
        async with asyncio.timeout(timeout):
            try:
                return await self.__anext__()
            except StopAsyncIteration:
                raise EOFError("the client is closed") from None

    def get_nowait(self) -> Event | None:
        """The next queued event, or None when none is queued."""
        try:
            item = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None
        if item is None:
            self._queue.put_nowait(None)
        return item


# ------------------------------------------------------------------------------ remote tracks


class RemoteTrack(MediaStreamTrack):
    """A track received from another participant (``identity``, ``track_id``).

    It reads the aiortc receiver's track and ends on its own when the client learns that the
    publisher's track is gone, even though the aiortc receiver itself lives on.
    """

    def __init__(self, source: MediaStreamTrack, *, identity: str, track_id: int, mid: str) -> None:
        super().__init__()
        self.kind: str = source.kind
        self._id = f"track-{track_id}"
        self.identity = identity
        self.track_id = track_id
        self.mid = mid
        self._source = source
        self._ended = asyncio.get_running_loop().create_future()
        self.frames = 0

    def __repr__(self) -> str:
        return (
            f"<RemoteTrack {self.identity}/{self.track_id} {self.kind} mid={self.mid} "
            f"{self.readyState}>"
        )

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        getter: asyncio.Task[Any] = asyncio.ensure_future(self._source.recv())
        try:
            await asyncio.wait((getter, self._ended), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getter.done():
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError, MediaStreamError):
                    await getter
        if getter.done() and not getter.cancelled():
            try:
                frame = getter.result()
            except MediaStreamError:
                self.stop()
                raise
            if self.readyState == "live":
                self.frames += 1
                return frame
        raise MediaStreamError

    def stop(self) -> None:
        if not self._ended.done():
            self._ended.set_result(None)
        super().stop()


# ------------------------------------------------------------------------------------- SDP


_MSID_TRACK = re.compile(r"^track-(\d+)$")


@dataclass(frozen=True)
class _ServerLine:
    mid: str
    kind: str
    direction: str
    rejected: bool
    identity: str | None
    track_id: int | None

    @property
    def sending(self) -> bool:
        """True when the server sends a known publisher's track on this line."""
        return (
            not self.rejected
            and self.direction in ("sendonly", "sendrecv")
            and self.identity is not None
            and self.track_id is not None
        )


def _parse_server_lines(sdp: str) -> list[_ServerLine]:
    lines: list[_ServerLine] = []
    current: dict[str, Any] | None = None

    def close() -> None:
        if current is not None and current["mid"] is not None:
            lines.append(_ServerLine(**current))

    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            close()
            parts = line[2:].split()
            current = {
                "mid": None,
                "kind": parts[0] if parts else "",
                "direction": "sendrecv",
                "rejected": len(parts) > 1 and parts[1] == "0",
                "identity": None,
                "track_id": None,
            }
        elif current is None:
            continue
        elif line.startswith("a=mid:"):
            current["mid"] = line[6:].strip()
        elif line in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"):
            current["direction"] = line[2:]
        elif line.startswith("a=msid:"):
            bits = line[7:].split()
            if len(bits) >= 2:
                m = _MSID_TRACK.match(bits[1])
                if m:
                    current["identity"] = bits[0]
                    current["track_id"] = int(m.group(1))
    close()
    return lines


def parse_server_msids(sdp: str) -> dict[str, tuple[str, int]]:
    """mid -> (publisher identity, track id) for every line on which the server sends a track."""
    return {
        line.mid: (line.identity, line.track_id)
        for line in _parse_server_lines(sdp)
        if line.sending and line.identity is not None and line.track_id is not None
    }


# ----------------------------------------------------------------------- message validation


def _get(msg: dict[str, Any], key: str, kind: type[Any], default: Any = ...) -> Any:
    if key not in msg:
        if default is ...:
            raise ValueError(f"missing {key!r}")
        return default
    value = msg[key]
    if kind is int and isinstance(value, bool):
        raise ValueError(f"{key!r} is not an integer")
    if not isinstance(value, kind):
        raise ValueError(f"{key!r} is not {kind.__name__}")
    return value


def _track_info(raw: Any) -> TrackInfo:
    if not isinstance(raw, dict):
        raise ValueError("a track is not an object")
    return TrackInfo(
        track_id=_get(raw, "track_id", int),
        kind=_get(raw, "kind", str),
        source=_get(raw, "source", str, ""),
        muted=_get(raw, "muted", bool, False),
    )


def _participant(raw: Any) -> Participant:
    if not isinstance(raw, dict):
        raise ValueError("a participant is not an object")
    identity = _get(raw, "identity", str)
    tracks = [_track_info(t) for t in _get(raw, "tracks", list, [])]
    return Participant(
        identity=identity,
        name=_get(raw, "name", str, identity),
        tracks={t.track_id: t for t in tracks},
    )


# ------------------------------------------------------------------------------------ client


@dataclass
class _Pending:
    future: asyncio.Future[dict[str, Any]]
    replies: frozenset[str]
    kind: str
    sent_at: float = field(default_factory=time.monotonic)


@dataclass
class _LocalTrack:
    track: MediaStreamTrack
    transceiver: RTCRtpTransceiver
    source: str | None


class Client:
    """One participant: a signalling WebSocket and one aiortc ``RTCPeerConnection``."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        auto_subscribe: bool = True,
        ice_servers: list[RTCIceServer] | None = None,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        history_limit: int = 10_000,
    ) -> None:
        self.url = url
        self.token = token
        self.auto_subscribe = auto_subscribe
        self.request_timeout = request_timeout
        self._ice_servers = ice_servers
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pc: RTCPeerConnection | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._send_lock = asyncio.Lock()
        self._negotiation = asyncio.Lock()
        self._offers_sent = 0
        self._offer_in_flight = False
        self._server_offers = 0
        self._negotiated = False
        self._local: dict[str, _LocalTrack] = {}  # aiortc track id -> what we publish
        self._placeholder: RTCRtpTransceiver | None = None
        # mid -> the RemoteTrack currently received on it
        self._remote_by_mid: dict[str, RemoteTrack] = {}
        # Track ids the server said are gone (unpublished, or their publisher left). An offer
        # made before that, answered after, still names them on a line: they are not revived.
        # Ids are never reused by a server.
        self._gone_tracks: set[int] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._callbacks: dict[str, list[EventCallback]] = {}
        self._history: list[Event] = []
        self._history_offset = 0  # events dropped from the front of _history
        self._history_limit = max(2, history_limit)
        self._new_event = asyncio.Event()
        self._closed = False
        self._closing: asyncio.Task[None] | None = None
        self.events = EventStream(self._history_limit)
        self.room: str | None = None
        self._session: str | None = None
        self._identity: str | None = None
        self.local_participant: Participant | None = None
        self._participants: dict[str, Participant] = {}
        self._connection_state = "new"
        self.srtp_profile: str | None = None
        self.left_reason: str | None = None
        self.close_code: int | None = None
        self.resumed = False
        #: Failures of background work (reader, negotiation, callbacks), oldest first.
        self.failures: list[BaseException] = []

    # ------------------------------------------------------------------ properties

    @property
    def session(self) -> str | None:
        """The session string of ``joined`` (what :meth:`resume` gives back)."""
        return self._session

    @property
    def identity(self) -> str | None:
        return self._identity

    @property
    def participants(self) -> dict[str, Participant]:
        """The other participants by identity (a copy)."""
        return dict(self._participants)

    @property
    def remote_tracks(self) -> dict[tuple[str, int], RemoteTrack]:
        """The live remote tracks by (publisher identity, track id)."""
        return {
            (t.identity, t.track_id): t
            for t in self._remote_by_mid.values()
            if t.readyState == "live"
        }

    @property
    def connection_state(self) -> str:
        """The server's view of our media connection: ``new``, ``connected`` or ``failed``
        (``closed`` after :meth:`close`)."""
        return self._connection_state

    @property
    def pc(self) -> RTCPeerConnection | None:
        """The aiortc ``RTCPeerConnection`` (None before :meth:`connect`)."""
        return self._pc

    def published_track_id(self, track: MediaStreamTrack) -> int | None:
        """The server's track id of our published ``track``, once the server announced it
        (``track_published`` about ourselves, after media started flowing); None before.
        Tracks are told apart by kind and source."""
        local = self._local.get(track.id)
        me = self.local_participant
        if local is None or me is None:
            return None
        source = local.source or ("microphone" if track.kind == "audio" else "camera")
        ids = [t.track_id for t in me.tracks.values() if (t.kind, t.source) == (track.kind, source)]
        return ids[0] if len(ids) == 1 else None

    @property
    def connected(self) -> bool:
        """True while the signalling socket is open."""
        return self._ws is not None and not self._ws.closed

    @property
    def history(self) -> list[Event]:
        """The recent events, oldest first (a copy): every event, until more than
        ``history_limit`` happened; then the older half is forgotten, and so on."""
        return list(self._history)

    @property
    def event_count(self) -> int:
        """How many events happened so far: a mark for ``wait_for(since=...)``."""
        return self._history_offset + len(self._history)

    # ------------------------------------------------------------------ events

    def on(self, event: str | type[Event], callback: EventCallback) -> None:
        """Call ``callback(event)`` for each event of that name (``"track_received"``) or type.
        ``"*"`` receives all. A coroutine function's coroutine runs as a supervised task."""
        name = event if isinstance(event, str) else event.name
        if name != "*" and name not in _EVENT_TYPES:
            raise ValueError(f"unknown event {name!r}; known: {sorted(_EVENT_TYPES)}")
        self._callbacks.setdefault(name, []).append(callback)

    async def wait_for(
        self,
        event_type: type[E],
        predicate: Callable[[E], bool] | None = None,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
        since: int = 0,
    ) -> E:
        """The first event of ``event_type`` matching ``predicate`` among those since the mark
        ``since`` (an :attr:`event_count`; 0: all, as far as :attr:`history` goes back); waits
        up to ``timeout`` s for it (``TimeoutError``)."""
        index = since
        async with asyncio.timeout(timeout):
            while True:
                index = max(index, self._history_offset)
                while index < self.event_count:
                    event = self._history[index - self._history_offset]
                    index += 1
                    if isinstance(event, event_type) and (predicate is None or predicate(event)):
                        return event
                self._new_event.clear()
                await self._new_event.wait()

    def _emit(self, event: Event) -> None:
        self._history.append(event)
        if len(self._history) > self._history_limit:
            half = len(self._history) // 2
            del self._history[:half]
            self._history_offset += half
        self._new_event.set()
        self.events._put(event)
        for callback in [*self._callbacks.get(event.name, []), *self._callbacks.get("*", [])]:
            try:
                result = callback(event)
            except Exception as exc:
                log.exception("event callback %r failed on %r", callback, event)
                self.failures.append(exc)
                continue
            if inspect.isawaitable(result):
                self._spawn(_await(result), f"callback-{event.name}")

    # ------------------------------------------------------------------ connect / leave

    async def connect(self, timeout: float = 15.0) -> None:  # noqa: ASYNC109
        """Open the WebSocket, ``join``, wait for ``joined``; then frames are read in the
        background. Raises :class:`ClientError` (e.g. ``unauthorized``) when refused."""
        if self._closed:
            raise ClientError("invalid_state", "the client is closed")
        if self._session is not None:
            raise ClientError("invalid_state", "already connected (use resume())")
        try:
            async with asyncio.timeout(timeout):
                joined = await self._open_and_join(resume=None)
            self._apply_joined(joined, resumed=False)
        except BaseException:
            # Refused or failed: leave nothing open behind (the client can connect again).
            await self._drop_socket()
            if self._http is not None:
                await self._http.close()
                self._http = None
            self._session = None
            raise
        if self._ice_servers is None:
            self._ice_servers = _ice_servers(joined)
        if self._pc is None:
            self._pc = RTCPeerConnection(self._rtc_configuration())

    async def resume(self, timeout: float = 15.0) -> None:  # noqa: ASYNC109
        """Reconnect the signalling socket and take our session back (``join`` with
        ``resume``); the peer connection and its media are kept. Raises :class:`ClientError`
        ``not_found`` when the server no longer has the session (grace period over)."""
        if self._closed:
            raise ClientError("invalid_state", "the client is closed")
        if self._session is None:
            raise ClientError("invalid_state", "never joined: call connect()")
        await self._drop_socket()
        async with asyncio.timeout(timeout):
            joined = await self._open_and_join(resume=self._session)
        if joined.get("resumed") is not True:
            raise ClientError("invalid_state", "the server did not resume the session")
        self._apply_joined(joined, resumed=True)

    async def _open_and_join(self, resume: str | None) -> dict[str, Any]:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        ws = await self._http.ws_connect(
            self.url, autoping=True, max_msg_size=MAX_INCOMING_FRAME, heartbeat=None
        )
        self._ws = ws
        self.close_code = None
        self._reader = asyncio.get_running_loop().create_task(
            self._read(ws), name=f"visio-client-reader-{self._identity or 'new'}"
        )
        message: dict[str, Any] = {
            "type": "join",
            "token": self.token,
            "auto_subscribe": self.auto_subscribe,
        }
        if resume is not None:
            message["resume"] = resume
        try:
            return await self._request(message, {"joined"}, bounded=False)
        except BaseException:
            await self._drop_socket()
            raise

    def _apply_joined(self, joined: dict[str, Any], *, resumed: bool) -> None:
        try:
            me = _participant(joined.get("participant"))
            others = [_participant(p) for p in _get(joined, "participants", list, [])]
            session = _get(joined, "session", str)
        except ValueError as exc:
            raise ClientError("bad_message", f"malformed joined: {exc}") from exc
        self.room = joined.get("room") if isinstance(joined.get("room"), str) else None
        self._session = session
        self._identity = me.identity
        self.local_participant = me
        self.resumed = resumed
        new = {p.identity: p for p in others}
        if not resumed:
            self._participants = new
            return
        # Catch up with what happened while we were away.
        old = self._participants
        self._participants = new
        for identity, p in old.items():
            if identity not in new:
                for track_id in p.tracks:
                    self._end_remote(identity, track_id)
                self._emit(ParticipantLeft(identity, "disconnected"))
        for identity, p in new.items():
            before = old.get(identity)
            if before is None:
                self._emit(ParticipantJoined(p))
                for t in p.tracks.values():
                    self._emit(TrackPublished(identity, t))
                continue
            for track_id, t in p.tracks.items():
                if track_id not in before.tracks:
                    self._emit(TrackPublished(identity, t))
            for track_id in before.tracks:
                if track_id not in p.tracks:
                    self._end_remote(identity, track_id)
                    self._emit(TrackUnpublished(identity, track_id))

    def _rtc_configuration(self) -> RTCConfiguration:
        return RTCConfiguration(
            iceServers=list(self._ice_servers or []), bundlePolicy=RTCBundlePolicy.MAX_BUNDLE
        )

    async def leave(self, timeout: float = LEAVE_TIMEOUT) -> None:  # noqa: ASYNC109
        """Say ``leave``, wait (bounded) for the server's ``left`` and close, then close."""
        ws = self._ws
        if ws is not None and not ws.closed and self._reader is not None:
            try:
                async with asyncio.timeout(timeout):
                    await self._send({"type": "leave"})
                    await asyncio.shield(self._reader)
            except (TimeoutError, ConnectionError, aiohttp.ClientError) as exc:
                log.info("leave: %s", type(exc).__name__)
            except ClientError:
                pass
        await self.close()

    async def close(self) -> None:
        """Close the WebSocket and the peer connection; end every remote track. Idempotent."""
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(
                self._close(), name="visio-client-close"
            )
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        self._closed = True
        await self._drop_socket()
        for mid in list(self._remote_by_mid):
            self._end_mid(mid)
        if self._pc is not None:
            try:
                async with asyncio.timeout(10.0):
                    await self._pc.close()
            except Exception as exc:
                log.warning("closing the peer connection failed: %r", exc)
        self._connection_state = "closed"
        me = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not me]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None
        self.events._close()

    async def abort(self) -> None:
        """Drop the signalling socket abruptly (no close handshake, no ``leave``), as a network
        failure would; the peer connection stays. For tests of :meth:`resume`."""
        ws = self._ws
        if ws is None:
            return
        conn = ws._response.connection  # aiohttp keeps the transport there
        transport = conn.transport if conn is not None else None
        if transport is not None:
            transport.abort()
        reader = self._reader
        if reader is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await asyncio.wait({reader})

    async def _drop_socket(self) -> None:
        ws, reader = self._ws, self._reader
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(3.0):
                    await ws.close()
        if reader is not None and reader is not asyncio.current_task():
            if not reader.done():
                reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
        self._fail_pending(ConnectionLost())

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.leave()

    # ------------------------------------------------------------------ requests

    async def ping(self) -> float:
        """Round-trip time of a ``ping``, in seconds."""
        start = time.monotonic()
        await self._request({"type": "ping"}, {"pong"})
        return time.monotonic() - start

    async def set_muted(self, track_id: int, muted: bool) -> None:
        """Announce that our track ``track_id`` is (un)muted; the others get ``track_muted``."""
        await self._request(
            {"type": "mute", "track_id": int(track_id), "muted": bool(muted)},
            {"ok"},
        )

    async def subscribe(self, track_ids: Iterable[int], subscribe: bool = True) -> None:
        """Ask to (stop) receive these tracks; a server offer follows."""
        if subscribe and not self._negotiated:
            await self.publish()
        await self._request(
            {
                "type": "subscribe",
                "track_ids": [int(t) for t in track_ids],
                "subscribe": bool(subscribe),
            },
            {"ok"},
        )

    async def _request(
        self, message: dict[str, Any], replies: set[str], *, bounded: bool = True
    ) -> dict[str, Any]:
        """Send ``message`` with an ``id``; the reply of a type in ``replies`` (or ``error``)
        carrying that ``ref``. Raises :class:`ClientError` on ``error``."""
        request_id = next(self._ids)
        message = {**message, "id": request_id}
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = _Pending(future, frozenset(replies), message["type"])
        try:
            # Unbounded only where the caller has its own asyncio.timeout (connect, resume).
            async with asyncio.timeout(self.request_timeout if bounded else None):
                await self._send(message)
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

    async def _send(self, message: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            raise ConnectionLost("not connected")
        async with self._send_lock:
            await ws.send_str(json.dumps(message, separators=(",", ":")))

    def _fail_pending(self, exc: BaseException) -> None:
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_exception(exc)
        self._pending.clear()
        self._offer_in_flight = False

    # ------------------------------------------------------------------ publishing

    async def publish(
        self,
        *tracks: MediaStreamTrack,
        sources: Sequence[str] | None = None,
    ) -> None:
        """Send ``tracks`` (``sendonly``), with ``sources[i]`` the source of ``tracks[i]``
        (default: ``microphone`` for audio, ``camera`` for video): one offer, wait its answer.
        With no tracks, the first call starts a receive-only media session.
        Raises :class:`ClientError` ``forbidden`` when the token does not grant it."""
        if sources is not None and len(sources) != len(tracks):
            raise ValueError("give one source per track")
        for source in sources or ():
            if source not in SOURCES:
                raise ValueError(f"unknown source {source!r}; known: {SOURCES}")
        pc = self._require_pc()
        async with self._negotiation:
            added: list[_LocalTrack] = []
            for i, track in enumerate(tracks):
                if track.id in self._local:
                    raise ValueError(f"track {track.id} is published already")
                transceiver = pc.addTransceiver(track, direction="sendonly")
                local = _LocalTrack(track, transceiver, sources[i] if sources else None)
                self._local[track.id] = local
                added.append(local)
            if not self._negotiated and not self._local and self._placeholder is None:
                self._placeholder = pc.addTransceiver("audio", direction="recvonly")
            try:
                await self._offer()
            except BaseException:
                for local in added:
                    self._local.pop(local.track.id, None)
                    local.transceiver.sender.replaceTrack(None)  # the caller's track lives on
                await self._undo_offer([local.transceiver for local in added])
                raise

    async def unpublish(self, track: MediaStreamTrack) -> None:
        """Stop sending ``track`` (its line becomes ``inactive``) and tell the server."""
        self._require_pc()
        async with self._negotiation:
            local = self._local.pop(track.id, None)
            if local is None:
                raise ValueError(f"track {track.id} is not published")
            local.transceiver.sender.replaceTrack(None)
            local.transceiver.direction = "inactive"
            await self._offer()

    async def _offer(self) -> None:
        """One offer/answer round trip of ours; the caller holds ``_negotiation``."""
        pc = self._require_pc()
        offer = await pc.createOffer()
        await pc.setLocalDescription(offer)
        sources: dict[str, str] = {}
        for local in self._local.values():
            mid = local.transceiver.mid
            if mid is not None and local.source is not None:
                sources[str(mid)] = local.source
        message: dict[str, Any] = {"type": "offer", "sdp": pc.localDescription.sdp}
        if sources:
            message["sources"] = sources
        self._offers_sent += 1
        self._offer_in_flight = True
        try:
            reply = await self._request(message, {"answer"})
        finally:
            self._offer_in_flight = False
        sdp = reply.get("sdp")
        if not isinstance(sdp, str):
            raise ClientError("bad_message", "the answer has no sdp")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        self._negotiated = True

    async def _undo_offer(self, added: list[RTCRtpTransceiver]) -> None:
        """Our offer was refused (or never answered): the server did not apply it, so forget
        it. aiortc has no rollback: before any offer succeeded, the peer connection is simply
        replaced; afterwards, the connection goes back to ``stable`` by hand and the
        transceivers this offer added are dropped (best effort, through aiortc internals)."""
        pc = self._pc
        if pc is None or self._closed:
            return
        if not self._negotiated:
            self._pc = RTCPeerConnection(self._rtc_configuration())
            self._placeholder = None
            try:
                async with asyncio.timeout(5.0):
                    await pc.close()
            except Exception as exc:
                log.warning("closing the replaced peer connection failed: %r", exc)
            return
        internal: Any = pc
        try:
            internal._RTCPeerConnection__pendingLocalDescription = None
            internal._RTCPeerConnection__setSignalingState("stable")
            transceivers: list[Any] = internal._RTCPeerConnection__transceivers
            seen: set[str] = internal._RTCPeerConnection__seenMids
            dtls_transports: set[Any] = internal._RTCPeerConnection__dtlsTransports
            ice_transports: set[Any] = internal._RTCPeerConnection__iceTransports
            for t in added:
                if t in transceivers:
                    transceivers.remove(t)
                if t.mid is not None:
                    seen.discard(t.mid)
                if t is self._placeholder:
                    self._placeholder = None
                dtls = t.receiver.transport
                if any(other.receiver.transport is dtls for other in transceivers):
                    continue  # shared (bundled): not ours to stop
                dtls_transports.discard(dtls)
                ice_transports.discard(dtls.transport)
                async with asyncio.timeout(5.0):
                    await dtls.stop()
                    await dtls.transport.stop()
        except Exception as exc:  # depends on aiortc internals (1.16)
            log.warning("could not roll back the refused offer: %r", exc)

    def _require_pc(self) -> RTCPeerConnection:
        if self._closed:
            raise ClientError("invalid_state", "the client is closed")
        if self._pc is None:
            raise ClientError("invalid_state", "call connect() first")
        return self._pc

    # ------------------------------------------------------------------ server offers

    def _on_server_offer(self, sdp: str) -> None:
        if self._closed or self.left_reason is not None:
            return
        if self._offer_in_flight:
            # Glare: the server yields and sends a fresh offer after answering ours.
            log.debug("server offer ignored: ours is in flight")
            return
        self._server_offers += 1
        self._spawn(
            self._answer_server_offer(sdp, self._offers_sent, self._server_offers),
            "visio-client-answer",
        )

    async def _answer_server_offer(self, sdp: str, offers_sent: int, number: int) -> None:
        async with self._negotiation:
            if self._offers_sent != offers_sent:
                log.debug("server offer dropped: an offer of ours crossed it")
                return
            if self._server_offers != number:
                log.debug("server offer dropped: a newer one arrived")
                return
            pc = self._pc
            if pc is None or self._closed:
                return
            try:
                async with asyncio.timeout(self.request_timeout):
                    await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
                    self._update_remote_tracks(pc, sdp)
                    answer = await pc.createAnswer()
                    await pc.setLocalDescription(answer)
                    # With an id, so that an error about it comes back with a ref (reported as
                    # a ServerError event rather than taken for another request's reply).
                    await self._send(
                        {"type": "answer", "sdp": pc.localDescription.sdp, "id": next(self._ids)}
                    )
            except Exception:
                if self._closed or self.left_reason is not None or pc is not self._pc:
                    log.debug("server offer abandoned: the client is closing", exc_info=True)
                    return
                raise
            self._negotiated = True

    def _update_remote_tracks(self, pc: RTCPeerConnection, sdp: str) -> None:
        by_mid = {str(t.mid): t for t in pc.getTransceivers() if t.mid is not None}
        for line in _parse_server_lines(sdp):
            current = self._remote_by_mid.get(line.mid)
            wanted = (line.identity, line.track_id) if line.sending else None
            if wanted is not None and line.track_id in self._gone_tracks:
                wanted = None  # a stale offer: the server already said this track is gone
            if current is not None and (
                wanted != (current.identity, current.track_id) or current.readyState != "live"
            ):
                self._end_mid(line.mid)
                current = None
            if wanted is None or current is not None:
                continue
            transceiver = by_mid.get(line.mid)
            source = transceiver.receiver.track if transceiver is not None else None
            if source is None:
                log.warning("no receiver for server line mid=%s", line.mid)
                continue
            identity, track_id = wanted
            if identity is None or track_id is None:  # excluded by line.sending
                continue
            track = RemoteTrack(source, identity=identity, track_id=track_id, mid=line.mid)
            self._remote_by_mid[line.mid] = track
            self._emit(TrackReceived(identity, track_id, track.kind, track))

    def _end_mid(self, mid: str) -> None:
        track = self._remote_by_mid.pop(mid, None)
        if track is None:
            return
        was_live = track.readyState == "live"
        track.stop()
        if was_live or not self._closed:
            self._emit(TrackRemoved(track.identity, track.track_id))

    def _end_remote(self, identity: str, track_id: int | None = None) -> None:
        if track_id is not None:
            self._gone_tracks.add(track_id)
        for mid, track in list(self._remote_by_mid.items()):
            if track.identity == identity and track_id in (None, track.track_id):
                self._gone_tracks.add(track.track_id)
                self._end_mid(mid)

    # ------------------------------------------------------------------ reading

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Reads frames until the socket closes; supervised: failures are logged and kept in
        :attr:`failures`, waiting requests fail with :class:`ConnectionLost`."""
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
            if self._ws is ws:
                self._reader_ended(ws, error)

    def _reader_ended(
        self, ws: aiohttp.ClientWebSocketResponse, error: BaseException | None
    ) -> None:
        self.close_code = ws.close_code
        self._fail_pending(ConnectionLost(f"closed with {ws.close_code}: {error or ''}".strip()))
        if self.left_reason is not None:
            if not self._closed:
                self._spawn(self.close(), "visio-client-close-after-left")
            return
        if self._closed or asyncio.current_task() is not self._reader:
            return
        self._emit(Disconnected(ws.close_code, str(error) if error else ""))

    def _dispatch(self, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            log.warning("server frame is not JSON: %.100r", data)
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            log.warning("server frame without a type: %.100r", data)
            return
        try:
            self._handle(message)
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

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind in ("joined", "answer", "pong", "ok", "error"):
            pending = self._take_pending(message)
            if pending is not None:
                if pending.kind == "offer":
                    self._offer_in_flight = False
                if not pending.future.done():
                    pending.future.set_result(message)
                return
            if kind == "error":
                code = str(message.get("code", ""))
                log.warning("server error: %s %s", code, message.get("message", ""))
                self._emit(ServerError(code, str(message.get("message", ""))))
            else:
                log.debug("unexpected %s frame ignored", kind)
            return
        if kind == "offer":
            self._on_server_offer(_get(message, "sdp", str))
        elif kind == "participant_joined":
            p = _participant(message.get("participant"))
            self._participants[p.identity] = p
            self._emit(ParticipantJoined(p))
        elif kind == "participant_left":
            identity = _get(message, "identity", str)
            reason = _get(message, "reason", str, "left")
            gone = self._participants.pop(identity, None)
            if gone is not None:
                self._gone_tracks.update(gone.tracks)
            self._end_remote(identity)
            self._emit(ParticipantLeft(identity, reason))
        elif kind == "track_published":
            identity = _get(message, "identity", str)
            track = _track_info(message.get("track"))
            self._participant_for(identity).tracks[track.track_id] = track
            self._emit(TrackPublished(identity, track))
        elif kind == "track_unpublished":
            identity = _get(message, "identity", str)
            track_id = _get(message, "track_id", int)
            publisher = (
                self.local_participant
                if identity == self._identity
                else self._participants.get(identity)
            )
            if publisher is not None:
                publisher.tracks.pop(track_id, None)
            self._end_remote(identity, track_id)
            self._emit(TrackUnpublished(identity, track_id))
        elif kind == "track_muted":
            identity = _get(message, "identity", str)
            track_id = _get(message, "track_id", int)
            muted = _get(message, "muted", bool)
            p = self._participant_for(identity)
            old = p.tracks.get(track_id)
            if old is not None:
                p.tracks[track_id] = TrackInfo(old.track_id, old.kind, old.source, muted)
            self._emit(TrackMuted(identity, track_id, muted))
        elif kind == "active_speaker":
            identities = _get(message, "identities", list)
            self._emit(ActiveSpeaker(tuple(str(i) for i in identities)))
        elif kind == "connection_state":
            state = _get(message, "state", str)
            profile = message.get("srtp_profile")
            self._connection_state = state
            if isinstance(profile, str):
                self.srtp_profile = profile
            self._emit(ConnectionState(state, profile if isinstance(profile, str) else None))
        elif kind == "draining":
            deadline = message.get("deadline_seconds")
            if isinstance(deadline, bool) or not isinstance(deadline, int | float):
                deadline = None
            self._emit(Draining(float(deadline) if deadline is not None else None))
        elif kind == "left":
            reason = _get(message, "reason", str, "left")
            self.left_reason = reason
            self._emit(Left(reason))
        else:
            self._emit(ServerMessage(message))

    def _participant_for(self, identity: str) -> Participant:
        if identity == self._identity and self.local_participant is not None:
            return self.local_participant
        p = self._participants.get(identity)
        if p is None:
            p = Participant(identity, identity)
            self._participants[identity] = p
        return p

    # ------------------------------------------------------------------ supervision

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("client task %s failed", task.get_name(), exc_info=exc)
            self.failures.append(exc)


def _ice_servers(joined: dict[str, Any]) -> list[RTCIceServer]:
    """The ``ice_servers`` of ``joined`` (objects with ``urls``, ``username``, ``credential``)."""
    servers: list[RTCIceServer] = []
    raw_list = joined.get("ice_servers")
    for raw in raw_list if isinstance(raw_list, list) else []:
        if not isinstance(raw, dict):
            continue
        urls = raw.get("urls")
        if isinstance(urls, str) or (
            isinstance(urls, list) and urls and all(isinstance(u, str) for u in urls)
        ):
            username = raw.get("username")
            credential = raw.get("credential")
            servers.append(
                RTCIceServer(
                    urls=urls,
                    username=username if isinstance(username, str) else None,
                    credential=credential if isinstance(credential, str) else None,
                )
            )
    return servers


async def _await(awaitable: Awaitable[Any]) -> None:
    await awaitable
