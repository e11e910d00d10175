"""Hostile and malformed signalling frames over a raw WebSocket, against the real server.

Every malformed or refused request gets one ``error`` frame with the documented code (and our
``id`` echoed as ``ref``), and the same connection keeps working: ``ping`` → ``pong``, or a
``join`` that succeeds after pre-join errors. Binary frames close with 1003, frames over
``signalling.max_message_bytes`` with 1009, and a socket that never joins is closed (1008) after
``signalling.handshake_timeout_seconds``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from signalling.live_server import RawSocket, live_server, token

pytestmark = [pytest.mark.asyncio(loop_scope="function"), pytest.mark.timeout(60)]

# Big enough for the 70 KB SDP to be refused by the SDP limit (64 KiB), not by the frame limit.
MAX_MESSAGE_BYTES = 128 * 1024
LONG = "x" * 300
HUGE_SDP = "v=0\r\n" + "a=" + "y" * (70 * 1024) + "\r\n"


async def ping_pong(sock: RawSocket, ref: str = "after") -> None:
    reply = await sock.request({"type": "ping", "id": ref})
    assert reply == {"type": "pong", "ref": ref}, reply


async def join(sock: RawSocket, identity: str = "alice", ref: str = "j") -> dict[str, Any]:
    reply = await sock.request({"type": "join", "token": token(identity), "id": ref})
    assert reply.get("type") == "joined", reply
    assert reply.get("ref") == ref, reply
    return reply


def check_error(reply: dict[str, Any], code: str, ref: Any) -> None:
    assert reply.get("type") == "error", reply
    assert reply.get("code") == code, reply
    assert isinstance(reply.get("message"), str), reply
    if ref is None:
        assert "ref" not in reply, reply
    else:
        assert reply.get("ref") == ref, reply


# (case id, raw frame (str sent as is, else JSON-encoded), expected code, expected ref)
BEFORE_JOIN: list[tuple[str, Any, str, Any]] = [
    ("not-json", "{not json", "bad_json", None),
    ("empty-frame", "", "bad_json", None),
    ("json-array", [1, 2, 3], "bad_json", None),
    ("json-string", '"join"', "bad_json", None),
    ("json-number", "42", "bad_json", None),
    ("json-null", "null", "bad_json", None),
    ("no-type", {"token": "x", "id": 1}, "bad_message", 1),
    ("type-not-string", {"type": 7, "id": 2}, "bad_message", 2),
    ("unknown-type", {"type": "explode", "id": "u"}, "bad_message", "u"),
    ("long-unknown-type", {"type": LONG, "id": "lt"}, "bad_message", "lt"),
    ("join-without-token", {"type": "join", "id": 3}, "bad_message", 3),
    ("join-token-int", {"type": "join", "token": 12345, "id": 4}, "bad_message", 4),
    ("join-token-null", {"type": "join", "token": None, "id": 5}, "bad_message", 5),
    ("join-token-list", {"type": "join", "token": ["a"], "id": 6}, "bad_message", 6),
    (
        "join-resume-long",
        {"type": "join", "token": "PLACEHOLDER", "resume": LONG, "id": 7},
        "bad_message",
        7,
    ),
    (
        "join-resume-int",
        {"type": "join", "token": "PLACEHOLDER", "resume": 1, "id": 8},
        "bad_message",
        8,
    ),
    # Receive slot counts (config defaults: at most 25 video, 8 audio).
    *[
        (
            f"join-{field}-{case}",
            {"type": "join", "token": "PLACEHOLDER", field: value, "id": f"{field}-{case}"},
            "bad_message",
            f"{field}-{case}",
        )
        for field, over in (("video_slots", 26), ("audio_slots", 9))
        for case, value in (
            ("string", "3"),
            ("bool", True),
            ("float", 3.0),
            ("null", None),
            ("list", [3]),
            ("negative", -1),
            ("over-max", over),
            ("huge", 10**40),
        )
    ],
    ("offer-before-join", {"type": "offer", "sdp": "v=0\r\n", "id": 10}, "not_joined", 10),
    ("answer-before-join", {"type": "answer", "sdp": "v=0\r\n", "id": 11}, "not_joined", 11),
    (
        "mute-before-join",
        {"type": "mute", "track_id": 1, "muted": True, "id": 12},
        "not_joined",
        12,
    ),
    # protocol v2 has no `subscribe`: an unknown type, whether joined or not.
    ("subscribe-is-gone", {"type": "subscribe", "track_ids": [1], "id": 13}, "bad_message", 13),
    ("layout-before-join", {"type": "layout", "tiles": [], "id": 15}, "not_joined", 15),
    ("leave-before-join", {"type": "leave", "id": 14}, "not_joined", 14),
]


@pytest.mark.parametrize(
    ("frame", "code", "ref"),
    [pytest.param(f, c, r, id=name) for name, f, c, r in BEFORE_JOIN],
)
async def test_malformed_before_join_then_join_works(frame: Any, code: str, ref: Any) -> None:
    if isinstance(frame, dict) and frame.get("token") == "PLACEHOLDER":
        frame = {**frame, "token": token("alice")}  # a valid token: only the other field is bad
    async with live_server(signalling__max_message_bytes=MAX_MESSAGE_BYTES) as server:
        sock = await RawSocket.open(server.ws_url)
        try:
            await sock.send(frame)
            check_error(await sock.recv(), code, ref)
            await ping_pong(sock)
            joined = await join(sock)
            assert joined["participant"]["identity"] == "alice"
            await ping_pong(sock, "after-join")
            rooms = await server.rooms()
            assert [p["identity"] for p in rooms["r1"]["participants"]] == ["alice"]
        finally:
            await sock.close()


AFTER_JOIN: list[tuple[str, Any, str, Any]] = [
    ("not-json", "][", "bad_json", None),
    ("json-array", [], "bad_json", None),
    ("unknown-type", {"type": "publish_everything", "id": "u"}, "bad_message", "u"),
    ("second-join", {"type": "join", "token": "PLACEHOLDER", "id": "j2"}, "already_joined", "j2"),
    ("offer-sdp-list", {"type": "offer", "sdp": ["v=0"], "id": 1}, "bad_message", 1),
    ("offer-sdp-missing", {"type": "offer", "id": 2}, "bad_message", 2),
    ("offer-sdp-70kb", {"type": "offer", "sdp": HUGE_SDP, "id": 3}, "bad_message", 3),
    (
        "offer-sources-not-object",
        {"type": "offer", "sdp": "v=0\r\n", "sources": ["camera"], "id": 4},
        "bad_message",
        4,
    ),
    (
        "offer-sources-long-mid",
        {"type": "offer", "sdp": "v=0\r\n", "sources": {LONG: "camera"}, "id": 5},
        "bad_message",
        5,
    ),
    (
        "offer-sources-long-source",
        {"type": "offer", "sdp": "v=0\r\n", "sources": {"0": LONG}, "id": 6},
        "bad_message",
        6,
    ),
    ("offer-sdp-garbage", {"type": "offer", "sdp": "this is not SDP", "id": 7}, "bad_sdp", 7),
    ("answer-sdp-int", {"type": "answer", "sdp": 5, "id": 8}, "bad_message", 8),
    (
        "answer-without-server-offer",
        {"type": "answer", "sdp": "v=0\r\n", "id": 9},
        "invalid_state",
        9,
    ),
    (
        "mute-track-id-string",
        {"type": "mute", "track_id": "1", "muted": True, "id": 10},
        "bad_message",
        10,
    ),
    (
        "mute-track-id-bool",
        {"type": "mute", "track_id": True, "muted": True, "id": 11},
        "bad_message",
        11,
    ),
    (
        "mute-muted-string",
        {"type": "mute", "track_id": 1, "muted": "yes", "id": 12},
        "bad_message",
        12,
    ),
    (
        "mute-unknown-track",
        {"type": "mute", "track_id": 999, "muted": True, "id": 13},
        "not_found",
        13,
    ),
    ("subscribe-is-gone", {"type": "subscribe", "track_ids": [1], "id": 14}, "bad_message", 14),
    *[
        (
            f"layout-{case}",
            {"type": "layout", **fields, "id": f"l-{case}"},
            "bad_message",
            f"l-{case}",
        )
        for case, fields in (
            ("tiles-missing", {"pinned": "bob"}),
            ("tiles-null", {"tiles": None}),
            ("tiles-object", {"tiles": {"identity": "bob"}}),
            ("too-many-tiles", {"tiles": [{"identity": f"p{i}"} for i in range(257)]}),
            ("tile-string", {"tiles": ["bob"]}),
            ("tile-identity-missing", {"tiles": [{"source": "camera"}]}),
            ("tile-identity-int", {"tiles": [{"identity": 7}]}),
            ("tile-identity-long", {"tiles": [{"identity": LONG}]}),
            ("tile-source-unknown", {"tiles": [{"identity": "bob", "source": "webcam"}]}),
            ("tile-source-null", {"tiles": [{"identity": "bob", "source": None}]}),
            ("tile-width-negative", {"tiles": [{"identity": "bob", "width": -1}]}),
            ("tile-width-over", {"tiles": [{"identity": "bob", "width": 16385}]}),
            ("tile-width-bool", {"tiles": [{"identity": "bob", "width": True}]}),
            ("tile-height-float", {"tiles": [{"identity": "bob", "height": 240.5}]}),
            ("tile-height-string", {"tiles": [{"identity": "bob", "height": "240"}]}),
            ("pinned-int", {"tiles": [], "pinned": 5}),
            ("pinned-list", {"tiles": [], "pinned": ["bob"]}),
            ("pinned-long", {"tiles": [], "pinned": LONG}),
        )
    ],
    ("id-too-long", {"type": "explode", "id": LONG}, "bad_message", None),
    ("id-int-too-long", {"type": "explode", "id": 10**70}, "bad_message", None),
]


@pytest.mark.parametrize(
    ("frame", "code", "ref"),
    [pytest.param(f, c, r, id=name) for name, f, c, r in AFTER_JOIN],
)
async def test_malformed_after_join_keeps_connection(frame: Any, code: str, ref: Any) -> None:
    if isinstance(frame, dict) and frame.get("token") == "PLACEHOLDER":
        frame = {**frame, "token": token("alice")}
    async with live_server(signalling__max_message_bytes=MAX_MESSAGE_BYTES) as server:
        sock = await RawSocket.open(server.ws_url)
        try:
            await join(sock)
            await sock.send(frame)
            check_error(await sock.recv(), code, ref)
            await ping_pong(sock)
            # Still the same participant, nothing else changed.
            rooms = await server.rooms()
            assert [(p["identity"], p["tracks"]) for p in rooms["r1"]["participants"]] == [
                ("alice", [])
            ]
        finally:
            await sock.close()


async def test_many_errors_in_a_row_on_one_connection() -> None:
    """All the cases above on one socket: it survives every one of them."""
    async with live_server(signalling__max_message_bytes=MAX_MESSAGE_BYTES) as server:
        sock = await RawSocket.open(server.ws_url)
        try:
            for _name, frame, code, ref in BEFORE_JOIN:
                if isinstance(frame, dict) and frame.get("token") == "PLACEHOLDER":
                    frame = {**frame, "token": token("alice")}
                await sock.send(frame)
                check_error(await sock.recv(), code, ref)
            await join(sock)
            for _name, frame, code, ref in AFTER_JOIN:
                if isinstance(frame, dict) and frame.get("token") == "PLACEHOLDER":
                    frame = {**frame, "token": token("alice")}
                await sock.send(frame)
                check_error(await sock.recv(), code, ref)
            await ping_pong(sock)
        finally:
            await sock.close()


async def test_binary_frame_closes_1003_and_others_unaffected() -> None:
    async with live_server() as server:
        bystander = await RawSocket.open(server.ws_url)
        sock = await RawSocket.open(server.ws_url)
        try:
            await join(bystander, "bob")
            await join(sock, "alice")
            await sock.ws.send_bytes(b'{"type":"ping"}')
            assert await sock.wait_closed() == 1003
            await ping_pong(bystander)
        finally:
            await sock.close()
            await bystander.close()


# A small frame limit, and the slot counts whose SDP and `slots` frames fit in it (config check).
SMALL_LIMIT = 16384
SMALL_FRAMES: dict[str, object] = {
    "signalling__max_message_bytes": SMALL_LIMIT,
    "room__max_video_slots": 4,
    "room__default_video_slots": 2,
    "room__max_audio_slots": 2,
    "room__default_audio_slots": 1,
}


def _ping_of_size(size: int, ref: str = "p") -> str:
    """A ``ping`` frame of exactly ``size`` bytes (padded with an unknown field)."""
    head = '{"type":"ping","id":"' + ref + '","pad":"'
    frame = head + "z" * (size - len(head) - 2) + '"}'
    assert len(frame.encode()) == size
    return frame


@pytest.mark.parametrize("joined", [False, True], ids=["before-join", "after-join"])
async def test_frame_over_limit_closes_1009(joined: bool) -> None:
    limit = SMALL_LIMIT
    async with live_server(**SMALL_FRAMES) as server:
        bystander = await RawSocket.open(server.ws_url)
        sock = await RawSocket.open(server.ws_url)
        try:
            await join(bystander, "bob")
            if joined:
                await join(sock, "alice")
            await sock.send(_ping_of_size(limit - 100))
            assert (await sock.recv()) == {"type": "pong", "ref": "p"}
            await sock.send(_ping_of_size(limit + 1000))
            assert await sock.wait_closed() == 1009
            await ping_pong(bystander)
            if joined:  # the participant is in its reconnect grace, not gone
                rooms = await server.rooms()
                assert sorted(p["identity"] for p in rooms["r1"]["participants"]) == [
                    "alice",
                    "bob",
                ]
        finally:
            await sock.close()
            await bystander.close()


@pytest.mark.parametrize(("extra", "closed"), [(0, False), (1, True)], ids=["at", "at+1"])
async def test_frame_size_limit_boundary(extra: int, closed: bool) -> None:
    """protocol.md: frames *larger than* max_message_bytes close with 1009, so a frame of
    exactly max_message_bytes bytes is served."""
    limit = SMALL_LIMIT
    async with live_server(**SMALL_FRAMES) as server:
        sock = await RawSocket.open(server.ws_url)
        try:
            await sock.send(_ping_of_size(limit + extra))
            if closed:
                assert await sock.wait_closed() == 1009
            else:
                assert (await sock.recv()) == {"type": "pong", "ref": "p"}
        finally:
            await sock.close()


async def test_socket_that_never_joins_is_closed_after_handshake_timeout() -> None:
    async with live_server(signalling__handshake_timeout_seconds=1.0) as server:
        idle = await RawSocket.open(server.ws_url)
        chatty = await RawSocket.open(server.ws_url)  # pings, but never joins either
        good = await RawSocket.open(server.ws_url)
        try:
            start = time.monotonic()
            await join(good, "carol")
            await ping_pong(chatty, "c1")
            code = await idle.wait_closed(within=5.0)
            elapsed = time.monotonic() - start
            assert code == 1008, code
            assert 0.8 <= elapsed <= 3.0, elapsed
            assert await chatty.wait_closed(within=5.0) == 1008
            # The joined participant is not affected by the handshake timeout.
            await ping_pong(good, "g1")
            rooms = await server.rooms()
            assert [p["identity"] for p in rooms["r1"]["participants"]] == ["carol"]
        finally:
            for s in (idle, chatty, good):
                await s.close()
