"""A participant: who they are, what they publish, and the signalling link to their client."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from visio_media.auth import AccessToken

log = logging.getLogger(__name__)


class Link(Protocol):
    """The signalling connection of a participant, as the domain sees it."""

    def send(self, message: dict[str, Any]) -> None:
        """Queues a message; never blocks."""

    def close(self, code: int, reason: str) -> None:
        """Closes the connection after what is queued has been sent."""


@dataclass
class PublishedTrack:
    track_id: int
    kind: str
    source: str
    mid: str
    muted: bool = False

    def info(self) -> dict[str, Any]:
        return {
            "track_id": self.track_id,
            "kind": self.kind,
            "source": self.source,
            "muted": self.muted,
        }


@dataclass(frozen=True)
class LayoutTile:
    """One tile the client shows: whose video (identity and source) and its rendered size."""

    identity: str
    source: str = "camera"
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class Layout:
    """What a client shows, in priority order, and whom it pinned."""

    tiles: tuple[LayoutTile, ...] = ()
    pinned: str | None = None


@dataclass
class SlotLine:
    """One receive slot of a participant: our m-line and what it carries now."""

    mid: str
    kind: str
    track_id: int | None = None


@dataclass
class Participant:
    identity: str
    name: str
    room: str
    token: AccessToken
    link: Link | None
    # Receive slots asked for at join, the lines the engine offered for them (slot order),
    # the client's layout (None: automatic), and slots changed since the last `slots` frame.
    video_slots: int = 0
    audio_slots: int = 0
    slots: list[SlotLine] = field(default_factory=list)
    layout: Layout | None = None
    changed_slots: set[int] = field(default_factory=set)
    # A full `slots` frame waits for the server offer it describes to be sent first.
    slots_full_due: bool = False
    session: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    peer_id: int | None = None
    tracks: dict[int, PublishedTrack] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    # Tracks the client's last accepted offer sends (published or about to be): what counts
    # against the track limits, before the engine reports the tracks.
    offered_tracks: int = 0
    pending_offer: str | None = None
    # While the client's own offer is being answered, server offers wait: the client must
    # see our answer before any new offer of ours.
    holding_offers: bool = False
    joined_at: float = field(default_factory=time.time)
    grace_task: asyncio.Task[None] | None = None
    connected: bool = False
    srtp_profile: str = ""
    # Serialises this participant's negotiation steps with the engine.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def present(self) -> bool:
        """True while a signalling link is attached (false during the reconnect grace)."""
        return self.link is not None

    def info(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "name": self.name,
            "tracks": [t.info() for t in self.tracks.values()],
        }

    def send(self, message: dict[str, Any]) -> None:
        if self.link is not None:
            self.link.send(message)

    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        return logging.LoggerAdapter(log, {"room": self.room, "participant": self.identity})
