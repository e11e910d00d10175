"""Bad and insufficient tokens against the real server: every one is refused with
``unauthorized`` / ``forbidden`` before any room state changes (checked through the admin API:
no room created, no participant added, and for publishing no track published).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from signalling.live_server import (
    SECRET,
    LiveServer,
    MediaClient,
    RawSocket,
    live_server,
    token,
)
from visio_media.auth import Grants
from visio_media.client import ClientError, TrackPublished

pytestmark = [pytest.mark.asyncio(loop_scope="function"), pytest.mark.timeout(60)]

ROOM = "r1"


def claims(identity: str = "mallory", room: str = ROOM, **changes: Any) -> dict[str, Any]:
    """The claims mint_token writes, with ``changes`` (a value of None removes the claim)."""
    now = int(time.time())
    out: dict[str, Any] = {
        "iss": "visio-media",
        "sub": identity,
        "name": identity,
        "room": room,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "grants": {
            "join": True,
            "publish": True,
            "subscribe": True,
            "publish_sources": ["microphone", "camera", "screen_share", "screen_share_audio"],
            "room_admin": False,
        },
    }
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def hs(payload: dict[str, Any], alg: str = "HS256", key: str = SECRET) -> str:
    return jwt.encode(payload, key, algorithm=alg)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def alg_none() -> str:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(claims()).encode())}."


def alg_none_uppercase() -> str:
    header = b64(json.dumps({"alg": "None", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(claims()).encode())}."


def rs256() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims(), key, algorithm="RS256")


def tampered_room() -> str:
    """A genuine token for room "elsewhere" whose payload was edited to say ROOM."""
    header, _payload, signature = hs(claims(room="elsewhere")).split(".")
    return f"{header}.{b64(json.dumps(claims()).encode())}.{signature}"


def hs256_signature_of_other_secret() -> str:
    return hs(claims(), key=SECRET[::-1] + "x")


def truncated_signature() -> str:
    good = hs(claims())
    return good[:-6]


def grants(**changes: Any) -> dict[str, Any]:
    g = claims()["grants"]
    g.update(changes)
    return dict(g)


now = time.time

# case id -> (token factory, expected code)
BAD_JOIN_TOKENS: dict[str, tuple[Callable[[], str], str]] = {
    "alg-none": (alg_none, "unauthorized"),
    "alg-None": (alg_none_uppercase, "unauthorized"),
    "hs384-right-secret": (lambda: hs(claims(), "HS384"), "unauthorized"),
    "hs512-right-secret": (lambda: hs(claims(), "HS512"), "unauthorized"),
    "rs256": (rs256, "unauthorized"),
    "bad-signature": (hs256_signature_of_other_secret, "unauthorized"),
    "truncated-signature": (truncated_signature, "unauthorized"),
    "tampered-payload": (tampered_room, "unauthorized"),
    "expired": (lambda: hs(claims(exp=int(now()) - 3600, nbf=int(now()) - 7200)), "unauthorized"),
    "expired-just": (lambda: hs(claims(exp=int(now()) - 30)), "unauthorized"),
    "nbf-future": (lambda: hs(claims(nbf=int(now()) + 3600)), "unauthorized"),
    "no-exp": (lambda: hs(claims(exp=None)), "unauthorized"),
    "no-nbf": (lambda: hs(claims(nbf=None)), "unauthorized"),
    "no-sub": (lambda: hs(claims(sub=None)), "unauthorized"),
    "no-room": (lambda: hs(claims(room=None)), "unauthorized"),
    "no-grants": (lambda: hs(claims(grants=None)), "unauthorized"),
    "wrong-issuer": (lambda: hs(claims(iss="someone-else")), "unauthorized"),
    "sub-300-chars": (lambda: hs(claims(identity="m" * 300)), "unauthorized"),
    "room-300-chars": (lambda: hs(claims(room="r" * 300)), "unauthorized"),
    "sub-not-string": (lambda: hs(claims(sub=42)), "unauthorized"),
    "exp-string": (lambda: hs(claims(exp="tomorrow")), "unauthorized"),
    "unknown-grant": (lambda: hs(claims(grants=grants(superuser=True))), "unauthorized"),
    "grant-join-string": (lambda: hs(claims(grants=grants(join="true"))), "unauthorized"),
    "garbage": (lambda: "not-a-jwt", "unauthorized"),
    "empty": (lambda: "", "unauthorized"),
    # Room scope: "*" is for admin tokens and names no room one can join.
    "wildcard-room-not-admin": (lambda: hs(claims(room="*")), "unauthorized"),
    "wildcard-room-admin": (
        lambda: hs(claims(room="*", grants=grants(room_admin=True))),
        "forbidden",
    ),
    # Grants.
    "join-false": (lambda: token("mallory", ROOM, grants=Grants(join=False)), "forbidden"),
    "join-false-other-room": (
        lambda: token("mallory", "r2", grants=Grants(join=False)),
        "forbidden",
    ),
}


async def room_state(server: LiveServer) -> dict[str, Any]:
    """Rooms, their participants and tracks (timestamps left out)."""
    rooms = await server.rooms()
    return {
        name: sorted(
            (p["identity"], json.dumps(p["tracks"], sort_keys=True)) for p in room["participants"]
        )
        for name, room in rooms.items()
    }


@pytest.mark.parametrize("case", list(BAD_JOIN_TOKENS))
async def test_bad_token_join_is_refused_without_state_change(case: str) -> None:
    factory, code = BAD_JOIN_TOKENS[case]
    async with live_server() as server:
        bob = await RawSocket.open(server.ws_url)
        sock = await RawSocket.open(server.ws_url)
        try:
            joined = await bob.request({"type": "join", "token": token("bob", ROOM), "id": 1})
            assert joined["type"] == "joined", joined
            before = await room_state(server)
            assert before == {ROOM: [("bob", "[]")]}

            reply = await sock.request({"type": "join", "token": factory(), "id": "bad"})
            assert reply.get("type") == "error", reply
            assert reply.get("code") == code, reply
            assert reply.get("ref") == "bad", reply
            assert await sock.wait_closed() == 1008

            assert await room_state(server) == before
            # bob heard nothing about it.
            await bob.send({"type": "ping", "id": "p"})
            assert await bob.recv() == {"type": "pong", "ref": "p"}
        finally:
            await sock.close()
            await bob.close()


async def test_resume_with_token_for_another_room_does_not_take_the_session() -> None:
    """alice's session in r1 cannot be resumed with a (valid) token of alice for room r2."""
    async with live_server() as server:
        alice = await RawSocket.open(server.ws_url)
        thief = await RawSocket.open(server.ws_url)
        try:
            joined = await alice.request({"type": "join", "token": token("alice", ROOM)})
            before = await room_state(server)
            reply = await thief.request(
                {
                    "type": "join",
                    "token": token("alice", "r2"),
                    "resume": joined["session"],
                    "id": 1,
                }
            )
            assert reply.get("type") == "error" and reply.get("code") == "not_found", reply
            await alice.send({"type": "ping", "id": "p"})
            assert await alice.recv() == {"type": "pong", "ref": "p"}
            after = await room_state(server)
            assert after == before, f"state changed: {before} -> {after}"
        finally:
            await thief.close()
            await alice.close()


@pytest.mark.parametrize(
    ("grants", "source", "kinds"),
    [
        (Grants(publish=False), None, ("audio",)),
        (Grants(publish=False), None, ("audio", "video")),
        (Grants(publish_sources=("microphone",)), None, ("video",)),
        (Grants(publish_sources=("camera",)), "screen_share", ("video",)),
        (Grants(publish_sources=("microphone",)), "camera", ("audio",)),  # kind mismatch
    ],
    ids=[
        "no-publish-audio",
        "no-publish-audio-video",
        "mic-only-sends-camera",
        "camera-only-sends-screen",
        "camera-source-on-audio",
    ],
)
@pytest.mark.parametrize("renegotiation", [False, True], ids=["first-offer", "renegotiation"])
async def test_publish_without_grant_is_refused(
    grants: Grants,
    source: str | None,
    kinds: tuple[str, ...],
    renegotiation: bool,
    server: LiveServer,
) -> None:
    """eve's offer with a sendonly track her token does not allow is refused (``forbidden``),
    as her first offer or as a renegotiation of a receive-only session; nothing is published,
    bob hears of no track of hers, and eve keeps receiving what she may."""
    bob = MediaClient(server.ws_url, "bob", audio_hz=440.0)
    eve = MediaClient(
        server.ws_url,
        "eve",
        audio_hz=660.0 if "audio" in kinds else None,
        video="video" in kinds,
        tok=token("eve", ROOM, grants=grants),
    )
    try:
        await bob.start()
        await eve.client.connect()
        if renegotiation:
            await eve.client.publish()  # a receive-only session first
        # bob's microphone is published once his media connects: wait for it to settle.
        deadline = time.monotonic() + 15.0
        while True:
            before = await room_state(server)
            bob_tracks = json.loads(dict(before[ROOM])["bob"])
            if bob_tracks or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert [t["kind"] for t in bob_tracks] == ["audio"], before
        assert before == {ROOM: [("bob", before[ROOM][0][1]), ("eve", "[]")]}
        tracks = eve.local_tracks
        sources = [source] * len(tracks) if source is not None else None
        with pytest.raises(ClientError) as refused:
            await eve.client.publish(*tracks, sources=sources)
        assert refused.value.code == "forbidden", refused.value
        # Still connected, nothing published, nobody told.
        await eve.client.ping()
        assert await room_state(server) == before
        # eve can still receive what she is entitled to (the refused offer was not applied).
        if not renegotiation:
            await eve.client.publish()
        receiver = await eve.receiver("bob", "audio")
        assert await receiver.wait_frames(25, 10.0), receiver.describe()
        assert not [
            e for e in bob.client.history if isinstance(e, TrackPublished) and e.identity == "eve"
        ]
        assert bob.client.participants["eve"].tracks == {}
        assert await room_state(server) == before
        assert not bob.receivers
    finally:
        await eve.close()
        await bob.close()
