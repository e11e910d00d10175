"""aiortc test peers and a minimal room orchestrator around ``visio_media.engine.Engine``.

* :func:`patch_aioice_loopback` makes aioice offer 127.0.0.1 host candidates (it skips loopback).
* :func:`new_peer_connection` builds an ``RTCPeerConnection`` with no ICE servers (the default
  would contact Google's STUN server) and max-bundle (one transport for every m-line, as an SFU
  expects).
* :class:`TestPeer` is one aiortc participant: its local tracks (sendonly) and one
  :class:`~helpers.media.TrackReceiver` per receive slot (server m-line), also keyed by
  ``(publisher identity, kind)`` of whoever the slot carries now (from the engine's
  ``SlotChanged`` events).
* :class:`MiniRoom` does what the product's room layer does, in the simplest form: every peer
  gets ``video_slots``/``audio_slots`` receive slots in automatic mode (the engine fills them with
  everyone else's tracks), and every ``OfferNeeded`` is answered by the right aiortc peer (one
  negotiation at a time per peer).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCBundlePolicy

from .aio import stop_task
from .media import PatternVideoTrack, SineAudioTrack, TrackReceiver

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


# --------------------------------------------------------------------------- aioice / aiortc setup


def _loopback_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return [LOOPBACK] if use_ipv4 else []


def patch_aioice_loopback() -> Callable[[], None]:
    """Make aioice gather only 127.0.0.1 host candidates. Returns a function that undoes it."""
    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = _loopback_host_addresses

    def restore() -> None:
        aioice.ice.get_host_addresses = original

    return restore


def new_peer_connection() -> RTCPeerConnection:
    return RTCPeerConnection(
        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


async def wait_ice_gathering_complete(pc: RTCPeerConnection, within: float = 10.0) -> None:
    """aiortc is non-trickle: after setLocalDescription the candidates are in the description.

    setLocalDescription already awaits gathering; this only makes the precondition explicit.
    """
    deadline = time.monotonic() + within
    while pc.iceGatheringState != "complete":
        if time.monotonic() > deadline:
            raise TimeoutError(f"ICE gathering still {pc.iceGatheringState!r} after {within}s")
        await asyncio.sleep(0.02)


async def wait_until(
    predicate: Callable[[], bool], within: float, *, interval: float = 0.05, what: str = ""
) -> None:
    """Poll ``predicate`` until true; raise ``TimeoutError`` mentioning ``what`` otherwise."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within}s waiting for {what or predicate}")
        await asyncio.sleep(interval)


# --------------------------------------------------------------------------------- SDP inspection


@dataclass
class MediaSection:
    index: int
    kind: str
    port: int
    mid: str | None = None
    direction: str = "sendrecv"
    msid_stream: str | None = None
    msid_track: str | None = None
    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    ssrcs: list[int] = field(default_factory=list)
    codecs: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> bool:
        return self.port == 0

    @property
    def active_direction(self) -> str:
        return "inactive" if self.port == 0 else self.direction


_DIRECTIONS = {"sendrecv", "sendonly", "recvonly", "inactive"}


def parse_sdp(sdp: str) -> tuple[dict[str, str], list[MediaSection]]:
    """A tolerant parser for what the tests need: session ICE credentials and media sections."""
    session: dict[str, str] = {}
    sections: list[MediaSection] = []
    current: MediaSection | None = None
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            parts = line[2:].split()
            current = MediaSection(index=len(sections), kind=parts[0], port=int(parts[1]))
            sections.append(current)
            continue
        if not line.startswith("a="):
            continue
        attr, _, value = line[2:].partition(":")
        if current is None:
            if attr in ("ice-ufrag", "ice-pwd", "fingerprint", "setup", "group", "msid-semantic"):
                session[attr] = value
            continue
        if attr == "mid":
            current.mid = value
        elif attr in _DIRECTIONS:
            current.direction = attr
        elif attr == "msid":
            bits = value.split()
            current.msid_stream = bits[0] if bits else None
            current.msid_track = bits[1] if len(bits) > 1 else None
        elif attr == "ice-ufrag":
            current.ice_ufrag = value
        elif attr == "ice-pwd":
            current.ice_pwd = value
        elif attr == "ssrc":
            m = re.match(r"(\d+)", value)
            if m and int(m.group(1)) not in current.ssrcs:
                current.ssrcs.append(int(m.group(1)))
        elif attr == "rtpmap":
            current.codecs.append(value.split(None, 1)[1] if " " in value else value)
    return session, sections


def ice_ufrag_of(sdp: str) -> str:
    """The (first) ICE ufrag of a description, session-level or media-level."""
    session, sections = parse_sdp(sdp)
    if "ice-ufrag" in session:
        return session["ice-ufrag"]
    for s in sections:
        if s.ice_ufrag:
            return s.ice_ufrag
    raise ValueError("no a=ice-ufrag in SDP")


# ------------------------------------------------------------------------------------ test peers


_peer_seq = itertools.count(1)


class TestPeer:
    """One aiortc participant: publishes its local tracks sendonly, receives what it is offered."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        name: str,
        *,
        audio_hz: float | None = None,
        video: bool = False,
        video_size: tuple[int, int] = (320, 240),
        fps: float = 15.0,
    ) -> None:
        self.name = name
        self.pc = new_peer_connection()
        self.peer_id: int | None = None
        self.offer_sdp: str | None = None
        self.answer_sdp: str | None = None  # the engine's first answer
        self.local_tracks: list = []
        self.audio_track: SineAudioTrack | None = None
        self.video_track: PatternVideoTrack | None = None
        if audio_hz is not None:
            self.audio_track = SineAudioTrack(audio_hz)
            self.pc.addTransceiver(self.audio_track, direction="sendonly")
            self.local_tracks.append(self.audio_track)
        if video:
            w, h = video_size
            self.video_track = PatternVideoTrack(width=w, height=h, fps=fps, seed=next(_peer_seq))
            self.pc.addTransceiver(self.video_track, direction="sendonly")
            self.local_tracks.append(self.video_track)
        # Remote tracks: (publisher identity, kind) -> latest receiver; all_receivers keeps history.
        self.receivers: dict[tuple[str, str], TrackReceiver] = {}
        self.all_receivers: list[TrackReceiver] = []
        self.remote_offers: list[str] = []
        self.negotiations = 0
        self.closed = False
        self._seen_tracks: set[int] = set()
        # Receive slots: mid -> its receiver, and mid -> (identity, kind) it carries now.
        self.slot_receivers: dict[str, TrackReceiver] = {}
        self.slot_carries: dict[str, tuple[str, str] | None] = {}

    def __repr__(self) -> str:
        return f"<TestPeer {self.name} id={self.peer_id}>"

    # -- SDP steps -----------------------------------------------------------------------------

    async def make_offer(self) -> str:
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        await wait_ice_gathering_complete(self.pc)
        self.offer_sdp = self.pc.localDescription.sdp
        return self.offer_sdp

    async def accept_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        self._attach_receivers(sdp)

    async def answer_offer(self, sdp: str) -> str:
        """Apply a server-initiated offer and return our answer (candidates included)."""
        self.remote_offers.append(sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        self._attach_receivers(sdp)
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        self.negotiations += 1
        return self.pc.localDescription.sdp

    def _attach_receivers(self, remote_sdp: str) -> None:
        _, sections = parse_sdp(remote_sdp)
        by_mid = {s.mid: s for s in sections if s.mid is not None}
        for transceiver in self.pc.getTransceivers():
            track = transceiver.receiver.track
            if track is None or id(track) in self._seen_tracks:
                continue
            self._seen_tracks.add(id(track))
            if transceiver.mid not in by_mid:
                continue
            key = (f"mid:{transceiver.mid}", track.kind)
            receiver = TrackReceiver(track=track, key=key, mid=transceiver.mid).start()
            self.slot_receivers[transceiver.mid] = receiver
            self.all_receivers.append(receiver)
            log.debug("%s: receiving on slot mid %s", self.name, transceiver.mid)
        self._map_slots()

    def set_slot(self, mid: str, carries: tuple[str, str] | None) -> None:
        """The engine says slot ``mid`` carries (identity, kind) now, or nothing."""
        self.slot_carries[mid] = carries
        self._map_slots()

    def _map_slots(self) -> None:
        for mid, carries in self.slot_carries.items():
            receiver = self.slot_receivers.get(mid)
            if receiver is None:
                continue
            for k in [k for k, r in self.receivers.items() if r is receiver]:
                del self.receivers[k]
            if carries is not None:
                self.receivers[carries] = receiver

    # -- queries ---------------------------------------------------------------------------------

    def remote_sections(self) -> list[MediaSection]:
        desc = self.pc.remoteDescription
        return parse_sdp(desc.sdp)[1] if desc is not None else []

    def receiver(self, identity: str, kind: str) -> TrackReceiver | None:
        return self.receivers.get((identity, kind))

    def describe_receivers(self) -> str:
        return "; ".join(r.describe() for r in self.all_receivers) or "(none)"

    # -- teardown --------------------------------------------------------------------------------

    async def close(self, within: float = 5.0) -> None:
        if self.closed:
            return
        self.closed = True
        for t in self.local_tracks:
            t.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pc.close(), within)
        # pc.close() ends the remote tracks: the receivers see MediaStreamError and finish.
        for r in self.all_receivers:
            if r._task is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(r._task), 1.0)
            await r.stop()


# ------------------------------------------------------------------------------------- the room


@dataclass
class _ClientRenegotiation:
    done: asyncio.Future


class MiniRoom:
    """Subscription and renegotiation loop for aiortc peers in one engine room.

    Use as ``async with MiniRoom(engine, "r1") as room: await room.join(peer)``. Failures inside
    its tasks are collected in ``errors`` (``check()`` raises if any).
    """

    def __init__(
        self,
        engine: Any,
        name: str = "r1",
        *,
        negotiation_timeout: float = 15.0,
        video_slots: int = 4,
        audio_slots: int = 3,
    ) -> None:
        self.video_slots = video_slots
        self.audio_slots = audio_slots
        # peer id -> its slot lines (mid, kind) in slot order.
        self.slot_lines: dict[int, list[tuple[str, str]]] = {}
        self.engine = engine
        self.name = name
        self.negotiation_timeout = negotiation_timeout
        self.peers: dict[int, TestPeer] = {}  # members: peer_id -> peer
        self.tracks: dict[int, Any] = {}  # track_id -> TrackPublished (any peer, any time)
        self.events: list[tuple[float, Any]] = []
        self.errors: list[str] = []
        self._engine_queue: asyncio.Queue | None = None
        self._inbox: asyncio.Queue = asyncio.Queue()
        self._ready: dict[int, asyncio.Event] = defaultdict(asyncio.Event)
        self._neg_queues: dict[int, asyncio.Queue] = {}
        self._neg_workers: dict[int, asyncio.Task] = {}
        self._neg_busy: set[int] = set()
        self._tasks: list[asyncio.Task] = []
        self._new_event = asyncio.Event()
        self._processing = False
        self._left: set[int] = set()

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> MiniRoom:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        self._engine_queue = self.engine.listen()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._pump(), name=f"room-{self.name}-pump"))
        self._tasks.append(loop.create_task(self._process(), name=f"room-{self.name}-process"))

    async def close(self) -> None:
        for peer in list(self.peers.values()):
            with contextlib.suppress(Exception):
                await self.leave(peer)
        for task in [*self._tasks, *self._neg_workers.values()]:
            await stop_task(task)
        self._tasks.clear()
        self._neg_workers.clear()

    def check(self) -> None:
        if self.errors:
            raise AssertionError("MiniRoom errors:\n" + "\n".join(self.errors))

    # -- membership ------------------------------------------------------------------------------

    async def join(self, peer: TestPeer) -> int:
        offer = await peer.make_offer()
        peer_id, answer = await asyncio.wait_for(
            self.engine.create_peer(
                self.name,
                peer.name,
                offer,
                video_slots=self.video_slots,
                audio_slots=self.audio_slots,
            ),
            self.negotiation_timeout,
        )
        peer.peer_id = peer_id
        peer.answer_sdp = answer
        self.peers[peer_id] = peer
        await peer.accept_answer(answer)
        self._ready[peer_id].set()
        return peer_id

    async def leave(self, peer: TestPeer, *, close_in_engine: bool = True) -> None:
        pid = peer.peer_id
        if pid is not None:
            self._left.add(pid)
            self.peers.pop(pid, None)
            self._ready.pop(pid, None)
            worker = self._neg_workers.pop(pid, None)
            await stop_task(worker)
            self._neg_queues.pop(pid, None)
            for tid in [t for t, ev in self.tracks.items() if ev.peer_id == pid]:
                self._forget_track(tid)
        await peer.close()
        if pid is not None and close_in_engine:
            await asyncio.wait_for(self.engine.close_peer(pid), self.negotiation_timeout)

    async def renegotiate_from_client(self, peer: TestPeer) -> None:
        """Client-initiated renegotiation (e.g. after adding a track), serialised with offers."""
        fut = asyncio.get_running_loop().create_future()
        self._negotiation_queue(peer.peer_id).put_nowait(_ClientRenegotiation(fut))
        await asyncio.wait_for(fut, self.negotiation_timeout)

    # -- waiting ---------------------------------------------------------------------------------

    async def wait_event(
        self, predicate: Callable[[Any], bool], within: float, *, since: int = 0
    ) -> Any:
        """First recorded event (index >= since) matching ``predicate``."""
        deadline = time.monotonic() + within
        index = since
        while True:
            while index < len(self.events):
                ev = self.events[index][1]
                index += 1
                if predicate(ev):
                    return ev
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"no matching event within {within}s; events: "
                    + ", ".join(repr(e) for _, e in self.events[since:])[-2000:]
                )
            self._new_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_event.wait(), remaining)

    def idle(self) -> bool:
        return (
            self._inbox.empty()
            and not self._processing
            and not self._neg_busy
            and all(q.empty() for q in self._neg_queues.values())
        )

    async def wait_idle(self, within: float = 10.0, *, quiet: float = 0.3) -> None:
        """Wait until no event or negotiation is pending for ``quiet`` seconds."""
        deadline = time.monotonic() + within
        quiet_since: float | None = None
        while True:
            now = time.monotonic()
            if self.idle():
                quiet_since = quiet_since or now
                if now - quiet_since >= quiet:
                    return
            else:
                quiet_since = None
            if now > deadline:
                raise TimeoutError(f"room {self.name} still busy after {within}s")
            await asyncio.sleep(0.05)

    # -- internals -------------------------------------------------------------------------------

    async def _pump(self) -> None:
        assert self._engine_queue is not None
        while True:
            ev = await self._engine_queue.get()
            self.events.append((time.monotonic(), ev))
            self._new_event.set()
            log.debug("room %s event %r", self.name, ev)
            self._inbox.put_nowait(ev)

    async def _process(self) -> None:
        while True:
            item = await self._inbox.get()
            self._processing = True
            try:
                await self._handle(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("room %s: handling %r failed", self.name, item)
                self.errors.append(f"handling {item!r}: {type(exc).__name__}: {exc}")
            finally:
                self._processing = not self._inbox.empty()

    async def _handle(self, item: Any) -> None:
        kind = type(item).__name__
        if kind == "TrackPublished":
            self.tracks[item.track_id] = item
        elif kind == "SlotLines":
            self.slot_lines[item.peer_id] = list(item.lines)
        elif kind == "SlotChanged":
            peer = self.peers.get(item.peer_id)
            lines = self.slot_lines.get(item.peer_id, [])
            if peer is None or item.slot >= len(lines):
                return
            mid, slot_kind = lines[item.slot]
            published = self.tracks.get(item.track_id) if item.track_id is not None else None
            publisher = self.peers.get(published.peer_id) if published is not None else None
            peer.set_slot(mid, (publisher.name, slot_kind) if publisher is not None else None)
        elif kind == "TrackUnpublished":
            self._forget_track(item.track_id)
        elif kind == "OfferNeeded":
            if item.peer_id in self._left:
                return
            self._negotiation_queue(item.peer_id).put_nowait(item.sdp)
        elif kind in ("PeerClosed", "PeerFailed"):
            for tid in [t for t, ev in self.tracks.items() if ev.peer_id == item.peer_id]:
                self._forget_track(tid)

    def _forget_track(self, track_id: int) -> None:
        self.tracks.pop(track_id, None)

    def _negotiation_queue(self, peer_id: int) -> asyncio.Queue:
        q = self._neg_queues.get(peer_id)
        if q is None:
            q = self._neg_queues[peer_id] = asyncio.Queue()
            self._neg_workers[peer_id] = asyncio.get_running_loop().create_task(
                self._negotiate(peer_id, q), name=f"room-{self.name}-negotiate-{peer_id}"
            )
        return q

    async def _negotiate(self, peer_id: int, q: asyncio.Queue) -> None:
        # Offers can come before create_peer() returned and the first answer was applied.
        await self._ready[peer_id].wait()
        while True:
            job = await q.get()
            self._neg_busy.add(peer_id)
            try:
                peer = self.peers.get(peer_id)
                if peer is None:
                    continue
                if isinstance(job, _ClientRenegotiation):
                    try:
                        offer = await peer.make_offer()
                        async with asyncio.timeout(self.negotiation_timeout):
                            answer = await self.engine.apply_offer(peer_id, offer)
                        await peer.accept_answer(answer)
                        job.done.set_result(None)
                    except Exception as exc:
                        job.done.set_exception(exc)
                    continue
                try:
                    async with asyncio.timeout(self.negotiation_timeout):
                        answer = await peer.answer_offer(job)
                        await self.engine.apply_answer(peer_id, answer)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.exception("room %s: negotiation for peer %s failed", self.name, peer_id)
                    self.errors.append(
                        f"server offer to {peer.name} (peer {peer_id}) failed: "
                        f"{type(exc).__name__}: {exc}\n--- offer ---\n{job}"
                    )
            finally:
                self._neg_busy.discard(peer_id)
