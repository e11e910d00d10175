"""DNS rebinding and cross-site WebSockets (issue 6, defect 5).

A page on another site can make a browser talk to a server on the user's loopback: by pointing
its own host name at 127.0.0.1 (DNS rebinding: the requests carry the foreign ``Host``), or by
opening a WebSocket straight to 127.0.0.1 (the request carries the foreign ``Origin``). So:

* dev mode's token endpoint and the loopback-open /metrics answer only for loopback Host names
  (localhost, 127.0.0.1, [::1], any port): anything else is a 403 JSON error;
* /ws accepts an ``Origin`` only if it is the request's own host:port (same origin) or listed in
  ``server.allowed_origins``; no ``Origin`` at all (SDKs, aiortc, curl) is fine.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from signalling.live_server import LiveServer, live_server, token
from visio_media.config import load_config
from visio_media.errors import ConfigError

pytestmark = [pytest.mark.timeout(60)]  # async tests run in asyncio auto mode


async def call(
    srv: LiveServer, method: str, path: str, headers: dict[str, str], body: Any = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, srv.http_url + path, json=body, headers=headers) as r,
    ):
        if r.content_type == "application/json":
            return r.status, await r.json()
        return r.status, await r.text()


FOREIGN_HOSTS = ["evil.example", "evil.example:{port}", "rebind.attacker.test:{port}",
                 "127.0.0.1.nip.io:{port}", "localhost.evil.example", "[::2]:{port}", ""]
LOOPBACK_HOSTS = ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}",
                  "127.0.0.1", "localhost", "127.1.2.3:{port}"]


async def test_dev_token_answers_only_for_loopback_host_names() -> None:
    async with live_server() as srv:
        body = {"room": "lobby", "name": "Ada"}
        for host in FOREIGN_HOSTS:
            status, payload = await call(
                srv, "POST", "/api/dev-token", {"Host": host.format(port=srv.port)}, body
            )
            assert status == 403, (host, status, payload)
            assert payload["error"]["code"] == "host_not_allowed", payload
            assert "token" not in payload
        for host in LOOPBACK_HOSTS:
            status, payload = await call(
                srv, "POST", "/api/dev-token", {"Host": host.format(port=srv.port)}, body
            )
            assert status == 200, (host, status, payload)
            assert payload["token"]


async def test_loopback_open_metrics_answer_only_for_loopback_host_names() -> None:
    async with live_server() as srv:
        for host in FOREIGN_HOSTS:
            headers = {"Host": host.format(port=srv.port)}
            status, payload = await call(srv, "GET", "/metrics", headers)
            assert status == 403, (host, status, payload)
            assert payload["error"]["code"] == "host_not_allowed", payload
        for host in LOOPBACK_HOSTS:
            status, text = await call(srv, "GET", "/metrics", {"Host": host.format(port=srv.port)})
            assert status == 200, (host, status)
            assert "visio_" in text


async def ws_status(srv: LiveServer, headers: dict[str, str]) -> int | str:
    """101 → joins; else the HTTP status and error code of the refusal."""
    async with aiohttp.ClientSession() as s:
        try:
            ws = await s.ws_connect(srv.ws_url, headers=headers)
        except aiohttp.WSServerHandshakeError as e:
            return e.status
        try:
            await ws.send_json({"type": "join", "token": token("alice")})
            msg = await ws.receive_json(timeout=5)
            return str(msg["type"])
        finally:
            await ws.close()


async def test_websocket_refuses_a_foreign_origin() -> None:
    async with live_server() as srv:
        same = f"http://127.0.0.1:{srv.port}"
        assert await ws_status(srv, {}) == "joined", "no Origin: SDKs and aiortc"
        assert await ws_status(srv, {"Origin": same}) == "joined"
        assert await ws_status(srv, {"Origin": f"http://localhost:{srv.port}",
                                     "Host": f"localhost:{srv.port}"}) == "joined"
        for origin in ("http://evil.example", f"http://evil.example:{srv.port}",
                       f"https://127.0.0.1:{srv.port}", "http://127.0.0.1", "null",
                       f"http://127.0.0.1:{srv.port + 1 if srv.port < 65535 else 1}"):
            assert await ws_status(srv, {"Origin": origin}) == 403, origin
        status, payload = await call(srv, "GET", "/ws", {"Origin": "http://evil.example"})
        assert status == 403 and payload["error"]["code"] == "origin_not_allowed", payload
        # Behind a proxy the Host may carry no port: it means the scheme's default port, so a
        # page on another port of the same host is another origin.
        assert await ws_status(srv, {"Origin": "http://meet.example",
                                     "Host": "meet.example"}) == "joined"
        assert await ws_status(srv, {"Origin": "http://meet.example:8443",
                                     "Host": "meet.example"}) == 403


async def test_websocket_accepts_the_origins_listed_in_the_config() -> None:
    async with live_server(
        server__allowed_origins=["https://meet.example.com", "http://app.test:8080"]
    ) as srv:
        assert await ws_status(srv, {"Origin": "https://meet.example.com"}) == "joined"
        assert await ws_status(srv, {"Origin": "http://APP.test:8080"}) == "joined"
        assert await ws_status(srv, {"Origin": "http://meet.example.com"}) == 403
        assert await ws_status(srv, {"Origin": "http://evil.example"}) == 403
    async with live_server(server__allowed_origins=["*"]) as srv:
        assert await ws_status(srv, {"Origin": "http://evil.example"}) == "joined"


@pytest.mark.parametrize(
    "value", [["meet.example.com"], ["ftp://x.test"], ["https://x.test/path"], "https://x.test",
              [""], [7]]
)
def test_bad_allowed_origins_are_refused_naming_the_key(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"server\.allowed_origins"):
        load_config(None, env={}, dev=True, overrides={"server.allowed_origins": value})
