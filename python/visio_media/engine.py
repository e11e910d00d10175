"""Asyncio wrapper over the Rust engine: commands in, events out.

Commands that wait for a shard run in a worker thread (the native call releases the GIL), so
the event loop never blocks on the data plane. Events arrive in batches: the engine's eventfd
is watched with ``loop.add_reader`` and each wake-up drains the whole queue once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, TypeVar

from visio_media import _native
from visio_media.errors import EngineFailure, InvalidStateError, NotFoundError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class EngineConfig:
    shards: int = 1
    bind_ip: str = "127.0.0.1"
    announce_ip: str | None = None
    port_min: int = 0
    port_max: int = 0
    event_queue_capacity: int = 65536


@dataclass(frozen=True)
class PeerConnected:
    peer_id: int
    srtp_profile: str


@dataclass(frozen=True)
class PeerFailed:
    peer_id: int
    reason: str


@dataclass(frozen=True)
class PeerClosed:
    peer_id: int
    reason: str


@dataclass(frozen=True)
class TrackPublished:
    peer_id: int
    track_id: int
    kind: Literal["audio", "video"]
    mid: str


@dataclass(frozen=True)
class TrackUnpublished:
    peer_id: int
    track_id: int


@dataclass(frozen=True)
class KeyframeRequested:
    peer_id: int
    track_id: int


@dataclass(frozen=True)
class OfferNeeded:
    """The server has changes for this peer: send it ``sdp`` as an offer, apply its answer."""

    peer_id: int
    sdp: str


@dataclass(frozen=True)
class SlotChanged:
    """Slot ``slot`` (an index into the peer's slot lines) carries ``track_id`` now (None:
    nothing flows on it)."""

    peer_id: int
    slot: int
    track_id: int | None


@dataclass(frozen=True)
class SlotLines:
    """The server's offer to the peer carries its slot lines: (mid, kind) in slot order."""

    peer_id: int
    lines: tuple[tuple[str, Literal["audio", "video"]], ...]


@dataclass(frozen=True)
class ActiveSpeakers:
    """The loudest speaking audio tracks of a room changed (loudest first; empty: silence)."""

    peer_id: int  # always 0: a room-wide event
    room: str
    track_ids: tuple[int, ...]


EngineEvent = (
    PeerConnected
    | PeerFailed
    | PeerClosed
    | TrackPublished
    | TrackUnpublished
    | KeyframeRequested
    | OfferNeeded
    | SlotChanged
    | SlotLines
    | ActiveSpeakers
)


def _kind(value: object) -> Literal["audio", "video"]:
    return "audio" if value == "audio" else "video"


def _event(kind: str, peer_id: int, attrs: dict[str, Any]) -> EngineEvent | None:
    def s(key: str) -> str:
        return str(attrs[key])

    def i(key: str) -> int:
        return int(attrs[key])

    match kind:
        case "peer_connected":
            return PeerConnected(peer_id, s("srtp_profile"))
        case "peer_failed":
            return PeerFailed(peer_id, s("reason"))
        case "peer_closed":
            return PeerClosed(peer_id, s("reason"))
        case "track_published":
            return TrackPublished(peer_id, i("track_id"), _kind(attrs["kind"]), s("mid"))
        case "track_unpublished":
            return TrackUnpublished(peer_id, i("track_id"))
        case "slot_changed":
            track = attrs["track_id"]
            return SlotChanged(peer_id, i("slot"), None if track is None else int(track))
        case "slot_lines":
            return SlotLines(peer_id, tuple((str(m), _kind(k)) for m, k in attrs["lines"]))
        case "keyframe_requested":
            return KeyframeRequested(peer_id, i("track_id"))
        case "offer":
            return OfferNeeded(peer_id, s("sdp"))
        case "active_speakers":
            ids = tuple(int(x) for x in s("track_ids").split(",") if x)
            return ActiveSpeakers(peer_id, s("room"), ids)
    log.warning("unknown engine event %r ignored", kind)
    return None


class Engine:
    """One data plane: start it, create peers from client offers, route events to listeners."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        c = self.config
        self._native = _native.Engine(
            shards=c.shards,
            bind_ip=c.bind_ip,
            announce_ip=c.announce_ip,
            port_min=c.port_min,
            port_max=c.port_max,
            event_queue_capacity=c.event_queue_capacity,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[asyncio.Queue[EngineEvent]] = []
        self._callbacks: list[Callable[[EngineEvent], None]] = []

    @property
    def running(self) -> bool:
        return self._loop is not None

    async def start(self) -> None:
        if self._loop is not None:
            raise InvalidStateError("engine already started")
        loop = asyncio.get_running_loop()
        await self._run(self._native.start)
        self._loop = loop
        loop.add_reader(self._native.event_fd(), self._on_events)
        log.info("engine started: %d shard(s) on %s", self.config.shards, self.udp_addrs())

    async def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        await self._run(self._native.stop)
        self._on_events()  # deliver the closes the shards reported while stopping
        loop.remove_reader(self._native.event_fd())
        self._loop = None
        log.info("engine stopped")

    def listen(self) -> asyncio.Queue[EngineEvent]:
        """A queue that receives every event from now on."""
        q: asyncio.Queue[EngineEvent] = asyncio.Queue()
        self._listeners.append(q)
        return q

    def unlisten(self, q: asyncio.Queue[EngineEvent]) -> None:
        if q in self._listeners:
            self._listeners.remove(q)

    def on_event(self, callback: Callable[[EngineEvent], None]) -> None:
        """Calls ``callback`` synchronously for every event (it must not block)."""
        self._callbacks.append(callback)

    def udp_addrs(self) -> list[tuple[str, int]]:
        return self._native.udp_addrs()

    def stats_snapshot(self) -> dict[str, object]:
        return self._native.stats_snapshot()

    def peer_packets_in(self, peer_id: int) -> int | None:
        """Datagrams received from the peer so far (a cheap sign of life); None if unknown."""
        return self._native.peer_packets_in(peer_id)

    async def create_peer(
        self,
        room: str,
        identity: str,
        offer_sdp: str,
        *,
        video_slots: int = 0,
        audio_slots: int = 0,
    ) -> tuple[int, str]:
        """Creates the peer from the client's offer and returns (peer id, answer). A peer with
        slots gets an ``OfferNeeded`` with its slot lines right after."""
        return await self._run(
            partial(
                self._native.create_peer,
                room,
                identity,
                offer_sdp,
                video_slots=video_slots,
                audio_slots=audio_slots,
            )
        )

    async def apply_offer(self, peer_id: int, offer_sdp: str) -> str:
        return await self._run(self._native.apply_offer, peer_id, offer_sdp)

    async def apply_answer(self, peer_id: int, answer_sdp: str) -> None:
        await self._run(self._native.apply_answer, peer_id, answer_sdp)

    async def set_track_muted(self, peer_id: int, track_id: int, muted: bool) -> None:
        """A muted video track takes no video slot (it would fill one with nothing)."""
        await self._run(self._native.set_track_muted, peer_id, track_id, muted)

    async def set_layout(self, peer_id: int, track_ids: list[int], *, automatic: bool) -> None:
        """The video tracks the peer asks for, in priority order; ``automatic`` fills its
        spare video slots with everyone else's video too."""
        await self._run(
            partial(self._native.set_layout, peer_id, track_ids, automatic=automatic)
        )

    async def close_peer(self, peer_id: int) -> None:
        await self._run(self._native.close_peer, peer_id)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, partial(fn, *args))
        except KeyError as e:
            raise NotFoundError(str(e.args[0]) if e.args else "not found") from e
        except RuntimeError as e:  # the engine is not running
            raise InvalidStateError(str(e)) from e
        except _native.EngineError as e:
            raise EngineFailure(str(e)) from e

    def _on_events(self) -> None:
        for kind, peer_id, attrs in self._native.drain_events():
            event = _event(kind, peer_id, attrs)
            if event is None:
                continue
            for q in self._listeners:
                q.put_nowait(event)
            for cb in self._callbacks:
                try:
                    cb(event)
                except Exception:
                    log.exception("engine event callback failed on %s", kind)
