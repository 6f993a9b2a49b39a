"""Copy revisions between two databases with their histories, as CouchDB's replicator does: ``_revs_diff`` on
the target, ``_bulk_get?revs=true`` on the source, ``_bulk_docs`` with ``new_edits: false`` on the target.

Both sides keep the same revision ids, so a revision copied twice is a no-op, two offline edits of one document
meet as a CouchDB conflict, and a resolution written in one database settles the others when it is copied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from workers.couch import Couch, Doc
from workers.errors import FieldsyncError

CHUNK = 200


@dataclass
class Copied:
    written: list[Doc] = field(default_factory=list)
    refused: list[tuple[Doc, str]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.written)


def copy_revisions(
    couch: Couch, source: str, target: str, leaves: dict[str, list[str]],
    refuse: Callable[[Doc], str | None] | None = None, before: Callable[[list[Doc]], None] | None = None,
    accepted: Callable[[list[Doc]], None] | None = None, ignore: Callable[[Doc], bool] | None = None,
) -> Copied:
    """Copy the revisions of ``leaves`` (id -> leaf revs) that ``target`` lacks. ``before(docs)`` sees each
    chunk of fetched revisions first; ``refuse(doc)`` may name a reason not to copy one: refused ones are
    returned, not written; ``ignore(doc)`` drops one silently; ``accepted(docs)`` sees what is about to be
    written, before it is."""
    out = Copied()
    ids = sorted(leaves)
    for start in range(0, len(ids), CHUNK):
        part = {i: leaves[i] for i in ids[start : start + CHUNK]}
        missing = couch.revs_diff(target, part)
        refs = [(doc_id, rev) for doc_id, revs in sorted(missing.items()) for rev in revs]
        if not refs:
            continue
        docs = couch.bulk_get(source, refs, revs=True)
        if before is not None:
            before(docs)
        keep: list[Doc] = []
        for doc in docs:
            if ignore is not None and ignore(doc):
                continue
            reason = refuse(doc) if refuse else None
            if reason:
                out.refused.append((doc, reason))
            else:
                keep.append(doc)
        if not keep:
            continue
        if accepted is not None:
            accepted(keep)
        results = couch.bulk_docs(target, keep, new_edits=False)
        errors = [r for r in results if r.get("error")]
        if errors:
            first = errors[0]
            raise FieldsyncError(f"{target}: {len(errors)} revisions not copied, e.g. {first.get('id')}: "
                                 f"{first.get('error')} {first.get('reason', '')}".strip())
        out.written += keep
    return out
