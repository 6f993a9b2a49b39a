"""The winner of conflicting revisions (pure)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from workers.conflicts.resolver import current_winner, loses_nothing, resolution_writes
from workers.conflicts.winner import choose, parse_time


def _task(rev: str, lastmod: str | None, **extra: object) -> dict[str, object]:
    doc: dict[str, object] = {"_id": "t", "_rev": rev, "type": "Task", **extra}
    if lastmod is not None:
        doc["lastModified"] = lastmod
    return doc


def test_times_with_offsets_compare_as_instants() -> None:
    assert parse_time("2026-11-21T10:00:00.000+02:00") == parse_time("2026-11-21T08:00:00Z")
    assert parse_time("2026-11-21T08:00:00") == parse_time("2026-11-21T08:00:00+00:00")
    assert parse_time(1700000000000) == 1700000000000.0
    assert parse_time("not a time") is None and parse_time(None) is None and parse_time(True) is None


def test_latest_wins_whatever_the_order_of_leaves() -> None:
    leaves = [_task("1-a", "2026-01-01T00:00:00Z"), _task("3-b", "2026-01-03T00:00:00Z"),
              _task("2-c", "2026-01-02T00:00:00Z")]
    for order in itertools.permutations(leaves):
        decision = choose(list(order))
        assert decision.winner["_rev"] == "3-b"
        assert sorted(d["_rev"] for d in decision.losers) == ["1-a", "2-c"]


def test_ties_are_broken_like_couchdb() -> None:
    same = "2026-01-01T00:00:00Z"
    assert choose([_task("2-a", same), _task("3-a", same)]).winner["_rev"] == "3-a"
    assert choose([_task("2-b", same), _task("2-a", same)]).winner["_rev"] == "2-b"


def test_a_revision_without_time_loses_to_one_with_time() -> None:
    decision = choose([_task("9-z", None), _task("1-a", "2020-01-01T00:00:00Z")])
    assert decision.winner["_rev"] == "1-a"


def test_fields_per_type() -> None:
    client = {"_id": "c", "type": "Client"}
    older_edit = {**client, "_rev": "1-a", "dateCreated": "2026-05-01T00:00:00Z", "dateEdited": "2026-01-02T00:00:00Z"}
    newer_edit = {**client, "_rev": "1-b", "dateCreated": "2026-01-01T00:00:00Z", "dateEdited": "2026-01-03T00:00:00Z"}
    assert choose([older_edit, newer_edit]).winner["_rev"] == "1-b"
    location = {"_id": "l", "type": "Feature"}
    v2 = {**location, "_rev": "1-a", "properties": {"version": 2}}
    v5 = {**location, "_rev": "1-b", "serverVersion": 5, "properties": {"version": 1}}
    decision = choose([v2, v5])
    assert decision.winner["_rev"] == "1-b" and decision.rule == "latest-wins by serverVersion/properties.version"


def test_deletions_compete_only_with_a_time() -> None:
    living = _task("2-a", "2026-01-01T00:00:00Z")
    bare = {"_id": "t", "_rev": "3-z", "_deleted": True}
    timed = {"_id": "t", "_rev": "2-d", "_deleted": True, "lastModified": "2026-02-01T00:00:00Z"}
    decision = choose([living, bare])
    assert decision.winner["_rev"] == "2-a" and decision.losers == []
    decision = choose([living, timed])
    assert decision.winner["_rev"] == "2-d" and [d["_rev"] for d in decision.losers] == ["2-a"]


def test_resolution_writes_never_fork() -> None:
    current, older = _task("2-cur", "2026-01-01T00:00:00Z", v=1), _task("2-old", "2026-02-01T00:00:00Z", v=2)
    decision = choose([current, older])
    writes = resolution_writes("2-cur", decision)
    # the winner's body on top of the current revision, the loser leaf deleted, nothing else
    assert writes == [
        {"_id": "t", "type": "Task", "lastModified": "2026-02-01T00:00:00Z", "v": 2, "_rev": "2-cur"},
        {"_id": "t", "_rev": "2-old", "_deleted": True},
    ]
    assert sum(1 for w in writes if not w.get("_deleted")) == 1
    decision = choose([older, _task("1-x", "2025-01-01T00:00:00Z")])
    assert resolution_writes("2-old", decision) == [{"_id": "t", "_rev": "1-x", "_deleted": True}]


def test_one_leaf_is_not_a_conflict() -> None:
    with pytest.raises(ValueError):
        choose([_task("1-a", None)])


def test_a_forged_2099_clock_is_clamped_to_when_the_server_first_saw_the_revision() -> None:
    """Issue 10, item 2: the device that claims 2099 arrived at 09:05; the honest edit claims 09:30 and arrived
    at 09:31. Unclamped, 2099 wins forever; clamped, the honest later edit wins."""
    forged = _task("2-f", "2099-01-01T00:00:00Z", businessStatus="Sprayed")
    honest = _task("2-h", "2026-11-23T09:30:00Z", businessStatus="Not Sprayed")
    assert choose([forged, honest]).winner["_rev"] == "2-f"  # what the claim alone would decide
    seen = {"2-f": parse_time("2026-11-23T09:05:00Z") or 0.0, "2-h": parse_time("2026-11-23T09:31:00Z") or 0.0}
    decision = choose([forged, honest], seen)
    assert decision.winner["_rev"] == "2-h"
    assert decision.times["2-f"]["clamped"] is True and decision.times["2-f"]["seenAt"] == "2026-11-23T09:05:00.000Z"
    assert decision.times["2-h"]["clamped"] is False


def test_a_claim_earlier_than_arrival_stands_and_server_writes_are_not_clamped() -> None:
    early = _task("2-e", "2026-11-23T08:00:00Z")
    server = _task("2-s", "2026-11-23T08:30:00Z")  # no receipt: written on the server
    seen = {"2-e": parse_time("2026-11-23T10:00:00Z") or 0.0}
    assert choose([early, server], seen).winner["_rev"] == "2-s"
    # a device revision without a readable time competes with its arrival time
    blank = _task("2-b", None)
    assert choose([blank, server], {"2-b": parse_time("2026-11-23T09:00:00Z") or 0.0}).winner["_rev"] == "2-b"


def test_epoch_milliseconds_and_iso_strings_compare_as_the_same_instants() -> None:
    ms = _task("2-m", None, lastModified=int((parse_time("2026-11-23T10:00:00Z") or 0) * 1000))
    iso = _task("2-i", "2026-11-23T09:00:00Z")
    assert choose([ms, iso]).winner["_rev"] == "2-m"


def test_current_winner_is_the_revision_couchdb_shows() -> None:
    def leaf(rev: str, deleted: bool = False) -> dict[str, Any]:
        return {"_id": "d", "_rev": rev, **({"_deleted": True} if deleted else {})}

    # the longest history, then the greatest revision id
    assert current_winner([leaf("1-b"), leaf("2-a")]) == "2-a"
    assert current_winner([leaf("2-a"), leaf("2-b")]) == "2-b"
    # generations compare as numbers, not strings
    assert current_winner([leaf("10-a"), leaf("9-z")]) == "10-a"
    # a living leaf beats a deleted one whatever its history
    assert current_winner([leaf("1-a"), leaf("5-z", deleted=True)]) == "1-a"
    # every leaf deleted: the same order among them
    assert current_winner([leaf("3-a", deleted=True), leaf("2-z", deleted=True)]) == "3-a"


def test_a_resolution_that_loses_no_content_is_not_audited() -> None:
    """Two leaves of one content (a resolution in the making seen by a second resolver: the winner's body on
    top of the current revision, the winning leaf not yet deleted; or one edit copied by two paths) lose nothing
    a revert could bring back. Any other content, or a deletion a device made with a time, does."""
    body = {"_id": "t1", "type": "Task", "status": "Completed", "lastModified": "2026-11-30T10:00:00Z"}
    same = [{**body, "_rev": "1-aaaa"}, {**body, "_rev": "2-bbbb", "_revisions": {"start": 2, "ids": ["bbbb", "x"]}}]
    assert loses_nothing(choose(same))
    bare = {"_id": "t1", "_rev": "2-cccc", "_deleted": True}
    assert loses_nothing(choose([*same, bare]))
    other = {**body, "_rev": "1-dddd", "status": "Ready", "lastModified": "2026-11-30T09:00:00Z"}
    assert not loses_nothing(choose([*same, other]))
    deleted_with_time = {**body, "_rev": "3-eeee", "_deleted": True, "lastModified": "2026-11-30T08:00:00Z"}
    assert not loses_nothing(choose([same[0], deleted_with_time]))
