"""The SDK's own behaviour against the real server: refusals as exceptions, requests and
replies, the event stream and callbacks, idempotent close, misuse errors."""

from __future__ import annotations

import asyncio

import pytest

from signalling.live_server import LiveServer, MediaClient, token
from visio_media.auth import Grants
from visio_media.client import (
    Client,
    ClientError,
    Event,
    Left,
    ParticipantJoined,
    ParticipantLeft,
)

pytestmark = [pytest.mark.timeout(60)]  # async tests: asyncio_mode = "auto"


async def test_refused_connect_raises_and_leaves_nothing_open(server: LiveServer) -> None:
    client = Client(server.ws_url, token("mallory", grants=Grants(join=False)))
    with pytest.raises(ClientError) as refused:
        await client.connect()
    assert refused.value.code == "forbidden"
    assert not client.connected and client.session is None and client.pc is None
    bad = Client(server.ws_url, "not-a-token")
    with pytest.raises(ClientError) as refused:
        await bad.connect()
    assert refused.value.code == "unauthorized"
    await client.close()
    await bad.close()
    assert (await server.rooms()).get("r1", {"participants": []})["participants"] == []


async def test_requests_events_and_callbacks(server: LiveServer) -> None:
    alice = Client(server.ws_url, token("alice"))
    bob = Client(server.ws_url, token("bob"))
    seen_sync: list[Event] = []
    seen_async: list[Event] = []

    async def on_joined(event: ParticipantJoined) -> None:
        await asyncio.sleep(0)
        seen_async.append(event)

    alice.on("participant_joined", on_joined)
    alice.on(ParticipantLeft, seen_sync.append)
    with pytest.raises(ValueError):
        alice.on("no_such_event", seen_sync.append)
    with pytest.raises(ClientError) as early:
        await alice.publish()
    assert early.value.code == "invalid_state"
    try:
        await alice.connect()
        assert alice.identity == "alice" and alice.room == "r1"
        assert isinstance(alice.session, str) and alice.session
        assert alice.participants == {}
        rtt = await alice.ping()
        assert 0 < rtt < 1.0
        with pytest.raises(ClientError) as twice:
            await alice.connect()
        assert twice.value.code == "invalid_state"

        await bob.connect()
        assert set(bob.participants) == {"alice"}
        event = await alice.events.get(timeout=5.0)
        assert isinstance(event, ParticipantJoined) and event.participant.identity == "bob"
        # Server errors are exceptions carrying the protocol code.
        with pytest.raises(ClientError) as unknown:
            await alice.set_muted(12345, True)
        assert unknown.value.code == "not_found"
        # layout: ok, even naming someone not in the room (skipped by the server).
        await alice.set_layout(["bob", ("nobody", "screen_share")], pinned="bob")
        await alice.ping()  # still usable

        await bob.leave()
        left = await alice.wait_for(ParticipantLeft, timeout=5.0)
        assert (left.identity, left.reason) == ("bob", "left")
        assert [type(e) for e in bob.history if isinstance(e, Left)] == [Left]
        await asyncio.sleep(0.1)
        assert [e.participant.identity for e in seen_async] == ["bob"]
        assert seen_sync == [left]
        assert alice.participants == {}
        assert not alice.failures and not bob.failures
    finally:
        await alice.close()
        await alice.close()  # idempotent
        await bob.close()
    # The event stream ends once the client is closed.
    rest = [e async for e in alice.events]
    assert all(isinstance(e, Event) for e in rest)
    with pytest.raises(ClientError):
        await alice.ping()


async def test_replaced_session_gets_left_replaced(server: LiveServer) -> None:
    """A second join with the same identity (no resume) replaces the first connection."""
    first = MediaClient(server.ws_url, "alice", audio_hz=440.0)
    second = MediaClient(server.ws_url, "alice", audio_hz=660.0)
    try:
        await first.start()
        await second.start()
        left = await first.client.wait_for(Left, timeout=5.0)
        assert left.reason == "replaced"
        await second.client.ping()
        rooms = await server.rooms()
        assert [p["identity"] for p in rooms["r1"]["participants"]] == ["alice"]
    finally:
        await first.close()
        await second.close()


async def test_history_and_event_stream_are_bounded() -> None:
    client = Client("ws://127.0.0.1:9/ws", "unused", history_limit=10)
    for i in range(25):
        client._emit(ParticipantLeft(f"p{i}", "left"))
    assert client.event_count == 25
    assert 5 <= len(client.history) <= 10
    assert client.history[-1] == ParticipantLeft("p24", "left")
    assert client.events.dropped == 15
    first = await client.events.get(timeout=1.0)
    assert first == ParticipantLeft("p15", "left")
    # A mark taken now sees only what comes after it; an old mark sees what is still kept.
    mark = client.event_count
    client._emit(ParticipantLeft("late", "left"))
    assert (await client.wait_for(ParticipantLeft, since=mark, timeout=1.0)).identity == "late"
    oldest_kept = client.history[0]
    assert await client.wait_for(ParticipantLeft, timeout=1.0) == oldest_kept
    await client.close()
