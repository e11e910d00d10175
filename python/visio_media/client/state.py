"""The room as the client knows it (participants and their tracks), read from server frames.

The readers raise ``ValueError`` on a malformed frame; the client logs it and drops the frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_TILES",
    "MAX_TILE_SIZE",
    "Participant",
    "SlotInfo",
    "Tile",
    "TrackInfo",
    "get_field",
    "read_participant",
    "read_slot",
    "read_track",
    "tile_message",
]

MAX_TILES = 256
MAX_TILE_SIZE = 16384


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


@dataclass(frozen=True)
class SlotInfo:
    """One receive slot (an m-line the server sends on) and who is in it now: ``identity`` is
    None when the slot is empty (nothing flows); ``track_id`` and ``source`` describe the
    published track it carries."""

    mid: str
    kind: str
    identity: str | None = None
    track_id: int | None = None
    source: str | None = None

    @property
    def empty(self) -> bool:
        return self.identity is None


@dataclass(frozen=True)
class Tile:
    """One tile of a :meth:`Client.set_layout`: a participant's ``source`` shown at
    ``width`` x ``height`` CSS pixels (optional; kept by the server for simulcast)."""

    identity: str
    source: str = "camera"
    width: int | None = None
    height: int | None = None


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


def _optional(raw: dict[str, Any], key: str, kind: type[Any]) -> Any:
    value = raw.get(key)
    if value is None:
        return None
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise ValueError(f"{key!r} is not {kind.__name__} or null")
    return value


def read_slot(raw: Any) -> SlotInfo:
    if not isinstance(raw, dict):
        raise ValueError("a slot is not an object")
    kind = get_field(raw, "kind", str)
    if kind not in ("audio", "video"):
        raise ValueError(f"a slot's kind is {kind!r}")
    identity = _optional(raw, "identity", str)
    return SlotInfo(
        mid=get_field(raw, "mid", str),
        kind=kind,
        identity=identity,
        track_id=_optional(raw, "track_id", int) if identity is not None else None,
        source=_optional(raw, "source", str) if identity is not None else None,
    )


def tile_message(tile: Tile | tuple[str, str] | str) -> dict[str, Any]:
    """A ``layout`` tile as the protocol writes it; ``ValueError`` when it cannot be sent."""
    if isinstance(tile, str):
        tile = Tile(tile)
    elif isinstance(tile, tuple):
        if len(tile) != 2:
            raise ValueError(f"a tile is (identity, source), not {tile!r}")
        tile = Tile(*tile)
    if not isinstance(tile, Tile):
        raise TypeError(f"a tile is a Tile, (identity, source) or an identity, not {tile!r}")
    if not isinstance(tile.identity, str) or not isinstance(tile.source, str):
        raise ValueError(f"a tile's identity and source are strings: {tile!r}")
    out: dict[str, Any] = {"identity": tile.identity, "source": tile.source}
    for key in ("width", "height"):
        size = getattr(tile, key)
        if size is None:
            continue
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_TILE_SIZE:
            raise ValueError(f"a tile's {key} is an int in 0..{MAX_TILE_SIZE}, not {size!r}")
        out[key] = size
    return out
