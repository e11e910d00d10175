"""The runner's reading of `slots` frames and its check by source, on frames and counts built
here (the end-to-end runs are in test_load_slots.py)."""

from __future__ import annotations

from visio_media.load.slots import SlotBook, SlotCheck, by_identity


def slot(mid: str, kind: str, identity: str | None) -> dict[str, object]:
    return {"mid": mid, "kind": kind, "identity": identity, "track_id": None, "source": None}


def test_a_full_frame_replaces_the_slots_and_a_partial_one_changes_only_its_lines() -> None:
    book = SlotBook()
    assert book.apply({"type": "slots", "full": True,
                       "slots": [slot("a", "audio", None), slot("v", "video", None)]}, 10)
    assert book.apply({"type": "slots", "full": False, "slots": [slot("v", "video", "bob")]}, 20)
    assert (book.slots["a"].identity, book.slots["a"].since_ns) == (None, 10)
    assert (book.slots["v"].identity, book.slots["v"].since_ns) == ("bob", 20)
    # A full frame restating a slot does not make it new; one leaving a line out drops it.
    assert book.apply({"type": "slots", "full": True, "slots": [slot("v", "video", "bob")]}, 30)
    assert list(book.slots) == ["v"] and book.slots["v"].since_ns == 20
    assert book.frames == 3 and book.identities("video") == ["bob"]


def test_a_malformed_slots_frame_changes_nothing() -> None:
    book = SlotBook()
    book.apply({"full": True, "slots": [slot("v", "video", "bob")]}, 1)
    snapshot = book.copy()
    for bad in (
        {"full": True},
        {"full": "yes", "slots": []},
        {"full": False, "slots": ["v"]},
        {"full": False, "slots": [slot("v", "data", "eve")]},
        {"full": False, "slots": [slot("v", "video", "eve"), {"mid": 3, "kind": "video"}]},
        {"full": False, "slots": [{"mid": "v", "kind": "video", "identity": 7}]},
    ):
        assert book.apply(bad, 2) is False, bad
        assert book.slots == snapshot.slots and book.frames == 1


def test_the_check_flags_other_senders_empty_slot_traffic_unnamed_lines_and_own_media() -> None:
    who = {1: "ann", 2: "bob", 3: "cat"}
    book = SlotBook()
    book.apply({"full": True, "slots": [slot("a0", "audio", "bob"), slot("v0", "video", "cat"),
                                        slot("v1", "video", None)]}, 100)
    book.apply({"full": False, "slots": [slot("v1", "video", "bob")]}, 300)  # during the window
    good = SlotCheck()
    good.add("ann", book, {"a0": {2: 50, 0: 3}, "v0": {3: 30}, "v1": {3: 5, 2: 20}}, who, 200)
    assert good.report() | {"examples": []} == {
        "participants": 1, "slots_checked": 2, "slots_filled": 2, "changed_in_window": 1,
        "silent_slots": 0, "untagged_packets": 3, "mismatches": 0, "layout_unmet": 0,
        "examples": [], "ok": True,
    }
    bad = SlotCheck()
    bad.add("ann", book, {"a0": {2: 50, 3: 1}, "v0": {}, "x9": {9: 4}}, who, 200)
    r = bad.report()
    assert (r["mismatches"], r["silent_slots"], r["ok"]) == (2, 1, False), r
    assert any("'cat'" in e and "a0" in e for e in r["examples"]), r
    assert any("x9" in e for e in r["examples"]), r
    own = SlotCheck()
    own.add("cat", book, {"v0": {3: 30}}, who, 200)
    assert own.mismatches == 1 and "own video" in own.problems[0]
    empty = SlotCheck()
    book.apply({"full": False, "slots": [slot("v0", "video", None)]}, 50)
    empty.add("ann", book, {"v0": {3: 1}}, who, 400)
    assert empty.mismatches == 1 and "empty video slot" in empty.problems[0]
    assert by_identity({"m": {1: 2, 0: 1, 42: 5}}, who) == {
        "m": {"ann": 2, "<untagged>": 1, "client-42": 5}
    }


def test_a_layout_tile_missing_from_the_video_slots_is_a_mismatch() -> None:
    book = SlotBook()
    book.apply({"full": True, "slots": [slot("v0", "video", "cat"), slot("v1", "video", None)]}, 1)
    met = SlotCheck()
    met.add("ann", book, {"v0": {3: 30}}, {3: "cat"}, 5, layout=["cat"])
    assert (met.mismatches, met.layout_unmet) == (0, 0)
    unmet = SlotCheck()
    unmet.add("ann", book, {"v0": {3: 30}}, {3: "cat"}, 5, layout=["cat", "dan"])
    assert (unmet.mismatches, unmet.layout_unmet) == (1, 1)
    assert "'dan'" in unmet.problems[0] and unmet.report()["ok"] is False
