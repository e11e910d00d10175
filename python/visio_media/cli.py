"""Command line of visio-media (``visio-media`` / ``python -m visio_media``).

* ``serve``: run the server (signalling, admin API, web client, media engine).
* ``token``: mint an access token.
* ``rooms``: list, inspect, create and close rooms, remove participants, mute tracks, through
  the admin API of a running server.

Exit status: 0 on success, 1 when a request to the server failed, 2 for a usage or
configuration error (as argparse does for usage errors).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import sys
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from visio_media import __version__
from visio_media.auth import SOURCES, Grants, mint_token
from visio_media.config import ENV_SECRET, is_loopback_host, load_config, secret_problem
from visio_media.errors import AuthError, ConfigError

__all__ = ["EXIT_FAILED", "EXIT_UNAVAILABLE", "build_parser", "main"]

#: A request to the server failed (connection refused, 401, 404...).
EXIT_FAILED = 1
#: This cannot run: a usage or configuration error, as argparse uses for usage errors.
EXIT_UNAVAILABLE = 2

DEFAULT_URL = "http://127.0.0.1:7880"
ENV_URL = "VISIO_URL"
ENV_TOKEN = "VISIO_TOKEN"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# Identity and lifetime of the admin tokens `rooms --secret` mints for itself.
CLI_IDENTITY = "visio-media-cli"
CLI_TOKEN_TTL_SECONDS = 60
HTTP_TIMEOUT_SECONDS = 10.0


class _Failure(Exception):
    """A command failed; the message goes to stderr and ``status`` becomes the exit status."""

    def __init__(self, message: str, status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.status = status


# ---- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="visio-media",
        description="visio-media: a WebRTC SFU (Rust data plane, asyncio control plane).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_serve(commands)
    _add_token(commands)
    _add_rooms(commands)
    _add_load(commands)
    return parser


def _add_serve(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the signalling server and the media engine",
        description=(
            "Run the HTTP + WebSocket server (signalling, admin API, web client) and the media "
            f"engine. Outside dev mode a strong token secret is required: set {ENV_SECRET} or "
            "[auth] secret in the config file."
        ),
    )
    serve.add_argument("--config", type=Path, metavar="FILE", help="TOML config file")
    serve.add_argument(
        "--dev",
        action="store_true",
        default=None,
        help="dev mode: loopback only, a generated token secret",
    )
    serve.add_argument("--host", help="listen address (overrides server.host)")
    serve.add_argument("--port", type=_port, help="listen port (overrides server.port)")
    serve.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        default="info",
        help="logging level (default: info)",
    )
    serve.set_defaults(handler=_serve)


def _add_token(commands: Any) -> None:
    token = commands.add_parser(
        "token",
        help="mint an access token",
        description=(
            "Print an access token (JWT, HS256) for IDENTITY in ROOM. The key comes from "
            f"--secret, else from --config (and {ENV_SECRET} over it), else from {ENV_SECRET}. "
            f"Prefer {ENV_SECRET}: a --secret is visible to other users in the process list."
        ),
    )
    key = token.add_mutually_exclusive_group()
    key.add_argument("--secret", help=f"signing key (default: ${ENV_SECRET})")
    key.add_argument("--config", type=Path, metavar="FILE", help="take the key from this config")
    token.add_argument("--identity", required=True, help="participant identity (the `sub` claim)")
    token.add_argument("--room", required=True, help="room name ('*' with --admin: every room)")
    token.add_argument("--name", help="display name (default: the identity)")
    token.add_argument(
        "--ttl",
        type=_positive_float,
        metavar="SECONDS",
        help="lifetime (default: auth.token_ttl_seconds of --config, else 3600)",
    )
    token.add_argument("--no-join", action="store_true", help="without the join grant")
    token.add_argument("--no-publish", action="store_true", help="without the publish grant")
    token.add_argument("--no-subscribe", action="store_true", help="without the subscribe grant")
    token.add_argument(
        "--sources",
        type=_sources,
        metavar="A,B",
        help=f"sources the token may publish (default: all of {','.join(SOURCES)})",
    )
    token.add_argument("--admin", action="store_true", help="with the room_admin grant")
    token.set_defaults(handler=_token)


def _add_rooms(commands: Any) -> None:
    # The connection options are accepted before and after the action (`rooms --url U list` and
    # `rooms list --url U`): SUPPRESS keeps an action's parser from resetting what came before.
    def connection(default: Any) -> argparse.ArgumentParser:
        common = argparse.ArgumentParser(add_help=False)
        common.add_argument(
            "--url",
            default=default,
            help=f"server base URL (default: ${ENV_URL}, from --config, else {DEFAULT_URL})",
        )
        auth = common.add_mutually_exclusive_group()
        auth.add_argument(
            "--token", default=default, help=f"an admin token (default: ${ENV_TOKEN})"
        )
        auth.add_argument(
            "--secret",
            default=default,
            help=f"mint a {CLI_TOKEN_TTL_SECONDS}s admin token with this key "
            f"(default: ${ENV_SECRET})",
        )
        common.add_argument(
            "--config", type=Path, default=default, metavar="FILE", help="key and URL from here"
        )
        common.add_argument(
            "--timeout",
            type=_positive_float,
            default=default,
            metavar="SECONDS",
            help=f"HTTP timeout (default: {HTTP_TIMEOUT_SECONDS:g})",
        )
        return common

    rooms = commands.add_parser(
        "rooms",
        parents=[connection(None)],
        help="list, inspect and close rooms through the admin API",
        description=(
            "Talk to the admin API of a running server and print its JSON answer. "
            f"Authentication: --token (or ${ENV_TOKEN}), or a key to mint an admin token with: "
            f"--secret, --config or ${ENV_SECRET}."
        ),
    )
    rooms.set_defaults(handler=_rooms)
    actions = rooms.add_subparsers(dest="action", metavar="ACTION", required=True)
    per_action = [connection(argparse.SUPPRESS)]
    actions.add_parser("list", parents=per_action, help="list the rooms")
    show = actions.add_parser("show", parents=per_action, help="a room and its participants")
    show.add_argument("room")
    create = actions.add_parser("create", parents=per_action, help="create a room")
    create.add_argument("room")
    create.add_argument("--max-participants", type=_positive_int, metavar="N")
    close = actions.add_parser("close", parents=per_action, help="close a room (all leave)")
    close.add_argument("room")
    remove = actions.add_parser("remove", parents=per_action, help="remove a participant")
    remove.add_argument("room")
    remove.add_argument("identity")
    mute = actions.add_parser("mute", parents=per_action, help="mute (or unmute) a track")
    mute.add_argument("room")
    mute.add_argument("identity")
    mute.add_argument("track_id", type=int)
    mute.add_argument("--unmute", action="store_true", help="unmute instead")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is not in 0–65535")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def _sources(text: str) -> tuple[str, ...]:
    sources = tuple(s.strip() for s in text.split(",") if s.strip())
    for source in sources:
        if source not in SOURCES:
            raise argparse.ArgumentTypeError(
                f"unknown source {source!r} (known: {', '.join(SOURCES)})"
            )
    if len(set(sources)) != len(sources):
        raise argparse.ArgumentTypeError("a source is listed twice")
    return sources


def _count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {v}")
    return v


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (v >= 0 and v < 1e6):
        raise argparse.ArgumentTypeError(f"out of range: {v}")
    return v


def _add_load(commands: Any) -> None:
    load = commands.add_parser(
        "load",
        help="load-test a server with simulated participants",
        description=(
            "Join simulated participants that take the real path (WebSocket + token, ICE, "
            "DTLS, SRTP), publish synthetic audio/video and receive the others', then print "
            "joins, first-media times, packet rates, loss, latency, the server's CPU and its "
            f"/metrics counters beside the generator's. Tokens are minted from --secret, "
            f"--secret-file or ${ENV_SECRET}. See docs/load.md."
        ),
    )
    load.add_argument("--url", default="ws://127.0.0.1:7880/ws", help="signalling WebSocket URL")
    key = load.add_mutually_exclusive_group()
    key.add_argument("--secret", help=f"token signing key (default: ${ENV_SECRET})")
    key.add_argument("--secret-file", type=Path, metavar="FILE", help="read the key from FILE")
    load.add_argument("--rooms", type=_positive_int, default=1, help="rooms (default 1)")
    load.add_argument(
        "--participants", type=_positive_int, default=10, help="participants per room (10)"
    )
    load.add_argument("--audio-publishers", type=_count, default=2, help="per room (2)")
    load.add_argument("--video-publishers", type=_count, default=2, help="per room (2)")
    load.add_argument(
        "--loud-speakers", type=_count, default=1, help="audio publishers speaking loudly (1)"
    )
    load.add_argument("--dtx", action="store_true", help="quiet speakers use DTX")
    load.add_argument(
        "--video-bitrate", type=_positive_int, default=1_500_000, help="bit/s (1500000)"
    )
    load.add_argument(
        "--video-packet-bytes", type=_positive_int, default=1200, help="RTP payload size (1200)"
    )
    load.add_argument("--keyframe-interval", type=_seconds, default=2.0, help="seconds (2)")
    load.add_argument("--join-rate", type=_seconds, default=20.0, help="joins per second (20)")
    load.add_argument("--warmup", type=_seconds, default=3.0, help="seconds before measuring (3)")
    load.add_argument("--duration", type=_seconds, default=10.0, help="measured seconds (10)")
    load.add_argument("--threads", type=_positive_int, default=1, help="media threads (1)")
    load.add_argument("--bind-ip", default="127.0.0.1", help="local address for media")
    load.add_argument("--room-prefix", default="load", help="room names: PREFIX-0, PREFIX-1...")
    load.add_argument("--server-pid", type=_positive_int, help="server process (else by port)")
    load.add_argument("--metrics-url", help="server /metrics (default: from --url)")
    load.add_argument(
        "--baseline",
        choices=("relay",),
        help="relay: the same traffic in plain RTP through a minimal recvmmsg/sendmmsg relay "
        "in this process (the raw ceiling; no server, no key needed)",
    )
    load.add_argument(
        "--with-baseline",
        action="store_true",
        help="after the server run, run the relay baseline and report the server's share of it",
    )
    load.add_argument(
        "--video-slots", type=_count, help="video receive slots asked in join (server default)"
    )
    load.add_argument(
        "--audio-slots", type=_count, help="audio receive slots asked in join (server default)"
    )
    load.add_argument(
        "--layout-tiles",
        type=_count,
        default=0,
        help="once joined, each participant asks for N videos in a layout (0: automatic)",
    )
    load.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    load.add_argument("--no-progress", action="store_true", help="no live progress line")
    load.add_argument(
        "--log-level", type=str.lower, choices=LOG_LEVELS, default="warning", help="(warning)"
    )
    load.set_defaults(handler=_load)


def _load(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.secret is not None:
        secret: str = args.secret
    elif args.secret_file is not None:
        try:
            secret = args.secret_file.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise _Failure(f"cannot read --secret-file: {e}", EXIT_UNAVAILABLE) from e
    else:
        secret = os.environ.get(ENV_SECRET, "")
    if args.baseline is not None and args.with_baseline:
        raise _Failure("--baseline and --with-baseline exclude each other", EXIT_UNAVAILABLE)
    if secret == "" and args.baseline is None:
        raise _Failure(
            f"no signing key: set {ENV_SECRET}, or pass --secret or --secret-file",
            EXIT_UNAVAILABLE,
        )
    if not args.url.startswith(("ws://", "wss://")):
        raise _Failure(f"--url must be a ws:// or wss:// URL: {args.url!r}", EXIT_UNAVAILABLE)
    if args.join_rate <= 0:
        raise _Failure("--join-rate must be positive", EXIT_UNAVAILABLE)
    from visio_media.load import LoadOptions, run_load  # lazily: aiohttp and the extension

    options = LoadOptions(
        url=args.url,
        secret=secret,
        rooms=args.rooms,
        participants=args.participants,
        audio_publishers=min(args.audio_publishers, args.participants),
        video_publishers=min(args.video_publishers, args.participants),
        loud_speakers=args.loud_speakers,
        dtx=args.dtx,
        video_bitrate_bps=args.video_bitrate,
        video_packet_bytes=args.video_packet_bytes,
        keyframe_interval_s=args.keyframe_interval,
        join_rate=args.join_rate,
        warmup_s=args.warmup,
        duration_s=args.duration,
        threads=args.threads,
        bind_ip=args.bind_ip,
        room_prefix=args.room_prefix,
        server_pid=args.server_pid,
        metrics_url=args.metrics_url,
        progress=not (args.json or args.no_progress),
        baseline=args.baseline,
        with_baseline=args.with_baseline,
        video_slots=args.video_slots,
        audio_slots=args.audio_slots,
        layout_tiles=args.layout_tiles,
    )
    try:
        return run_load(options, as_json=args.json)
    except AuthError as e:
        raise _Failure(f"cannot mint tokens: {e}", EXIT_UNAVAILABLE) from e
    except ValueError as e:
        raise _Failure(str(e), EXIT_UNAVAILABLE) from e


# ---- entry point ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command, return its exit status."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as e:
        _error(f"config error: {e}")
        return EXIT_UNAVAILABLE
    except _Failure as e:
        _error(str(e))
        return e.status


def _error(message: str) -> None:
    print(f"visio-media: {message}", file=sys.stderr)


# ---- serve ----------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = load_config(
        args.config,
        dev=True if args.dev else None,
        overrides={"server.host": args.host, "server.port": args.port},
    )
    from visio_media.server import run  # lazily: the server pulls in aiohttp and the engine

    return run(config)


# ---- token ----------------------------------------------------------------------------------


def _token(args: argparse.Namespace) -> int:
    ttl: float = 3600
    if args.secret is not None:
        secret: str = args.secret
    elif args.config is not None:
        config = load_config(args.config, dev=False)
        secret = config.auth.secret
        ttl = config.auth.token_ttl_seconds
    else:
        secret = os.environ.get(ENV_SECRET, "")
        if secret == "":
            raise _Failure(
                f"no signing key: set {ENV_SECRET}, or pass --config FILE or --secret KEY",
                EXIT_UNAVAILABLE,
            )
    problem = secret_problem(secret)
    if problem is not None:
        _error(f"warning: {problem}; a server outside dev mode refuses such a key")
    grants = Grants(
        join=not args.no_join,
        publish=not args.no_publish,
        subscribe=not args.no_subscribe,
        publish_sources=args.sources if args.sources is not None else SOURCES,
        room_admin=args.admin,
    )
    try:
        token = mint_token(
            secret,
            identity=args.identity,
            room=args.room,
            name=args.name,
            grants=grants,
            ttl_seconds=args.ttl if args.ttl is not None else ttl,
        )
    except AuthError as e:
        raise _Failure(f"cannot mint the token: {e}", EXIT_UNAVAILABLE) from None
    print(token)
    return 0


# ---- rooms ----------------------------------------------------------------------------------


def _rooms(args: argparse.Namespace) -> int:
    room: str | None = getattr(args, "room", None)
    base_url, token = _admin_credentials(args, room)
    timeout: float = args.timeout or HTTP_TIMEOUT_SECONDS

    def path(*parts: str) -> str:
        return "/admin/rooms" + "".join("/" + urllib.parse.quote(p, safe="") for p in parts)

    method, url_path, body = "GET", path(), None
    action: str = args.action
    if action == "show":
        url_path = path(args.room)
    elif action == "create":
        body = {"name": args.room}
        if args.max_participants is not None:
            body["max_participants"] = args.max_participants
        method = "POST"
    elif action == "close":
        method, url_path = "DELETE", path(args.room)
    elif action == "remove":
        method, url_path = "DELETE", path(args.room, "participants", args.identity)
    elif action == "mute":
        method = "POST"
        url_path = path(args.room, "participants", args.identity, "tracks", str(args.track_id))
        url_path += "/mute"
        body = {"muted": not args.unmute}

    answer = _http(method, base_url + url_path, token, body, timeout, what=_what(args))
    if answer is not None:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
    return 0


def _what(args: argparse.Namespace) -> str:
    if args.action in ("remove", "mute"):
        return f"participant {args.identity!r} in room {args.room!r}"
    if args.action == "list":
        return "admin API (is --url a visio-media server?)"
    return f"room {args.room!r}"


def _admin_credentials(args: argparse.Namespace, room: str | None) -> tuple[str, str]:
    """The server's base URL and a bearer token, from the flags, the config, the environment."""
    config = load_config(args.config, dev=False) if args.config is not None else None
    url = args.url or os.environ.get(ENV_URL) or None
    if url is None:
        url = _config_url(config.server.host, config.server.port) if config else DEFAULT_URL
    url = _check_url(url)

    token: str | None = args.token
    secret: str | None = args.secret
    if token is None and secret is None:
        if config is not None:
            secret = config.auth.secret
        else:
            token = os.environ.get(ENV_TOKEN) or None
            secret = os.environ.get(ENV_SECRET) or None
    if token is not None:
        return url, token
    if secret is None:
        raise _Failure(
            f"no credentials: pass --token (or set {ENV_TOKEN}), or a key to mint an admin "
            f"token with: --secret, --config or {ENV_SECRET}",
            EXIT_UNAVAILABLE,
        )
    # Least privilege: a short-lived token for this one room when the action names one.
    try:
        token = mint_token(
            secret,
            identity=CLI_IDENTITY,
            room=room if room is not None else "*",
            grants=Grants(
                join=False, publish=False, subscribe=False, publish_sources=(), room_admin=True
            ),
            ttl_seconds=CLI_TOKEN_TTL_SECONDS,
        )
    except AuthError as e:
        raise _Failure(f"cannot mint an admin token: {e}", EXIT_UNAVAILABLE) from None
    return url, token


def _config_url(host: str, port: int) -> str:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return f"http://{host}:{port}"
    if ip.is_unspecified:  # listening everywhere: talk to it on loopback
        ip = ipaddress.ip_address("::1" if ip.version == 6 else "127.0.0.1")
    return f"http://[{ip}]:{port}" if ip.version == 6 else f"http://{ip}:{port}"


def _check_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Failure(
            f"--url must be an http:// or https:// URL such as {DEFAULT_URL}, got {url!r}",
            EXIT_UNAVAILABLE,
        )
    return url.rstrip("/")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are errors: following one would send the admin token elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _http(
    method: str,
    url: str,
    token: str,
    body: dict[str, Any] | None,
    timeout: float,
    *,
    what: str,
) -> Any:
    """One request; returns the decoded JSON answer (None for an empty one) or raises _Failure."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
    if is_loopback_host(urllib.parse.urlsplit(url).hostname or ""):
        handlers.append(urllib.request.ProxyHandler({}))  # never send loopback via a proxy
    opener = urllib.request.build_opener(*handlers)
    base = url.split("/admin/", 1)[0]
    try:
        with opener.open(request, timeout=timeout) as response:
            raw: bytes = response.read()
    except urllib.error.HTTPError as e:
        raise _Failure(_http_error(e, what)) from None
    except urllib.error.URLError as e:
        raise _Failure(_connection_error(base, e.reason)) from None
    except (TimeoutError, ConnectionError) as e:
        raise _Failure(_connection_error(base, e)) from None
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise _Failure(f"{base} answered something that is not JSON") from None


def _http_error(e: urllib.error.HTTPError, what: str) -> str:
    message = ""
    try:
        detail = json.loads(e.read() or b"null")
        if isinstance(detail, dict) and isinstance(detail.get("error"), dict):
            message = _printable(str(detail["error"].get("message", "")))
    except (ValueError, OSError):
        pass
    suffix = f": {message}" if message else ""
    if e.code == 401:
        return (
            f"unauthorized (HTTP 401){suffix} — the server refused the token; check that "
            f"--secret/--config/{ENV_SECRET} match the server's key, or that --token is valid"
        )
    if e.code == 403:
        return f"forbidden (HTTP 403): {message or 'the token lacks the room_admin grant'}"
    if e.code == 404:
        return f"not found (HTTP 404): {message or 'no such ' + what}"
    if 300 <= e.code < 400:
        return f"the server answered a redirect (HTTP {e.code}); not followed — check --url"
    return f"HTTP {e.code}{suffix or ': ' + _printable(str(e.reason))}"


def _connection_error(base: str, reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return f"cannot connect to {base}: connection refused — is `visio-media serve` running?"
    if isinstance(reason, TimeoutError):
        return f"no answer from {base}: timed out"
    text = reason.strerror if isinstance(reason, OSError) and reason.strerror else reason
    return f"cannot reach {base}: {_printable(str(text))}"


def _printable(text: str, limit: int = 300) -> str:
    clean = "".join(c for c in text if not unicodedata.category(c).startswith("C"))
    return clean[:limit]

