"""Access tokens: JWTs signed with HS256, scoped to one room (or ``"*"`` for admin tokens).

Claims::

    iss   "visio-media"      (checked when present)
    sub   identity           (required; 1–128 characters, no control characters)
    name  display name       (optional, defaults to the identity; ≤ 256 characters)
    room  room name          (required; 1–128 characters; "*" only with the room_admin grant)
    iat   issued at          (optional, a number)
    nbf   not before         (required, a number)
    exp   expires at         (required, a number)
    grants {join, publish, subscribe, publish_sources, room_admin}   (required object; a missing
          member takes the :class:`Grants` default, an unknown member is refused)

Only HS256 is accepted (never ``none``, never another algorithm). Every failure is an
:class:`~visio_media.errors.AuthError` with a short reason that contains neither the token nor
the secret. Checking a grant against a request (publish, a source, a room) is the caller's job:
:meth:`AccessToken.allows_room` and the :class:`Grants` fields.
"""

from __future__ import annotations

import math
import time
import unicodedata
import warnings
from dataclasses import dataclass
from typing import Any

import jwt

from visio_media.errors import AuthError

__all__ = [
    "ALGORITHM",
    "ANY_ROOM",
    "ISSUER",
    "MAX_TOKEN_CHARS",
    "SOURCES",
    "AccessToken",
    "Grants",
    "mint_token",
    "verify_token",
]

SOURCES = ("microphone", "camera", "screen_share", "screen_share_audio")
ALGORITHM = "HS256"
ISSUER = "visio-media"
#: A room claim of ``"*"`` matches every room; only tokens with the room_admin grant may carry it.
ANY_ROOM = "*"
#: Tokens longer than this are refused before any decoding.
MAX_TOKEN_CHARS = 8 * 1024

MAX_IDENTITY_CHARS = 128
MAX_ROOM_CHARS = 128
MAX_NAME_CHARS = 256

_GRANT_FLAGS = ("join", "publish", "subscribe", "room_admin")
_GRANT_KEYS = frozenset((*_GRANT_FLAGS, "publish_sources"))


@dataclass(frozen=True)
class Grants:
    """What the bearer may do in the room."""

    join: bool = True
    publish: bool = True
    subscribe: bool = True
    publish_sources: tuple[str, ...] = SOURCES
    room_admin: bool = False


@dataclass(frozen=True)
class AccessToken:
    """A verified token."""

    identity: str
    name: str
    room: str
    grants: Grants
    expires_at: float

    def allows_room(self, room: str) -> bool:
        """True if the token is for ``room`` (a ``"*"`` token, admin only, matches any room)."""
        return self.room == ANY_ROOM or self.room == room


def mint_token(
    secret: str,
    *,
    identity: str,
    room: str,
    name: str | None = None,
    grants: Grants = Grants(),  # frozen: one shared default is safe
    ttl_seconds: float = 3600,
    not_before: float | None = None,
    now: float | None = None,
) -> str:
    """Sign a token for ``identity`` in ``room``, valid from ``not_before`` (default: now) until
    ``now + ttl_seconds``. Raises :class:`AuthError` for invalid arguments."""
    _check_secret(secret)
    _check_text("identity", identity, MAX_IDENTITY_CHARS)
    _check_text("room", room, MAX_ROOM_CHARS)
    if name is None:
        name = identity
    _check_text("name", name, MAX_NAME_CHARS, allow_empty=True)
    _check_grants(grants)
    if room == ANY_ROOM and not grants.room_admin:
        raise AuthError("room '*' needs the room_admin grant")
    if not (isinstance(ttl_seconds, (int, float)) and math.isfinite(ttl_seconds)) or (
        ttl_seconds <= 0
    ):
        raise AuthError("ttl_seconds must be a positive number")
    issued = time.time() if now is None else now
    start = issued if not_before is None else not_before
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "sub": identity,
        "name": name,
        "room": room,
        "iat": int(issued),
        "nbf": int(start),
        "exp": int(issued + ttl_seconds),
        "grants": {
            "join": grants.join,
            "publish": grants.publish,
            "subscribe": grants.subscribe,
            "publish_sources": list(grants.publish_sources),
            "room_admin": grants.room_admin,
        },
    }
    with warnings.catch_warnings():
        # pyjwt warns about HMAC keys under 32 bytes; the config refuses those outside dev mode.
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return jwt.encode(payload, secret, algorithm=ALGORITHM)


def verify_token(
    secret: str, token: str, *, now: float | None = None, leeway: float = 5.0
) -> AccessToken:
    """Check ``token``'s signature (HS256 only), times and claims; return what it grants.

    ``now`` defaults to the current time; ``leeway`` (seconds) absorbs clock skew on ``exp``
    and ``nbf``. Raises :class:`AuthError` with a short reason.
    """
    _check_secret(secret)
    if not isinstance(token, str) or token == "":
        raise AuthError("no token")
    if len(token) > MAX_TOKEN_CHARS:
        raise AuthError("token too long")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
            claims = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                options={
                    "require": ["exp", "nbf", "sub"],
                    # Times are checked below, against `now`.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    # ...and the types of sub/iss/room/grants, strictly, below.
                    "verify_sub": False,
                },
            )
    except jwt.InvalidAlgorithmError:
        raise AuthError("algorithm not allowed") from None
    except jwt.InvalidSignatureError:
        raise AuthError("bad signature") from None
    except jwt.MissingRequiredClaimError as e:
        raise AuthError(f"missing claim {e.claim!r}") from None
    except jwt.DecodeError:
        raise AuthError("malformed token") from None
    except jwt.PyJWTError:
        raise AuthError("invalid token") from None
    except (TypeError, ValueError, OverflowError):  # defensive: pyjwt on odd input
        raise AuthError("malformed token") from None
    return _claims_to_token(claims, time.time() if now is None else now, leeway)


# ---- claims ---------------------------------------------------------------------------------


def _claims_to_token(claims: dict[str, Any], now: float, leeway: float) -> AccessToken:
    if "iss" in claims and claims["iss"] != ISSUER:
        raise AuthError("wrong issuer")
    exp = _number_claim(claims, "exp")
    nbf = _number_claim(claims, "nbf")
    if "iat" in claims:
        _number_claim(claims, "iat")
    if exp <= now - leeway:
        raise AuthError("token expired")
    if nbf > now + leeway:
        raise AuthError("token not yet valid")

    identity = claims["sub"]
    room = claims.get("room")
    if room is None:
        raise AuthError("missing claim 'room'")
    name = claims.get("name", identity)
    _claim_text("sub", identity, MAX_IDENTITY_CHARS)
    _claim_text("room", room, MAX_ROOM_CHARS)
    _claim_text("name", name, MAX_NAME_CHARS, allow_empty=True)

    if "grants" not in claims:
        raise AuthError("missing claim 'grants'")
    grants = _parse_grants(claims["grants"])
    if room == ANY_ROOM and not grants.room_admin:
        raise AuthError("room '*' needs the room_admin grant")
    return AccessToken(identity=identity, name=name, room=room, grants=grants, expires_at=exp)


def _number_claim(claims: dict[str, Any], key: str) -> float:
    value = claims.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AuthError(f"invalid claim {key!r}")
    return float(value)


def _claim_text(key: str, value: object, limit: int, *, allow_empty: bool = False) -> None:
    try:
        _check_text(key, value, limit, allow_empty=allow_empty)
    except AuthError:
        raise AuthError(f"invalid claim {key!r}") from None


def _parse_grants(raw: object) -> Grants:
    if not isinstance(raw, dict):
        raise AuthError("invalid claim 'grants'")
    unknown = set(raw) - _GRANT_KEYS
    if unknown:
        raise AuthError("invalid claim 'grants': unknown grant")
    defaults = Grants()
    flags: dict[str, bool] = {}
    for key in _GRANT_FLAGS:
        value = raw.get(key, getattr(defaults, key))
        if not isinstance(value, bool):
            raise AuthError(f"invalid claim 'grants.{key}'")
        flags[key] = value
    sources_raw = raw.get("publish_sources", list(defaults.publish_sources))
    if not isinstance(sources_raw, list):
        raise AuthError("invalid claim 'grants.publish_sources'")
    try:
        sources = _check_sources(sources_raw)
    except AuthError:
        raise AuthError("invalid claim 'grants.publish_sources'") from None
    return Grants(
        join=flags["join"],
        publish=flags["publish"],
        subscribe=flags["subscribe"],
        publish_sources=sources,
        room_admin=flags["room_admin"],
    )


# ---- argument checks ------------------------------------------------------------------------


def _check_secret(secret: object) -> None:
    if not isinstance(secret, str) or secret == "":
        raise AuthError("no token secret configured")


def _check_text(key: str, value: object, limit: int, *, allow_empty: bool = False) -> None:
    if not isinstance(value, str):
        raise AuthError(f"{key} must be a string")
    if len(value) > limit or (value == "" and not allow_empty):
        raise AuthError(f"{key} must be {0 if allow_empty else 1}–{limit} characters")
    # Cc: control characters; Cf: format characters (bidi overrides, zero-width joiners...) that
    # would let one identity pass for another; Zl/Zp: line and paragraph separators.
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in value):
        raise AuthError(f"{key} must not contain control characters")


def _check_grants(grants: Grants) -> None:
    if not isinstance(grants, Grants):
        raise AuthError("grants must be a Grants")
    for key in _GRANT_FLAGS:
        if not isinstance(getattr(grants, key), bool):
            raise AuthError(f"grants.{key} must be a bool")
    _check_sources(grants.publish_sources)


def _check_sources(sources: object) -> tuple[str, ...]:
    if not isinstance(sources, (list, tuple)):
        raise AuthError("publish_sources must be a list of sources")
    out: list[str] = []
    for source in sources:
        if not isinstance(source, str) or source not in SOURCES:
            shown = repr(source)[:40]
            raise AuthError(f"unknown source {shown} (known: {', '.join(SOURCES)})")
        if source in out:
            raise AuthError("publish_sources: a source is listed twice")
        out.append(source)
    return tuple(out)
