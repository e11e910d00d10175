"""A participant: who they are, what they publish, and the signalling link to their client."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from visio_media.auth import AccessToken

log = logging.getLogger(__name__)


def encode(message: dict[str, Any]) -> bytes:
    """``message`` as the payload of one text frame: compact JSON, ASCII only (non-ASCII
    characters escaped), so its size in bytes is its length."""
    return json.dumps(message, separators=(",", ":")).encode("ascii")


class Link(Protocol):
    """The signalling connection of a participant, as the domain sees it."""

    def send(self, message: dict[str, Any]) -> None:
        """Queues a message; never blocks."""

    def send_encoded(self, frame: bytes) -> None:
        """Queues a message already encoded by :func:`encode` (one encoding shared by every
        recipient of a broadcast); never blocks."""

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
    """One tile the client shows: whose video, which source, its size in CSS pixels (None:
    not given)."""

    identity: str
    source: str = "camera"
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class Layout:
    """What a client shows (its last `layout` message): the tiles in its order and the pinned
    participant. A participant whose ``layout`` is None is in automatic mode."""

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
    # Receive slots granted at join (docs/protocol.md, "Receive slots"); fixed for the session.
    video_slots: int = 0
    audio_slots: int = 0
    # The client's last `layout`; None: automatic mode (it never sent one).
    layout: Layout | None = None
    # The lines the engine offered for the slots (slot order), and slots changed since the
    # last `slots` frame.
    slots: list[SlotLine] = field(default_factory=list)
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

    def send_encoded(self, frame: bytes) -> None:
        if self.link is not None:
            self.link.send_encoded(frame)

    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        return logging.LoggerAdapter(log, {"room": self.room, "participant": self.identity})


#: At most this many participants in one page of the list sent at join (docs/protocol.md,
#: "The participant list").
PARTICIPANTS_PAGE = 50


def pages_by_size(sizes: list[int], first_budget: int, budget: int, most: int) -> list[range]:
    """Splits items of the given encoded sizes (in order) into pages: at most ``most`` items a
    page, and items plus the commas between them within ``first_budget`` bytes for the first page,
    ``budget`` for the others. A page always takes at least one item (so an item larger than any
    budget still goes out, alone); there is always a first page, empty when there are no items.
    Returns each page's index range."""
    out: list[range] = []
    start = 0
    room = first_budget
    while True:
        end = start
        used = 0
        while end < len(sizes) and end - start < most:
            cost = sizes[end] + (1 if end > start else 0)
            if end > start and used + cost > room:
                break
            used += cost
            end += 1
        out.append(range(start, end))
        if end >= len(sizes):
            return out
        start = end
        room = budget


def with_participants(head: bytes, items: list[bytes], page: range) -> bytes:
    """A frame: ``head`` (an encoded, non-empty JSON object) with ``"participants": [items of
    page]`` added; the items are encoded already. Its size is
    ``len(head) + WITH_PARTICIPANTS_BYTES`` plus the items and the commas between them."""
    return head[:-1] + b',"participants":[' + b",".join(items[i] for i in page) + b"]}"


#: What :func:`with_participants` adds to its head, items aside.
WITH_PARTICIPANTS_BYTES = len(b',"participants":[]}') - 1
