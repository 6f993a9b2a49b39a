"""Copy revisions between two databases with their histories, as CouchDB's replicator does: ``_revs_diff`` on
the target, ``_bulk_get?revs=true`` on the source, ``_bulk_docs`` with ``new_edits: false`` on the target.

Both sides keep the same revision ids, so a revision copied twice is a no-op, two offline edits of one document
meet as a CouchDB conflict, and a resolution written in one database settles the others when it is copied.

:func:`fan_out` copies from one source to many targets at once: each revision any target lacks is read once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

from workers.couch import Couch, Doc
from workers.errors import FieldsyncError
from workers.parallel import CouchPool

CHUNK = 200
FAN_CHUNK = 1000  # revisions per request of a fan-out (its documents are routed already: no callbacks per chunk)


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
    pool: CouchPool | None = None,
) -> Copied:
    """Copy the revisions of ``leaves`` (id -> leaf revs) that ``target`` lacks. ``before(docs)`` sees each
    chunk of fetched revisions first; ``refuse(doc)`` may name a reason not to copy one: refused ones are
    returned, not written; ``ignore(doc)`` drops one silently; ``accepted(docs)`` sees what is about to be
    written, before it is.

    Given a ``pool``, the target's ``_revs_diff`` and the source's ``_bulk_get`` run at once (every leaf is
    read, and what the target has is dropped): for leaves that are mostly new to the target, such as what
    devices wrote, one round trip instead of two."""
    out = Copied()
    ids = sorted(leaves)
    for start in range(0, len(ids), CHUNK):
        part = {i: leaves[i] for i in ids[start : start + CHUNK]}
        if pool is None:
            missing = couch.revs_diff(target, part)
            refs = [(doc_id, rev) for doc_id, revs in sorted(missing.items()) for rev in revs]
            docs = couch.bulk_get(source, refs, revs=True) if refs else []
        else:
            diff = pool.submit(partial(_revs_diff, target=target, leaves=part))
            every = couch.bulk_get(source, [(doc_id, rev) for doc_id in sorted(part) for rev in part[doc_id]],
                                   revs=True)
            lacked = {(doc_id, rev) for doc_id, revs in diff.result().items() for rev in revs}
            docs = [doc for doc in every if (str(doc["_id"]), str(doc["_rev"])) in lacked]
        if not docs:
            continue
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
        _write(couch, target, keep)
        out.written += keep
    return out


def fan_out(couch: Couch | CouchPool, source: str, leaves_by_target: dict[str, dict[str, list[str]]],
            at_hand: Iterable[Doc] = ()) -> dict[str, Copied]:
    """Copy, to each target, the revisions of its ``leaves`` (id -> leaf revs) that it lacks: one ``_revs_diff``
    per target, then one ``_bulk_get`` of what any of them lacks (a revision several targets lack, such as a
    plan's, is read once), then one ``_bulk_docs`` per target (in chunks of ``FAN_CHUNK`` revisions). Given a
    :class:`CouchPool`, the targets' requests run several at once.

    ``at_hand``: bodies the caller holds already (read from the source's feed, or just written to it); a first
    revision among them is not read again (:func:`first_revision`)."""
    pool = _pool(couch)
    held = {(str(d["_id"]), str(d["_rev"])): d for d in map(first_revision, at_hand) if d is not None}

    def lacks(client: Couch, target: str) -> list[tuple[str, str]]:
        leaves = leaves_by_target[target]
        ids = sorted(leaves)
        missing: list[tuple[str, str]] = []
        for start in range(0, len(ids), FAN_CHUNK):
            found = client.revs_diff(target, {i: leaves[i] for i in ids[start : start + FAN_CHUNK]})
            missing += [(doc_id, rev) for doc_id, revs in sorted(found.items()) for rev in revs]
        return missing

    targets = sorted(leaves_by_target)
    missing_by_target = {t: refs for t, refs in zip(targets, pool.map(lacks, targets), strict=True) if refs}
    wanted = sorted({ref for refs in missing_by_target.values() for ref in refs if ref not in held})
    fetched: dict[tuple[str, str], Doc] = dict(held)
    for start in range(0, len(wanted), FAN_CHUNK):
        for doc in pool.couch.bulk_get(source, wanted[start : start + FAN_CHUNK], revs=True):
            fetched[(str(doc["_id"]), str(doc["_rev"]))] = doc
    docs_by_target = {target: [fetched[ref] for ref in refs if ref in fetched]
                      for target, refs in missing_by_target.items()}
    return _write_each(pool, docs_by_target)


def write_first_revisions(couch: Couch | CouchPool, docs_by_target: dict[str, list[Doc]]) -> dict[str, Copied]:
    """Copy first revisions (from :func:`first_revision`) to each target without asking what it lacks: a
    revision it holds already is left as it is (``new_edits: false`` adds a revision only where it is
    missing, and a first revision is the root of any later one), so one ``_bulk_docs`` per target is all
    (several targets at once, given a :class:`CouchPool`)."""
    return _write_each(_pool(couch), docs_by_target)


def _pool(couch: Couch | CouchPool) -> CouchPool:
    return couch if isinstance(couch, CouchPool) else CouchPool(couch, threads=1)


def _write_each(pool: CouchPool, docs_by_target: dict[str, list[Doc]]) -> dict[str, Copied]:
    def write(client: Couch, target: str) -> None:
        docs = docs_by_target[target]
        for start in range(0, len(docs), FAN_CHUNK):
            _write(client, target, docs[start : start + FAN_CHUNK])

    targets = sorted(t for t, docs in docs_by_target.items() if docs)
    pool.map(write, targets)
    return {target: Copied(written=list(docs_by_target[target])) for target in targets}


def first_revision(doc: Doc) -> Doc | None:
    """A document at its first revision, ready to copy with ``new_edits: false``: its history is its own
    revision, so it needs no ``_bulk_get?revs=true``. None for anything else (a later revision, whose
    ancestors must travel with it; a deletion; attachments, held as stubs), which is read from the source."""
    rev = str(doc.get("_rev") or "")
    generation, _, rev_id = rev.partition("-")
    if generation != "1" or not rev_id or not doc.get("_id") or doc.get("_deleted") or doc.get("_attachments"):
        return None
    body = {k: v for k, v in doc.items() if not k.startswith("_") or k in ("_id", "_rev")}
    return {**body, "_revisions": {"start": 1, "ids": [rev_id]}}


def _revs_diff(client: Couch, target: str, leaves: dict[str, list[str]]) -> dict[str, list[str]]:
    return client.revs_diff(target, leaves)


def _write(couch: Couch, target: str, docs: list[Doc]) -> None:
    """Write revisions as they are (``new_edits: false``); any refused one is an error naming it."""
    results = couch.bulk_docs(target, docs, new_edits=False)
    errors = [r for r in results if r.get("error")]
    if errors:
        first = errors[0]
        raise FieldsyncError(f"{target}: {len(errors)} revisions not copied, e.g. {first.get('id')}: "
                             f"{first.get('error')} {first.get('reason', '')}".strip())
