"""The Python client SDK: join a visio-media room over the signalling WebSocket, publish and
receive media with aiortc. Used by the tests, and by users for bots and recorders.

Needs the ``client`` extra (``pip install 'visio-media[client]'``): aiortc. The server itself
never imports this package.

```python
client = Client("ws://127.0.0.1:7880/ws", token)
await client.connect()
await client.publish(microphone_track, camera_track)      # sources default by kind
async for event in client.events:
    if isinstance(event, TrackReceived):
        ...  # event.track is a MediaStreamTrack: `await event.track.recv()`
await client.leave()
```

Protocol: docs/protocol.md. One ``RTCPeerConnection`` per client, max-bundle, non-trickle (aiortc
gathers its candidates in ``setLocalDescription``). Negotiation is serialised: at most one offer
of ours is in flight, and a server ``offer`` that crosses ours (glare) is ignored — the server
yields, answers ours, then sends a fresh offer.

A client that only receives calls ``await client.publish()`` with no tracks (or ``subscribe``):
the server creates the media session on the client's first offer, so one must be sent; with
nothing to send it carries a single ``recvonly`` audio line, which the server answers
``inactive``.

Remote tracks are :class:`RemoteTrack` objects (aiortc ``MediaStreamTrack``) mapped to their
publisher through the server offer's ``a=msid:<identity> track-<id>``. They end (``recv()`` raises
``MediaStreamError``) when the publisher unpublishes or leaves, when the server stops sending them,
and when the client closes.

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
    TrackMuted,
    TrackPublished,
    TrackReceived,
    TrackRemoved,
    TrackUnpublished,
)
from visio_media.client.negotiation import parse_server_msids
from visio_media.client.remote_track import RemoteTrack
from visio_media.client.state import Participant, TrackInfo

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
    "TrackInfo",
    "TrackMuted",
    "TrackPublished",
    "TrackReceived",
    "TrackRemoved",
    "TrackUnpublished",
    "parse_server_msids",
]
