"""The paging rule of the participant list sent at join (docs/protocol.md, "The participant
list"): at most a count, and at most a number of bytes, a page."""

from __future__ import annotations

from visio_media.participants import pages_by_size


def test_pages_by_size() -> None:
    assert pages_by_size([], 100, 100, 50) == [range(0, 0)]
    # Count: at most `most` a page.
    assert pages_by_size([1] * 5, 1000, 1000, 2) == [range(0, 2), range(2, 4), range(4, 5)]
    # Bytes: items plus commas within the budget; the first page has its own budget.
    assert pages_by_size([10, 10, 10, 10], 21, 32, 50) == [range(0, 2), range(2, 4)]
    assert pages_by_size([10, 10, 10, 10], 20, 32, 50) == [range(0, 1), range(1, 4)]
    # An item larger than any budget still goes, alone.
    assert pages_by_size([5, 500, 5], 100, 100, 50) == [range(0, 1), range(1, 2), range(2, 3)]
