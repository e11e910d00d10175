"""Publish grants are checked on the engine's own reading of an offer (issue 6, defect 1).

The attack: the grant check used to split SDP with ``str.splitlines()`` (which also breaks on
U+2028, U+2029, VT, FF, FS/GS/RS, NEL) and let the last direction win, while the engine splits
on LF and takes the first. ``a=sendonly`` followed by ``a=x:1<U+2028>a=recvonly`` made the check
see a receive-only line while the engine published it. Here the forged offers come from a real
aiortc peer connection and go through the real server; nothing may be published.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from helpers.media import PatternVideoTrack, SineAudioTrack
from helpers.peers import wait_until
from signalling.live_server import LiveServer, RawSocket, live_server, token
from visio_media.auth import Grants
from visio_media.server import STATE

pytestmark = pytest.mark.asyncio(loop_scope="function")


async def _offer(audio: bool = True, video: bool = False) -> str:
    """A real aiortc offer that sends the requested kinds (its ICE/DTLS parameters are real)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    tracks: list[Any] = []
    try:
        if audio:
            tracks.append(SineAudioTrack(440))
            pc.addTransceiver(tracks[-1], direction="sendonly")
        if video:
            tracks.append(PatternVideoTrack(width=160, height=120, fps=5.0, seed=1))
            pc.addTransceiver(tracks[-1], direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp
    finally:
        await pc.close()
        for t in tracks:
            t.stop()


def _hide_direction(sdp: str, separator: str) -> str:
    """After each ``a=sendonly``: a line that another reader splits into ``a=recvonly``."""
    return sdp.replace("a=sendonly\r\n", f"a=sendonly\r\na=x:1{separator}a=recvonly\r\n")


async def _join(server: LiveServer, identity: str, grants: Grants) -> RawSocket:
    ws = await RawSocket.open(server.ws_url)
    joined = await ws.request({"type": "join", "token": token(identity, grants=grants)})
    assert joined["type"] == "joined", joined
    return ws


async def _published_tracks(server: LiveServer, identity: str) -> list[dict[str, Any]]:
    # Track events travel from the engine asynchronously: give them time to arrive.
    await asyncio.sleep(1.0)
    rooms = await server.rooms()
    for p in rooms["r1"]["participants"]:
        if p["identity"] == identity:
            tracks: list[dict[str, Any]] = p["tracks"]
            return tracks
    raise AssertionError(f"{identity} is not in the room")


SEPARATORS = ["\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\r"]


@pytest.mark.parametrize("separator", SEPARATORS, ids=lambda s: f"U+{ord(s):04X}")
async def test_a_hidden_recvonly_does_not_let_a_token_without_publish_publish(
    separator: str,
) -> None:
    async with live_server() as server:
        ws = await _join(server, "mallory", Grants(publish=False))
        try:
            forged = _hide_direction(await _offer(audio=True, video=True), separator)
            reply = await ws.request({"type": "offer", "sdp": forged}, within=10)
            assert reply["type"] == "error", reply
            assert reply["code"] in ("bad_sdp", "forbidden"), reply
            assert await _published_tracks(server, "mallory") == []
            # The connection stays usable.
            assert (await ws.request({"type": "ping"}))["type"] == "pong"
        finally:
            await ws.close()


async def test_a_microphone_only_token_cannot_smuggle_a_camera() -> None:
    async with live_server() as server:
        ws = await _join(
            server, "mallory", Grants(publish=True, publish_sources=("microphone",))
        )
        try:
            forged = (await _offer(audio=True, video=True)).replace(
                "a=sendonly\r\n", "a=sendonly\r\na=x:1\u2028a=recvonly\r\n"
            )
            reply = await ws.request({"type": "offer", "sdp": forged}, within=10)
            assert reply["type"] == "error", reply
            assert await _published_tracks(server, "mallory") == []
        finally:
            await ws.close()


async def test_two_direction_attributes_in_a_section_are_refused() -> None:
    async with live_server() as server:
        ws = await _join(server, "mallory", Grants(publish=False))
        try:
            forged = (await _offer(audio=True)).replace(
                "a=sendonly\r\n", "a=sendonly\r\na=recvonly\r\n"
            )
            reply = await ws.request({"type": "offer", "sdp": forged}, within=10)
            assert reply == {
                "type": "error",
                "code": "bad_sdp",
                "message": reply["message"],
            }, reply
            assert "two direction attributes" in reply["message"]
            assert await _published_tracks(server, "mallory") == []
        finally:
            await ws.close()


async def test_a_plain_offer_without_publish_grant_is_forbidden_and_an_allowed_one_publishes(
) -> None:
    async with live_server() as server:
        ws = await _join(server, "viewer", Grants(publish=False))
        ok = await _join(server, "speaker", Grants(publish=True, publish_sources=("microphone",)))
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        sine = SineAudioTrack(440)
        try:
            reply = await ws.request({"type": "offer", "sdp": await _offer(audio=True)}, within=10)
            assert reply["type"] == "error" and reply["code"] == "forbidden", reply
            # The same reading lets a granted source through, and it really publishes.
            pc.addTransceiver(sine, direction="sendonly")
            await pc.setLocalDescription(await pc.createOffer())
            reply = await ok.request(
                {"type": "offer", "sdp": pc.localDescription.sdp}, within=10
            )
            assert reply["type"] == "answer", reply
            await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))

            def published() -> list[tuple[str, str]]:
                room = server.app[STATE].rooms.rooms["r1"]
                return [(t.kind, t.source) for t in room.participants["speaker"].tracks.values()]

            await wait_until(lambda: published() == [("audio", "microphone")], 15,
                             what="the speaker's microphone published")
        finally:
            await pc.close()
            sine.stop()
            await ws.close()
            await ok.close()
