"""The admin REST API against the real server: who may call it, and what each call does to a
live room (clients see the effect through signalling)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from signalling.live_server import MediaClient, live_server, token, wait_until
from visio_media.auth import Grants, mint_token
from visio_media.client import Left, ParticipantLeft, TrackMuted

pytestmark = [pytest.mark.asyncio(loop_scope="function"), pytest.mark.timeout(90)]


async def _call(url: str, method: str, path: str, bearer: str | None, body: Any = None) -> int:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, url + path, json=body, headers=headers) as r,
    ):
        payload = await r.json()
        if r.status >= 400:
            assert set(payload["error"]) == {"code", "message"}, payload
        return r.status


async def test_admin_calls_need_a_room_admin_token_for_the_right_room() -> None:
    async with live_server() as srv:
        secret = srv.config.auth.secret
        member = token("someone", "board")
        admin_other_room = mint_token(
            secret, identity="ops", room="other", grants=Grants(room_admin=True)
        )
        forged = mint_token(
            "another-secret-" + "k" * 40, identity="ops", room="*", grants=Grants(room_admin=True)
        )
        url = srv.http_url
        assert await _call(url, "GET", "/admin/rooms", None) == 401
        assert await _call(url, "GET", "/admin/rooms", "not-a-jwt") == 401
        assert await _call(url, "GET", "/admin/rooms", forged) == 401
        assert await _call(url, "GET", "/admin/rooms", member) == 403
        assert await _call(url, "GET", "/admin/rooms", admin_other_room) == 403
        assert await _call(url, "DELETE", "/admin/rooms/board", admin_other_room) == 403
        assert await srv.rooms() == {}, "refused calls change nothing"


async def test_admin_creates_lists_mutes_removes_and_closes() -> None:
    async with live_server() as srv:
        status, body = await srv.admin(
            "POST", "/admin/rooms", {"name": "board", "max_participants": 5}
        )
        assert status == 201 and body["max_participants"] == 5
        status, _ = await srv.admin("POST", "/admin/rooms", {"name": "board"})
        assert status == 409
        status, _ = await srv.admin("POST", "/admin/rooms", {"name": "bad name!"})
        assert status == 400

        alice = MediaClient(srv.ws_url, "alice", "board", audio_hz=440.0)
        bob = MediaClient(srv.ws_url, "bob", "board", audio_hz=660.0)
        seen: dict[str, list[Any]] = {"muted": [], "left_bob": [], "alice_left": [], "bob_left": []}
        bob.client.on(TrackMuted, seen["muted"].append)
        bob.client.on(ParticipantLeft, seen["left_bob"].append)
        alice.client.on(Left, seen["alice_left"].append)
        bob.client.on(Left, seen["bob_left"].append)
        try:
            await alice.start()
            await bob.start()

            async def alice_audio() -> int | None:
                _, room = await srv.admin("GET", "/admin/rooms/board")
                for p in room["participants"]:
                    if p["identity"] == "alice":
                        for t in p["tracks"]:
                            if t["kind"] == "audio":
                                return int(t["track_id"])
                return None

            track_id = None
            for _ in range(100):
                track_id = await alice_audio()
                if track_id is not None:
                    break
                await asyncio.sleep(0.1)
            assert track_id is not None, "alice's audio shows in the room"

            rooms = await srv.rooms()
            assert {p["identity"] for p in rooms["board"]["participants"]} == {"alice", "bob"}

            status, _ = await srv.admin(
                "POST",
                f"/admin/rooms/board/participants/alice/tracks/{track_id}/mute",
                {"muted": True},
            )
            assert status == 200
            await wait_until(
                lambda: any(e.track_id == track_id and e.muted for e in seen["muted"]),
                5,
                what="bob sees the mute",
            )
            status, _ = await srv.admin(
                "POST",
                "/admin/rooms/board/participants/alice/tracks/999999/mute",
                {"muted": True},
            )
            assert status == 404

            status, _ = await srv.admin("DELETE", "/admin/rooms/board/participants/alice")
            assert status == 200
            await wait_until(lambda: bool(seen["alice_left"]), 5, what="alice is told")
            assert seen["alice_left"][0].reason == "removed"
            await wait_until(
                lambda: any(e.identity == "alice" for e in seen["left_bob"]),
                5,
                what="bob sees alice go",
            )
            status, _ = await srv.admin("DELETE", "/admin/rooms/board/participants/alice")
            assert status == 404

            status, _ = await srv.admin("DELETE", "/admin/rooms/board")
            assert status == 200
            await wait_until(lambda: bool(seen["bob_left"]), 5, what="bob is told")
            assert seen["bob_left"][0].reason == "room_closed"
            status, _ = await srv.admin("GET", "/admin/rooms/board")
            assert status == 404
            assert await srv.rooms() == {}
        finally:
            await alice.close()
            await bob.close()
