"""A newcomer learns who is speaking at once: `active_speaker` is only sent when the list
changes, so without this a participant joining a steady conversation never knew the speaker."""

from __future__ import annotations

import pytest

from signalling.live_server import MediaClient, RawSocket, live_server, token, wait_until

pytestmark = [pytest.mark.asyncio(loop_scope="function"), pytest.mark.timeout(60)]


async def test_a_newcomer_gets_the_current_speakers_right_after_the_participant_list() -> None:
    async with live_server() as server:
        speaker = MediaClient(server.ws_url, "speaker", audio_hz=440.0)
        listener = MediaClient(server.ws_url, "listener")
        sock: RawSocket | None = None
        try:
            await listener.start_receiving()
            await speaker.start()
            speaking: list[list[str]] = []
            listener.client.on(
                "active_speaker", lambda e: speaking.append(list(e.identities))
            )
            await wait_until(
                lambda: speaking and speaking[-1] == ["speaker"], 15, what="a speaker"
            )
            sock = await RawSocket.open(server.ws_url)
            await sock.send({"type": "join", "token": token("late"), "id": "j"})
            joined = await sock.recv(within=10)
            assert joined["type"] == "joined", joined
            nxt = await sock.recv(within=5)
            assert nxt == {"type": "active_speaker", "identities": ["speaker"]}, nxt
        finally:
            if sock is not None:
                await sock.close()
            await speaker.close()
            await listener.close()
