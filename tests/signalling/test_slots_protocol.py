"""Protocol v2 at join, against the real server over raw WebSockets: the receive slot counts a
participant asks for, its `layout`, and the participant list paged into frames that each fit in
``signalling.max_message_bytes`` — in rooms of hundreds of signalling-only participants."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from signalling.live_server import RawSocket, live_server, token
from visio_media.auth import Grants
from visio_media.server import STATE

pytestmark = [pytest.mark.asyncio(loop_scope="function"), pytest.mark.timeout(180)]


async def join(sock: RawSocket, tok: str, **fields: Any) -> dict[str, Any]:
    reply = await sock.request({"type": "join", "token": tok, "id": "j", **fields})
    assert reply.get("type") == "joined", reply
    assert reply.get("ref") == "j", reply
    return reply


async def raw_frame(sock: RawSocket, within: float = 10.0) -> str:
    """The next text frame, undecoded (to measure it)."""
    async with asyncio.timeout(within):
        msg = await sock.ws.receive()
    assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data)
    data: str = msg.data
    return data


@contextlib.asynccontextmanager
async def crowd(url: str, tokens: list[str]) -> AsyncIterator[list[RawSocket]]:
    """Participants without media, joined one after the other (so in this order)."""
    socks: list[RawSocket] = []
    try:
        for tok in tokens:
            sock = await RawSocket.open(url)
            socks.append(sock)
            await join(sock, tok)
        yield socks
    finally:
        await asyncio.gather(*(s.close() for s in socks))


# ---------------------------------------------------------------------------- slot counts


async def test_join_grants_the_slot_counts_asked_for_or_the_defaults() -> None:
    async with live_server() as server:
        rooms = server.app[STATE].rooms
        cases = [
            ("asks", {"video_slots": 4, "audio_slots": 2}, (4, 2)),
            ("defaults", {}, (9, 3)),
            ("none", {"video_slots": 0, "audio_slots": 0}, (0, 0)),
            ("most", {"video_slots": 25, "audio_slots": 8}, (25, 8)),
            ("video-only", {"video_slots": 1}, (1, 3)),
        ]
        socks: list[RawSocket] = []
        try:
            for identity, fields, (video, audio) in cases:
                sock = await RawSocket.open(server.ws_url)
                socks.append(sock)
                joined = await join(sock, token(identity), **fields)
                assert joined["protocol"] == 2
                assert (joined["video_slots"], joined["audio_slots"]) == (video, audio), joined
                p = rooms.rooms["r1"].participants[identity]
                assert (p.video_slots, p.audio_slots) == (video, audio)
                assert p.layout is None  # automatic mode until a `layout`
        finally:
            for s in socks:
                await s.close()


async def test_a_token_without_the_subscribe_grant_gets_no_slots() -> None:
    async with live_server() as server:
        sock = await RawSocket.open(server.ws_url)
        try:
            tok = token("viewer", grants=Grants(subscribe=False))
            joined = await join(sock, tok, video_slots=5, audio_slots=2)
            assert (joined["video_slots"], joined["audio_slots"]) == (0, 0)
        finally:
            await sock.close()


async def test_slot_limits_follow_the_config() -> None:
    async with live_server(
        room__max_video_slots=6, room__default_video_slots=2, room__default_audio_slots=0
    ) as server:
        sock = await RawSocket.open(server.ws_url)
        try:
            reply = await sock.request(
                {"type": "join", "token": token("a"), "video_slots": 7, "id": 1}
            )
            assert (reply["type"], reply["code"], reply["ref"]) == ("error", "bad_message", 1)
            assert "0–6" in reply["message"], reply
            assert server.app[STATE].rooms.participant_count() == 0  # nothing happened
            joined = await join(sock, token("a"))
            assert (joined["video_slots"], joined["audio_slots"]) == (2, 0)
        finally:
            await sock.close()


async def test_a_resumed_session_keeps_the_slot_counts_of_its_first_join() -> None:
    async with live_server() as server:
        first = await RawSocket.open(server.ws_url)
        second = await RawSocket.open(server.ws_url)
        try:
            joined = await join(first, token("alice"), video_slots=4, audio_slots=1)
            await first.close()
            resumed = await join(
                second,
                token("alice"),
                resume=joined["session"],
                video_slots=12,
                audio_slots=5,
            )
            assert resumed["resumed"] is True
            assert (resumed["video_slots"], resumed["audio_slots"]) == (4, 1)
        finally:
            await first.close()
            await second.close()


# ---------------------------------------------------------------------------- layout


async def test_a_layout_replaces_the_previous_one_and_defaults_apply() -> None:
    async with live_server() as server:
        sock = await RawSocket.open(server.ws_url)
        try:
            await join(sock, token("alice"))
            p = server.app[STATE].rooms.rooms["r1"].participants["alice"]
            tiles = [{"identity": f"p{i}", "width": 16384, "height": 0} for i in range(256)]
            reply = await sock.request({"type": "layout", "tiles": tiles, "id": 1})
            assert reply == {"type": "ok", "ref": 1}, reply
            assert p.layout is not None
            assert len(p.layout.tiles) == 256
            assert p.layout.tiles[0].source == "camera"
            assert (p.layout.tiles[0].width, p.layout.tiles[0].height) == (16384, 0)
            assert p.layout.pinned is None
            # A bad layout leaves the last good one in place.
            bad = await sock.request({"type": "layout", "tiles": [{"identity": 1}], "id": 2})
            assert (bad["type"], bad["code"]) == ("error", "bad_message"), bad
            assert len(p.layout.tiles) == 256
            reply = await sock.request(
                {
                    "type": "layout",
                    "tiles": [{"identity": "bob", "source": "screen_share"}],
                    "pinned": None,
                    "id": 3,
                }
            )
            assert reply == {"type": "ok", "ref": 3}, reply
            assert [(t.identity, t.source) for t in p.layout.tiles] == [("bob", "screen_share")]
            reply = await sock.request({"type": "layout", "tiles": [], "pinned": "bob", "id": 4})
            assert reply == {"type": "ok", "ref": 4}, reply
            assert (p.layout.tiles, p.layout.pinned) == ((), "bob")
        finally:
            await sock.close()


# ---------------------------------------------------------------------------- participant list


async def test_a_newcomer_to_a_room_of_120_gets_the_list_in_pages_before_any_event() -> None:
    async with live_server(room__max_participants=200) as server:
        names = [f"p{i:03d}" for i in range(120)]
        async with crowd(server.ws_url, [token(n) for n in names]) as _socks:
            newcomer = await RawSocket.open(server.ws_url)
            late = await RawSocket.open(server.ws_url)
            try:
                # Another join races the newcomer's: its participant_joined must come after the
                # whole list, never between the pages.
                await newcomer.send({"type": "join", "token": token("zz-new"), "id": "n"})
                await late.send({"type": "join", "token": token("zz-late")})
                frames = [json.loads(await raw_frame(newcomer)) for _ in range(3)]
                joined, page2, page3 = frames
                assert joined["type"] == "joined", joined
                assert joined["ref"] == "n"
                seen = [q["identity"] for q in joined["participants"]]
                assert seen == names[:50], seen  # the oldest first
                assert joined["participants_total"] == 120 or joined["participants_total"] == 121
                assert (page2["type"], page2["more"]) == ("participants", True), page2
                assert (page3["type"], page3["more"]) == ("participants", False), page3
                seen += [q["identity"] for q in page2["participants"]]
                seen += [q["identity"] for q in page3["participants"]]
                if joined["participants_total"] == 120:
                    assert seen == names
                    event = await newcomer.recv_type("participant_joined")
                    assert event["participant"]["identity"] == "zz-late"
                else:  # zz-late joined first: it is in the list, the last one
                    assert seen == [*names, "zz-late"]
                assert all(len(f["participants"]) <= 50 for f in frames)
                assert len(page2["participants"]) == 50
                await late.recv_type("joined")
            finally:
                await newcomer.close()
                await late.close()


async def test_a_room_of_few_sends_one_joined_frame_and_no_pages() -> None:
    async with live_server() as server:
        async with crowd(server.ws_url, [token("a"), token("b")]):
            sock = await RawSocket.open(server.ws_url)
            try:
                joined = await join(sock, token("c"))
                assert [q["identity"] for q in joined["participants"]] == ["a", "b"]
                assert joined["participants_total"] == 2
                reply = await sock.request({"type": "ping", "id": "p"})
                assert reply == {"type": "pong", "ref": "p"}  # no `participants` frame between
            finally:
                await sock.close()


async def test_every_list_frame_fits_the_limit_at_300_participants_with_the_longest_names() -> (
    None
):
    # The longest identity and name a token allows, of characters JSON escapes as 12 bytes each:
    # ~4.7 KB a participant, so a page of 50 (~235 KB) would be 3.5 times the 64 KiB limit.
    limit = 65536

    def long_token(i: int) -> str:
        return token(f"{i:03d}" + "\U0001f600" * 125, name="\U0001d11e" * 256)

    async with live_server(room__max_participants=400) as server:
        assert server.config.signalling.max_message_bytes == limit
        async with crowd(server.ws_url, [long_token(i) for i in range(300)]):
            newcomer = await RawSocket.open(server.ws_url)
            try:
                await newcomer.send({"type": "join", "token": long_token(999), "id": "x" * 64})
                sizes: list[int] = []
                identities: list[str] = []
                more = True
                while more:
                    data = await raw_frame(newcomer)
                    frame = json.loads(data)
                    assert frame["type"] == ("participants" if sizes else "joined"), frame["type"]
                    sizes.append(len(data.encode("utf-8")))
                    identities += [q["identity"] for q in frame["participants"]]
                    assert len(frame["participants"]) <= 50
                    more = frame["more"] if sizes[1:] else frame["participants_total"] > len(
                        identities
                    )
                assert identities == [f"{i:03d}" + "\U0001f600" * 125 for i in range(300)]
                assert max(sizes) <= limit, sizes
                # Paged by bytes, not by count: a page is well under 50 here, and full.
                assert len(sizes) > 300 // 50 + 1, sizes
                assert max(sizes) > limit * 0.9, sizes
                reply = await newcomer.request({"type": "ping", "id": "after"})
                assert reply == {"type": "pong", "ref": "after"}
            finally:
                await newcomer.close()
