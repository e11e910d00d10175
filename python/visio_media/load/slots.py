"""Who each receive slot carries, checked by source: what the server's `slots` frames say
(mid -> identity) beside the sender ids the generator read from the packets themselves (every
synthetic payload carries its sender's client id, docs/load.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The generator's sender id for packets without a tag (3-byte DTX frames).
UNTAGGED = 0
# Problems kept for the report (the counts are complete).
MAX_EXAMPLES = 10


@dataclass
class SlotState:
    kind: str
    identity: str | None
    # time.monotonic_ns() when the runner learnt that this slot carries `identity`.
    since_ns: int


@dataclass
class SlotBook:
    """One participant's view of its slots, from the `slots` frames it received."""

    slots: dict[str, SlotState] = field(default_factory=dict)
    frames: int = 0

    def apply(self, frame: Mapping[str, Any], now_ns: int) -> bool:
        """Applies one `slots` frame; False (and nothing changed) if it is malformed."""
        entries = frame.get("slots")
        full = frame.get("full")
        if not isinstance(entries, list) or not isinstance(full, bool):
            return False
        parsed: list[tuple[str, str, str | None]] = []
        for e in entries:
            if not isinstance(e, dict):
                return False
            mid, kind, identity = e.get("mid"), e.get("kind"), e.get("identity")
            if not isinstance(mid, str) or kind not in ("audio", "video"):
                return False
            if identity is not None and not isinstance(identity, str):
                return False
            parsed.append((mid, kind, identity))
        old = self.slots
        if full:
            self.slots = {}
        for mid, kind, identity in parsed:
            before = old.get(mid)
            if before is not None and before.identity == identity and before.kind == kind:
                self.slots[mid] = before  # restated, not changed
            else:
                self.slots[mid] = SlotState(kind, identity, now_ns)
        self.frames += 1
        return True

    def copy(self) -> SlotBook:
        """A snapshot (slot states are replaced on change, never mutated)."""
        return SlotBook(dict(self.slots), self.frames)

    def identities(self, kind: str) -> list[str]:
        """The identities in this participant's slots of `kind`, by mid."""
        return [
            s.identity
            for _, s in sorted(self.slots.items())
            if s.kind == kind and s.identity is not None
        ]


def by_identity(
    received: Mapping[str, Mapping[int, int]], who: Mapping[int, str]
) -> dict[str, dict[str, int]]:
    """mid -> {sender identity: packets}; a sender id of no known participant shows as
    `client-<id>`, untagged packets as `<untagged>`."""
    out: dict[str, dict[str, int]] = {}
    for mid, senders in received.items():
        line = out.setdefault(mid, {})
        for sender, n in senders.items():
            name = "<untagged>" if sender == UNTAGGED else who.get(sender, f"client-{sender}")
            line[name] = line.get(name, 0) + n
    return out


@dataclass
class SlotCheck:
    """Slots compared with the packets received over one window, summed over participants."""

    participants: int = 0
    # Slot lines compared (stable over the window).
    checked: int = 0
    filled: int = 0
    # Slots whose content changed during the window: not compared.
    changed_in_window: int = 0
    # Filled, stable slots on which nothing arrived.
    silent: int = 0
    untagged_packets: int = 0
    # Lines where packets came from someone else than the slot names (or from anyone on an
    # empty slot, or on a line no `slots` frame named), or a slot naming its own receiver.
    mismatches: int = 0
    # Layout tiles asked for (no more than the video slots) missing from the video slots.
    layout_unmet: int = 0
    problems: list[str] = field(default_factory=list)

    def _problem(self, text: str) -> None:
        self.mismatches += 1
        if len(self.problems) < MAX_EXAMPLES:
            self.problems.append(text)

    def add(
        self,
        identity: str,
        book: SlotBook,
        received: Mapping[str, Mapping[int, int]],
        who: Mapping[int, str],
        window_start_ns: int,
        *,
        layout: list[str] | None = None,
    ) -> None:
        """Compares one participant's slots with what it received since `window_start_ns`
        (the generator's sources were reset then); `who` maps client ids to identities. With
        `layout` (the tiles it asked for, no more than its video slots), each tile must be in a
        video slot."""
        self.participants += 1
        if layout:
            shown = set(book.identities("video"))
            for tile in layout:
                if tile not in shown:
                    self.layout_unmet += 1
                    self._problem(f"{identity}: asked for {tile!r}, not in its video slots")
        for mid in sorted(set(book.slots) | set(received)):
            senders = received.get(mid, {})
            packets = sum(senders.values())
            state = book.slots.get(mid)
            if state is None:
                if packets:
                    self._problem(f"{identity}: {packets} packets on mid {mid}, in no slots frame")
                continue
            if state.since_ns > window_start_ns:
                self.changed_in_window += 1
                continue
            self.checked += 1
            self.untagged_packets += senders.get(UNTAGGED, 0)
            if state.identity == identity:
                self._problem(f"{identity}: its own {state.kind} is in its slot {mid}")
            if state.identity is None:
                if packets:
                    self._problem(
                        f"{identity}: {packets} packets on empty {state.kind} slot {mid}"
                    )
                continue
            self.filled += 1
            if packets == 0:
                self.silent += 1
            for sender, n in sorted(senders.items()):
                if sender == UNTAGGED:
                    continue
                name = who.get(sender, f"client-{sender}")
                if name != state.identity:
                    self._problem(
                        f"{identity}: {state.kind} slot {mid} is {state.identity!r} but "
                        f"{n} packets came from {name!r}"
                    )

    def report(self) -> dict[str, Any]:
        return {
            "participants": self.participants,
            "slots_checked": self.checked,
            "slots_filled": self.filled,
            "changed_in_window": self.changed_in_window,
            "silent_slots": self.silent,
            "untagged_packets": self.untagged_packets,
            "mismatches": self.mismatches,
            "layout_unmet": self.layout_unmet,
            "examples": list(self.problems),
            "ok": self.mismatches == 0,
        }
