"""The evaluator's lookup over the read model (SQLite, no network): what an activation's jurisdiction reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workers.readmodel.lookup import IndexLookup
from workers.readmodel.store import Store

Doc = dict[str, Any]


class Model:
    """The read model as an activation's lookup uses it, over a store of the test's own (no feed)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def refresh(self) -> None:
        """Nothing to catch up with: the test writes into the store itself."""


def _feature(doc_id: str, parent: str, jurisdiction: bool = False) -> Doc:
    doc: Doc = {"_id": doc_id, "id": doc_id, "_rev": "1-a", "type": "Feature", "properties": {"parentId": parent}}
    if jurisdiction:
        doc["jurisdiction"] = True
    return doc


def test_an_activations_jurisdiction_reads_its_children_once(tmp_path: Path) -> None:
    """The scope of a jurisdiction and the walk that looks for jurisdictions among its children read them
    once; the next jurisdiction reads the index again, as the follower has brought it meanwhile."""
    store = Store(tmp_path / "rm.sqlite")
    store.apply([_feature("oa", "d", True), _feature("s1", "oa"), _feature("sub", "oa", True)])
    reads: list[str] = []
    by_key = store.by_key

    def counted(tag: str, k1s: Any, k2: Any = None) -> Any:
        reads.append(tag)
        return by_key(tag, k1s, k2)

    store.by_key = counted  # type: ignore[method-assign]
    lookup = IndexLookup(Model(store), fresh_per_jurisdiction=True)  # type: ignore[arg-type]
    lookup.begin_jurisdiction("oa", "p")
    first = lookup.child_locations("oa")
    first.pop()  # a caller's list is its own
    assert [d["_id"] for d in lookup.child_locations("oa")] == ["s1", "sub"]
    assert reads.count("child") == 1

    store.apply([_feature("s2", "oa")])  # brought by the follower during the jurisdiction's evaluation
    assert [d["_id"] for d in lookup.child_locations("oa")] == ["s1", "sub"]
    lookup.begin_jurisdiction("sub", "p")
    assert [d["_id"] for d in lookup.child_locations("oa")] == ["s1", "s2", "sub"]
    assert reads.count("child") == 2

    plain = IndexLookup(Model(store))  # type: ignore[arg-type]  # the feed rule's: every read reads the index
    plain.child_locations("oa")
    plain.child_locations("oa")
    assert reads.count("child") == 4
