"""The winner of conflicting revisions (pure)."""

from __future__ import annotations

import itertools

import pytest

from workers.conflicts.resolver import resolution_writes
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
