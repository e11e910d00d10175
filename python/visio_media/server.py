"""The HTTP edge: the aiohttp application (WebSocket signalling, admin API, health, the browser
client) and the process life cycle (start, SIGTERM drain, stop)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import signal
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from visio_media.auth import AccessToken, Grants, mint_token, verify_token
from visio_media.config import (
    Config,
    effective_shards,
    is_loopback_host,
    normalize_origin,
    split_host_port,
)
from visio_media.engine import Engine, EngineConfig
from visio_media.errors import (
    AuthError,
    ForbiddenError,
    InvalidStateError,
    NotFoundError,
    ProtocolError,
    VisioError,
)
from visio_media.listener import (
    ConnectionGuard,
    GuardedSite,
    fd_share,
    guard_middleware,
    handler_args,
    raise_fd_limit,
)
from visio_media.metrics import Metrics
from visio_media.rooms import RoomManager
from visio_media.signalling import Lobby, Session
from visio_media.supervise import Supervisor

log = logging.getLogger(__name__)

WEB_DIR = Path(str(resources.files("visio_media") / "web"))
STATE: web.AppKey[ServerState] = web.AppKey("state")
NAME_RE = re.compile(r"^[\w .'\-]{1,64}$")
ROOM_RE = re.compile(r"^[\w.\-]{1,64}$")


class ServerState:
    """Everything one server process owns, created at startup and torn down at cleanup."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.supervisor = Supervisor()
        m = config.media
        self.engine = Engine(
            EngineConfig(
                shards=effective_shards(m),
                bind_ip=m.bind_ip,
                announce_ip=m.announce_ip,
                port_min=m.port_min,
                port_max=m.port_max,
            )
        )
        self.rooms = RoomManager(self.engine, config.room, self.supervisor)
        self.ready = False
        self.sessions: set[asyncio.Task[Any]] = set()
        # Caps on what unauthenticated clients may hold, within a share of the fd limit.
        self.connections = ConnectionGuard(fd_share(config.server.max_pending_connections))
        self.lobby = Lobby(fd_share(config.signalling.max_unjoined))
        self.metrics = Metrics(
            self.engine.stats_snapshot, self._control_gauges, self._evictions
        )

    def _control_gauges(self) -> dict[str, int]:
        participants = [p for r in self.rooms.rooms.values() for p in r.participants.values()]
        return {
            "rooms": len(self.rooms.rooms),
            "participants": len(participants),
            "participants_disconnected": sum(1 for p in participants if not p.present),
            "ready": int(self.ready and self.rooms.accepting),
            "http_connections_idle": self.connections.idle,
            "websockets_unjoined": len(self.lobby),
        }

    def _evictions(self) -> dict[str, int]:
        return {
            "idle_http": self.connections.evicted,
            "unjoined_websocket": self.lobby.evicted,
        }

    def verify(self, token: str) -> AccessToken:
        return verify_token(self.config.auth.secret, token)


class SignallingSocket(web.WebSocketResponse):
    """The server side of a signalling WebSocket, with aiohttp's heartbeat (a ping after
    `room.vanished_timeout_seconds` of silence, closed if no pong within half that) stopped for
    good once the socket is closed.

    aiohttp 3.14 re-arms the heartbeat from its data-received callback even after the socket
    has closed: the client's close frame, arriving after our own, schedules a new heartbeat
    timer (and that one a pong timer). Each timer holds the whole connection (request,
    protocol, transport, parser buffers: ~9 KB), so every join/leave kept its memory for
    ~1.5 heartbeats and a fast churn of connections grew the heap by (connections per
    1.5 heartbeats) x 9 KB.
    ``_reset_heartbeat`` is aiohttp's private hook: should it be renamed, this override goes
    dead and tests/security/test_join_leave_memory.py fails.
    """

    def _reset_heartbeat(self) -> None:
        if not self.closed:
            super()._reset_heartbeat()


def _json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _admin_token(request: web.Request) -> AccessToken:
    """The caller's bearer token, verified and holding room_admin; checked before anything of
    the request (its body) is read."""
    state = request.app[STATE]
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise AuthError("missing bearer token")
    token = state.verify(header[7:].strip())
    if not token.grants.room_admin:
        raise ForbiddenError("the token does not grant room_admin")
    return token


def _admin_scope(token: AccessToken, room: str | None) -> None:
    if room is not None and not token.allows_room(room):
        raise ForbiddenError("the token does not grant this room")
    if room is None and token.room != "*":
        raise ForbiddenError("listing rooms needs a token for room '*'")


def _admin(request: web.Request, room: str | None) -> AccessToken:
    token = _admin_token(request)
    _admin_scope(token, room)
    return token


class HostNotAllowed(ForbiddenError):
    pass


def _loopback_host_header(request: web.Request) -> bool:
    """True when the request's Host names this machine's loopback (localhost, 127.0.0.0/8,
    [::1]; any port). A page on a rebound DNS name carries its own name here."""
    parsed = split_host_port(request.headers.get("Host", ""))
    return parsed is not None and is_loopback_host(parsed[0])


def _require_loopback_host(request: web.Request, what: str) -> None:
    if not _loopback_host_header(request):
        raise HostNotAllowed(
            f"{what} answers only requests addressed to localhost, 127.0.0.1 or [::1] "
            "(the Host header names another host)"
        )


def _origin_allowed(request: web.Request, allowed: tuple[str, ...]) -> bool:
    """No Origin (not a browser), the request's own host:port (same origin), or a listed one."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if "*" in allowed:
        return True
    parsed = normalize_origin(origin)
    if parsed is None:
        return False
    if any(normalize_origin(a) == parsed for a in allowed):
        return True
    scheme, host, port = parsed
    own = split_host_port(request.headers.get("Host", ""))
    if own is None:
        return False
    own_host, own_port = own
    # Behind a TLS proxy the server cannot see its scheme: a Host without a port means the
    # default port of the origin's scheme (never the origin's own port: a page on another port
    # of the same host is another origin), and the origin's scheme must be the one the request
    # came over (or https when a proxy terminated TLS and said so).
    if own_port is None:
        own_port = 443 if scheme == "https" else 80
    return own_host == host and own_port == port and scheme in (
        request.scheme,
        request.headers.get("X-Forwarded-Proto", request.scheme).lower(),
    )


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Any
) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except HostNotAllowed as e:
        return _json_error(403, "host_not_allowed", str(e))
    except ForbiddenError as e:
        return _json_error(403, "forbidden", str(e))
    except AuthError as e:
        return _json_error(401, "unauthorized", str(e))
    except NotFoundError as e:
        return _json_error(404, "not_found", str(e))
    except InvalidStateError as e:
        return _json_error(409, "invalid_state", str(e))
    except VisioError as e:
        return _json_error(400, "bad_request", str(e))


async def _body(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; anything else is a ProtocolError (400)."""
    try:
        text = await request.text()
    except (UnicodeDecodeError, LookupError) as e:  # bad bytes, or an unknown charset
        raise ProtocolError("the body must be UTF-8 JSON") from e
    try:
        body = json.loads(text)
    except (ValueError, RecursionError) as e:
        # RecursionError: nesting deeper than the parser's stack (a hostile body).
        raise ProtocolError("the body must be JSON") from e
    if not isinstance(body, dict):
        raise ProtocolError("the body must be a JSON object")
    return body


async def ws_handler(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    cfg = state.config.signalling
    if not _origin_allowed(request, state.config.server.allowed_origins):
        return _json_error(
            403,
            "origin_not_allowed",
            "this page's origin may not open signalling connections here: the Origin header "
            "must be the server's own address or one of server.allowed_origins",
        )
    # aiohttp refuses a message whose size reaches max_msg_size; ours is the largest allowed.
    # The heartbeat finds a client whose connection died without a FIN (unplugged, suspended)
    # as fast as the vanished-client rule needs: a ping after that much silence, a pong due
    # within half of it.
    ws = SignallingSocket(
        max_msg_size=cfg.max_message_bytes + 1,
        heartbeat=state.config.room.vanished_timeout_seconds,
    )
    await ws.prepare(request)
    task = asyncio.current_task()
    if task is not None:
        state.sessions.add(task)
    try:
        await Session(
            ws, state.rooms, cfg, state.verify, state.metrics.join_seconds.observe, state.lobby
        ).run()
    finally:
        if task is not None:
            state.sessions.discard(task)
    return ws


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format. Open on a loopback listener; elsewhere it needs the same
    room_admin token ('*') as the admin API, so counters never leak to the public."""
    state = request.app[STATE]
    if not is_loopback_host(state.config.server.host) or "Authorization" in request.headers:
        _admin(request, None)
    else:
        _require_loopback_host(request, "/metrics without credentials")
    body = state.metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})



async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.ready and state.rooms.accepting:
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "draining" if state.ready else "starting"}, status=503)


async def list_rooms(request: web.Request) -> web.Response:
    _admin(request, None)
    rooms = request.app[STATE].rooms.rooms
    return web.json_response({"rooms": [r.info() for r in rooms.values()]})


async def show_room(request: web.Request) -> web.Response:
    name = request.match_info["room"]
    _admin(request, name)
    room = request.app[STATE].rooms.rooms.get(name)
    if room is None:
        raise NotFoundError(f"no room {name!r}")
    return web.json_response(room.info())


async def create_room(request: web.Request) -> web.Response:
    token = _admin_token(request)
    body = await _body(request)
    name = body.get("name")
    if not isinstance(name, str) or not ROOM_RE.match(name):
        raise ProtocolError("name must be 1-64 letters, digits, '.', '-' or '_'")
    _admin_scope(token, name)
    limit = body.get("max_participants")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ProtocolError("max_participants must be a positive integer")
    room = request.app[STATE].rooms.create_room(name, limit)
    return web.json_response(room.info(), status=201)


async def close_room(request: web.Request) -> web.Response:
    name = request.match_info["room"]
    _admin(request, name)
    await request.app[STATE].rooms.close_room(name)
    return web.json_response({"closed": name})


async def remove_participant(request: web.Request) -> web.Response:
    name = request.match_info["room"]
    _admin(request, name)
    identity = request.match_info["identity"]
    await request.app[STATE].rooms.remove_participant(name, identity)
    return web.json_response({"removed": identity})


async def mute_track(request: web.Request) -> web.Response:
    name = request.match_info["room"]
    _admin(request, name)
    body = await _body(request)
    muted = body.get("muted", True)
    if not isinstance(muted, bool):
        raise ProtocolError("muted must be a boolean")
    try:
        track_id = int(request.match_info["track_id"])
    except ValueError as e:
        raise NotFoundError("track ids are integers") from e
    request.app[STATE].rooms.set_muted(name, request.match_info["identity"], track_id, muted)
    return web.json_response({"track_id": track_id, "muted": muted})


async def dev_token(request: web.Request) -> web.Response:
    """Dev mode only: a join token for the browser client's join screen."""
    state = request.app[STATE]
    _require_loopback_host(request, "dev mode's token endpoint")
    body = await _body(request)
    room, name = body.get("room"), body.get("name")
    if not isinstance(room, str) or not ROOM_RE.match(room):
        raise ProtocolError("room must be 1-64 letters, digits, '.', '-' or '_'")
    if not isinstance(name, str) or not NAME_RE.match(name.strip()):
        raise ProtocolError("name must be 1-64 letters, digits, spaces, '.', '-' or '_'")
    name = name.strip()
    identity = f"{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-') or 'guest'}-" + (
        secrets.token_hex(3)
    )
    token = mint_token(
        state.config.auth.secret,
        identity=identity,
        room=room,
        name=name,
        grants=Grants(),
        ttl_seconds=state.config.auth.token_ttl_seconds,
    )
    return web.json_response({"token": token, "identity": identity, "room": room})


async def index(request: web.Request) -> web.StreamResponse:
    page = WEB_DIR / "index.html"
    if not page.is_file():
        return web.Response(text="the browser client is not installed", status=404)
    return web.FileResponse(page, headers={"Cache-Control": "no-cache"})


async def _on_startup(app: web.Application) -> None:
    state = app[STATE]
    await state.engine.start()
    state.ready = True


async def _on_shutdown(app: web.Application) -> None:
    state = app[STATE]
    state.rooms.accepting = False
    for room in list(state.rooms.rooms.values()):
        await state.rooms.close_room(room.name, "server_shutdown")


async def _on_cleanup(app: web.Application) -> None:
    state = app[STATE]
    await state.supervisor.close()
    await state.engine.stop()
    state.ready = False


def create_app(config: Config) -> web.Application:
    state = ServerState(config)
    app = web.Application(
        middlewares=[guard_middleware(state.connections), errors_middleware],
        client_max_size=256 * 1024,
        handler_args=handler_args(config.server.header_timeout_seconds),
    )
    app[STATE] = state
    app.router.add_get("/", index)
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/admin/rooms", list_rooms)
    app.router.add_post("/admin/rooms", create_room)
    app.router.add_get("/admin/rooms/{room}", show_room)
    app.router.add_delete("/admin/rooms/{room}", close_room)
    app.router.add_delete("/admin/rooms/{room}/participants/{identity}", remove_participant)
    app.router.add_post(
        "/admin/rooms/{room}/participants/{identity}/tracks/{track_id}/mute", mute_track
    )
    if config.server.dev_mode:
        app.router.add_post("/api/dev-token", dev_token)
    if WEB_DIR.is_dir():
        app.router.add_static("/static/", WEB_DIR, show_index=False)
    app.on_startup.append(_on_startup)
    app.on_shutdown.append(_on_shutdown)
    app.on_cleanup.append(_on_cleanup)
    return app


async def serve(config: Config, *, stop: asyncio.Event | None = None) -> None:
    """Runs until SIGTERM/SIGINT (or `stop`), then drains: readyz 503, no new joins, clients
    warned, rooms given `drain.deadline_seconds`, then everyone is told and the engine stops."""
    before, now, hard = raise_fd_limit()
    app = create_app(config)
    state = app[STATE]
    log.info(
        "open files limit %d%s (hard limit %d); at most %d idle HTTP connections "
        "and %d WebSockets waiting to join",
        now,
        f", raised from {before}" if now != before else "",
        hard,
        state.connections.limit,
        state.lobby.limit,
    )
    runner = await start_listener(app, config.server.host, config.server.port)
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("signal received: draining (a second signal exits at once)")
            stop.set()
        else:
            log.warning("second signal: exiting now")
            os._exit(1)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    addresses = [f"http://{h}:{p}/" for h, p in _bound(runner)]
    log.info("visio-media listening on %s; media UDP on %s", ", ".join(addresses),
             state.engine.udp_addrs())
    if config.server.dev_mode:
        log.info("dev mode: open %s in a browser to join a meeting", addresses[0])
    try:
        await stop.wait()
        await state.rooms.drain(config.drain.deadline_seconds)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
    log.info("stopped")


async def start_listener(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Sets ``app`` up and listens on host:port through the connection guard."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = GuardedSite(runner, host, port, app[STATE].connections)
    await site.start()
    return runner


def _bound(runner: web.AppRunner) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for site in runner.sites:
        server = getattr(site, "_server", None)
        for sock in getattr(server, "sockets", None) or []:
            host, port = sock.getsockname()[:2]
            out.append((host, port))
    return out


def run(config: Config) -> int:
    """The `serve` command: uvloop, then `serve` until a signal."""
    import uvloop

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        uvloop.run(serve(config))
    except OSError as e:
        log.error("cannot start: %s", e)
        return 1
    return 0


__all__ = ["STATE", "ServerState", "create_app", "run", "serve", "start_listener"]
