"""The real visio-media server, in-process (aiohttp AppRunner on 127.0.0.1, port 0) or as a
subprocess, with a known token secret so that tests can mint tokens; plus small helpers shared by
tests/signalling and tests/client (SDK clients with media, raw WebSocket frames, the admin API).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from helpers.media import PatternVideoTrack, SineAudioTrack, TrackReceiver
from helpers.peers import wait_until
from visio_media.auth import Grants, mint_token
from visio_media.client import Client, TrackReceived
from visio_media.config import Config, load_config
from visio_media.server import create_app, start_listener

log = logging.getLogger(__name__)

# A fresh random key per test session: long and random enough for any mode.
SECRET = secrets.token_urlsafe(48)
ADMIN_GRANTS = Grants(
    join=False, publish=False, subscribe=False, publish_sources=(), room_admin=True
)


def make_config(**overrides: object) -> Config:
    """A dev-mode config on 127.0.0.1, any free port, one shard, the known ``SECRET``.

    ``overrides`` are dotted keys written with ``__`` for the dot:
    ``room__reconnect_grace_seconds=2``.
    """
    values: dict[str, object] = {
        "server.host": "127.0.0.1",
        "server.port": 0,
        "media.shards": 1,
        "media.bind_ip": "127.0.0.1",
        "auth.secret": SECRET,
    }
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    return load_config(None, env={}, dev=True, overrides=values)


def token(
    identity: str,
    room: str = "r1",
    *,
    secret: str = SECRET,
    grants: Grants | None = None,
    **kwargs: Any,
) -> str:
    return mint_token(secret, identity=identity, room=room, grants=grants or Grants(), **kwargs)


def admin_token(secret: str = SECRET) -> str:
    return mint_token(secret, identity="test-admin", room="*", grants=ADMIN_GRANTS)


@dataclass
class LiveServer:
    """A running server: ``ws_url`` for clients, ``http_url`` for HTTP, ``app`` to look inside."""

    config: Config
    app: web.Application
    runner: web.AppRunner
    host: str
    port: int
    http: aiohttp.ClientSession = field(default_factory=aiohttp.ClientSession)

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {admin_token(self.config.auth.secret)}"}
        async with asyncio.timeout(10):
            async with self.http.request(
                method, self.http_url + path, json=body, headers=headers
            ) as r:
                return r.status, await r.json()

    async def rooms(self) -> dict[str, Any]:
        """``GET /admin/rooms`` as {room name: room info}."""
        status, body = await self.admin("GET", "/admin/rooms")
        assert status == 200, (status, body)
        return {room["name"]: room for room in body["rooms"]}

    def app_rooms(self) -> set[str]:
        """The names of the rooms the server holds now (read in-process, no HTTP)."""
        from visio_media.server import STATE

        return set(self.app[STATE].rooms.rooms)

    def app_engine_stats(self) -> dict[str, Any]:
        """The engine's own counters, read in-process."""
        from visio_media.server import STATE

        return self.app[STATE].engine.stats_snapshot()

    def app_config_host(self, host: str) -> None:
        """Makes the server believe it listens on ``host`` (for listener-dependent policy)."""
        import dataclasses

        from visio_media.server import STATE

        state = self.app[STATE]
        server = dataclasses.replace(state.config.server, host=host)
        state.config = dataclasses.replace(state.config, server=server)

    async def close(self) -> None:
        await self.http.close()
        await self.runner.cleanup()


@contextlib.asynccontextmanager
async def live_server(**overrides: object) -> AsyncIterator[LiveServer]:
    config = make_config(**overrides)
    app = create_app(config)
    runner = await start_listener(app, "127.0.0.1", 0)
    host, port = runner.addresses[0][:2]
    server = LiveServer(config, app, runner, host, port)
    try:
        yield server
    finally:
        await server.close()


# ----------------------------------------------------------------------------- SDK + media


class MediaClient:
    """An SDK client that publishes a sine (``audio_hz``) and/or video, and consumes every
    receive slot's track with a :class:`TrackReceiver` (``slot_receivers``, by mid);
    ``receivers`` maps (identity, kind) to the receiver of the slot that carries that
    participant's track now."""

    def __init__(
        self,
        url: str,
        identity: str,
        room: str = "r1",
        *,
        audio_hz: float | None = None,
        video: bool = False,
        tok: str | None = None,
        **client_kwargs: Any,
    ) -> None:
        self.identity = identity
        self.client = Client(url, tok or token(identity, room), **client_kwargs)
        self.audio = SineAudioTrack(audio_hz) if audio_hz is not None else None
        self.video = PatternVideoTrack(width=320, height=240, fps=15.0, seed=len(identity))
        self.send_video = video
        self.slot_receivers: dict[str, TrackReceiver] = {}
        self.all_receivers: list[TrackReceiver] = []
        self.client.on(TrackReceived, self._on_track)

    def _on_track(self, event: TrackReceived) -> None:
        key = (f"slot {event.mid}", event.kind)
        receiver = TrackReceiver(event.track, key, mid=event.mid).start()
        self.slot_receivers[event.mid] = receiver
        self.all_receivers.append(receiver)

    @property
    def receivers(self) -> dict[tuple[str, str], TrackReceiver]:
        """(identity, kind) -> the receiver of the slot that carries that track now."""
        out: dict[tuple[str, str], TrackReceiver] = {}
        for receiver in self.slot_receivers.values():
            identity = getattr(receiver.track, "identity", None)
            if identity is not None and not receiver.ended:
                out[(identity, receiver.kind)] = receiver
        return out

    @property
    def local_tracks(self) -> list[Any]:
        out: list[Any] = []
        if self.audio is not None:
            out.append(self.audio)
        if self.send_video:
            out.append(self.video)
        return out

    async def start(self) -> MediaClient:
        """Connect and publish in one offer (a late joiner's first offer subscribes it to the
        tracks already in the room)."""
        await self.client.connect()
        await self.client.publish(*self.local_tracks)
        return self

    async def start_receiving(self) -> MediaClient:
        """Connect and send a first, receive-only offer (no tracks yet)."""
        await self.client.connect()
        await self.client.publish()
        return self

    async def publish_tracks(self) -> None:
        await self.client.publish(*self.local_tracks)

    async def receiver(self, identity: str, kind: str, within: float = 15.0) -> TrackReceiver:
        await wait_until(
            lambda: (identity, kind) in self.receivers,
            within,
            what=f"{self.identity} receiving {identity}'s {kind}",
        )
        return self.receivers[(identity, kind)]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.close()
        for r in self.all_receivers:
            await r.stop()
        for t in (self.audio, self.video):
            if t is not None:
                t.stop()


async def start_call(*clients: MediaClient, within: float = 15.0) -> None:
    """Bring ``clients`` into a call where everyone receives everyone.

    Each client's first offer is receive-only and sent while the room has no tracks yet; then
    the clients publish one after the other, each waiting until all the others receive its
    tracks. So no client offer ever crosses a server offer: tests built on this are about their
    own subject, not about glare (which has its own test)."""
    for c in clients:
        await c.start_receiving()
    for c in clients:
        await c.publish_tracks()
        for other in clients:
            if other is not c:
                for track in c.local_tracks:
                    await other.receiver(c.identity, track.kind, within=within)


# ----------------------------------------------------------------------------- raw frames


class RawSocket:
    """A bare WebSocket to /ws: send text/binary frames, read JSON frames, see the close."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        self.session = session
        self.ws = ws

    @classmethod
    async def open(cls, url: str) -> RawSocket:
        session = aiohttp.ClientSession()
        try:
            async with asyncio.timeout(10):
                ws = await session.ws_connect(url, max_msg_size=8 * 1024 * 1024)
        except BaseException:
            await session.close()
            raise
        return cls(session, ws)

    async def send(self, message: Any) -> None:
        await self.ws.send_str(message if isinstance(message, str) else json.dumps(message))

    async def recv(self, within: float = 5.0) -> dict[str, Any]:
        """The next JSON frame; AssertionError if the socket closes instead."""
        async with asyncio.timeout(within):
            msg = await self.ws.receive()
        assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data, self.ws.close_code)
        data: dict[str, Any] = json.loads(msg.data)
        return data

    async def recv_type(self, kind: str, within: float = 5.0) -> dict[str, Any]:
        """The next frame of type ``kind``, skipping events of other types."""
        deadline = time.monotonic() + within
        while True:
            frame = await self.recv(max(0.01, deadline - time.monotonic()))
            if frame.get("type") == kind:
                return frame

    async def request(self, message: dict[str, Any], within: float = 5.0) -> dict[str, Any]:
        """Send, then the next frame that is a reply (answer/pong/ok/error/joined)."""
        await self.send(message)
        deadline = time.monotonic() + within
        while True:
            frame = await self.recv(max(0.01, deadline - time.monotonic()))
            if frame.get("type") in ("answer", "pong", "ok", "error", "joined"):
                return frame

    async def wait_closed(self, within: float = 5.0) -> int | None:
        """Read until the server closes; the close code."""
        async with asyncio.timeout(within):
            while True:
                msg = await self.ws.receive()
                if msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.ERROR,
                ):
                    return self.ws.close_code

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        await self.session.close()
