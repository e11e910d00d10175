"""Just enough SDP reading to check what a client offers before the engine sees it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
    sections: list[MediaSection] = []
    kind: str | None = None
    mid: str | None = None
    direction: Direction = "sendrecv"
    rejected = False

    def close() -> None:
        if kind is not None:
            sections.append(MediaSection(kind, mid, direction, rejected))

    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            close()
            parts = line[2:].split()
            kind = parts[0] if parts else ""
            rejected = len(parts) > 1 and parts[1] == "0"
            mid, direction = None, "sendrecv"
        elif kind is None:
            continue
        elif line.startswith("a=mid:"):
            mid = line[6:]
        elif line in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"):
            direction = line[2:]  # type: ignore[assignment]
    close()
    return sections
