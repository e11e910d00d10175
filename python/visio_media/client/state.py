"""The room as the client knows it (participants and their tracks), read from server frames.

The readers raise ``ValueError`` on a malformed frame; the client logs it and drops the frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Participant", "TrackInfo", "get_field", "read_participant", "read_track"]


@dataclass(frozen=True)
class TrackInfo:
    """A published track as the server describes it."""

    track_id: int
    kind: str
    source: str
    muted: bool = False


@dataclass
class Participant:
    identity: str
    name: str
    tracks: dict[int, TrackInfo] = field(default_factory=dict)


def get_field(msg: dict[str, Any], key: str, kind: type[Any], default: Any = ...) -> Any:
    """``msg[key]`` checked to be a ``kind`` (a bool is not an int); ``default`` when absent,
    ``ValueError`` when absent without a default or of another type."""
    if key not in msg:
        if default is ...:
            raise ValueError(f"missing {key!r}")
        return default
    value = msg[key]
    if kind is int and isinstance(value, bool):
        raise ValueError(f"{key!r} is not an integer")
    if not isinstance(value, kind):
        raise ValueError(f"{key!r} is not {kind.__name__}")
    return value


def read_track(raw: Any) -> TrackInfo:
    if not isinstance(raw, dict):
        raise ValueError("a track is not an object")
    return TrackInfo(
        track_id=get_field(raw, "track_id", int),
        kind=get_field(raw, "kind", str),
        source=get_field(raw, "source", str, ""),
        muted=get_field(raw, "muted", bool, False),
    )


def read_participant(raw: Any) -> Participant:
    if not isinstance(raw, dict):
        raise ValueError("a participant is not an object")
    identity = get_field(raw, "identity", str)
    tracks = [read_track(t) for t in get_field(raw, "tracks", list, [])]
    return Participant(
        identity=identity,
        name=get_field(raw, "name", str, identity),
        tracks={t.track_id: t for t in tracks},
    )
