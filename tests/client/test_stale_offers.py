"""A server offer made before a track went away, answered after the client heard it went away,
must not bring the track back (seen as a flaky `remote_tracks` in the reconnect tests once
server lines turned inactive instead of stopped: the line of a departed publisher can still
say `sendonly` in an offer that was already on its way)."""

from __future__ import annotations

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from helpers.media import SineAudioTrack
from visio_media.client import Client

pytestmark = [pytest.mark.timeout(60)]


async def _server_like_offer(msid: str) -> str:
    """An offer with one sendonly audio line naming ``msid``, as the server writes it."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sine = SineAudioTrack(440)
    try:
        pc.addTransceiver(sine, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        lines = [
            f"a=msid:{msid}" if line.startswith("a=msid:") else line
            for line in pc.localDescription.sdp.split("\r\n")
        ]
        return "\r\n".join(lines)
    finally:
        await pc.close()
        sine.stop()


@pytest.mark.parametrize("gone", [False, True], ids=["live", "gone"])
async def test_a_stale_offer_does_not_revive_a_track_the_server_said_is_gone(gone: bool) -> None:
    sdp = await _server_like_offer("alice track-7")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    client = Client("ws://127.0.0.1:9/ws", "unused-token")
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        if gone:
            client._end_remote("alice", 7)  # what track_unpublished does
        client._update_remote_tracks(pc, sdp)
        expected = set() if gone else {("alice", 7)}
        assert set(client.remote_tracks) == expected
    finally:
        await pc.close()
