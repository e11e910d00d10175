"""A crowd of cheap participants for rooms of tens: load-generator media clients
(`visio_media._native.LoadGen`, real ICE/DTLS/SRTP in Rust) that join a room over the real
signalling protocol, each with one WebSocket, publish quiet audio (RFC 6464 level -127) and
answer the server's offer of receive slots. They sit in the same room as SDK clients, so the
server has to choose among many audio tracks; what their `slots` frames say is kept per member.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from visio_media._native import LoadGen
from visio_media.auth import mint_token
from visio_media.load.slots import SlotBook

log = logging.getLogger(__name__)


@dataclass
class CrowdMember:
    identity: str
    client_id: int | None = None
    ws: aiohttp.ClientWebSocketResponse | None = None
    slots: SlotBook = field(default_factory=SlotBook)
    # Every `slots` frame's slots as (mid, kind, identity), in order (for checks over time).
    slot_frames: list[list[tuple[str, str, str | None]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    server_offers: int = 0


class QuietCrowd:
    """``count`` participants named ``<prefix>00``... in ``room``, each publishing one quiet
    audio track and asking for ``audio_slots`` / ``video_slots``."""

    def __init__(
        self,
        url: str,
        secret: str,
        room: str,
        count: int,
        *,
        prefix: str = "quiet",
        audio_slots: int = 3,
        video_slots: int = 0,
    ) -> None:
        self.url = url
        self.secret = secret
        self.room = room
        self.audio_slots = audio_slots
        self.video_slots = video_slots
        self.members = [CrowdMember(f"{prefix}{i:02d}") for i in range(count)]
        self.gen = LoadGen(threads=1, bind_ip="127.0.0.1")
        self.session: aiohttp.ClientSession | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.failures: list[str] = []
        self._closing = False

    async def start(self, *, concurrency: int = 8, within: float = 30.0) -> QuietCrowd:
        """Joins everyone (``concurrency`` at a time); each has answered its publish offer when
        this returns."""
        self.gen.start()
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        gate = asyncio.Semaphore(concurrency)

        async def join(m: CrowdMember) -> None:
            async with gate:
                await self._join(m)
            self.tasks.append(asyncio.create_task(self._serve(m), name=f"crowd {m.identity}"))

        async with asyncio.timeout(within):
            await asyncio.gather(*(join(m) for m in self.members))
        return self

    async def _next(self, m: CrowdMember, kind: str) -> dict[str, Any]:
        assert m.ws is not None
        while True:
            msg = await m.ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"{m.identity}: socket closed ({m.ws.close_code})")
            data = json.loads(msg.data)
            if data.get("type") == kind:
                return dict(data)
            if data.get("type") == "error":
                raise AssertionError(f"{m.identity}: {data}")
            self._on_frame(m, data)

    async def _join(self, m: CrowdMember) -> None:
        assert self.session is not None
        m.ws = await self.session.ws_connect(self.url, heartbeat=None, max_msg_size=1 << 22)
        token = mint_token(self.secret, identity=m.identity, room=self.room)
        await m.ws.send_json(
            {
                "type": "join",
                "token": token,
                "audio_slots": self.audio_slots,
                "video_slots": self.video_slots,
            }
        )
        await self._next(m, "joined")
        m.client_id, offer = self.gen.add_client(audio=True, video=False, audio_loud=False)
        await m.ws.send_json({"type": "offer", "sdp": offer})
        answer = await self._next(m, "answer")
        self.gen.apply_answer(m.client_id, answer["sdp"])

    def _on_frame(self, m: CrowdMember, data: dict[str, Any]) -> None:
        if data.get("type") == "slots":
            if not m.slots.apply(data, time.monotonic_ns()):
                m.errors.append(f"bad slots frame {data}")
            m.slot_frames.append(
                [(s["mid"], s["kind"], s["identity"]) for s in data.get("slots", [])]
            )
        elif data.get("type") == "error":
            m.errors.append(f"error {data}")

    async def _serve(self, m: CrowdMember) -> None:
        """Answers the server's offers and records `slots` frames until the socket closes."""
        assert m.ws is not None and m.client_id is not None
        try:
            async for msg in m.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(msg.data)
                if data.get("type") == "offer":
                    answer = self.gen.apply_offer(m.client_id, data["sdp"])
                    m.server_offers += 1
                    await m.ws.send_json({"type": "answer", "sdp": answer})
                else:
                    self._on_frame(m, data)
            if not self._closing:
                self.failures.append(f"{m.identity}: socket closed ({m.ws.close_code})")
        except asyncio.CancelledError:
            raise
        except Exception as e:  # recorded, the test reports it
            log.exception("crowd member %s failed", m.identity)
            self.failures.append(f"{m.identity}: {e!r}")

    def connected(self) -> int:
        """How many members have ICE and DTLS up (the generator's view)."""
        clients = self.gen.stats()["clients"]
        return sum(1 for m in self.members if clients.get(m.client_id, {}).get("connected"))

    def received_rtp(self) -> dict[str, int]:
        """Identity -> RTP packets its media client received."""
        clients = self.gen.stats()["clients"]
        return {m.identity: clients.get(m.client_id, {}).get("recv_rtp", 0) for m in self.members}

    async def close(self) -> None:
        self._closing = True
        for m in self.members:
            if m.ws is not None and not m.ws.closed:
                with contextlib.suppress(aiohttp.ClientError, ConnectionError):
                    await m.ws.send_json({"type": "leave"})
                await m.ws.close()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()
        self.gen.stop()
