"""The :class:`Client` class: one participant — a signalling connection
(:mod:`~visio_media.client.transport`) and a media session
(:mod:`~visio_media.client.negotiation`) — keeping the room state and reporting events."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import aiohttp
from aiortc import RTCIceServer, RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from visio_media.client.errors import ClientError, ConnectionLost
from visio_media.client.events import (
    EVENT_TYPES,
    ActiveSpeaker,
    ConnectionState,
    Disconnected,
    Draining,
    E,
    Event,
    EventCallback,
    EventStream,
    Left,
    ParticipantJoined,
    ParticipantLeft,
    ServerError,
    ServerMessage,
    SlotsChanged,
    TrackMuted,
    TrackPublished,
    TrackReceived,
    TrackRemoved,
    TrackUnpublished,
)
from visio_media.client.negotiation import SOURCES, Negotiation, slot_lines
from visio_media.client.remote_track import RemoteTrack
from visio_media.client.state import (
    MAX_TILES,
    Participant,
    SlotInfo,
    Tile,
    TrackInfo,
    get_field,
    read_participant,
    read_slot,
    read_track,
    tile_message,
)
from visio_media.client.transport import REPLY_TYPES, Signalling

__all__ = ["Client"]

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 2
DEFAULT_REQUEST_TIMEOUT = 15.0
LEAVE_TIMEOUT = 5.0


class Client:
    """One participant: a signalling WebSocket and one aiortc ``RTCPeerConnection``."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        video_slots: int | None = None,
        audio_slots: int | None = None,
        ice_servers: list[RTCIceServer] | None = None,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        history_limit: int = 10_000,
    ) -> None:
        self.url = url
        self.token = token
        for name, count in (("video_slots", video_slots), ("audio_slots", audio_slots)):
            if count is not None and (
                isinstance(count, bool) or not isinstance(count, int) or count < 0
            ):
                raise ValueError(f"{name} is a non-negative int or None, not {count!r}")
        #: The slot counts asked for at ``join`` (None: the server's default).
        self.requested_slots = (video_slots, audio_slots)
        #: The slot counts the server granted (``joined``); None before.
        self.video_slots: int | None = None
        self.audio_slots: int | None = None
        self.request_timeout = request_timeout
        #: Failures of background work (reader, negotiation, callbacks), oldest first.
        self.failures: list[BaseException] = []
        self._signalling = Signalling(
            self._on_message,
            self._on_socket_closed,
            request_timeout=request_timeout,
            failures=self.failures,
        )
        self._negotiation = Negotiation(
            request=self._signalling.request,
            send=self._signalling.send,
            next_id=self._signalling.next_id,
            spawn=self._spawn,
            server_offer_applied=self._update_remote_tracks,
            active=lambda: not self._closed and self.left_reason is None,
            request_timeout=request_timeout,
        )
        self._negotiation.ice_servers = ice_servers
        # Receive slots by mid, as the server's `slots` frames say (what RemoteTracks read).
        self._slots: dict[str, SlotInfo] = {}
        # mid -> the RemoteTrack of that slot line (one per line, for the life of the line)
        self._remote_by_mid: dict[str, RemoteTrack] = {}
        # The participant list being paged in after `joined` (None when not paging).
        self._pages: list[Participant] | None = None
        self._pages_done = asyncio.Event()
        #: How many other participants ``joined`` said there were.
        self.participants_total: int | None = None
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
        self.resumed = False

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
    def slots(self) -> dict[str, SlotInfo]:
        """Our receive slots by mid, as the server last described them (a copy)."""
        return dict(self._slots)

    @property
    def slot_tracks(self) -> dict[str, RemoteTrack]:
        """The track of every slot line by mid (live until the client closes), occupied or
        not."""
        return dict(self._remote_by_mid)

    @property
    def remote_tracks(self) -> dict[tuple[str, int], RemoteTrack]:
        """The slot tracks that carry someone's track now, by (identity, track id)."""
        out: dict[tuple[str, int], RemoteTrack] = {}
        for t in self._remote_by_mid.values():
            identity, track_id = t.identity, t.track_id
            if t.readyState == "live" and identity is not None and track_id is not None:
                out[(identity, track_id)] = t
        return out

    @property
    def connection_state(self) -> str:
        """The server's view of our media connection: ``new``, ``connected`` or ``failed``
        (``closed`` after :meth:`close`)."""
        return self._connection_state

    @property
    def pc(self) -> RTCPeerConnection | None:
        """The aiortc ``RTCPeerConnection`` (None before :meth:`connect`)."""
        return self._negotiation.pc

    @property
    def close_code(self) -> int | None:
        """The WebSocket close code of the last socket (None while it is open)."""
        return self._signalling.close_code

    def published_track_id(self, track: MediaStreamTrack) -> int | None:
        """The server's track id of our published ``track``, once the server announced it
        (``track_published`` about ourselves, after media started flowing); None before.
        Tracks are told apart by kind and source."""
        source = self._negotiation.source_of(track)
        me = self.local_participant
        if source is None or me is None:
            return None
        ids = [t.track_id for t in me.tracks.values() if (t.kind, t.source) == (track.kind, source)]
        return ids[0] if len(ids) == 1 else None

    @property
    def connected(self) -> bool:
        """True while the signalling socket is open."""
        return self._signalling.connected

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
        if name != "*" and name not in EVENT_TYPES:
            raise ValueError(f"unknown event {name!r}; known: {sorted(EVENT_TYPES)}")
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
            await self._signalling.close()
            self._session = None
            raise
        if self._negotiation.ice_servers is None:
            self._negotiation.ice_servers = _ice_servers(joined)
        self._negotiation.start()

    async def resume(self, timeout: float = 15.0) -> None:  # noqa: ASYNC109
        """Reconnect the signalling socket and take our session back (``join`` with
        ``resume``); the peer connection and its media are kept. Raises :class:`ClientError`
        ``not_found`` when the server no longer has the session (grace period over)."""
        if self._closed:
            raise ClientError("invalid_state", "the client is closed")
        if self._session is None:
            raise ClientError("invalid_state", "never joined: call connect()")
        await self._signalling.drop()
        async with asyncio.timeout(timeout):
            joined = await self._open_and_join(resume=self._session)
        if joined.get("resumed") is not True:
            raise ClientError("invalid_state", "the server did not resume the session")
        self._apply_joined(joined, resumed=True)

    async def _open_and_join(self, resume: str | None) -> dict[str, Any]:
        await self._signalling.open(self.url, name=f"visio-client-reader-{self._identity or 'new'}")
        message: dict[str, Any] = {"type": "join", "token": self.token}
        video, audio = self.requested_slots
        if video is not None:
            message["video_slots"] = video
        if audio is not None:
            message["audio_slots"] = audio
        if resume is not None:
            message["resume"] = resume
        try:
            joined = await self._signalling.request(
                message, {"joined"}, bounded=False, on_reply=self._on_joined_reply
            )
            if self._pages is not None:
                await self._wait_for_pages()
            return joined
        except BaseException:
            await self._signalling.drop()
            raise

    async def _wait_for_pages(self) -> None:
        """The rest of the participant list follows ``joined`` at once (``participants``
        frames, before any other event): wait for its last page, or the socket's end."""
        reader = self._signalling.reader
        waiter = asyncio.ensure_future(self._pages_done.wait())
        try:
            await asyncio.wait(
                {waiter, *([reader] if reader else [])}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
        if not self._pages_done.is_set():
            raise ConnectionLost("the socket closed while the participant list was paged in")

    def _apply_joined(self, joined: dict[str, Any], *, resumed: bool) -> None:
        try:
            me = read_participant(joined.get("participant"))
            others = [read_participant(p) for p in get_field(joined, "participants", list, [])]
            others.extend(self._pages or [])
            session = get_field(joined, "session", str)
            total = get_field(joined, "participants_total", int, len(others))
            video_slots = get_field(joined, "video_slots", int, None)
            audio_slots = get_field(joined, "audio_slots", int, None)
        except ValueError as exc:
            raise ClientError("bad_message", f"malformed joined: {exc}") from exc
        self.room = joined.get("room") if isinstance(joined.get("room"), str) else None
        self._session = session
        self._identity = me.identity
        self.local_participant = me
        self.resumed = resumed
        self._pages = None
        self.participants_total = total
        if not resumed or video_slots is not None:
            self.video_slots, self.audio_slots = video_slots, audio_slots
        new = {p.identity: p for p in others}
        if not resumed:
            self._participants = new
            return
        # Catch up with what happened while we were away.
        old = self._participants
        self._participants = new
        for identity in old:
            if identity not in new:
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
                    self._emit(TrackUnpublished(identity, track_id))

    async def leave(self, timeout: float = LEAVE_TIMEOUT) -> None:  # noqa: ASYNC109
        """Say ``leave``, wait (bounded) for the server's ``left`` and close, then close."""
        reader = self._signalling.reader
        if self._signalling.connected and reader is not None:
            try:
                async with asyncio.timeout(timeout):
                    await self._signalling.send({"type": "leave"})
                    await asyncio.shield(reader)
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
        self._negotiation.closed = True
        await self._signalling.drop()
        for mid in list(self._remote_by_mid):
            self._end_mid(mid)
        await self._negotiation.close()
        self._connection_state = "closed"
        me = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not me]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._signalling.close()
        self.events._close()

    async def abort(self) -> None:
        """Drop the signalling socket abruptly (no close handshake, no ``leave``), as a network
        failure would; the peer connection stays. For tests of :meth:`resume`."""
        await self._signalling.abort()

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.leave()

    # ------------------------------------------------------------------ requests

    async def ping(self) -> float:
        """Round-trip time of a ``ping``, in seconds."""
        start = time.monotonic()
        await self._signalling.request({"type": "ping"}, {"pong"})
        return time.monotonic() - start

    async def set_muted(self, track_id: int, muted: bool) -> None:
        """Announce that our track ``track_id`` is (un)muted; the others get ``track_muted``."""
        await self._signalling.request(
            {"type": "mute", "track_id": int(track_id), "muted": bool(muted)},
            {"ok"},
        )

    async def set_layout(
        self,
        tiles: Iterable[Tile | tuple[str, str] | str] = (),
        pinned: str | None = None,
    ) -> None:
        """Tell the server what we show (``layout``), and wait for its ``ok``: it fills our
        video slots with ``pinned`` first, then screen shares, then ``tiles`` in order, then
        recent speakers; :class:`SlotsChanged` events follow when the slots change. A tile is
        a :class:`Tile`, an ``(identity, source)`` pair or an identity (its camera).
        ``ValueError`` for a layout the protocol cannot carry (more than 256 tiles, sizes
        outside 0..16384)."""
        message_tiles = [tile_message(t) for t in tiles]
        if len(message_tiles) > MAX_TILES:
            raise ValueError(f"at most {MAX_TILES} tiles, not {len(message_tiles)}")
        if pinned is not None and not isinstance(pinned, str):
            raise ValueError(f"pinned is an identity or None, not {pinned!r}")
        await self._signalling.request(
            {"type": "layout", "tiles": message_tiles, "pinned": pinned}, {"ok"}
        )

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
        await self._negotiation.publish(tracks, sources)

    async def unpublish(self, track: MediaStreamTrack) -> None:
        """Stop sending ``track`` (its line becomes ``inactive``) and tell the server."""
        await self._negotiation.unpublish(track)

    # ------------------------------------------------------------------ server offers

    def _on_server_offer(self, sdp: str) -> None:
        self._negotiation.on_server_offer(sdp)

    def _update_remote_tracks(self, pc: RTCPeerConnection, sdp: str) -> None:
        """A server offer was applied: a RemoteTrack (and a TrackReceived) for each slot line
        that is new; lines the server stopped sending on end theirs."""
        by_mid = {str(t.mid): t for t in pc.getTransceivers() if t.mid is not None}
        lines = slot_lines(sdp)
        for mid in [m for m in self._remote_by_mid if m not in lines]:
            self._end_mid(mid)
        for mid, kind in lines.items():
            if mid in self._remote_by_mid:
                continue
            transceiver = by_mid.get(mid)
            source = transceiver.receiver.track if transceiver is not None else None
            if source is None:
                log.warning("no receiver for server line mid=%s", mid)
                continue
            track = RemoteTrack(source, mid=mid, slots=self._slots)
            self._remote_by_mid[mid] = track
            self._emit(TrackReceived(mid, kind, track))

    def _end_mid(self, mid: str) -> None:
        track = self._remote_by_mid.pop(mid, None)
        if track is None:
            return
        was_live = track.readyState == "live"
        track.stop()
        if was_live or not self._closed:
            self._emit(TrackRemoved(mid, track.kind))

    # ------------------------------------------------------------------ reading

    def _on_socket_closed(
        self, ws: aiohttp.ClientWebSocketResponse, error: BaseException | None
    ) -> None:
        if self.left_reason is not None:
            if not self._closed:
                self._spawn(self.close(), "visio-client-close-after-left")
            return
        if self._closed or asyncio.current_task() is not self._signalling.reader:
            return
        self._emit(Disconnected(ws.close_code, str(error) if error else ""))

    def _on_joined_reply(self, message: dict[str, Any]) -> None:
        # In the reader, before the `participants` pages that follow `joined`.
        if message.get("type") != "joined":
            return
        first = message.get("participants")
        total = message.get("participants_total")
        self._pages_done.clear()
        if (
            isinstance(first, list)
            and isinstance(total, int)
            and not isinstance(total, bool)
            and total > len(first)
        ):
            self._pages = []
        else:
            self._pages = None
            self._pages_done.set()

    def _on_participants_page(self, message: dict[str, Any]) -> None:
        page = [read_participant(p) for p in get_field(message, "participants", list)]
        more = get_field(message, "more", bool)
        if self._pages is None:
            # Not paging in a join: take them as they come (a server may page later lists).
            for p in page:
                self._participants[p.identity] = p
            return
        self._pages.extend(page)
        if not more:
            self._pages_done.set()

    def _on_slots(self, message: dict[str, Any]) -> None:
        full = get_field(message, "full", bool)
        infos = [read_slot(raw) for raw in get_field(message, "slots", list)]
        if full:
            self._slots.clear()
        changed = []
        for info in infos:
            if full or self._slots.get(info.mid) != info:
                changed.append(info)
            self._slots[info.mid] = info
        if changed or full:
            self._emit(SlotsChanged(tuple(changed), full))

    def _on_message(self, message: dict[str, Any]) -> None:
        """A server frame that is not the reply to a request of ours."""
        kind = message["type"]
        if kind in REPLY_TYPES:
            if kind == "error":
                code = str(message.get("code", ""))
                log.warning("server error: %s %s", code, message.get("message", ""))
                self._emit(ServerError(code, str(message.get("message", ""))))
            else:
                log.debug("unexpected %s frame ignored", kind)
            return
        if kind == "offer":
            self._on_server_offer(get_field(message, "sdp", str))
        elif kind == "slots":
            self._on_slots(message)
        elif kind == "participants":
            self._on_participants_page(message)
        elif kind == "participant_joined":
            p = read_participant(message.get("participant"))
            self._participants[p.identity] = p
            self._emit(ParticipantJoined(p))
        elif kind == "participant_left":
            identity = get_field(message, "identity", str)
            reason = get_field(message, "reason", str, "left")
            self._participants.pop(identity, None)
            self._emit(ParticipantLeft(identity, reason))
        elif kind == "track_published":
            identity = get_field(message, "identity", str)
            track = read_track(message.get("track"))
            self._participant_for(identity).tracks[track.track_id] = track
            self._emit(TrackPublished(identity, track))
        elif kind == "track_unpublished":
            identity = get_field(message, "identity", str)
            track_id = get_field(message, "track_id", int)
            publisher = (
                self.local_participant
                if identity == self._identity
                else self._participants.get(identity)
            )
            if publisher is not None:
                publisher.tracks.pop(track_id, None)
            self._emit(TrackUnpublished(identity, track_id))
        elif kind == "track_muted":
            identity = get_field(message, "identity", str)
            track_id = get_field(message, "track_id", int)
            muted = get_field(message, "muted", bool)
            p = self._participant_for(identity)
            old = p.tracks.get(track_id)
            if old is not None:
                p.tracks[track_id] = TrackInfo(old.track_id, old.kind, old.source, muted)
            self._emit(TrackMuted(identity, track_id, muted))
        elif kind == "active_speaker":
            identities = get_field(message, "identities", list)
            self._emit(ActiveSpeaker(tuple(str(i) for i in identities)))
        elif kind == "connection_state":
            state = get_field(message, "state", str)
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
            reason = get_field(message, "reason", str, "left")
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
