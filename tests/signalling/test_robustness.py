"""A client must not be able to wedge its own media session or leak server state, and admin
actions must not race joins into orphaned participants. Raw frames against the real server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from helpers.peers import TestPeer
from signalling.live_server import RawSocket, live_server, token, wait_until
from visio_media.server import STATE

pytestmark = [pytest.mark.asyncio(loop_scope="function"), pytest.mark.timeout(60)]


async def joined_with_media(url: str, peer: TestPeer) -> RawSocket:
    sock = await RawSocket.open(url)
    reply = await sock.request({"type": "join", "token": token(peer.name)})
    assert reply["type"] == "joined", reply
    reply = await sock.request({"type": "offer", "sdp": await peer.make_offer()})
    assert reply["type"] == "answer", reply
    await peer.accept_answer(reply["sdp"])
    return sock


async def test_a_garbage_answer_gets_bad_sdp_and_a_fresh_offer_follows() -> None:
    async with live_server() as server:
        alice, bob = TestPeer("alice", video=True), TestPeer("bob", audio_hz=440.0)
        socks: list[RawSocket] = []
        try:
            socks.append(await joined_with_media(server.ws_url, alice))
            socks.append(b := await joined_with_media(server.ws_url, bob))
            await b.recv_type("offer", within=10)
            await b.send({"type": "answer", "sdp": "garbage", "id": "bad"})
            # The answer is refused, and the refused offer is made again (in either order).
            frames: dict[str, dict[str, Any]] = {}
            while not {"error", "offer"} <= frames.keys():
                frame = await b.recv(within=5)
                frames.setdefault(frame["type"], frame)
            assert frames["error"]["code"] == "bad_sdp", frames["error"]
            offer = frames["offer"]
            await b.send({"type": "answer", "sdp": await bob.answer_offer(offer["sdp"])})
            # Protocol v2: who each receive slot carries comes in `slots` frames.
            async with asyncio.timeout(10):
                while bob.receiver("alice", "video") is None:
                    frame = await b.recv_type("slots", within=10)
                    for slot in frame["slots"]:
                        who = slot["identity"]
                        bob.set_slot(slot["mid"], (who, slot["kind"]) if who else None)
            receiver = bob.receiver("alice", "video")
            assert receiver is not None
            assert await receiver.wait_frames(5, 10.0), receiver.describe()
            assert await b.request({"type": "ping", "id": "p"}) == {"type": "pong", "ref": "p"}
        finally:
            for s in socks:
                await s.close()
            for p in (alice, bob):
                await p.close()


async def test_sources_of_refused_offers_do_not_accumulate() -> None:
    async with live_server() as server:
        sock = await RawSocket.open(server.ws_url)
        try:
            reply = await sock.request({"type": "join", "token": token("alice")})
            assert reply["type"] == "joined", reply
            for n in range(20):
                sources = {f"m{n}-{i}": "microphone" for i in range(64)}
                reply = await sock.request({"type": "offer", "sdp": "v=0\r\n", "sources": sources})
                assert reply["type"] == "error", reply
            p = server.app[STATE].rooms.rooms["r1"].participants["alice"]
            assert len(p.sources) <= 64, len(p.sources)
        finally:
            await sock.close()


async def test_a_join_racing_close_room_is_not_orphaned() -> None:
    async with live_server() as server:
        state = server.app[STATE]
        alice = TestPeer("alice", audio_hz=440.0)
        socks: list[RawSocket] = []
        real_close = state.engine.close_peer

        async def slow_close(peer_id: int) -> None:
            await asyncio.sleep(0.5)  # widens the window in which close_room awaits
            await real_close(peer_id)

        state.engine.close_peer = slow_close  # type: ignore[method-assign]
        try:
            socks.append(await joined_with_media(server.ws_url, alice))
            closing = asyncio.create_task(server.admin("DELETE", "/admin/rooms/r1"))
            await asyncio.sleep(0.2)
            socks.append(carol := await RawSocket.open(server.ws_url))
            reply = await carol.request({"type": "join", "token": token("carol")})
            status, _ = await closing
            assert status == 200
            rooms = state.rooms.rooms
            in_a_room = any("carol" in r.participants for r in rooms.values())
            if reply["type"] == "joined":
                # Admitted: carol must be in a room the server knows, or told she left.
                if not in_a_room:
                    left = await carol.recv_type("left", within=2)
                    assert left["reason"] == "room_closed", left
            else:
                assert reply["type"] == "error", reply
        finally:
            for s in socks:
                await s.close()
            await alice.close()


async def test_a_layout_naming_oneself_or_strangers_is_kept_and_harmless() -> None:
    """protocol v2: a participant's own tracks are never in its slots, and identities not in the
    room are skipped (they may just have left) — so such a layout is accepted, recorded as sent,
    and changes nothing else."""
    async with live_server() as server:
        alice = TestPeer("alice", audio_hz=440.0)
        sock = await joined_with_media(server.ws_url, alice)
        try:
            rooms = server.app[STATE].rooms
            p = rooms.rooms["r1"].participants["alice"]
            await wait_until(lambda: bool(p.tracks), 10, what="alice's track published")
            tracks = dict(p.tracks)
            reply = await sock.request(
                {
                    "type": "layout",
                    "tiles": [
                        {"identity": "alice", "width": 320, "height": 180},
                        {"identity": "nobody", "source": "screen_share"},
                    ],
                    "pinned": "alice",
                    "id": "l",
                }
            )
            assert reply == {"type": "ok", "ref": "l"}, reply
            assert p.layout is not None
            assert [(t.identity, t.source, t.width, t.height) for t in p.layout.tiles] == [
                ("alice", "camera", 320, 180),
                ("nobody", "screen_share", None, None),
            ]
            assert p.layout.pinned == "alice"
            assert p.tracks == tracks
            assert (await sock.request({"type": "ping", "id": 2}))["type"] == "pong"
        finally:
            await sock.close()
            await alice.close()


async def test_leaving_leaves_no_per_peer_bookkeeping_behind() -> None:
    async with live_server() as server:
        rooms = server.app[STATE].rooms
        for round_ in range(2):
            alice = TestPeer(f"alice{round_}", audio_hz=440.0)
            bob = TestPeer(f"bob{round_}", video=True)
            socks = [await joined_with_media(server.ws_url, p) for p in (alice, bob)]
            try:
                await wait_until(lambda: len(rooms._by_peer) == 2, 10, what="both peers")
                for sock in socks:
                    await sock.send({"type": "leave"})
                    await sock.wait_closed()
            finally:
                for sock in socks:
                    await sock.close()
                await alice.close()
                await bob.close()
        await wait_until(
            lambda: not rooms._by_peer and not rooms._early and not rooms._retired,
            10,
            what=f"empty maps: {rooms._by_peer} {rooms._early} {rooms._retired}",
        )
        assert rooms.participant_count() == 0
