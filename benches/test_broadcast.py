"""Signalling at scale (issue 8): one room event sent to N = 1,000 participants.

``Room.broadcast`` encodes the message to JSON once and queues the same ``bytes`` on every
participant's link (``WsLink.send_encoded``); the baseline, measured in the same run, is what a
broadcast cost before: ``WsLink.send`` per recipient, which encodes the message once per
recipient. Both queue onto real ``WsLink`` objects (their bounded asyncio queues); the
WebSocket writes that follow (one per recipient either way) are not timed.

Run: ``python -m pytest benches/test_broadcast.py --benchmark-only``. pytest-benchmark prints the
two side by side (group ``broadcast-1000``) with their ratio. Figures in RESULTS.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

from visio_media.auth import AccessToken, Grants
from visio_media.participants import Participant, PublishedTrack
from visio_media.rooms import Room
from visio_media.signalling import WsLink

N = 1000


def _participant(i: int, link: WsLink | None) -> Participant:
    identity = f"participant-{i:04d}"
    token = AccessToken(identity, f"Participant {i}", "bench", Grants(), 0.0)
    return Participant(identity=identity, name=token.name, room="bench", token=token, link=link)


@pytest.fixture
def room() -> Iterator[tuple[Room, list[WsLink]]]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        links = [WsLink(web.WebSocketResponse()) for _ in range(N)]
        room = Room("bench", N + 1)
        for i, link in enumerate(links):
            p = _participant(i, link)
            room.participants[p.identity] = p
        yield room, links
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _message() -> dict[str, object]:
    """A `participant_joined` of someone publishing a camera and a microphone: the event a
    join storm sends to everyone (~250 bytes of JSON)."""
    p = _participant(N, None)
    p.tracks = {
        1: PublishedTrack(1, "audio", "microphone", "0"),
        2: PublishedTrack(2, "video", "camera", "1"),
    }
    return {"type": "participant_joined", "participant": p.info()}


def _drain(links: list[WsLink]) -> Callable[[], None]:
    def drain() -> None:
        for link in links:
            while not link.queue.empty():
                link.queue.get_nowait()

    return drain


def _check(links: list[WsLink], shared: bool) -> None:
    frames = [link.queue.get_nowait() for link in links]
    assert all(link.queue.empty() and not link.closing for link in links)
    assert all(f == frames[0] for f in frames)
    assert all(f is frames[0] for f in frames) == shared


@pytest.mark.benchmark(group="broadcast-1000")
def test_broadcast_encodes_once(benchmark: Any, room: tuple[Room, list[WsLink]]) -> None:
    r, links = room
    message = _message()
    benchmark.pedantic(
        r.broadcast, args=(message,), setup=_drain(links), rounds=300, warmup_rounds=10
    )
    _drain(links)()
    r.broadcast(message)
    _check(links, shared=True)


@pytest.mark.benchmark(group="broadcast-1000")
def test_baseline_encodes_per_recipient(
    benchmark: Any, room: tuple[Room, list[WsLink]]
) -> None:
    r, links = room
    message = _message()

    def per_recipient() -> None:
        for q in r.participants.values():
            q.send(message)

    benchmark.pedantic(per_recipient, setup=_drain(links), rounds=300, warmup_rounds=10)
    _drain(links)()
    per_recipient()
    _check(links, shared=False)
