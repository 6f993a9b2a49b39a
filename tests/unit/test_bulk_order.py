"""``_bulk_docs`` answers matched to the documents sent, whatever order the server answers in."""

from __future__ import annotations

from workers.couch import in_request_order


def _ok(doc_id: str, rev: str) -> dict[str, object]:
    return {"ok": True, "id": doc_id, "rev": rev}


def test_answers_in_another_order_are_matched_by_id() -> None:
    # what the embedded server answered once in about 30 requests (CI)
    docs = [{"_id": "gone-0"}, {"_id": "gone-1"}, {"_id": "gone-2"}, {"_id": "kept"}]
    answers = [_ok("gone-2", "1-c"), _ok("gone-1", "1-b"), _ok("gone-0", "1-a"), _ok("kept", "1-k")]
    assert in_request_order(docs, answers) == [_ok("gone-0", "1-a"), _ok("gone-1", "1-b"), _ok("gone-2", "1-c"),
                                               _ok("kept", "1-k")]


def test_an_id_sent_twice_keeps_its_answers_in_order() -> None:
    docs = [{"_id": "a", "_rev": "1-x"}, {"_id": "b"}, {"_id": "a", "_rev": "1-y"}]
    answers = [_ok("b", "1-b"), _ok("a", "2-x"), {"id": "a", "error": "conflict"}]
    assert in_request_order(docs, answers) == [_ok("a", "2-x"), _ok("b", "1-b"), {"id": "a", "error": "conflict"}]


def test_answers_already_in_order_are_returned_as_they_are() -> None:
    docs = [{"_id": "a"}, {"_id": "b"}]
    answers = [_ok("a", "1-a"), _ok("b", "1-b")]
    assert in_request_order(docs, answers) is answers


def test_documents_without_an_id_or_answers_that_do_not_match_keep_their_places() -> None:
    named = [{"n": 1}, {"_id": "b"}]  # the server names the first
    answers = [_ok("b", "1-b"), _ok("server-made", "1-s")]
    assert in_request_order(named, answers) == answers
    short = [{"_id": "a"}, {"_id": "b"}]
    assert in_request_order(short, [_ok("b", "1-b")]) == [_ok("b", "1-b")]
    other = [{"_id": "a"}, {"_id": "b"}]
    assert in_request_order(other, [_ok("b", "1-b"), _ok("c", "1-c")]) == [_ok("b", "1-b"), _ok("c", "1-c")]
