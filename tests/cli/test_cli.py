"""The command line: `token`, `serve` config errors, `rooms` against a fake admin API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from visio_media import __version__
from visio_media.auth import SOURCES, Grants, verify_token
from visio_media.cli import main
from visio_media.config import Config

REPO = Path(__file__).resolve().parents[2]
SECRET = "cli-s3cret-for-tests-Vb8Nq2Rz5Lx7Wk1Pj4"
ENV_VARS = (
    "VISIO_SECRET",
    "VISIO_HOST",
    "VISIO_PORT",
    "VISIO_ANNOUNCE_IP",
    "VISIO_URL",
    "VISIO_TOKEN",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)


def run_module(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m visio_media ARGS`` in a subprocess, importing this work tree."""
    environ = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "python"), *filter(None, [environ.get("PYTHONPATH")])]
    )
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "visio_media", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
    )


# ---- token ----------------------------------------------------------------------------------


def test_token_round_trips_through_verify_token(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        [
            "token",
            "--secret",
            SECRET,
            "--identity",
            "alice",
            "--room",
            "standup",
            "--name",
            "Alice L.",
            "--ttl",
            "120",
            "--no-publish",
            "--sources",
            "camera,microphone",
        ]
    )
    out, err = capsys.readouterr()
    assert status == 0, err
    assert err == ""
    token = verify_token(SECRET, out.strip())
    assert (token.identity, token.name, token.room) == ("alice", "Alice L.", "standup")
    assert token.grants == Grants(
        join=True,
        publish=False,
        subscribe=True,
        publish_sources=("camera", "microphone"),
        room_admin=False,
    )
    assert out.count("\n") == 1


def test_token_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--secret", SECRET, "--identity", "bob", "--room", "r"]) == 0
    token = verify_token(SECRET, capsys.readouterr().out.strip())
    assert token.name == "bob"
    assert token.grants == Grants()
    assert token.grants.publish_sources == SOURCES


def test_token_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VISIO_SECRET", SECRET)
    assert main(["token", "--identity", "ops", "--room", "*", "--admin", "--no-join"]) == 0
    token = verify_token(SECRET, capsys.readouterr().out.strip())
    assert token.grants.room_admin and not token.grants.join
    assert token.allows_room("any-room")


def test_token_from_a_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "visio.toml"
    config.write_text(f'[auth]\nsecret = "{SECRET}"\ntoken_ttl_seconds = 90\n')
    assert main(["token", "--config", str(config), "--identity", "c", "--room", "r"]) == 0
    token = verify_token(SECRET, capsys.readouterr().out.strip())
    assert 80 < token.expires_at - time.time() <= 91


def test_token_refuses_a_placeholder_in_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    sample = REPO / "config-sample.toml"
    assert main(["token", "--config", str(sample), "--identity", "c", "--room", "r"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "secret" in err and "VISIO_SECRET" in err


def test_token_without_a_secret(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--identity", "a", "--room", "r"]) == 2
    assert "VISIO_SECRET" in capsys.readouterr().err


def test_token_warns_about_a_weak_secret(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--secret", "short", "--identity", "a", "--room", "r"]) == 0
    out, err = capsys.readouterr()
    assert verify_token("short", out.strip()).identity == "a"
    assert "warning" in err and "short" not in err.replace("shorter", "")


def test_token_wildcard_room_needs_admin(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--secret", SECRET, "--identity", "a", "--room", "*"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "room_admin" in err
    assert SECRET not in err


def test_token_bad_identity(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--secret", SECRET, "--identity", "a\nb", "--room", "r"]) == 2
    assert "identity" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["--sources", "camera,laser"],
        ["--sources", "camera,camera"],
        ["--ttl", "0"],
        ["--ttl", "soon"],
    ],
)
def test_token_bad_flags_are_usage_errors(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["token", "--secret", SECRET, "--identity", "a", "--room", "r", *args])
    assert info.value.code == 2
    assert "visio-media token" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"visio-media {__version__}"


# ---- serve ----------------------------------------------------------------------------------


def test_serve_with_an_unknown_key_exits_2_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[media]\nshard = 2\n")
    result = run_module("serve", "--config", str(bad))
    assert result.returncode == 2, result.stderr
    assert "'media.shard'" in result.stderr
    assert "did you mean 'media.shards'" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_serve_refuses_the_sample_outside_dev_mode() -> None:
    result = run_module("serve", "--config", str(REPO / "config-sample.toml"))
    assert result.returncode == 2
    assert "secret" in result.stderr and "VISIO_SECRET" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_flags_are_checked_before_starting(capsys: pytest.CaptureFixture[str]) -> None:
    # A non-loopback --host in dev mode is a config error (exit 2), before any server starts.
    assert main(["serve", "--dev", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "dev mode" in err and "server.host" in err
    with pytest.raises(SystemExit) as info:
        main(["serve", "--port", "70000"])
    assert info.value.code == 2


def test_serve_hands_the_config_to_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Config] = []

    def fake_run(config: Config) -> int:
        seen.append(config)
        return 7

    monkeypatch.setitem(sys.modules, "visio_media.server", types.SimpleNamespace(run=fake_run))
    assert main(["serve", "--dev", "--port", "0", "--log-level", "WARNING"]) == 7
    (config,) = seen
    assert config.server.dev_mode and config.server.port == 0
    assert len(config.auth.secret) >= 32


# ---- rooms ----------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens there any more


def test_rooms_against_a_closed_port(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    assert main(["rooms", "--url", url, "--secret", SECRET, "list"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "connection refused" in err and url in err
    assert "Traceback" not in err


def test_rooms_without_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rooms", "list"]) == 2
    assert "--token" in capsys.readouterr().err


def test_rooms_bad_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rooms", "--url", "ftp://x", "--secret", SECRET, "list"]) == 2
    assert "--url" in capsys.readouterr().err


@dataclass
class FakeAdmin:
    """A stand-in for the admin API on 127.0.0.1: records requests, plays canned answers."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    answer: Any = field(default_factory=lambda: {"rooms": []})
    headers: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def admin() -> Iterator[FakeAdmin]:
    fake = FakeAdmin()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fake.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "auth": self.headers.get("Authorization", ""),
                    "body": json.loads(body) if body else None,
                }
            )
            data = json.dumps(fake.answer).encode()
            self.send_response(fake.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in fake.headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _handle

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def bearer(request: dict[str, Any]) -> Any:
    auth: str = request["auth"]
    assert auth.startswith("Bearer ")
    return verify_token(SECRET, auth.removeprefix("Bearer "))


def test_rooms_list_prints_json_with_an_admin_token(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.answer = {"rooms": [{"name": "standup", "participants": 2}]}
    assert main(["rooms", "--url", admin.url, "--secret", SECRET, "list"]) == 0
    assert json.loads(capsys.readouterr().out) == admin.answer
    (request,) = admin.requests
    assert (request["method"], request["path"]) == ("GET", "/admin/rooms")
    token = bearer(request)
    assert token.room == "*" and token.grants.room_admin
    assert not (token.grants.join or token.grants.publish or token.grants.subscribe)


def test_rooms_options_after_the_action(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISIO_SECRET", SECRET)
    assert main(["rooms", "list", "--url", admin.url]) == 0
    bearer(admin.requests[0])


@pytest.mark.parametrize(
    ("args", "method", "path", "body"),
    [
        (["show", "a b/c"], "GET", "/admin/rooms/a%20b%2Fc", None),
        (["create", "r1", "--max-participants", "5"], "POST", "/admin/rooms", None),
        (["close", "r1"], "DELETE", "/admin/rooms/r1", None),
        (["remove", "r1", "bob"], "DELETE", "/admin/rooms/r1/participants/bob", None),
        (
            ["mute", "r1", "bob", "7"],
            "POST",
            "/admin/rooms/r1/participants/bob/tracks/7/mute",
            {"muted": True},
        ),
        (
            ["mute", "r1", "bob", "7", "--unmute"],
            "POST",
            "/admin/rooms/r1/participants/bob/tracks/7/mute",
            {"muted": False},
        ),
    ],
)
def test_rooms_actions(
    admin: FakeAdmin,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    method: str,
    path: str,
    body: Any,
) -> None:
    admin.answer = {"ok": True}
    assert main(["rooms", "--url", admin.url, "--secret", SECRET, *args]) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True}
    (request,) = admin.requests
    assert (request["method"], request["path"]) == (method, path)
    if args[0] == "create":
        assert request["body"] == {"name": "r1", "max_participants": 5}
    else:
        assert request["body"] == body
    token = bearer(request)
    assert token.room == args[1]  # least privilege: a token for that room only


def test_rooms_with_a_given_token(admin: FakeAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rooms", "--url", admin.url + "/", "--token", "opaque", "list"]) == 0
    assert admin.requests[0]["auth"] == "Bearer opaque"
    assert admin.requests[0]["path"] == "/admin/rooms"


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (401, ["unauthorized", "401", "bad signature"]),
        (403, ["forbidden", "bad signature"]),
        (404, ["not found", "bad signature"]),
        (503, ["HTTP 503", "bad signature"]),
    ],
)
def test_rooms_http_errors(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str], status: int, words: list[str]
) -> None:
    admin.status = status
    admin.answer = {"error": {"code": "x", "message": "bad signature\x1b[31m"}}
    assert main(["rooms", "--url", admin.url, "--secret", SECRET, "show", "ghost"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    for word in words:
        assert word in err
    assert "\x1b" not in err  # the server's text is printed without control characters
    assert SECRET not in err


@pytest.mark.parametrize(("status", "words"), [(403, "room_admin"), (404, "room 'ghost'")])
def test_rooms_http_errors_without_a_message(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str], status: int, words: str
) -> None:
    admin.status = status
    admin.answer = "nope"
    assert main(["rooms", "--url", admin.url, "--secret", SECRET, "show", "ghost"]) == 1
    assert words in capsys.readouterr().err


def test_rooms_redirect_is_not_followed(
    admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.status = 302
    admin.headers = {"Location": "http://127.0.0.1:9/steal"}
    assert main(["rooms", "--url", admin.url, "--secret", SECRET, "list"]) == 1
    assert "redirect" in capsys.readouterr().err
    assert len(admin.requests) == 1


def test_rooms_url_and_secret_from_a_config(
    admin: FakeAdmin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = admin.url.rsplit(":", 1)[1]
    config = tmp_path / "visio.toml"
    config.write_text(f'[server]\nport = {port}\n[auth]\nsecret = "{SECRET}"\n')
    assert main(["rooms", "--config", str(config), "list"]) == 0
    bearer(admin.requests[0])
