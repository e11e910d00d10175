"""Remote tracks: what the client receives from the others."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from visio_media.client.state import SlotInfo

__all__ = ["RemoteTrack"]


class RemoteTrack(MediaStreamTrack):
    """The track of one receive slot (the server's m-line ``mid``).

    The object stays the same for the life of the line: the server switches the slot from one
    published track to another without new SDP, and :attr:`identity`, :attr:`track_id` and
    :attr:`source` follow the slot's current occupant (None while the slot is empty; frames
    then simply stop coming). It reads the aiortc receiver's track and ends when the client
    closes, or if the server stops the line.
    """

    def __init__(
        self, source: MediaStreamTrack, *, mid: str, slots: Mapping[str, SlotInfo]
    ) -> None:
        super().__init__()
        self.kind: str = source.kind
        self.mid = mid
        self._slots = slots
        self._source = source
        self._ended = asyncio.get_running_loop().create_future()
        self.frames = 0

    @property
    def id(self) -> str:
        """``slot-<mid>`` (our own, rather than aiortc's random one)."""
        return f"slot-{self.mid}"

    @property
    def slot(self) -> SlotInfo | None:
        """The slot's current state (None before the server described it)."""
        return self._slots.get(self.mid)

    @property
    def identity(self) -> str | None:
        slot = self.slot
        return slot.identity if slot is not None else None

    @property
    def track_id(self) -> int | None:
        slot = self.slot
        return slot.track_id if slot is not None else None

    @property
    def source(self) -> str | None:
        slot = self.slot
        return slot.source if slot is not None else None

    def __repr__(self) -> str:
        return (
            f"<RemoteTrack slot {self.mid} {self.kind}: {self.identity}/{self.track_id} "
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
