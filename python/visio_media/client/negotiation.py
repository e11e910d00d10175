"""Media negotiation: our offers (publish, unpublish) and our answers to the server's offers, on
one aiortc ``RTCPeerConnection``; and the reading of the server's m-lines.

Serialised: at most one offer of ours is in flight, and a server ``offer`` that crosses ours
(glare) is ignored — the server yields, answers ours, then sends a fresh offer.

aiortc has no rollback. A refused first offer is forgotten by replacing the peer connection
(nothing was connected yet). Later offers are sent *before* they are applied locally
(``createOffer`` alone; the shared, bundled transport already carries our candidates), and
applied (``setLocalDescription``) only once the server answered: a refused one leaves the peer
connection ``stable``, and the transceivers it added, which never got a mid, are stopped (a
stopped transceiver without a mid is left out of every later offer).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy

from visio_media.client.errors import ClientError

__all__ = ["SOURCES", "Negotiation", "ServerLine", "parse_server_lines", "slot_lines"]

log = logging.getLogger(__name__)

SOURCES = ("microphone", "camera", "screen_share", "screen_share_audio")

# --------------------------------------------------------------------------- server m-lines


@dataclass(frozen=True)
class ServerLine:
    """One m-line of a server offer (in v2, a receive slot)."""

    mid: str
    kind: str
    direction: str
    rejected: bool

    @property
    def sending(self) -> bool:
        """True when the server sends on this line (an audio or video slot)."""
        return (
            not self.rejected
            and self.kind in ("audio", "video")
            and self.direction in ("sendonly", "sendrecv")
        )


def parse_server_lines(sdp: str) -> list[ServerLine]:
    """The m-lines of ``sdp`` that have a mid, in order."""
    lines: list[ServerLine] = []
    current: dict[str, Any] | None = None

    def close() -> None:
        if current is not None and current["mid"] is not None:
            lines.append(ServerLine(**current))

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
            }
        elif current is None:
            continue
        elif line.startswith("a=mid:"):
            current["mid"] = line[6:].strip()
        elif line in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"):
            current["direction"] = line[2:]
    close()
    return lines


def slot_lines(sdp: str) -> dict[str, str]:
    """mid -> kind of every line of a server offer on which the server sends (its slots)."""
    return {line.mid: line.kind for line in parse_server_lines(sdp) if line.sending}


def _media_mids(sdp: str) -> list[str]:
    """The mids of the audio and video sections of ``sdp``, in order."""
    return [line.mid for line in parse_server_lines(sdp) if line.kind in ("audio", "video")]


# ------------------------------------------------------------------------------ negotiation


@dataclass
class LocalTrack:
    track: MediaStreamTrack
    transceiver: RTCRtpTransceiver
    source: str | None


Request = Callable[..., Awaitable[dict[str, Any]]]


class Negotiation:
    """The peer connection and the offer/answer exchanges of one client.

    ``request(message, replies, on_reply=...)`` sends a request and returns its reply;
    ``send(message)`` sends a frame; ``spawn(coro, name)`` runs a supervised task;
    ``server_offer_applied(pc, sdp)`` is called once a server offer is set as the remote
    description (before our answer is sent); ``active()`` says whether the client still wants
    to negotiate (not closed, not left).
    """

    def __init__(
        self,
        *,
        request: Request,
        send: Callable[[dict[str, Any]], Awaitable[None]],
        next_id: Callable[[], int],
        spawn: Callable[[Awaitable[Any], str], object],
        server_offer_applied: Callable[[RTCPeerConnection, str], None],
        active: Callable[[], bool],
        request_timeout: float,
    ) -> None:
        self._request = request
        self._send = send
        self._next_id = next_id
        self._spawn = spawn
        self._server_offer_applied = server_offer_applied
        self._active = active
        self.request_timeout = request_timeout
        self.ice_servers: list[RTCIceServer] | None = None
        self.pc: RTCPeerConnection | None = None
        self.lock = asyncio.Lock()
        self.offers_sent = 0
        self.offer_in_flight = False
        self.server_offers = 0
        self.negotiated = False
        self.local: dict[str, LocalTrack] = {}  # aiortc track id -> what we publish
        self._placeholder: RTCRtpTransceiver | None = None
        self.closed = False  # set by the client when it closes

    def rtc_configuration(self) -> RTCConfiguration:
        return RTCConfiguration(
            iceServers=list(self.ice_servers or []), bundlePolicy=RTCBundlePolicy.MAX_BUNDLE
        )

    def start(self) -> None:
        """Create the peer connection (once)."""
        if self.pc is None:
            self.pc = RTCPeerConnection(self.rtc_configuration())

    def require_pc(self) -> RTCPeerConnection:
        if self.closed:
            raise ClientError("invalid_state", "the client is closed")
        if self.pc is None:
            raise ClientError("invalid_state", "call connect() first")
        return self.pc

    def source_of(self, track: MediaStreamTrack) -> str | None:
        """The source of our published ``track`` (its default by kind when none was given);
        None when ``track`` is not published."""
        local = self.local.get(track.id)
        if local is None:
            return None
        return local.source or ("microphone" if track.kind == "audio" else "camera")

    async def close(self) -> None:
        if self.pc is not None:
            try:
                async with asyncio.timeout(10.0):
                    await self.pc.close()
            except Exception as exc:
                log.warning("closing the peer connection failed: %r", exc)

    # ------------------------------------------------------------------ our offers

    async def publish(
        self, tracks: Sequence[MediaStreamTrack], sources: Sequence[str] | None
    ) -> None:
        pc = self.require_pc()
        async with self.lock:
            added: list[LocalTrack] = []
            for i, track in enumerate(tracks):
                if track.id in self.local:
                    raise ValueError(f"track {track.id} is published already")
                transceiver = pc.addTransceiver(track, direction="sendonly")
                local = LocalTrack(track, transceiver, sources[i] if sources else None)
                self.local[track.id] = local
                added.append(local)
            if not self.negotiated and not self.local and self._placeholder is None:
                self._placeholder = pc.addTransceiver("audio", direction="recvonly")
            try:
                await self._offer()
            except BaseException:
                for local in added:
                    self.local.pop(local.track.id, None)
                    local.transceiver.sender.replaceTrack(None)  # the caller's track lives on
                await self._forget_offer([local.transceiver for local in added])
                raise

    async def unpublish(self, track: MediaStreamTrack) -> None:
        self.require_pc()
        async with self.lock:
            local = self.local.pop(track.id, None)
            if local is None:
                raise ValueError(f"track {track.id} is not published")
            local.transceiver.sender.replaceTrack(None)
            local.transceiver.direction = "inactive"
            try:
                await self._offer()
            except BaseException:
                # Not applied by the server (nor by us): we still publish it.
                local.transceiver.direction = "sendonly"
                local.transceiver.sender.replaceTrack(local.track)
                self.local[track.id] = local
                raise

    async def _offer(self) -> None:
        """One offer/answer round trip of ours; the caller holds :attr:`lock`."""
        pc = self.require_pc()
        offer = await pc.createOffer()
        first = not self.negotiated
        if first:
            # The first offer must carry our candidates (non-trickle): gather them now.
            await pc.setLocalDescription(offer)
            sdp = pc.localDescription.sdp
            mids = {
                local.track.id: str(local.transceiver.mid)
                for local in self.local.values()
                if local.transceiver.mid is not None
            }
        else:
            sdp = offer.sdp
            mids = self._offered_mids(pc, sdp)
        sources: dict[str, str] = {}
        for local in self.local.values():
            mid = mids.get(local.track.id)
            if mid is not None and local.source is not None:
                sources[mid] = local.source
        message: dict[str, Any] = {"type": "offer", "sdp": sdp}
        if sources:
            message["sources"] = sources
        self.offers_sent += 1
        self.offer_in_flight = True
        try:
            reply = await self._request(message, {"answer"}, on_reply=self._offer_answered)
        finally:
            self.offer_in_flight = False
        answer = reply.get("sdp")
        if not isinstance(answer, str):
            raise ClientError("bad_message", "the answer has no sdp")
        if not first:
            await pc.setLocalDescription(offer)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        self.negotiated = True

    def _offer_answered(self, reply: dict[str, Any]) -> None:
        # In the reader, before the frames that follow the answer (a server offer may follow
        # at once: it must not be taken for glare).
        self.offer_in_flight = False

    def _offered_mids(self, pc: RTCPeerConnection, sdp: str) -> dict[str, str]:
        """aiortc track id -> mid in an offer not applied yet: transceivers that have a mid
        keep it; the new ones take the offer's new mids in order (aiortc appends them so)."""
        known = {str(t.mid) for t in pc.getTransceivers() if t.mid is not None}
        new_mids = iter(mid for mid in _media_mids(sdp) if mid not in known)
        new_mid: dict[int, str] = {}
        for t in pc.getTransceivers():
            if t.mid is None and not t.stopped:
                mid = next(new_mids, None)
                if mid is not None:
                    new_mid[id(t)] = mid
        out: dict[str, str] = {}
        for local in self.local.values():
            t = local.transceiver
            mid = str(t.mid) if t.mid is not None else new_mid.get(id(t))
            if mid is not None:
                out[local.track.id] = mid
        return out

    async def _forget_offer(self, added: list[RTCRtpTransceiver]) -> None:
        """Our offer was refused (or never answered): the server did not apply it, so forget
        it (see the module's doc)."""
        pc = self.pc
        if pc is None or self.closed:
            return
        if not self.negotiated:
            self.pc = RTCPeerConnection(self.rtc_configuration())
            self._placeholder = None
            try:
                async with asyncio.timeout(5.0):
                    await pc.close()
            except Exception as exc:
                log.warning("closing the replaced peer connection failed: %r", exc)
            return
        for transceiver in added:
            if transceiver.mid is None:
                try:
                    async with asyncio.timeout(5.0):
                        await transceiver.stop()
                except Exception as exc:
                    log.warning("stopping a refused transceiver failed: %r", exc)

    # ------------------------------------------------------------------ server offers

    def on_server_offer(self, sdp: str) -> None:
        if not self._active():
            return
        if self.offer_in_flight:
            # Glare: the server yields and sends a fresh offer after answering ours.
            log.debug("server offer ignored: ours is in flight")
            return
        self.server_offers += 1
        self._spawn(
            self._answer_server_offer(sdp, self.offers_sent, self.server_offers),
            "visio-client-answer",
        )

    async def _answer_server_offer(self, sdp: str, offers_sent: int, number: int) -> None:
        async with self.lock:
            if self.offers_sent != offers_sent:
                log.debug("server offer dropped: an offer of ours crossed it")
                return
            if self.server_offers != number:
                log.debug("server offer dropped: a newer one arrived")
                return
            pc = self.pc
            if pc is None or not self._active():
                return
            try:
                async with asyncio.timeout(self.request_timeout):
                    await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
                    self._server_offer_applied(pc, sdp)
                    answer = await pc.createAnswer()
                    await pc.setLocalDescription(answer)
                    # With an id, so that an error about it comes back with a ref (reported as
                    # a ServerError event rather than taken for another request's reply).
                    await self._send(
                        {"type": "answer", "sdp": pc.localDescription.sdp, "id": self._next_id()}
                    )
            except Exception:
                if not self._active() or pc is not self.pc:
                    log.debug("server offer abandoned: the client is closing", exc_info=True)
                    return
                raise
            self.negotiated = True
