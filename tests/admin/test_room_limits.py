"""Room life cycle limits: max participants, and rooms that close themselves when empty."""

from __future__ import annotations

import pytest

from signalling.live_server import RawSocket, live_server, token, wait_until

pytestmark = [pytest.mark.asyncio(loop_scope="function"), pytest.mark.timeout(60)]


async def test_a_full_room_refuses_the_next_join_and_keeps_its_members() -> None:
    async with live_server(room__max_participants=2) as srv:
        first = await RawSocket.open(srv.ws_url)
        second = await RawSocket.open(srv.ws_url)
        third = await RawSocket.open(srv.ws_url)
        try:
            for sock, who in ((first, "a"), (second, "b")):
                reply = await sock.request({"type": "join", "token": token(who, "small")})
                assert reply["type"] == "joined", reply
            reply = await third.request({"type": "join", "token": token("c", "small")})
            assert (reply["type"], reply["code"]) == ("error", "room_full"), reply
            assert await third.wait_closed() == 1008
            rooms = await srv.rooms()
            assert {p["identity"] for p in rooms["small"]["participants"]} == {"a", "b"}
            pong = await first.request({"type": "ping", "id": 1})
            assert pong == {"type": "pong", "ref": 1}
        finally:
            for s in (first, second, third):
                await s.close()


async def test_an_empty_room_closes_after_the_empty_timeout() -> None:
    async with live_server(room__empty_timeout_seconds=0.5) as srv:
        sock = await RawSocket.open(srv.ws_url)
        try:
            reply = await sock.request({"type": "join", "token": token("a", "brief")})
            assert reply["type"] == "joined"
            await sock.send({"type": "leave"})
            await sock.wait_closed()
        finally:
            await sock.close()
        await wait_until(lambda: "brief" not in srv.app_rooms(), 5, what="the room to close")


async def test_a_room_created_by_the_admin_api_also_closes_when_never_used() -> None:
    async with live_server(room__empty_timeout_seconds=0.5) as srv:
        status, _ = await srv.admin("POST", "/admin/rooms", {"name": "unused"})
        assert status == 201
        assert "unused" in await srv.rooms()
        await wait_until(lambda: "unused" not in srv.app_rooms(), 5, what="the room to close")
