"""The Python client SDK: join a visio-media room over the signalling WebSocket, publish and
receive media with aiortc. Used by the tests, and by users for bots and recorders.

Needs the ``client`` extra (``pip install 'visio-media[client]'``): aiortc. The server itself
never imports this package.

```python
client = Client("ws://127.0.0.1:7880/ws", token, video_slots=4, audio_slots=3)
await client.connect()                                    # joined (+ the whole participant list)
await client.publish(microphone_track, camera_track)      # sources default by kind
await client.set_layout([("bob", "camera"), Tile("carol", width=640, height=360)])
async for event in client.events:
    if isinstance(event, TrackReceived):
        ...  # one per receive slot: `await event.track.recv()`
    elif isinstance(event, SlotsChanged):
        ...  # who is in which slot now: event.slots, client.slots
await client.leave()
```

Protocol: docs/protocol.md (v2). One ``RTCPeerConnection`` per client, max-bundle, non-trickle
(aiortc gathers its candidates in ``setLocalDescription``). Negotiation is serialised: at most
one offer of ours is in flight, and a server ``offer`` that crosses ours (glare) is ignored —
the server yields, answers ours, then sends a fresh offer.

A client receives through a fixed set of **receive slots** asked for at ``join``
(``video_slots``, ``audio_slots``; None: the server's default): the server's offer carries one
line per slot, and who is in which slot changes without SDP (``slots`` frames, reported as
:class:`SlotsChanged` and kept in :attr:`Client.slots`). Each slot line has one
:class:`RemoteTrack` (aiortc ``MediaStreamTrack``), the same object for the life of the line,
whose ``identity`` / ``track_id`` / ``source`` follow the slot's current occupant;
:class:`TrackReceived` fires once per slot line. The server picks the occupants (loudest
speakers for audio; pinned, screen shares, the layout's tiles, recent speakers for video):
:meth:`Client.set_layout` says what we show. Our own tracks are never in our slots.

The server creates the media session on the client's first offer, so a client that only
receives calls ``await client.publish()`` with no tracks: with nothing to send it carries a
single ``recvonly`` audio line, which the server answers ``inactive``.

Every network wait is bounded by ``asyncio.timeout``. Server errors raise :class:`ClientError`
with the protocol's error code; a dropped socket raises :class:`ConnectionLost` for the
requests that were waiting on it (the peer connection stays up: call :meth:`Client.resume`).

Modules: ``client`` (:class:`Client`), ``events`` (event classes, :class:`EventStream`),
``remote_track`` (:class:`RemoteTrack`), ``transport`` (the WebSocket, request/reply matching),
``negotiation`` (offer/answer, server m-lines), ``state`` (participants, tracks), ``errors``.
"""

from __future__ import annotations

try:
    import aiortc  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "visio_media.client needs aiortc, which is not installed: "
        "install the 'client' extra, `pip install 'visio-media[client]'`",
        name=exc.name,
    ) from exc

from visio_media.client.client import Client
from visio_media.client.errors import ClientError, ConnectionLost
from visio_media.client.events import (
    ActiveSpeaker,
    ConnectionState,
    Disconnected,
    Draining,
    Event,
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
from visio_media.client.negotiation import parse_server_lines, slot_lines
from visio_media.client.remote_track import RemoteTrack
from visio_media.client.state import Participant, SlotInfo, Tile, TrackInfo

__all__ = [
    "ActiveSpeaker",
    "Client",
    "ClientError",
    "ConnectionLost",
    "ConnectionState",
    "Disconnected",
    "Draining",
    "Event",
    "EventStream",
    "Left",
    "Participant",
    "ParticipantJoined",
    "ParticipantLeft",
    "RemoteTrack",
    "ServerError",
    "ServerMessage",
    "SlotInfo",
    "SlotsChanged",
    "Tile",
    "TrackInfo",
    "TrackMuted",
    "TrackPublished",
    "TrackReceived",
    "TrackRemoved",
    "TrackUnpublished",
    "parse_server_lines",
    "slot_lines",
]
