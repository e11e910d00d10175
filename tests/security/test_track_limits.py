"""One participant cannot cut the others off, and history does not either (issue 6, defects 2, 3).

* Defect 3: a 48 KB offer with 500 m-lines made 500 tracks; every other participant got a
  ~500 KB offer and was closed with 1009. Tracks per participant and per room are now limited
  (``too_many_tracks``), and the others never notice.
* Defect 2: every publisher who came and went left a stopped m-line in everyone's SDP; after
  ~27 of them a long-lived participant's answer passed the 64 KiB frame limit (1009). Lines are
  now reused: the SDP holds what is received at once, not the room's history — and a reused
  line carries the right publisher's sound to the right place.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from helpers.media import SineAudioTrack, dominant_frequencies
from helpers.peers import wait_until
from signalling.live_server import LiveServer, MediaClient, RawSocket, live_server, token
from visio_media.server import STATE

pytestmark = pytest.mark.asyncio(loop_scope="function")


async def _audio_offer(sections: int) -> str:
    """A real aiortc offer with ``sections`` send-only audio m-lines."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    tracks = [SineAudioTrack(440) for _ in range(sections)]
    try:
        for t in tracks:
            pc.addTransceiver(t, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp
    finally:
        await pc.close()
        for t in tracks:
            t.stop()


def _many_sections(sdp: str, copies: int) -> str:
    """``copies`` minimal send-only audio sections under the ICE and DTLS parameters of a real
    offer: the ~50 KB, 500-line offer of the attack, made without 500 transceivers."""
    head = sdp.split("m=", 1)[0]
    keep = ("a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:", "a=setup:")
    session = [line for line in sdp.split("\r\n") if line.startswith(keep)]
    head = re.sub(r"a=group:BUNDLE .*\r\n", "", head)
    bundle = "a=group:BUNDLE " + " ".join(map(str, range(copies))) + "\r\n"
    sections = "".join(
        f"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:{i}\r\n"
        "a=sendonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
        for i in range(copies)
    )
    return head + bundle + "".join(f"{line}\r\n" for line in dict.fromkeys(session)) + sections


def _server_tracks(server: LiveServer) -> int:
    return sum(
        len(p.tracks) for r in server.app[STATE].rooms.rooms.values()
        for p in r.participants.values()
    )


def _present(server: LiveServer, identity: str) -> bool:
    """Still in room r1 with its signalling link (not cut off, not in a reconnect grace)."""
    room = server.app[STATE].rooms.rooms.get("r1")
    p = room.participants.get(identity) if room is not None else None
    return p is not None and p.present


async def test_an_offer_of_500_lines_is_refused_and_nobody_else_is_cut_off() -> None:
    async with live_server() as server:
        bystanders = [MediaClient(server.ws_url, f"b{i}") for i in range(2)]
        speaker = MediaClient(server.ws_url, "speaker", audio_hz=660)
        mallory = await RawSocket.open(server.ws_url)
        try:
            for b in bystanders:
                await b.start_receiving()
            joined = await mallory.request({"type": "join", "token": token("mallory")})
            assert joined["type"] == "joined", joined
            forged = _many_sections(await _audio_offer(1), 500)
            assert len(forged) < 64 * 1024, len(forged)
            reply = await mallory.request({"type": "offer", "sdp": forged}, within=20)
            assert reply["type"] == "error" and reply["code"] == "too_many_tracks", reply
            assert "at most" in reply["message"]
            # Nothing was created, and the others are still here and can still take part.
            await asyncio.sleep(1.0)
            assert _server_tracks(server) == 0
            for b in bystanders:
                assert _present(server, b.identity), f"{b.identity} was cut off"
            await speaker.start()
            for b in bystanders:
                audio = await b.receiver("speaker", "audio")
                assert await audio.wait_frames(50, 20.0), audio.describe()
                peak = dominant_frequencies(audio.recent_audio(0.5), audio.sample_rate)[0]
                assert abs(peak - 660) <= 5.0, peak
            # Five sending lines from one participant: past the per-participant default (4).
            reply = await mallory.request(
                {"type": "offer", "sdp": await _audio_offer(5)}, within=20
            )
            assert reply["type"] == "error" and reply["code"] == "too_many_tracks", reply
        finally:
            await mallory.close()
            for c in [*bystanders, speaker]:
                await c.close()


async def test_the_room_track_limit_refuses_the_offer_that_would_pass_it() -> None:
    async with live_server(room__max_tracks_per_room=4) as server:
        sockets: list[RawSocket] = []
        try:
            replies: list[dict[str, Any]] = []
            for i in range(3):
                ws = await RawSocket.open(server.ws_url)
                sockets.append(ws)
                assert (await ws.request({"type": "join", "token": token(f"p{i}")}))[
                    "type"
                ] == "joined"
                replies.append(
                    await ws.request({"type": "offer", "sdp": await _audio_offer(2)}, within=20)
                )
            assert [r["type"] for r in replies] == ["answer", "answer", "error"], replies
            assert replies[2]["code"] == "too_many_tracks"
            assert "at most 4 tracks" in replies[2]["message"]
            reply = await sockets[2].request(
                {"type": "offer", "sdp": await _audio_offer(1)}, within=20
            )
            assert reply["type"] == "error", "4 + 1 is still past the limit"
            # A participant leaving gives its tracks back: the offer passes now.
            await sockets[0].send({"type": "leave"})
            assert await sockets[0].wait_closed() == 1000
            reply = await sockets[2].request(
                {"type": "offer", "sdp": await _audio_offer(2)}, within=20
            )
            assert reply["type"] == "answer", reply
        finally:
            for ws in sockets:
                await ws.close()


async def test_a_long_lived_participant_survives_publishers_coming_and_going() -> None:
    """12 publishers, 4 at a time, come and go; the listener there from the start stays
    connected, its SDP stays its own line plus its four audio slots (stopped lines used to pile
    up: 12 here, and a 1009 past ~55), and it hears the last round's four sines on the slots the
    server says carry them. The engine's own tests cover rooms and histories in virtual time."""
    async with live_server() as server:
        listener = MediaClient(server.ws_url, "listener", audio_slots=4, video_slots=0)
        rounds, per_round = 3, 4
        try:
            await listener.start_receiving()
            for r in range(rounds):
                hz = {f"p{r}-{i}": 300.0 + 90.0 * i for i in range(per_round)}
                publishers = [
                    MediaClient(server.ws_url, name, audio_hz=f) for name, f in hz.items()
                ]
                try:
                    for p in publishers:
                        await p.start()
                    for p in publishers:
                        await listener.receiver(p.identity, "audio", within=20)
                    if r == rounds - 1:
                        # The last round plays on lines that earlier publishers had: each sine
                        # must come out of the track the server says is its publisher's.
                        for name in hz:
                            audio = listener.receivers[(name, "audio")]
                            assert await audio.wait_frames(60, 20.0), audio.describe()
                        await asyncio.sleep(1.0)
                        for name, f in hz.items():
                            audio = listener.receivers[(name, "audio")]
                            peak = dominant_frequencies(audio.recent_audio(0.5), audio.sample_rate)
                            assert abs(peak[0] - f) <= 5.0, (name, f, peak)
                finally:
                    for p in publishers:
                        await p.close()
                if r < rounds - 1:
                    await wait_until(
                        lambda: not listener.client.remote_tracks,
                        20,
                        what="the listener's tracks of the round to end",
                    )
            assert _present(server, "listener"), "the listener was cut off"
            pc = listener.client.pc
            assert pc is not None
            sdp = pc.remoteDescription.sdp
            lines = sdp.count("\nm=")
            # Its own line (receive-only offer) + its four audio slots, whatever came and went.
            assert lines == 1 + per_round, f"{lines} m-lines after {rounds * per_round} publishers"
            assert len(sdp) < 16 * 1024, len(sdp)
        finally:
            await listener.close()
