"""Remote tracks: what the client receives from the others."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

__all__ = ["RemoteTrack"]


class RemoteTrack(MediaStreamTrack):
    """A track received from another participant (``identity``, ``track_id``).

    It reads the aiortc receiver's track and ends on its own when the client learns that the
    publisher's track is gone, even though the aiortc receiver itself lives on.
    """

    def __init__(self, source: MediaStreamTrack, *, identity: str, track_id: int, mid: str) -> None:
        super().__init__()
        self.kind: str = source.kind
        self.identity = identity
        self.track_id = track_id
        self.mid = mid
        self._source = source
        self._ended = asyncio.get_running_loop().create_future()
        self.frames = 0

    @property
    def id(self) -> str:
        """``track-<track id>`` (our own, rather than aiortc's random one)."""
        return f"track-{self.track_id}"

    def __repr__(self) -> str:
        return (
            f"<RemoteTrack {self.identity}/{self.track_id} {self.kind} mid={self.mid} "
            f"{self.readyState}>"
        )

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        getter: asyncio.Task[Any] = asyncio.ensure_future(self._source.recv())
        try:
            await asyncio.wait((getter, self._ended), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getter.done():
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError, MediaStreamError):
                    await getter
        if getter.done() and not getter.cancelled():
            try:
                frame = getter.result()
            except MediaStreamError:
                self.stop()
                raise
            if self.readyState == "live":
                self.frames += 1
                return frame
        raise MediaStreamError

    def stop(self) -> None:
        if not self._ended.done():
            self._ended.set_result(None)
        super().stop()
