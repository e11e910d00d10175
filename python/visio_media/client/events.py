"""The events a client reports (:meth:`Client.on`, :attr:`Client.events`,
:meth:`Client.wait_for`) and the bounded stream that queues them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from visio_media.client.state import Participant, SlotInfo, TrackInfo

if TYPE_CHECKING:
    from visio_media.client.remote_track import RemoteTrack

__all__ = [
    "EVENT_TYPES",
    "ActiveSpeaker",
    "ConnectionState",
    "Disconnected",
    "Draining",
    "Event",
    "EventCallback",
    "EventStream",
    "Left",
    "ParticipantJoined",
    "ParticipantLeft",
    "ServerError",
    "ServerMessage",
    "SlotsChanged",
    "TrackMuted",
    "TrackPublished",
    "TrackReceived",
    "TrackRemoved",
    "TrackUnpublished",
]


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
    """A receive slot's track arrived (once per slot line, when the server's offer adds it).

    ``track`` is the slot's :class:`RemoteTrack`: it stays the same object for the life of
    the line, whoever is in the slot; ``track.identity`` / ``track.track_id`` /
    ``track.source`` follow the slot's current occupant (None while the slot is empty), as
    :class:`SlotsChanged` events tell."""

    name: ClassVar[str] = "track_received"
    mid: str
    kind: str
    track: RemoteTrack

    @property
    def identity(self) -> str | None:
        """Who is in the slot *now* (not necessarily when the event was made)."""
        return self.track.identity


@dataclass(frozen=True)
class TrackRemoved(Event):
    """A slot line's track ended (the client closed, or the server stopped the line)."""

    name: ClassVar[str] = "track_removed"
    mid: str
    kind: str


@dataclass(frozen=True)
class SlotsChanged(Event):
    """Who is in which receive slot changed. ``slots`` holds the slots that changed (with
    ``full``: every slot, a snapshot that replaces what the client knew, e.g. at the start
    and after a resume); :attr:`Client.slots` is already updated."""

    name: ClassVar[str] = "slots_changed"
    slots: tuple[SlotInfo, ...]
    full: bool = False


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

EVENT_TYPES: dict[str, type[Event]] = {
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
        SlotsChanged,
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
