"""Hostile JSON from unauthenticated clients (issue 6, defect 6).

Deep nesting (which makes Python's parser raise RecursionError), numbers too long to convert,
invalid UTF-8 and the like are a clear client error — ``bad_json`` on /ws, 400 on HTTP — never a
500, an ``internal`` error or a logged traceback; and the admin API checks the bearer token
before it reads the body, so an anonymous caller cannot make it parse anything.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest

from signalling.live_server import LiveServer, RawSocket, admin_token, live_server

pytestmark = [pytest.mark.asyncio(loop_scope="function"), pytest.mark.timeout(60)]

DEPTH = 30_000  # far past the parser's stack; the bodies stay under the 256 KiB limit
# (case, body, the error code a /ws text frame with that body gets)
HOSTILE_BODIES: list[tuple[str, bytes, str]] = [
    ("deep-arrays", b"[" * DEPTH + b"]" * DEPTH, "bad_json"),
    ("deep-objects", b'{"a":' * DEPTH + b"1" + b"}" * DEPTH, "bad_json"),
    ("deep-in-object", b'{"type":"ping","x":' + b"[" * DEPTH + b"]" * DEPTH + b"}", "bad_json"),
    ("deep-unclosed", b"[" * DEPTH, "bad_json"),
    ("huge-integer", b'{"type":"ping","id":' + b"9" * 100_000 + b"}", "bad_json"),
    ("huge-exponent", b'{"type":1e999999}', "bad_message"),
    ("invalid-utf8", b'{"name":"\xff\xfe\xc3("}', "close 1007"),
    # Valid JSON (a lone surrogate escape), then refused as a message.
    ("lone-surrogate-escape", b'{"type":"\\ud800"}', "bad_message"),
    ("nul-bytes", b'{"name":"r"}\x00\x00', "bad_json"),
    ("truncated", b'{"name":"r', "bad_json"),
]
IDS = [c for c, _, _ in HOSTILE_BODIES]


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]


async def post(srv: LiveServer, path: str, body: bytes, bearer: str | None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    async with (
        aiohttp.ClientSession() as s,
        s.post(srv.http_url + path, data=body, headers=headers) as r,
    ):
        return r.status, await r.json(content_type=None)


@pytest.mark.parametrize("case,body,ws_code", HOSTILE_BODIES, ids=IDS)
async def test_hostile_json_frame_is_bad_json_and_the_socket_keeps_working(
    case: str, body: bytes, ws_code: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with live_server(signalling__max_message_bytes=1024 * 1024) as srv:
        sock = await RawSocket.open(srv.ws_url)
        try:
            text = body.decode("utf-8", errors="surrogateescape")
            if ws_code == "close 1007":
                # A text frame must be UTF-8 (RFC 6455): the socket closes with 1007, cleanly.
                await sock.ws.send_frame(body, aiohttp.WSMsgType.TEXT)
                assert await sock.wait_closed() == 1007
            else:
                reply = await sock.request({"type": "ping", "id": "before"})
                assert reply == {"type": "pong", "ref": "before"}
                await sock.send(text)
                reply = await sock.recv()
                assert reply.get("type") == "error", reply
                assert reply.get("code") == ws_code, reply
                reply = await sock.request({"type": "ping", "id": "after"})
                assert reply == {"type": "pong", "ref": "after"}, "the socket keeps working"
        finally:
            await sock.close()
    no_tracebacks(caplog)


@pytest.mark.parametrize("case,body,ws_code", HOSTILE_BODIES, ids=IDS)
async def test_admin_api_checks_the_token_before_parsing_hostile_json(
    case: str, body: bytes, ws_code: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with live_server() as srv:
        # Anonymous or forged: 401, whatever the body.
        for bearer in (None, "not-a-jwt"):
            status, payload = await post(srv, "/admin/rooms", body, bearer)
            assert status == 401, (status, payload)
            assert payload["error"]["code"] == "unauthorized", payload
        # A real admin sending garbage: a clear 400.
        status, payload = await post(srv, "/admin/rooms", body, admin_token())
        assert status == 400, (status, payload)
        assert payload["error"]["code"] == "bad_request", payload
        path = "/admin/rooms/r1/participants/alice/tracks/1/mute"
        status, payload = await post(srv, path, body, None)
        assert status == 401, (status, payload)
        # Dev mode's token endpoint has no credentials to check: 400 straight away.
        status, payload = await post(srv, "/api/dev-token", body, None)
        assert status == 400, (status, payload)
        assert payload["error"]["code"] == "bad_request", payload
        assert await srv.rooms() == {}, "nothing was created"
    no_tracebacks(caplog)
