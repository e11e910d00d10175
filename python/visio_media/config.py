"""Configuration: a strict TOML file, environment overrides for secrets, dev mode.

Sources, later ones winning: the defaults below, the TOML file (``--config``), the environment
(``VISIO_SECRET``, ``VISIO_HOST``, ``VISIO_PORT``, ``VISIO_ANNOUNCE_IP``), then ``overrides``
(command-line flags, as dotted keys such as ``"server.port"``).

Parsing is strict: an unknown section or key, a value of the wrong type (a boolean is not an
integer) or out of range is a :class:`~visio_media.errors.ConfigError` that names the key and
where it came from. Secrets are never echoed in messages.

Dev mode (``--dev`` or ``server.dev_mode``) is for a laptop: listeners must be on loopback, and a
missing or weak secret is replaced by a freshly generated one. Outside dev mode a missing,
well-known, short (< 32 bytes) or patterned (estimated < 128 random bits: repeats, runs,
common words) secret refuses to start.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import logging
import math
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from visio_media.auth import MAX_IDENTITY_CHARS, MAX_NAME_CHARS, MAX_ROOM_CHARS
from visio_media.errors import ConfigError

__all__ = [
    "ENV_ANNOUNCE_IP",
    "ENV_HOST",
    "ENV_PORT",
    "ENV_SECRET",
    "MAX_AUDIO_SLOTS",
    "MAX_VIDEO_SLOTS",
    "MIN_SECRET_BITS",
    "MIN_SECRET_BYTES",
    "SAMPLE_SECRET_PLACEHOLDER",
    "AuthConfig",
    "Config",
    "DrainConfig",
    "MediaConfig",
    "RoomConfig",
    "ServerConfig",
    "SignallingConfig",
    "effective_shards",
    "estimate_secret_bits",
    "is_loopback_host",
    "joined_json_bytes",
    "load_config",
    "normalize_origin",
    "participant_json_bytes",
    "secret_problem",
    "split_host_port",
]

log = logging.getLogger(__name__)

ENV_SECRET = "VISIO_SECRET"
ENV_HOST = "VISIO_HOST"
ENV_PORT = "VISIO_PORT"
ENV_ANNOUNCE_IP = "VISIO_ANNOUNCE_IP"

#: An HS256 key shorter than this (in UTF-8 bytes) is refused outside dev mode.
MIN_SECRET_BYTES = 32

#: The secret written in ``config-sample.toml``: long enough, and refused all the same.
SAMPLE_SECRET_PLACEHOLDER = "change-me-this-placeholder-is-refused-outside-dev-mode"

MAX_SHARDS = 256


@dataclass(frozen=True)
class ServerConfig:
    """The HTTP + WebSocket listener (signalling, admin API, metrics, web client)."""

    host: str = "127.0.0.1"
    port: int = 7880  # 0 = any free port (tests)
    dev_mode: bool = False
    # A connection must send a complete request head this soon after it opens (or after its
    # previous response); a slow or silent one is closed.
    header_timeout_seconds: float = 10.0
    # HTTP connections without a request in progress; past it the oldest is closed.
    max_pending_connections: int = 1000
    # Browser origins ("https://host[:port]", or "*") allowed to open /ws besides the server's
    # own (same host:port as the request's Host). Requests without Origin are always allowed.
    allowed_origins: tuple[str, ...] = ()


@dataclass(frozen=True)
class MediaConfig:
    """The Rust engine: shard threads, each with one UDP socket."""

    shards: int = 0  # 0 = one per CPU core
    bind_ip: str = "127.0.0.1"
    announce_ip: str | None = None
    port_min: int = 0  # 0 and 0: the OS picks a port per shard
    port_max: int = 0


@dataclass(frozen=True)
class AuthConfig:
    secret: str = field(default="", repr=False)
    token_ttl_seconds: int = 3600


#: About what one m-line (a receive slot or a published track) adds to a participant's SDP, in
#: bytes.
SDP_BYTES_PER_TRACK = 1200
#: Session-level lines of an SDP, on top of its m-lines, in bytes.
SDP_SESSION_BYTES = 1024
#: The most one slot of a `slots` frame can take once JSON-encoded, in bytes: the longest
#: identity (128 characters, each up to 12 bytes as a ``\uXXXX\uXXXX`` escape pair), a mid, the
#: longest source and a 64-bit track id with their keys.
SLOT_JSON_BYTES = 1700
#: JSON escapes a character outside the BMP as a ``\uXXXX\uXXXX`` pair: 12 bytes.
_JSON_BYTES_PER_CHAR = 12
#: The most one Track object (docs/protocol.md) takes once JSON-encoded, comma included.
TRACK_JSON_BYTES = 100


def participant_json_bytes(max_tracks: int) -> int:
    """The most one Participant object takes once JSON-encoded: the longest identity and name a
    token may carry, and ``max_tracks`` tracks."""
    text = (MAX_IDENTITY_CHARS + MAX_NAME_CHARS) * _JSON_BYTES_PER_CHAR
    return text + 64 + max_tracks * TRACK_JSON_BYTES


def joined_json_bytes(max_tracks: int) -> int:
    """The most a `joined` frame with one other participant takes: every frame the server sends
    must fit in ``signalling.max_message_bytes``, and this is the largest that cannot be paged
    further (two participants, the longest room name, a 64-character request id)."""
    room = MAX_ROOM_CHARS * _JSON_BYTES_PER_CHAR
    ref = 64 * _JSON_BYTES_PER_CHAR
    return 2 * participant_json_bytes(max_tracks) + room + ref + 512


#: Upper bounds of ``room.max_video_slots`` / ``room.max_audio_slots``: no screen shows more
#: tiles, and no ear follows more voices, than this.
MAX_VIDEO_SLOTS = 64
MAX_AUDIO_SLOTS = 16


@dataclass(frozen=True)
class RoomConfig:
    max_participants: int = 150
    empty_timeout_seconds: float = 300.0
    reconnect_grace_seconds: float = 20.0
    auto_create: bool = True
    max_tracks_per_participant: int = 4
    # Not bounded by any SDP any more: a participant receives through its slots only.
    max_tracks_per_room: int = 1000
    vanished_timeout_seconds: float = 5.0
    # Receive slots a client may ask for at join (`video_slots` / `audio_slots`), and what it
    # gets when it does not ask.
    max_video_slots: int = 25
    default_video_slots: int = 9
    max_audio_slots: int = 8
    default_audio_slots: int = 3


@dataclass(frozen=True)
class SignallingConfig:
    max_message_bytes: int = 65536
    handshake_timeout_seconds: float = 10.0
    # WebSockets upgraded but not joined yet; past it the oldest is closed (1013).
    max_unjoined: int = 1000


@dataclass(frozen=True)
class DrainConfig:
    deadline_seconds: float = 30.0


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    room: RoomConfig = field(default_factory=RoomConfig)
    signalling: SignallingConfig = field(default_factory=SignallingConfig)
    drain: DrainConfig = field(default_factory=DrainConfig)


# Section name -> dataclass, in file order.
_SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig,
    "media": MediaConfig,
    "auth": AuthConfig,
    "room": RoomConfig,
    "signalling": SignallingConfig,
    "drain": DrainConfig,
}

# Section name -> {key -> type hint}, from the dataclasses themselves.
_SCHEMA: dict[str, dict[str, Any]] = {
    name: {f.name: get_type_hints(cls)[f.name] for f in dataclasses.fields(cls)}
    for name, cls in _SECTIONS.items()
}
_ALL_KEYS = [f"{section}.{key}" for section, keys in _SCHEMA.items() for key in keys]

# Environment variable -> dotted key.
_ENV_KEYS = {
    ENV_SECRET: "auth.secret",
    ENV_HOST: "server.host",
    ENV_PORT: "server.port",
    ENV_ANNOUNCE_IP: "media.announce_ip",
}

# Secrets that are public knowledge (compared lowercased, punctuation removed), and fragments
# that mark a placeholder wherever they appear.
_WELL_KNOWN_SECRETS = frozenset(
    {
        "secret",
        "changeme",
        "devkey",
        "devsecret",
        "password",
        "passw0rd",
        "default",
        "test",
        "testing",
        "testsecret",
        "visio",
        "visiomedia",
        "visiomediasecret",
        "mysecret",
        "supersecret",
        "secretkey",
        "yoursecret",
        "yoursecrethere",
        "jwtsecret",
        "apisecret",
        "admin",
        "letmein",
        "0123456789abcdef0123456789abcdef",
    }
)
_PLACEHOLDER_FRAGMENTS = ("changeme", "placeholder", "replaceme", "yoursecret")
# A key of at least 32 bytes that uses fewer distinct characters than this is not random.
_MIN_DISTINCT_CHARS = 8

#: A secret whose estimated randomness is below this many bits is refused: a token is an offline
#: oracle for its key (anyone holding one can try keys at GPU speed), so a key must resist that.
MIN_SECRET_BITS = 128

# Words people build secrets from (lowercase), for the estimate below: a secret made of these
# costs an attacker a guess per word, not one per letter.
_COMMON_WORDS = frozenset(
    """
    password passwd pass secret secrets key keys token tokens jwt hmac sign signing admin root
    user login letmein welcome hello master shadow dragon monkey sunshine princess football
    baseball superman batman iloveyou trustno1 freedom whatever qwerty azerty changeme change
    default test testing tester demo example sample dev devel develop development prod
    production staging stage local localhost server servers service api app application web
    visio media meeting meet video audio call conference room rooms stream live my your our
    the this that and for with super mega ultra strong long random very safe secure security
    private public company corp internal system config settings abc xyz foo bar baz qux spam
    eggs love god sex money summer winter spring autumn fall monday friday january december
    hunter charlie michael jordan thomas robert daniel jessica ashley pepper ginger tigger
    cookie cheese chocolate coffee computer internet google apple microsoft linux windows
    access guest temp temporary new old first last one two three four five six seven eight
    nine ten hundred thousand million year day night black white red blue green orange purple
    """.split()
)
_KEYBOARD_ROWS = (
    "`1234567890-=",
    "qwertyuiop[]\\",
    "asdfghjkl;'",
    "zxcvbnm,./",
    "~!@#$%^&*()_+",
    "azertyuiop",
    "qwertzuiop",
    "yxcvbnm",
    "abcdefghijklmnopqrstuvwxyz",
    "0123456789",
    # Keyboard columns (US layout): "1qaz2wsx..."
    "1qaz", "2wsx", "3edc", "4rfv", "5tgb", "6yhn", "7ujm", "8ik,", "9ol.", "0p;/",
)
_LEET = str.maketrans("0134578@$!|+", "oieastbasilt")

_HOW_TO_SET_SECRET = (
    f"set the {ENV_SECRET} environment variable (or `secret` in the [auth] section of the "
    f"config file) to a random string of at least {MIN_SECRET_BYTES} bytes, e.g. the output of "
    "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`; "
    "or run with --dev on loopback, which generates one"
)


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    dev: bool | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Config:
    """Build and validate the configuration.

    ``path``: a TOML file, or None for the defaults. ``env``: the environment (default
    ``os.environ``; empty values count as unset). ``dev``: force dev mode on or off (None: the
    file's ``server.dev_mode``). ``overrides``: dotted key -> value, applied last; None values are
    skipped, so unset command-line flags can be passed as they are.
    """
    values: dict[str, dict[str, object]] = {name: {} for name in _SECTIONS}
    origins: dict[str, str] = {}

    if path is not None:
        _read_file(Path(path), values, origins)

    environ: Mapping[str, str] = os.environ if env is None else env
    for var, key in _ENV_KEYS.items():
        raw = environ.get(var, "")
        if raw == "":
            continue
        value: object = raw
        if key == "server.port":
            value = _parse_env_int(var, raw)
        _set(values, origins, key, value, f"environment variable {var}")

    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in _ALL_KEYS:
            raise ConfigError(f"unknown key {key!r} in overrides{_suggest(key, _ALL_KEYS)}")
        _set(values, origins, key, value, f"override of {key}")

    if dev is not None:
        _set(values, origins, "server.dev_mode", dev, "--dev" if dev else "dev=False")

    sections = {name: _SECTIONS[name](**values[name]) for name in _SECTIONS}
    config = Config(**sections)
    return _validate(config, origins)


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and any loopback IP address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host_port(text: str) -> tuple[str, int | None] | None:
    """``host[:port]`` (a Host header, an origin's authority) as (lowercased host, port or None);
    IPv6 hosts are bracketed: ``[::1]:7880``. None if it is not of that shape."""
    text = text.strip().lower()
    port_text = ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return None
            port_text = rest[1:]
    else:
        host, sep, port_text = text.partition(":")
        if sep and not port_text:
            return None
    if not host or any(c in host for c in "/?#@ \t"):
        return None
    if port_text:
        if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            return None
        return host, int(port_text)
    return host, None


def normalize_origin(origin: str) -> tuple[str, str, int] | None:
    """A browser ``Origin`` (``scheme://host[:port]``) as (scheme, host, port) with the default
    port filled in; None for anything else (``null``, a path, another scheme)."""
    scheme, sep, authority = origin.strip().lower().partition("://")
    if not sep or scheme not in ("http", "https"):
        return None
    parsed = split_host_port(authority)
    if parsed is None:
        return None
    host, port = parsed
    return scheme, host, port if port is not None else (443 if scheme == "https" else 80)


def effective_shards(cfg: MediaConfig) -> int:
    """The number of shard threads: ``cfg.shards``, or one per usable CPU core when it is 0."""
    if cfg.shards > 0:
        return min(cfg.shards, MAX_SHARDS)
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_SHARDS))


def secret_problem(secret: str) -> str | None:
    """Why ``secret`` is unfit to sign tokens outside dev mode, or None when it will do.

    The answer never contains the secret.
    """
    if secret == "":
        return "no secret is set"
    squashed = "".join(c for c in secret.lower() if c.isalnum())
    if (
        secret == SAMPLE_SECRET_PLACEHOLDER
        or squashed in _WELL_KNOWN_SECRETS
        or any(fragment in squashed for fragment in _PLACEHOLDER_FRAGMENTS)
    ):
        return "the secret is a well-known default or a placeholder"
    size = len(secret.encode("utf-8"))
    if size < MIN_SECRET_BYTES:
        return f"the secret is {size} bytes long, shorter than the {MIN_SECRET_BYTES} required"
    if len(set(secret)) < _MIN_DISTINCT_CHARS:
        return "the secret is too repetitive to be random"
    bits, patterns = estimate_secret_bits(secret)
    if bits < MIN_SECRET_BITS:
        found = ", ".join(patterns) if patterns else "too few random characters"
        return (
            f"the secret is patterned ({found}): about {bits:.0f} bits of randomness by our "
            f"estimate, {MIN_SECRET_BITS} needed; a key must be random, not made up"
        )
    return None


def estimate_secret_bits(secret: str) -> tuple[float, list[str]]:
    """How many guesses (log2) it takes to find ``secret`` for an attacker who tries patterns
    first, and the patterns the cheapest explanation used.

    The secret is explained, left to right, as the cheapest chain of pieces: a random character
    (log2 of the alphabet its character classes span), a common word (plain, capitalised or in
    leet speak), a run along the alphabet, digits or a keyboard row (``abcd``, ``4321``,
    ``qwerty``), or a copy of text seen earlier (periodic repeats such as ``abcdabcd``). Real
    random keys cost about their full length in random characters; made-up ones much less.
    """
    secret = secret[:256]  # enough to judge; keeps the estimate cheap on huge input
    n = len(secret)
    if n == 0:
        return 0.0, []
    alphabet = 0
    classes = (
        (str.islower, 26),
        (str.isupper, 26),
        (str.isdigit, 10),
        (lambda c: c.isascii() and not c.isalnum(), 33),
    )
    for test, size in classes:
        if any(c.isascii() and test(c) for c in secret):
            alphabet += size
    if any(not c.isascii() for c in secret):
        alphabet += 100
    char_bits = math.log2(max(alphabet, 2))
    word_bits = math.log2(len(_COMMON_WORDS))
    run_bits = math.log2(95) + 1.0  # where it starts, which direction
    lower = secret.lower()
    unleet = lower.translate(_LEET)

    inf = float("inf")
    best: list[float] = [0.0] + [inf] * n
    how: list[str] = [""] * (n + 1)
    prev: list[int] = [0] * (n + 1)
    def offer(i: int, j: int, cost: float, kind: str) -> None:
        if best[i] + cost < best[j]:
            best[j] = best[i] + cost
            how[j] = kind
            prev[j] = i

    for i in range(n):
        offer(i, i + 1, char_bits, "")
        for j in range(i + 3, min(n, i + 16) + 1):
            piece = lower[i:j]
            if piece in _COMMON_WORDS:
                offer(i, j, word_bits + (0.0 if secret[i:j].islower() else 1.0), "common words")
            elif unleet[i:j] in _COMMON_WORDS:
                offer(i, j, word_bits + 2.0, "common words")
        # Runs: a constant step of ±1 in code points, or along a keyboard row.
        j = i + 1
        while j < n and abs(ord(lower[j]) - ord(lower[j - 1])) == 1 and (
            j == i + 1 or ord(lower[j]) - ord(lower[j - 1]) == ord(lower[i + 1]) - ord(lower[i])
        ):
            j += 1
        if j - i >= 3:
            offer(i, j, run_bits + math.log2(j - i), "alphabet or digit runs")
        for row in _KEYBOARD_ROWS if i + 3 <= n else ():
            for line in (row, row[::-1]):
                k = line.find(lower[i : i + 3])
                if k < 0:
                    continue
                m = 3
                while i + m < n and k + m < len(line) and lower[i + m] == line[k + m]:
                    m += 1
                offer(i, i + m, run_bits + math.log2(m), "keyboard runs")
        # Copies of earlier text (LZ77-like): offset and length are all an attacker guesses.
        for start in range(i):
            m = 0
            while i + m < n and secret[start + m] == secret[i + m]:
                m += 1
            if m >= 3:
                offer(i, i + m, math.log2(i) + math.log2(m) + 1.0, "repeats")
    patterns: list[str] = []
    j = n
    while j > 0:
        kind = how[j]
        if kind and kind not in patterns:
            patterns.append(kind)
        j = prev[j]
    return best[n], sorted(patterns)


# ---- reading --------------------------------------------------------------------------------


def _read_file(path: Path, values: dict[str, dict[str, object]], origins: dict[str, str]) -> None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None

    where = str(path)
    for section, table in doc.items():
        if section not in _SECTIONS:
            if isinstance(table, dict):
                raise ConfigError(
                    f"unknown section [{section}] in {where}{_suggest(section, list(_SECTIONS))}"
                )
            # A key outside any section: suggest the dotted key that ends like it.
            leaf_matches = [k for k in _ALL_KEYS if k.rsplit(".", 1)[1] == section]
            hint = (
                f" (did you mean {leaf_matches[0]!r}, in its [{leaf_matches[0].split('.')[0]}]"
                " section?)"
                if leaf_matches
                else ""
            )
            raise ConfigError(f"unknown key {section!r} in {where}{hint}")
        if not isinstance(table, dict):
            raise ConfigError(
                f"{section!r} in {where} must be a table (a [{section}] section), "
                f"not {_toml_type(table)}"
            )
        keys = list(_SCHEMA[section])
        for key, value in table.items():
            dotted = f"{section}.{key}"
            if key not in _SCHEMA[section]:
                candidates = [f"{section}.{k}" for k in keys]
                raise ConfigError(
                    f"unknown key {dotted!r} in {where}{_suggest(dotted, candidates)}"
                )
            _set(values, origins, dotted, value, where)


def _parse_env_int(var: str, raw: str) -> int:
    text = raw.strip()
    if not text.isascii() or not text.isdigit():
        raise ConfigError(f"environment variable {var} must be an integer, got {raw!r}")
    return int(text)


def _set(
    values: dict[str, dict[str, object]],
    origins: dict[str, str],
    dotted: str,
    value: object,
    origin: str,
) -> None:
    section, key = dotted.split(".", 1)
    values[section][key] = _coerce(dotted, value, _SCHEMA[section][key], origin)
    origins[dotted] = origin


def _coerce(dotted: str, value: object, hint: Any, origin: str) -> object:
    """Checks ``value`` against the field's type; returns it (ints widened for float fields)."""
    expected: str
    if hint is bool:
        if isinstance(value, bool):
            return value
        expected = "a boolean (true or false)"
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        expected = "an integer"
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
            if not math.isfinite(number):
                raise ConfigError(f"{dotted!r} in {origin} must be a finite number")
            return number
        expected = "a number"
    elif hint is str or hint == (str | None):
        if isinstance(value, str):
            return value
        expected = "a string"
    elif hint == tuple[str, ...]:
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        expected = "an array of strings"
    else:  # pragma: no cover - a field type this loader does not know
        raise TypeError(f"unsupported config field type {hint!r} for {dotted}")
    raise ConfigError(
        f"wrong type for {dotted!r} in {origin}: expected {expected}, got {_toml_type(value)}"
    )


def _toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---- validation -----------------------------------------------------------------------------


def _validate(config: Config, origins: Mapping[str, str]) -> Config:
    def where(key: str) -> str:
        return f"{key!r} (from {origins.get(key, 'the defaults')})"

    def check(ok: bool, key: str, message: str) -> None:
        if not ok:
            raise ConfigError(f"{where(key)} {message}")

    s, m, a, r, g, d = (
        config.server,
        config.media,
        config.auth,
        config.room,
        config.signalling,
        config.drain,
    )

    # [server]
    host_ip = _parse_ip(s.host)
    check(
        host_ip is not None or s.host == "localhost",
        "server.host",
        "must be an IP address (e.g. 127.0.0.1, ::1, 0.0.0.0) or 'localhost'",
    )
    check(0 <= s.port <= 65535, "server.port", f"is {s.port}: must be 0–65535 (0 = any free port)")
    check(
        0 < s.header_timeout_seconds <= 3600,
        "server.header_timeout_seconds",
        "must be a positive number of seconds, at most 3600",
    )
    for origin in s.allowed_origins:
        check(
            origin == "*" or normalize_origin(origin) is not None,
            "server.allowed_origins",
            f"has {origin[:100]!r}: each entry must be an origin, http:// or https:// and a "
            "host with an optional port and nothing after it (e.g. 'https://meet.example.com'), "
            "or '*' for any",
        )
    check(
        s.max_pending_connections >= 1,
        "server.max_pending_connections",
        f"is {s.max_pending_connections}: must be at least 1",
    )

    # [media]
    check(
        0 <= m.shards <= MAX_SHARDS,
        "media.shards",
        f"is {m.shards}: must be 0–{MAX_SHARDS} (0 = one per CPU core)",
    )
    bind_ip = _parse_ip(m.bind_ip)
    if bind_ip is None:
        raise ConfigError(f"{where('media.bind_ip')} must be an IP address (e.g. 127.0.0.1)")
    announce_ip = None
    if m.announce_ip is not None:
        announce_ip = _parse_ip(m.announce_ip)
        if announce_ip is None:
            raise ConfigError(
                f"{where('media.announce_ip')} must be an IP address: the one clients reach "
                "this server on"
            )
        check(
            not announce_ip.is_unspecified,
            "media.announce_ip",
            "must be a concrete address clients can reach, not 0.0.0.0 or ::",
        )
    for key, port in (("media.port_min", m.port_min), ("media.port_max", m.port_max)):
        check(0 <= port <= 65535, key, f"is {port}: must be 0–65535")
    if (m.port_min == 0) != (m.port_max == 0):
        raise ConfigError(
            f"{where('media.port_min')} and {where('media.port_max')} must both be set "
            "(a UDP port range) or both be 0 (the OS picks a port per shard)"
        )
    if m.port_min > m.port_max:
        raise ConfigError(
            f"{where('media.port_min')} is {m.port_min}, above {where('media.port_max')} "
            f"which is {m.port_max}"
        )
    if m.port_min != 0:
        shards = effective_shards(m)
        available = m.port_max - m.port_min + 1
        if available < shards:
            raise ConfigError(
                f"the UDP port range media.port_min–media.port_max ({m.port_min}–{m.port_max}) "
                f"has {available} port(s) for {shards} shard(s): one port per shard is needed "
                "(widen the range or set media.shards)"
            )

    # [auth]
    check(
        a.token_ttl_seconds > 0,
        "auth.token_ttl_seconds",
        f"is {a.token_ttl_seconds}: must be a positive number of seconds",
    )

    # [room]
    check(
        r.max_participants >= 1,
        "room.max_participants",
        f"is {r.max_participants}: must be at least 1",
    )
    check(
        r.empty_timeout_seconds > 0,
        "room.empty_timeout_seconds",
        "must be a positive number of seconds",
    )
    check(
        r.reconnect_grace_seconds >= 0,
        "room.reconnect_grace_seconds",
        "must be 0 (no resume) or a positive number of seconds",
    )
    check(
        r.max_tracks_per_participant >= 1,
        "room.max_tracks_per_participant",
        f"is {r.max_tracks_per_participant}: must be at least 1",
    )
    check(
        r.max_tracks_per_room >= r.max_tracks_per_participant,
        "room.max_tracks_per_room",
        f"is {r.max_tracks_per_room}: must be at least room.max_tracks_per_participant "
        f"({r.max_tracks_per_participant})",
    )
    for kind, most in (("video", MAX_VIDEO_SLOTS), ("audio", MAX_AUDIO_SLOTS)):
        top = getattr(r, f"max_{kind}_slots")
        default = getattr(r, f"default_{kind}_slots")
        check(
            0 <= top <= most,
            f"room.max_{kind}_slots",
            f"is {top}: must be 0–{most} (receive slots a participant may ask for)",
        )
        check(
            0 <= default <= top,
            f"room.default_{kind}_slots",
            f"is {default}: must be 0–room.max_{kind}_slots ({top})",
        )
    # What one participant's SDP can hold: its slot lines and its own tracks, whatever the size
    # of the room. It must fit in a signalling frame both ways.
    lines = r.max_video_slots + r.max_audio_slots + r.max_tracks_per_participant
    needed = lines * SDP_BYTES_PER_TRACK + SDP_SESSION_BYTES
    check(
        needed <= g.max_message_bytes,
        "room.max_video_slots",
        f"is {r.max_video_slots}: with room.max_audio_slots ({r.max_audio_slots}) and "
        f"room.max_tracks_per_participant ({r.max_tracks_per_participant}), a participant's SDP "
        f"has up to {lines} m-lines, about {needed} bytes, more than signalling.max_message_bytes "
        f"({g.max_message_bytes}); lower them or raise signalling.max_message_bytes",
    )
    # A full `slots` frame lists every slot, with the longest identities.
    slots_bytes = (r.max_video_slots + r.max_audio_slots) * SLOT_JSON_BYTES + 64
    check(
        slots_bytes <= g.max_message_bytes,
        "room.max_video_slots",
        f"is {r.max_video_slots}: with room.max_audio_slots ({r.max_audio_slots}), a full "
        f"`slots` frame takes up to {slots_bytes} bytes, more than signalling.max_message_bytes "
        f"({g.max_message_bytes}); lower them or raise signalling.max_message_bytes",
    )
    check(
        r.vanished_timeout_seconds > 0,
        "room.vanished_timeout_seconds",
        "must be a positive number of seconds",
    )

    # [signalling]
    check(
        1024 <= g.max_message_bytes <= 16 * 1024 * 1024,
        "signalling.max_message_bytes",
        f"is {g.max_message_bytes}: must be 1024–16777216 bytes",
    )
    joined = joined_json_bytes(r.max_tracks_per_participant)
    check(
        joined <= g.max_message_bytes,
        "signalling.max_message_bytes",
        f"is {g.max_message_bytes}: a `joined` frame with one other participant, both with the "
        f"longest names a token allows and room.max_tracks_per_participant "
        f"({r.max_tracks_per_participant}) tracks, can take {joined} bytes; raise it or lower "
        "room.max_tracks_per_participant",
    )
    check(
        g.handshake_timeout_seconds > 0,
        "signalling.handshake_timeout_seconds",
        "must be a positive number of seconds",
    )
    check(
        g.max_unjoined >= 1,
        "signalling.max_unjoined",
        f"is {g.max_unjoined}: must be at least 1",
    )

    # [drain]
    check(d.deadline_seconds > 0, "drain.deadline_seconds", "must be a positive number of seconds")

    # Addresses: who can reach what.
    if s.dev_mode:
        host_is_loopback = is_loopback_host(s.host)
        for key, ok in (("server.host", host_is_loopback), ("media.bind_ip", bind_ip.is_loopback)):
            if not ok:
                raise ConfigError(
                    f"dev mode listens on loopback only, but {where(key)} is not a loopback "
                    "address: use 127.0.0.1 (or ::1), or leave dev mode and set a strong secret "
                    f"({ENV_SECRET}) to serve other machines"
                )
    if announce_ip is not None and bind_ip.is_loopback and not announce_ip.is_loopback:
        raise ConfigError(
            f"{where('media.bind_ip')} is a loopback address but {where('media.announce_ip')} "
            "is not: clients sent to the announced address could never reach a loopback socket; "
            "bind the media sockets to that address (or 0.0.0.0)"
        )

    if s.dev_mode:
        return _dev_secret(config, origins)

    host_unspecified = host_ip is not None and host_ip.is_unspecified
    if (host_unspecified or bind_ip.is_unspecified) and announce_ip is None:
        key = "server.host" if host_unspecified else "media.bind_ip"
        raise ConfigError(
            f"{where(key)} listens on all interfaces, but media.announce_ip is not set: set it "
            f"(or the {ENV_ANNOUNCE_IP} environment variable) to the IP address clients reach "
            "this server on, or listen on 127.0.0.1"
        )
    problem = secret_problem(a.secret)
    if problem is not None:
        source = origins.get("auth.secret")
        from_where = f" (from {source})" if source else ""
        raise ConfigError(
            f"a strong token secret is required outside dev mode: {problem}{from_where}; "
            + _HOW_TO_SET_SECRET
        )
    return config


def _dev_secret(config: Config, origins: Mapping[str, str]) -> Config:
    """Dev mode: a generated secret unless a strong one is set."""
    secret = config.auth.secret
    problem = secret_problem(secret)
    if problem is None:
        return config
    if secret != "":
        log.warning(
            "dev mode: ignoring auth.secret (from %s): %s; using a generated key for this run",
            origins.get("auth.secret", "the defaults"),
            problem,
        )
    auth = dataclasses.replace(config.auth, secret=secrets.token_urlsafe(32))
    return dataclasses.replace(config, auth=auth)


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
