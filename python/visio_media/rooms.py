"""Rooms: who is in them, what they publish, who receives what. Drives the engine.

The engine reports per peer; this layer turns that into per-participant and per-room facts and
tells the clients (through each participant's link). It never touches a socket itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from visio_media.auth import AccessToken
from visio_media.config import RoomConfig
from visio_media.engine import (
    ActiveSpeakers,
    Engine,
    EngineEvent,
    OfferNeeded,
    PeerClosed,
    PeerConnected,
    PeerFailed,
    SlotChanged,
    SlotLines,
    TrackPublished,
    TrackUnpublished,
)
from visio_media.errors import (
    ForbiddenError,
    InvalidStateError,
    NotFoundError,
    ProtocolError,
    RoomFullError,
    ShuttingDownError,
    TrackLimitError,
    VisioError,
)
from visio_media.participants import (
    PARTICIPANTS_PAGE,
    WITH_PARTICIPANTS_BYTES,
    Layout,
    Link,
    Participant,
    PublishedTrack,
    SlotLine,
    encode,
    pages_by_size,
    with_participants,
)
from visio_media.sdp import MediaSection, media_sections
from visio_media.supervise import Supervisor

log = logging.getLogger(__name__)

DEFAULT_SOURCE = {"audio": "microphone", "video": "camera"}
SOURCE_KINDS = {
    "microphone": "audio",
    "camera": "video",
    "screen_share": "video",
    "screen_share_audio": "audio",
}
# Close codes sent with `left`, per docs/protocol.md.
GOING_AWAY = {"room_closed", "server_shutdown"}


@dataclass
class Room:
    name: str
    max_participants: int
    participants: dict[str, Participant] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    empty_task: asyncio.Task[None] | None = None
    # Set while close_room removes the participants: no one joins a room being closed.
    closing: bool = False
    # The last `active_speaker` list, told to each newcomer after the participant list.
    speakers: list[str] = field(default_factory=list)

    def others(self, p: Participant) -> list[Participant]:
        return [q for q in self.participants.values() if q is not p]

    def broadcast(self, message: dict[str, Any], *, exclude: Participant | None = None) -> None:
        """Sends ``message`` to everyone in the room but ``exclude``, encoded once for all."""
        frame = encode(message)
        for q in self.participants.values():
            if q is not exclude:
                q.send_encoded(frame)

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "max_participants": self.max_participants,
            "created_at": self.created_at,
            "participants": [
                {**q.info(), "present": q.present, "connected": q.connected}
                for q in self.participants.values()
            ],
        }


class RoomManager:
    def __init__(self, engine: Engine, config: RoomConfig, supervisor: Supervisor) -> None:
        self.engine = engine
        self.config = config
        self.supervisor = supervisor
        self.rooms: dict[str, Room] = {}
        self.accepting = True
        self._by_peer: dict[int, Participant] = {}
        # Engine events for peers whose create_peer reply has not been processed yet.
        self._early: dict[int, list[EngineEvent]] = {}
        # Every published track: its participant and itself (slots name them).
        self._tracks: dict[int, tuple[Participant, PublishedTrack]] = {}
        # Participants with slot changes to send when the current drain ends.
        self._slots_due: list[Participant] = []
        # Peers we closed whose last events (up to PeerClosed) may still be on their way.
        self._retired: set[int] = set()
        # Set whenever the last participant anywhere leaves (drain waits on it).
        self._all_left = asyncio.Event()
        engine.on_event(self._on_engine_event)

    # ------------------------------------------------------------------ joining and leaving

    def participant_count(self) -> int:
        return sum(len(r.participants) for r in self.rooms.values())

    def create_room(self, name: str, max_participants: int | None = None) -> Room:
        room = self.rooms.get(name)
        if room is not None:
            raise InvalidStateError(f"room {name!r} exists")
        room = Room(name, max_participants or self.config.max_participants)
        self.rooms[name] = room
        self._schedule_empty_close(room)
        log.info("room %s created", name)
        return room

    async def join(
        self,
        token: AccessToken,
        link: Link,
        *,
        resume: str | None = None,
        video_slots: int | None = None,
        audio_slots: int | None = None,
    ) -> tuple[Participant, bool]:
        """Joins (or, with ``resume``, takes over) ``token``'s participant. ``video_slots`` /
        ``audio_slots``: the receive slots asked for (None: ``room.default_*_slots``); more than
        ``room.max_*_slots`` is a ProtocolError, and a token without the subscribe grant gets
        none. A resumed session keeps the counts of its first join."""
        if not self.accepting:
            raise ShuttingDownError("the server is shutting down")
        if not token.grants.join:
            raise ForbiddenError("the token does not grant join")
        if token.room == "*":
            raise ForbiddenError("a token for every room ('*') cannot join a room")
        video = self._slot_count("video", video_slots)
        audio = self._slot_count("audio", audio_slots)
        if not token.grants.subscribe:
            video = audio = 0
        room = self.rooms.get(token.room)
        if room is not None and room.closing:
            raise NotFoundError(f"room {token.room!r} is closing")
        if room is None and resume is not None:
            raise NotFoundError("no session to resume")
        if room is None:
            if not self.config.auto_create:
                raise NotFoundError(f"no room {token.room!r}")
            room = Room(token.room, self.config.max_participants)
            self.rooms[token.room] = room
            log.info("room %s created on first join", token.room)
        existing = room.participants.get(token.identity)
        if resume is not None:
            if existing is None or existing.session != resume:
                raise NotFoundError("no session to resume")
            if existing.link is not None:
                existing.link.close(1000, "resumed elsewhere")
            existing.link = link
            if existing.grace_task is not None:
                existing.grace_task.cancel()
                existing.grace_task = None
            existing.logger().info("session resumed")
            return existing, True
        if existing is not None:
            await self._remove(existing, "replaced")
            if room.closing or self.rooms.get(room.name) is not room:
                raise NotFoundError(f"room {room.name!r} was closed")
        if len(room.participants) >= room.max_participants:
            raise RoomFullError(f"room {room.name!r} is full")
        p = Participant(
            identity=token.identity,
            name=token.name,
            room=room.name,
            token=token,
            link=link,
            video_slots=video,
            audio_slots=audio,
        )
        room.participants[p.identity] = p
        if room.empty_task is not None:
            room.empty_task.cancel()
            room.empty_task = None
        p.logger().info("joined")
        return p, False

    def announce(self, p: Participant) -> None:
        """Tells the others that ``p`` joined. Called once ``p``'s own `joined` frames are
        queued: the newcomer's answer does not wait behind a frame to every other participant
        (at 150, that broadcast made the newcomer's `joined` the room's last frame)."""
        room = self._room_of(p)
        if room is not None:
            room.broadcast({"type": "participant_joined", "participant": p.info()}, exclude=p)

    def _slot_count(self, kind: str, asked: int | None) -> int:
        most: int = getattr(self.config, f"max_{kind}_slots")
        if asked is None:
            default: int = getattr(self.config, f"default_{kind}_slots")
            return default
        if not 0 <= asked <= most:
            shown = str(asked) if -(10**9) < asked < 10**9 else "that"
            raise ProtocolError(f"{kind}_slots must be 0–{most}, not {shown}")
        return asked

    def joined_frames(
        self, p: Participant, resumed: bool, *, max_frame_bytes: int, ref: Any = None
    ) -> list[bytes]:
        """The encoded `joined` frame, then the `participants` frames that page the rest of the
        room (docs/protocol.md, "The participant list"): the others oldest first, at most
        PARTICIPANTS_PAGE a frame, and no frame over ``max_frame_bytes`` (a page holds fewer
        when names are long). To be queued together, before anything else reaches ``p``."""
        room = self.rooms[p.room]
        others = [encode(q.info()) for q in room.others(p)]
        joined: dict[str, Any] = {
            "type": "joined",
            "protocol": 2,
            "room": room.name,
            "participant": p.info(),
            "participants_total": len(others),
            "session": p.session,
            "resumed": resumed,
            "ice_servers": [],
            "video_slots": p.video_slots,
            "audio_slots": p.audio_slots,
        }
        if ref is not None:
            joined["ref"] = ref
        head = encode(joined)
        last = encode({"type": "participants", "more": False})
        more = encode({"type": "participants", "more": True})
        pages = pages_by_size(
            [len(item) for item in others],
            max_frame_bytes - len(head) - WITH_PARTICIPANTS_BYTES,
            max_frame_bytes - len(last) - WITH_PARTICIPANTS_BYTES,
            PARTICIPANTS_PAGE,
        )
        frames = [with_participants(head, others, pages[0])]
        for i, page in enumerate(pages[1:], start=2):
            frames.append(with_participants(last if i == len(pages) else more, others, page))
        if room.speakers:
            # Speakers are only announced when they change: a newcomer learns them here.
            speakers = [i for i in room.speakers if i in room.participants]
            frames.append(encode({"type": "active_speaker", "identities": speakers}))
        return frames

    def resend_pending(self, p: Participant) -> None:
        """After a resume: the client may have missed our last offer and slot changes."""
        if p.pending_offer is not None:
            p.send({"type": "offer", "sdp": p.pending_offer})
        if p.slots:
            self._send_slots(p, full=True)

    def link_lost(self, p: Participant, link: Link) -> None:
        """The client's socket went away without `leave`: keep it for the grace period, unless
        its media is silent too (a killed or unplugged client), which removes it after
        `vanished_timeout_seconds`."""
        if p.link is not link or self._room_of(p) is None:
            return
        p.link = None
        p.logger().info("link lost; %.0f s to resume", self.config.reconnect_grace_seconds)
        p.grace_task = self.supervisor.spawn(self._watch_lost(p), f"grace-{p.room}-{p.identity}")

    async def _watch_lost(self, p: Participant) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.reconnect_grace_seconds
        step = min(0.5, cfg.vanished_timeout_seconds / 4)
        heard = self._packets_in(p)
        heard_at = loop.time()
        while p.link is None and self._room_of(p) is not None:
            now = loop.time()
            count = self._packets_in(p)
            if count is not None and count != heard:
                heard, heard_at = count, now
            if now >= deadline:
                break
            if now - heard_at >= cfg.vanished_timeout_seconds:
                p.logger().info(
                    "vanished: no signalling and no media for %.1f s", now - heard_at
                )
                break
            await asyncio.sleep(min(step, deadline - now))
        else:
            return
        await self._remove(p, "disconnected")

    def _packets_in(self, p: Participant) -> int | None:
        """Datagrams from the participant's media peer so far; None without a peer."""
        if p.peer_id is None:
            return None
        return self.engine.peer_packets_in(p.peer_id)

    async def leave(self, p: Participant, reason: str = "left") -> None:
        await self._remove(p, reason)

    async def remove_participant(self, room_name: str, identity: str) -> None:
        room = self._room(room_name)
        p = room.participants.get(identity)
        if p is None:
            raise NotFoundError(f"no participant {identity!r} in {room_name!r}")
        await self._remove(p, "removed")

    async def close_room(self, room_name: str, reason: str = "room_closed") -> None:
        room = self._room(room_name)
        room.closing = True
        while room.participants:
            await self._remove(next(iter(room.participants.values())), reason)
        self._forget_room(room)

    async def _remove(self, p: Participant, reason: str) -> None:
        room = self._room_of(p)
        if room is None:
            return
        del room.participants[p.identity]
        if p.grace_task is not None and p.grace_task is not asyncio.current_task():
            p.grace_task.cancel()
        p.grace_task = None
        if p.link is not None:
            p.link.send({"type": "left", "reason": reason})
            p.link.close(1001 if reason in GOING_AWAY else 1000, reason)
            p.link = None
        for track_id in list(p.tracks):
            room.broadcast(
                {"type": "track_unpublished", "identity": p.identity, "track_id": track_id}
            )
        for track_id in p.tracks:
            self._tracks.pop(track_id, None)
        p.tracks.clear()
        if p.peer_id is not None:
            self._by_peer.pop(p.peer_id, None)
            self._retired.add(p.peer_id)
            peer, p.peer_id = p.peer_id, None
            try:
                await self.engine.close_peer(peer)
            except VisioError as e:
                # Already dropped by the engine (failure), or the engine is stopping: the
                # participant is gone from the room either way.
                p.logger().debug("close_peer: %s", e)
        room.broadcast({"type": "participant_left", "identity": p.identity, "reason": reason})
        p.logger().info("left (%s)", reason)
        if not room.participants:
            self._schedule_empty_close(room)
            if not self.participant_count():
                self._all_left.set()

    def _schedule_empty_close(self, room: Room) -> None:
        async def close_when_idle() -> None:
            await asyncio.sleep(self.config.empty_timeout_seconds)
            if not room.participants and self.rooms.get(room.name) is room:
                self._forget_room(room)
                log.info("room %s closed after %.0f s empty", room.name,
                         self.config.empty_timeout_seconds)

        if room.empty_task is None:
            room.empty_task = self.supervisor.spawn(close_when_idle(), f"empty-{room.name}")

    def _forget_room(self, room: Room) -> None:
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
        if room.empty_task is not None and room.empty_task is not asyncio.current_task():
            room.empty_task.cancel()
        room.empty_task = None

    # ------------------------------------------------------------------ media negotiation

    async def client_offer(self, p: Participant, sdp: str, sources: dict[str, str]) -> str:
        """Applies the client's offer and returns our answer. Server offers produced meanwhile
        are held until `release_offers`, which the caller calls once the answer is sent."""
        # The engine's own reading of the offer: the grant is checked on what it will apply.
        sections = media_sections(sdp)
        self._check_publish(p, sections, sources)
        p.holding_offers = True
        async with p.lock:
            # Checked and counted with no wait in between, before the engine is asked, so that
            # offers racing from other participants see it; given back if the engine refuses.
            sending = self._check_track_limits(p, sections)
            before, p.offered_tracks = p.offered_tracks, sending
            try:
                return await self._apply_offer(p, sdp, sections, sources)
            except BaseException:
                p.offered_tracks = before
                raise

    async def _apply_offer(
        self, p: Participant, sdp: str, sections: list[MediaSection], sources: dict[str, str]
    ) -> str:
        # Only mids of this offer: every later offer repeats them, and sources for mids
        # that are not in it would pile up across offers.
        mids = {s.mid for s in sections if s.mid is not None}
        p.sources = {m: src for m, src in (p.sources | sources).items() if m in mids}
        if p.peer_id is None:
            peer_id, answer = await self.engine.create_peer(
                p.room,
                p.identity,
                sdp,
                video_slots=p.video_slots,
                audio_slots=p.audio_slots,
            )
            if self._room_of(p) is None:  # left while we waited
                self._early.pop(peer_id, None)
                self._retired.add(peer_id)
                await self.engine.close_peer(peer_id)
                raise InvalidStateError("the participant left")
            p.peer_id = peer_id
            self._by_peer[peer_id] = p
            for event in self._early.pop(peer_id, []):
                self._on_engine_event(event)
            if p.layout is not None or self._screen_shares(p):
                await self._push_layout(p)
        else:
            # Our own outstanding offer is dropped by the engine (glare); the fresh one it
            # makes arrives while we wait and is held until our answer has gone out.
            p.pending_offer = None
            answer = await self.engine.apply_offer(p.peer_id, sdp)
        return answer

    def release_offers(self, p: Participant) -> None:
        p.holding_offers = False
        if p.pending_offer is not None:
            p.send({"type": "offer", "sdp": p.pending_offer})
        if p.slots_full_due:
            self._send_slots(p, full=True)

    async def client_answer(self, p: Participant, sdp: str) -> None:
        async with p.lock:
            if p.peer_id is None or p.pending_offer is None:
                raise InvalidStateError("no server offer is outstanding")
            p.pending_offer = None
            await self.engine.apply_answer(p.peer_id, sdp)

    def _check_publish(
        self, p: Participant, sections: list[MediaSection], sources: dict[str, str]
    ) -> None:
        grants = p.token.grants
        for s in sections:
            if not s.client_sends:
                continue
            if s.mid is not None and s.mid in {t.mid for t in p.tracks.values()}:
                continue  # already published: renegotiation keeps it
            source = sources.get(s.mid or "", DEFAULT_SOURCE.get(s.kind, s.kind))
            if not grants.publish:
                raise ForbiddenError("the token does not grant publish")
            if source not in grants.publish_sources:
                raise ForbiddenError(f"the token does not grant publishing {source!r}")
            if SOURCE_KINDS.get(source) not in (None, s.kind):
                raise ForbiddenError(f"{source!r} cannot be a {s.kind} track")

    def _check_track_limits(self, p: Participant, sections: list[MediaSection]) -> int:
        """How many tracks the offer sends; TrackLimitError past a limit. Every track of a room
        is a line in everyone else's SDP, so the room's limit is what keeps their signalling
        frames bounded."""
        cfg = self.config
        # Our slot lines plus those the client created (its tracks, some ended ones, a few
        # receive-only ones): an offer larger than any this participant can produce is refused
        # before the engine parses it further.
        most_sections = p.video_slots + p.audio_slots + 2 * cfg.max_tracks_per_participant + 8
        if len(sections) > most_sections:
            raise TrackLimitError(
                f"an offer may have at most {most_sections} media sections here, "
                f"not {len(sections)}"
            )
        sending = sum(1 for s in sections if s.client_sends)
        if sending > cfg.max_tracks_per_participant:
            raise TrackLimitError(
                f"a participant may publish at most {cfg.max_tracks_per_participant} tracks, "
                f"the offer sends {sending}"
            )
        room = self._room_of(p)
        if room is not None:
            others = sum(
                max(q.offered_tracks, len(q.tracks)) for q in room.participants.values()
                if q is not p
            )
            if others + sending > cfg.max_tracks_per_room:
                raise TrackLimitError(
                    f"room {room.name!r} carries at most {cfg.max_tracks_per_room} tracks; "
                    f"{others} are published, the offer sends {sending}"
                )
        return sending

    # ------------------------------------------------------------------ receive slots

    async def set_layout(self, p: Participant, layout: Layout) -> None:
        """Records what ``p``'s client shows (its `layout` message) and has the engine fill its
        video slots from it."""
        if self._room_of(p) is None:
            raise InvalidStateError("not in a room")
        p.layout = layout
        await self._push_layout(p)

    def _screen_shares(self, p: Participant) -> list[int]:
        room = self._room_of(p)
        if room is None:
            return []
        return [
            t.track_id
            for q in room.others(p)
            for t in q.tracks.values()
            if t.source == "screen_share"
        ]

    def _wanted_video(self, p: Participant) -> list[int]:
        """The video tracks ``p`` asks for, in priority order: the pinned participant's,
        screen shares, then the tiles of its layout."""
        room = self._room_of(p)
        if room is None:
            return []
        wanted: list[int] = []

        def video_of(identity: str, source: str | None) -> list[int]:
            q = room.participants.get(identity)
            if q is None or q is p:
                return []
            return [
                t.track_id
                for t in sorted(q.tracks.values(), key=lambda t: t.source != "screen_share")
                if t.kind == "video" and (source is None or t.source == source)
            ]

        layout = p.layout
        if layout is not None and layout.pinned is not None:
            wanted += video_of(layout.pinned, None)
        wanted += self._screen_shares(p)
        if layout is not None:
            for tile in layout.tiles:
                wanted += video_of(tile.identity, tile.source)
        return list(dict.fromkeys(wanted))

    async def _push_layout(self, p: Participant) -> None:
        if p.peer_id is None or p.video_slots == 0:
            return
        try:
            await self.engine.set_layout(
                p.peer_id, self._wanted_video(p), automatic=p.layout is None
            )
        except VisioError as e:
            # The peer went away meanwhile: nothing to receive.
            p.logger().debug("set_layout skipped: %s", e)

    def _on_slot_lines(self, p: Participant, lines: tuple[tuple[str, str], ...]) -> None:
        old = p.slots
        p.slots = [
            SlotLine(mid, kind, old[i].track_id if i < len(old) else None)
            for i, (mid, kind) in enumerate(lines)
        ]
        p.changed_slots.clear()
        if p.holding_offers:
            p.slots_full_due = True
        else:
            self._send_slots(p, full=True)

    def _on_slot_changed(self, p: Participant, slot: int, track_id: int | None) -> None:
        if slot >= len(p.slots):
            return
        p.slots[slot].track_id = track_id
        if not p.changed_slots:
            self._slots_due.append(p)
            if len(self._slots_due) == 1:
                asyncio.get_running_loop().call_soon(self._flush_slots)
        p.changed_slots.add(slot)

    def _flush_slots(self) -> None:
        """One `slots` frame per participant for all the slot changes of a drain."""
        due, self._slots_due = self._slots_due, []
        for p in due:
            if p.changed_slots and not p.slots_full_due:
                self._send_slots(p, full=False)
            p.changed_slots.clear()

    def _send_slots(self, p: Participant, *, full: bool) -> None:
        indices = range(len(p.slots)) if full else sorted(p.changed_slots)
        p.slots_full_due = False
        p.send(
            {
                "type": "slots",
                "full": full,
                "slots": [self._slot_info(p.slots[i]) for i in indices],
            }
        )

    def _slot_info(self, line: SlotLine) -> dict[str, Any]:
        found = self._tracks.get(line.track_id) if line.track_id is not None else None
        if found is None:
            return {
                "mid": line.mid,
                "kind": line.kind,
                "identity": None,
                "track_id": None,
                "source": None,
            }
        q, t = found
        return {
            "mid": line.mid,
            "kind": line.kind,
            "identity": q.identity,
            "track_id": t.track_id,
            "source": t.source,
        }

    def set_muted(self, room_name: str, identity: str, track_id: int, muted: bool) -> None:
        room = self._room(room_name)
        p = room.participants.get(identity)
        track = p.tracks.get(track_id) if p is not None else None
        if p is None or track is None:
            raise NotFoundError(f"no track {track_id} of {identity!r}")
        if track.muted == muted:
            return
        track.muted = muted
        room.broadcast(
            {"type": "track_muted", "identity": identity, "track_id": track_id, "muted": muted}
        )
        if p.peer_id is not None:
            # A muted camera gives its video slots to someone with video.
            self.supervisor.spawn(
                self._engine_muted(p, p.peer_id, track_id, muted), f"mute-{track_id}"
            )

    async def _engine_muted(
        self, p: Participant, peer_id: int, track_id: int, muted: bool
    ) -> None:
        try:
            await self.engine.set_track_muted(peer_id, track_id, muted)
        except VisioError as e:
            # The track or the peer went away meanwhile.
            p.logger().debug("set_track_muted skipped: %s", e)

    # ------------------------------------------------------------------ engine events

    def _on_engine_event(self, event: EngineEvent) -> None:
        if isinstance(event, ActiveSpeakers):
            self._on_speakers(event)
            return
        p = self._by_peer.get(event.peer_id)
        if p is None and event.peer_id in self._retired:
            if isinstance(event, PeerClosed):  # its last event
                self._retired.discard(event.peer_id)
            return
        if p is None:
            # Not registered yet (its create_peer reply is still on its way) or gone. Kept,
            # closes included, so a peer that failed while being created is seen as failed.
            early = self._early.setdefault(event.peer_id, [])
            if len(early) < 256:
                early.append(event)
            if len(self._early) > 10_000:  # peers that never got registered
                self._early.pop(next(iter(self._early)))
            return
        room = self._room_of(p)
        if room is None:
            return
        match event:
            case TrackPublished(track_id=track_id, kind=kind, mid=mid):
                source = p.sources.get(mid, DEFAULT_SOURCE[kind])
                track = PublishedTrack(track_id, kind, source, mid)
                p.tracks[track_id] = track
                self._tracks[track_id] = (p, track)
                # The publisher hears it too: that is how it learns its tracks' ids.
                room.broadcast(
                    {"type": "track_published", "identity": p.identity, "track": track.info()}
                )
                self._relayout(room, p, track)
            case TrackUnpublished(track_id=track_id):
                self._tracks.pop(track_id, None)
                if p.tracks.pop(track_id, None) is not None:
                    room.broadcast(
                        {"type": "track_unpublished", "identity": p.identity, "track_id": track_id}
                    )
            case SlotLines(lines=lines):
                self._on_slot_lines(p, lines)
            case SlotChanged(slot=slot, track_id=track_id):
                self._on_slot_changed(p, slot, track_id)
            case OfferNeeded(sdp=sdp):
                p.pending_offer = sdp
                if not p.holding_offers:
                    p.send({"type": "offer", "sdp": sdp})
            case PeerConnected(srtp_profile=profile):
                p.connected = True
                p.srtp_profile = profile
                p.send({"type": "connection_state", "state": "connected", "srtp_profile": profile})
            case PeerFailed(reason=reason):
                p.logger().warning("media failed: %s", reason)
                p.send({"type": "connection_state", "state": "failed", "reason": reason})
                self.supervisor.spawn(self._remove(p, "disconnected"), f"failed-{p.identity}")
            case PeerClosed():
                if p.peer_id == event.peer_id:
                    self._by_peer.pop(event.peer_id, None)
                    p.peer_id = None
                    p.offered_tracks = 0  # its tracks are gone with it
            case _:
                pass

    def _relayout(self, room: Room, publisher: Participant, track: PublishedTrack) -> None:
        """A new track that layouts may name (its publisher is pinned or shown, or it is a
        screen share, which everyone gets): the receivers concerned choose again."""
        for q in room.others(publisher):
            if q.peer_id is None or track.kind != "video":
                continue
            named = q.layout is not None and (
                q.layout.pinned == publisher.identity
                or any(t.identity == publisher.identity for t in q.layout.tiles)
            )
            if named or track.source == "screen_share":
                self.supervisor.spawn(self._push_layout(q), f"layout-{q.identity}")

    def _on_speakers(self, event: ActiveSpeakers) -> None:
        room = self.rooms.get(event.room)
        if room is None:
            return
        identities: list[str] = []
        for track_id in event.track_ids:
            found = self._tracks.get(track_id)
            if found is not None and found[0].room == room.name:
                if found[0].identity not in identities:
                    identities.append(found[0].identity)
        room.speakers = identities
        room.broadcast({"type": "active_speaker", "identities": identities})

    # ------------------------------------------------------------------ shutdown

    async def drain(self, deadline_seconds: float) -> None:
        """Refuses new joins, warns everyone, waits for rooms to empty or the deadline."""
        self.accepting = False
        for room in self.rooms.values():
            room.broadcast({"type": "draining", "deadline_seconds": deadline_seconds})
        if self.participant_count():
            self._all_left.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline_seconds):
                    await self._all_left.wait()
        for room in list(self.rooms.values()):
            await self.close_room(room.name, "server_shutdown")

    # ------------------------------------------------------------------ helpers

    def _room(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            raise NotFoundError(f"no room {name!r}")
        return room

    def _room_of(self, p: Participant) -> Room | None:
        room = self.rooms.get(p.room)
        if room is None or room.participants.get(p.identity) is not p:
            return None
        return room
