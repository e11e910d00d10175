"""A client's offer as the engine reads it, for checks made before the engine applies it.

There is deliberately no SDP parser in Python: a grant checked on a second reading of the same
bytes can be bypassed by text the two readers split differently (Unicode line separators, two
direction attributes...). The sections come from the engine's own parser, which also refuses
such ambiguous text outright.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from visio_media import _native
from visio_media.errors import EngineFailure

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]


@dataclass(frozen=True)
class MediaSection:
    kind: str
    mid: str | None
    direction: Direction
    rejected: bool

    @property
    def client_sends(self) -> bool:
        return not self.rejected and self.direction in ("sendrecv", "sendonly")


def media_sections(sdp: str) -> list[MediaSection]:
    """The offer's m-sections in order; :class:`EngineFailure` if the engine would refuse it."""
    try:
        sections = _native.inspect_offer(sdp)
    except _native.EngineError as e:
        raise EngineFailure(str(e)) from e
    return [
        MediaSection(kind, mid, cast(Direction, direction), rejected)
        for kind, mid, direction, rejected in sections
    ]
