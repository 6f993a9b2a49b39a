"""What the read model makes of a quorum read of changes its feed listed (workers.readmodel.feed.sort_reads):
on a cluster a read may lag the feed, and such a read is made again instead of dropping or rolling back."""

from __future__ import annotations

from workers.readmodel.feed import sort_reads


def _row(doc_id: str, rev: str) -> dict[str, object]:
    return {"id": doc_id, "key": doc_id, "value": {"rev": rev}, "doc": {"_id": doc_id, "_rev": rev, "type": "Task"}}


def test_a_document_at_the_revision_the_feed_listed_or_later_is_found() -> None:
    reads = sort_reads([_row("a", "2-x"), _row("b", "5-y")], {"a": 2, "b": 3})
    assert set(reads.found) == {"a", "b"} and reads.stale == {} and reads.earlier == {}
    assert reads.found["b"]["_rev"] == "5-y"


def test_a_document_the_quorum_has_not_taken_yet_is_read_again_not_dropped() -> None:
    reads = sort_reads([{"key": "a", "error": "not_found"}], {"a": 1})
    assert reads.found == {} and reads.stale == {"a": 1}


def test_an_earlier_revision_than_wanted_is_read_again_and_kept_as_a_fallback() -> None:
    reads = sort_reads([_row("a", "1-x")], {"a": 2})
    assert reads.found == {} and reads.stale == {"a": 2} and reads.earlier["a"]["_rev"] == "1-x"


def test_a_deletion_is_found_as_a_tombstone() -> None:
    row = {"id": "a", "key": "a", "value": {"rev": "3-z", "deleted": True}, "doc": None}
    reads = sort_reads([row], {"a": 2})
    assert reads.found == {"a": {"_id": "a", "_deleted": True}} and reads.stale == {}


def test_several_leaves_accept_whatever_the_server_says_wins() -> None:
    reads = sort_reads([_row("a", "1-x")], {"a": 0})
    assert set(reads.found) == {"a"}


def test_rows_of_ids_not_asked_for_are_ignored() -> None:
    assert sort_reads([_row("z", "1-x")], {"a": 1}).stale == {}
