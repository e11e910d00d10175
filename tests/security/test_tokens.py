"""Access tokens: the rejection matrix of visio_media.auth.verify_token, and what it accepts.

Acceptance (issue 3): alg none, another algorithm, bad signature, expired, not yet valid, wrong
room, missing grant, publish without the publish grant — 100 % rejected. Here: every malformed or
forged token raises AuthError, and no error message carries the token or the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import warnings
from typing import Any

import jwt
import pytest

from visio_media.auth import (
    MAX_TOKEN_CHARS,
    SOURCES,
    AccessToken,
    Grants,
    mint_token,
    verify_token,
)
from visio_media.errors import AuthError

SECRET = "t0k3n-s3cret-for-tests-Qm9Xr2LpV8wZ4sKd"  # 40 bytes
OTHER_SECRET = "an0ther-s3cret-for-tests-Hy7Jc3NbT5gW1e"
NOW = 1_800_000_000.0
ROOM = "standup"
# NOW is in the future of the wall clock: pyjwt's own checks would see tokens as not yet valid.
NO_TIME_CHECKS: Any = {"verify_exp": False, "verify_nbf": False, "verify_iat": False}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(obj: object) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def claims(**changes: Any) -> dict[str, Any]:
    """Claims of a valid token at NOW; a change to ``...`` (Ellipsis) removes the claim."""
    base: dict[str, Any] = {
        "iss": "visio-media",
        "sub": "alice",
        "name": "Alice",
        "room": ROOM,
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 600,
        "grants": {
            "join": True,
            "publish": True,
            "subscribe": True,
            "publish_sources": list(SOURCES),
            "room_admin": False,
        },
    }
    for key, value in changes.items():
        if value is ...:
            base.pop(key, None)
        else:
            base[key] = value
    return base


def grants(**changes: Any) -> dict[str, Any]:
    g: dict[str, Any] = dict(claims()["grants"])
    for key, value in changes.items():
        if value is ...:
            g.pop(key)
        else:
            g[key] = value
    return g


def hs256(
    payload: dict[str, Any], secret: str = SECRET, header: dict[str, Any] | None = None
) -> str:
    """Sign by hand (any header, any payload) with HMAC-SHA256."""
    head = b64json(header if header is not None else {"alg": "HS256", "typ": "JWT"})
    body = b64json(payload)
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def rejected(token: str, *, now: float = NOW, secret: str = SECRET) -> str:
    """verify_token must raise AuthError; returns the reason, checked to leak nothing."""
    with pytest.raises(AuthError) as info:
        verify_token(secret, token, now=now)
    reason = str(info.value)
    assert reason, "an AuthError needs a reason"
    assert SECRET not in reason and OTHER_SECRET not in reason
    if len(token) >= 8:
        assert token not in reason
    for part in token.split("."):
        if len(part) >= 8:
            assert part not in reason
    assert len(reason) < 120
    return reason


# ---- the valid token ------------------------------------------------------------------------


def test_valid_token_round_trip_with_exact_fields() -> None:
    token = mint_token(
        SECRET,
        identity="alice",
        room=ROOM,
        name="Alice Liddell",
        grants=Grants(publish_sources=("camera", "microphone")),
        ttl_seconds=600,
        now=NOW,
    )
    got = verify_token(SECRET, token, now=NOW + 1)
    assert got == AccessToken(
        identity="alice",
        name="Alice Liddell",
        room=ROOM,
        grants=Grants(
            join=True,
            publish=True,
            subscribe=True,
            publish_sources=("camera", "microphone"),
            room_admin=False,
        ),
        expires_at=NOW + 600,
    )
    assert got.allows_room(ROOM)


def test_minted_claims() -> None:
    token = mint_token(SECRET, identity="bob", room=ROOM, ttl_seconds=60, now=NOW)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"
    payload = jwt.decode(token, SECRET, algorithms=["HS256"], options=NO_TIME_CHECKS)
    assert payload == claims(sub="bob", name="bob", exp=int(NOW) + 60)


def test_hand_made_token_is_accepted() -> None:
    """The claim format is the contract: a token made by any HS256 library is accepted."""
    got = verify_token(SECRET, hs256(claims()), now=NOW)
    assert got.identity == "alice" and got.name == "Alice" and got.room == ROOM
    assert got.grants == Grants()


def test_missing_name_defaults_to_identity_and_missing_iss_iat_are_fine() -> None:
    got = verify_token(SECRET, hs256(claims(name=..., iss=..., iat=...)), now=NOW)
    assert got.name == "alice"


def test_missing_grant_members_take_the_defaults() -> None:
    got = verify_token(SECRET, hs256(claims(grants={"room_admin": True})), now=NOW)
    assert got.grants == Grants(room_admin=True)


def test_restricted_grants_survive_the_round_trip() -> None:
    g = Grants(join=True, publish=False, subscribe=False, publish_sources=(), room_admin=False)
    token = mint_token(SECRET, identity="viewer", room=ROOM, grants=g, now=NOW)
    got = verify_token(SECRET, token, now=NOW)
    assert got.grants == g
    assert got.grants.publish is False  # the caller refuses a publish with this token


def test_admin_wildcard_room() -> None:
    token = mint_token(SECRET, identity="ops", room="*", grants=Grants(room_admin=True), now=NOW)
    got = verify_token(SECRET, token, now=NOW)
    assert got.allows_room("anything") and got.allows_room(ROOM)


def test_leeway_accepts_small_skew() -> None:
    token = hs256(claims(nbf=int(NOW) + 3, exp=int(NOW) + 10))
    verify_token(SECRET, token, now=NOW)  # nbf 3 s ahead: within the 5 s leeway
    verify_token(SECRET, token, now=NOW + 14)  # exp 4 s past: within the leeway
    rejected(token, now=NOW + 15)


def test_token_at_the_size_limit_is_accepted() -> None:
    base = hs256(claims(pad=""))
    pad = "x" * ((MAX_TOKEN_CHARS - len(base) - 8) * 3 // 4)  # base64: 4 chars per 3 bytes
    token = hs256(claims(pad=pad))
    assert MAX_TOKEN_CHARS - 16 < len(token) <= MAX_TOKEN_CHARS
    verify_token(SECRET, token, now=NOW)


# ---- the rejection matrix -------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_rejected(alg: str) -> None:
    head = b64json({"alg": alg, "typ": "JWT"})
    body = b64json(claims())
    assert "algorithm" in rejected(f"{head}.{body}.")
    # ... also with a signature attached (a real HS256 one, copied from a valid token).
    valid_sig = hs256(claims()).rsplit(".", 1)[1]
    rejected(f"{head}.{body}.{valid_sig}")


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_hmac_algorithms_with_the_same_secret_are_rejected(alg: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        token = jwt.encode(claims(), SECRET, algorithm=alg)
        assert jwt.decode(token, SECRET, algorithms=[alg], options=NO_TIME_CHECKS)
    assert "algorithm" in rejected(token)


@pytest.mark.parametrize("alg", ["RS256", "ES256", "PS256", "EdDSA", "hs256", ""])
def test_other_algorithm_headers_are_rejected(alg: str) -> None:
    # Key confusion: the header claims an asymmetric algorithm, the signature is HMAC with
    # the shared secret (what an attacker hopes a naive verifier would check).
    rejected(hs256(claims(), header={"alg": alg, "typ": "JWT"}))


def test_header_without_alg_is_rejected() -> None:
    rejected(hs256(claims(), header={"typ": "JWT"}))


def test_bad_signature_is_rejected() -> None:
    assert "signature" in rejected(hs256(claims(), secret=OTHER_SECRET))
    assert "signature" in rejected(jwt.encode(claims(), OTHER_SECRET, algorithm="HS256"))


def test_tampered_payload_is_rejected() -> None:
    head, _, sig = hs256(claims()).split(".")
    forged = f"{head}.{b64json(claims(room='board', grants=grants(room_admin=True)))}.{sig}"
    assert "signature" in rejected(forged)


def test_truncated_or_empty_signature_is_rejected() -> None:
    token = hs256(claims())
    rejected(token[:-5])
    rejected(token.rsplit(".", 1)[0] + ".")


def test_expired_is_rejected() -> None:
    token = mint_token(SECRET, identity="alice", room=ROOM, ttl_seconds=60, now=NOW)
    verify_token(SECRET, token, now=NOW + 30)
    assert "expired" in rejected(token, now=NOW + 60 + 5)
    assert "expired" in rejected(token, now=NOW + 86400)


def test_not_yet_valid_is_rejected() -> None:
    token = mint_token(
        SECRET, identity="alice", room=ROOM, not_before=NOW + 3600, ttl_seconds=7200, now=NOW
    )
    assert "not yet valid" in rejected(token, now=NOW)
    verify_token(SECRET, token, now=NOW + 3600)


def test_wrong_room() -> None:
    token = verify_token(SECRET, mint_token(SECRET, identity="a", room=ROOM, now=NOW), now=NOW)
    assert token.allows_room(ROOM)
    assert not token.allows_room("board")
    assert not token.allows_room("")
    assert not token.allows_room("*")
    assert not token.allows_room(ROOM.upper())


def test_wildcard_room_without_admin_is_rejected() -> None:
    assert "room_admin" in rejected(hs256(claims(room="*")))
    with pytest.raises(AuthError, match="room_admin"):
        mint_token(SECRET, identity="a", room="*", now=NOW)


@pytest.mark.parametrize("claim", ["exp", "nbf", "sub"])
def test_missing_required_claim_is_rejected(claim: str) -> None:
    assert claim in rejected(hs256(claims(**{claim: ...})))


@pytest.mark.parametrize("claim", ["room", "grants"])
def test_missing_room_or_grants_is_rejected(claim: str) -> None:
    assert claim in rejected(hs256(claims(**{claim: ...})))


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": "1900000000"},
        {"exp": True},
        {"exp": [1900000000]},
        {"exp": None},
        {"nbf": "0"},
        {"nbf": {"t": 0}},
        {"iat": "now"},
        {"sub": 42},
        {"sub": ""},
        {"sub": "a" * 129},
        {"sub": "alice\nadmin"},
        {"sub": "alice\x00"},
        {"sub": "ali\u202ece"},  # right-to-left override
        {"sub": "ali\u200bce"},  # zero-width space
        {"sub": None},
        {"sub": ["alice"]},
        {"room": 7},
        {"room": ""},
        {"room": "r" * 129},
        {"room": "room\r\n"},
        {"room": None},
        {"name": 5},
        {"name": None},
        {"name": "n" * 257},
        {"name": "bad\x1bname"},
        {"iss": "someone-else"},
        {"iss": 1},
        {"aud": "somebody"},
        {"grants": None},
        {"grants": []},
        {"grants": "all"},
        {"grants": True},
        {"grants": grants(join="yes")},
        {"grants": grants(publish=1)},
        {"grants": grants(subscribe=None)},
        {"grants": grants(room_admin="true")},
        {"grants": grants(publish_sources="camera")},
        {"grants": grants(publish_sources=["camera", "laser"])},
        {"grants": grants(publish_sources=[1])},
        {"grants": grants(publish_sources=["camera", "camera"])},
        {"grants": grants(publish_sources={"camera": True})},
        {"grants": grants(superuser=True)},
    ],
    ids=repr,
)
def test_malformed_claims_are_rejected(changes: dict[str, Any]) -> None:
    rejected(hs256(claims(**changes)))


def test_payload_that_is_not_an_object_is_rejected() -> None:
    head = b64json({"alg": "HS256", "typ": "JWT"})
    for body in ([1, 2], "alice", 5, None):
        payload = b64json(body)
        sig = hmac.new(SECRET.encode(), f"{head}.{payload}".encode(), hashlib.sha256).digest()
        rejected(f"{head}.{payload}.{b64(sig)}")


def test_oversized_token_is_rejected_before_decoding() -> None:
    token = hs256(claims(pad="x" * MAX_TOKEN_CHARS))
    assert len(token) > MAX_TOKEN_CHARS
    assert "too long" in rejected(token)
    assert "too long" in rejected("a" * (MAX_TOKEN_CHARS + 1))


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        " ",
        "abc",
        "a.b",
        "a.b.c",
        "..",
        "....",
        "eyJ.eyJ.",
        "Bearer x.y.z",
        "ééé.ééé.ééé",
        "\x00\x01\x02",
        "a.b.c.d.e",  # JWE-shaped
        b64json({"alg": "HS256"}) + ".%%%." + "sig",
        b64json({"alg": "HS256"}) + "." + b64(b"not json") + ".sig",
        b64(b"not json") + "." + b64json(claims()) + ".sig",
        "{}.{}.{}",
    ],
)
def test_garbage_is_rejected(garbage: str) -> None:
    rejected(garbage)


def test_whitespace_around_a_valid_token_is_rejected() -> None:
    token = hs256(claims())
    rejected(f" {token}")
    rejected(f"{token}\n")


def test_non_string_token_is_rejected() -> None:
    with pytest.raises(AuthError):
        verify_token(SECRET, None, now=NOW)  # type: ignore[arg-type]
    with pytest.raises(AuthError):
        verify_token(SECRET, hs256(claims()).encode(), now=NOW)  # type: ignore[arg-type]


def test_empty_secret_verifies_nothing() -> None:
    token = hs256(claims(), secret="")
    with pytest.raises(AuthError):
        verify_token("", token, now=NOW)
    with pytest.raises(AuthError):
        mint_token("", identity="a", room=ROOM)


def test_each_rejection_changes_nothing_for_the_next_valid_token() -> None:
    """verify_token keeps no state: after a storm of forgeries a valid token still verifies."""
    for alg in ("none", "HS512", "RS256"):
        rejected(hs256(claims(), header={"alg": alg}))
    assert verify_token(SECRET, hs256(claims()), now=NOW).identity == "alice"


# ---- mint_token argument checks -------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"identity": ""},
        {"identity": "x" * 129},
        {"identity": "a\nb"},
        {"room": ""},
        {"room": "r\x00"},
        {"name": "n" * 257},
        {"ttl_seconds": 0},
        {"ttl_seconds": -1},
        {"ttl_seconds": float("inf")},
        {"grants": Grants(publish_sources=("camera", "laser"))},
        {"grants": Grants(publish_sources=("camera", "camera"))},
        {"grants": Grants(publish="yes")},  # type: ignore[arg-type]
    ],
    ids=repr,
)
def test_mint_refuses_invalid_arguments(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"identity": "alice", "room": ROOM, "now": NOW}
    args.update(kwargs)
    with pytest.raises(AuthError) as info:
        mint_token(SECRET, **args)
    assert SECRET not in str(info.value)
