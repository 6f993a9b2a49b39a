"""One merge pass: every user's interaction records into one daily document per user, device and day.

For each per-user meta database (``fieldsync-user-<name>-meta``):

1. read every ``interaction-`` record with all its leaf revisions (conflicting revisions are inputs too), in one
   read of the database's feed;
2. a user whose roles lack ``can_track_task_interactions`` (``settings.permissions``): the records are
   removed, not merged, and counted;
3. records that break the contract are parked in the audit database with the reason, then removed;
4. per day: the valid records and the user's daily documents of that day already in
   ``fieldsync-users-meta`` (every device: the cap is per user) are merged (:func:`summarizer.merge.merge_day`,
   a union, so merging again or after a crash gives the same documents) and the changed documents written;
5. only then are the merged records removed (purged where the server supports ``_purge``).

Databases are taken ``GROUP`` at a time, in user name order, ``READ_THREADS`` of a group read at once (the next
group's reads start once this group's are in, and run while it is written): step 4 reads the group's daily
documents of a day in one id range and writes them in one ``_bulk_docs``, then step 5 runs for each database of
the group, ``FINISH_THREADS`` databases at a time (each: its records removed, then its checkpoint moved), while
the next group is merged and written.

A kill between 4 and 5 leaves records that the next pass merges again into identical documents: no double
counting, no loss. The position of each meta database once its records are removed (where its read ended: a
purge adds nothing to the feed) lets the interval pass skip the databases with nothing new (the nightly pass
visits them all). These positions are kept together
in one ``_local`` document of the users-meta database (``POSITIONS``), read once per pass and written every
``POSITIONS_EVERY`` groups and at the end: one write per thousand users rather than a read and a write per user
(a kill loses at most the positions since the last write, and the next interval pass reads those databases
again: they are empty).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from summarizer.merge import merge_day, parse_records
from validators.app_settings import SETTINGS_ID, AppSettings
from validators.interaction import InteractionLog
from workers import provision
from workers.audit import now_iso, parked_record, write_many_once
from workers.couch import Couch, Doc
from workers.errors import FieldsyncError
from workers.logs import log_event
from workers.settings import Settings

log = logging.getLogger("fieldsync.summarizer")

PERMISSION = "can_track_task_interactions"
CHECKPOINT = "fieldsync-summarizer"
POSITIONS = "fieldsync-summarizer-positions"  # each meta database's position once the pass finished it
POSITIONS_EVERY = 20  # groups between two writes of the positions
READ_PAGE = 5000  # changes per page of a meta database's read (a day's records of a device are a few documents)
PREFIX = "interaction-"
# meta databases merged together: one read and one write of the users-meta database per group and day
GROUP = 50
# meta databases of a group finished (records removed, checkpoint moved) at the same time
FINISH_THREADS = 4
# meta databases of a group read at the same time
READ_THREADS = 4


@dataclass
class PassReport:
    users: int = 0
    databases: int = 0
    records: int = 0
    documents_written: int = 0
    removed: int = 0
    not_permitted: int = 0
    parked: int = 0
    skipped_unchanged: int = 0
    failed: int = 0
    ms: float = 0.0
    per_user: dict[str, int] = field(default_factory=dict)


def app_settings(couch: Couch, settings: Settings) -> AppSettings:
    doc = couch.get(settings.dbs.main, SETTINGS_ID) or {}
    return AppSettings.model_validate(doc) if doc else AppSettings()


@dataclass
class _Read:
    """One meta database as one read of it found it."""

    leaves: list[Doc]  # every living leaf revision of every interaction record, conflicting revisions included
    strays: list[Doc]  # every other document
    position: Any  # the feed's position after the read: the database's position once what was read is purged


def _read(couch: Couch, db: str, date: str | None) -> _Read:
    """One read of the database: its feed from the start with the documents and their conflicts (and one
    ``_bulk_get`` of conflicting revisions, if any). The feed rather than ``_all_docs``: the same documents at
    the same cost (the benchmark's raw read is this very request), and the position after them comes along."""
    docs: list[Doc] = []
    strays: list[Doc] = []
    refs: list[tuple[str, str]] = []
    since: Any = 0
    while True:
        page = couch.changes(db, since, limit=READ_PAGE, include_docs=True, conflicts=True)
        for change in page.results:
            doc = change.get("doc")
            if not doc or doc.get("_deleted") or str(doc.get("_id", "")).startswith("_design/"):
                continue
            if not str(doc["_id"]).startswith(PREFIX):
                strays.append(doc)
                continue
            if date is not None and (doc.get("metadata") or {}).get("date") != date:
                continue
            docs.append(doc)
            refs.extend((doc["_id"], rev) for rev in doc.get("_conflicts", []))
        since = page.last_seq
        if len(page.results) < READ_PAGE:
            break
    docs.extend(d for d in couch.bulk_get(db, refs) if not d.get("_deleted"))
    return _Read(docs, strays, since)


def _park(couch: Couch, settings: Settings, db: str, bad: list[tuple[Any, Exception]]) -> int:
    records = [parked_record("summarizer", db, {"id": doc.get("_id"), "doc": dict(doc)}, str(error), 1)
               for doc, error in bad]
    return write_many_once(couch, settings.dbs.audit, records)


def _daily_docs(couch: Couch, settings: Settings, users: list[str], day: str) -> dict[str, list[Doc]]:
    """The daily documents of ``day`` (every device) of each of ``users``, by user, in one id range: ids are
    ``interaction-<day>-<user>-<deviceId>``, so the range from the first user's to the last one's holds them
    all (and maybe a few of users in between, left out), and ``metadata.user`` tells a user ``ana`` from
    ``ana-b``. (A view would do too, but its index update on every pass costs more than the read.)"""
    wanted = set(users)
    start = f"{PREFIX}{day}-{min(wanted)}-"
    end = f"{PREFIX}{day}-{max(wanted)}-\ufff0"
    out: dict[str, list[Doc]] = {user: [] for user in wanted}
    for row in couch.all_docs(settings.dbs.users_meta, include_docs=True, startkey=start, endkey=end):
        meta = (row.get("doc") or {}).get("metadata") or {}
        if meta.get("user") in wanted and meta.get("date") == day:
            out[str(meta["user"])].append(row["doc"])
    return out


def _day_writes(records: list[InteractionLog], existing: list[Doc], cap: int) -> list[Doc]:
    """The merged documents of one user's day that differ from what is written (with their ``_rev``)."""
    current = {d["_id"]: d for d in existing}
    writes = []
    for doc in merge_day([*records, *existing], cap=cap):
        old = current.get(doc["_id"])
        if old is not None:
            if {k: v for k, v in old.items() if k != "_rev"} == doc:
                continue
            doc = {**doc, "_rev": old["_rev"]}
        writes.append(doc)
    return writes


def _write_day(couch: Couch, settings: Settings, user: str, day: str, records: list[InteractionLog],
               cap: int) -> int:
    """Merge one user's day and write what changed; retried when a concurrent pass wrote meanwhile."""
    for _ in range(3):
        existing = _daily_docs(couch, settings, [user], day)[user]
        result = couch.save_many(settings.dbs.users_meta, _day_writes(records, existing, cap))
        if not result.conflicts and not result.errors:
            return len(result.ok)
    raise RuntimeError(f"daily documents of {user} on {day} kept changing during the merge")


def _merge_days(couch: Couch, settings: Settings, days: dict[tuple[str, str], list[InteractionLog]],
                cap: int) -> list[Doc]:
    """The merged documents of many users' days that differ from what is written: per day, one read of the
    users' daily documents (one id range), then each user's day merged."""
    users_by_day: dict[str, list[str]] = defaultdict(list)
    for user, day in days:
        users_by_day[day].append(user)
    writes: list[Doc] = []
    for day, users in sorted(users_by_day.items()):
        existing = _daily_docs(couch, settings, users, day)
        for user in users:
            writes += _day_writes(days[(user, day)], existing[user], cap)
    return writes


def _save_days(couch: Couch, settings: Settings, days: dict[tuple[str, str], list[InteractionLog]],
               writes: list[Doc], cap: int) -> int:
    """Write ``writes`` (:func:`_merge_days` of ``days``) in one ``_bulk_docs``; a user's day that a
    concurrent pass wrote meanwhile is merged again alone."""
    result = couch.save_many(settings.dbs.users_meta, writes)
    written = len(result.ok)
    failed = set(result.conflicts) | {str(e.get("id")) for e in result.errors}
    for user, day in sorted({_user_day(doc) for doc in writes if doc["_id"] in failed}):
        written += _write_day(couch, settings, user, day, days[(user, day)], cap)
    return written


def _write_days(couch: Couch, settings: Settings, days: dict[tuple[str, str], list[InteractionLog]],
                cap: int) -> int:
    """Merge and write many users' days (:func:`_merge_days`, then :func:`_save_days`)."""
    return _save_days(couch, settings, days, _merge_days(couch, settings, days, cap), cap)


def _user_day(doc: Doc) -> tuple[str, str]:
    meta = doc.get("metadata") or {}
    return str(meta.get("user")), str(meta.get("date"))


def _quarantine_unreadable(couch: Couch, settings: Settings, db: str, report: PassReport) -> int:
    """Park (without their body, which cannot be read) and remove the documents of ``db`` that fail to decode."""
    unreadable: list[tuple[Doc, Exception]] = []
    for row in couch.all_docs(db, include_docs=False):
        doc_id, rev = str(row.get("id")), str((row.get("value") or {}).get("rev", ""))
        if doc_id.startswith("_design/"):
            continue
        try:
            couch.get(db, doc_id)
        except RecursionError:
            unreadable.append(({"_id": doc_id, "_rev": rev},
                               ValueError(f"{doc_id}: nested too deeply to be read: removed unread")))
    parked = _park(couch, settings, db, unreadable)
    report.removed += couch.purge_or_delete(db, [doc for doc, _ in unreadable])
    log_event(log, "unreadable documents removed", logging.WARNING, db=db, documents=len(unreadable))
    return parked


def _known_refs(leaves: list[Doc], refs: frozenset[str]) -> tuple[list[Doc], int]:
    """The records with every ``ref`` outside the programme's list dropped (the event stays, without it)."""
    dropped = 0
    out: list[Doc] = []
    for doc in leaves:
        sessions = doc.get("sessions")
        if not isinstance(sessions, list):
            out.append(doc)
            continue
        new_sessions = []
        for session in sessions:
            events = session.get("events") if isinstance(session, dict) else None
            if not isinstance(events, list):
                new_sessions.append(session)
                continue
            kept = []
            for event in events:
                if isinstance(event, dict) and isinstance(event.get("ref"), str) and event["ref"] not in refs:
                    event = {k: v for k, v in event.items() if k != "ref"}
                    dropped += 1
                kept.append(event)
            new_sessions.append({**session, "events": kept})
        out.append({**doc, "sessions": new_sessions})
    return out, dropped


@dataclass
class _Prepared:
    """One meta database read and checked, its valid records waiting to be merged with its group's."""

    db: str
    user: str
    permitted: bool
    leaves: list[Doc]  # every record read (removed once merged)
    days: dict[str, list[InteractionLog]]  # the valid records by day


def _prepare(couch: Couch, settings: Settings, db: str, user: str, permitted: bool, report: PassReport,
             date: str | None, refs: frozenset[str],
             read: Future[_Read] | None = None) -> _Prepared | None:
    """Read one meta database (or take ``read``, its read under way): strays and invalid records parked (and
    strays removed), a user without the permission has their records removed; the valid records by day, or
    None when there is nothing to merge."""
    found = read.result() if read is not None else _read(couch, db, date)
    leaves, strays = found.leaves, found.strays
    if strays:
        report.parked += _park(couch, settings, db, [
            (doc, ValueError(f"{doc.get('_id')}: _id: a meta database holds interaction records only"))
            for doc in strays])
        report.removed += couch.purge_or_delete(db, strays)
        log_event(log, "removed stray documents", logging.WARNING, db=db, user=user, documents=len(strays))
    if not leaves:
        return None
    report.records += len(leaves)
    if not permitted:
        report.removed += couch.purge_or_delete(db, leaves)
        report.not_permitted += len(leaves)
        log_event(log, "not permitted: removed", db=db, user=user, records=len(leaves))
        return None
    checked = leaves
    if refs:
        checked, dropped = _known_refs(leaves, refs)
        if dropped:
            log_event(log, "refs not in settings.interactionRefs dropped", logging.WARNING, db=db, user=user,
                      events=dropped)
    valid, bad = parse_records(checked, expected_user=user, allow_daily=False)
    if bad:
        report.parked += _park(couch, settings, db, bad)  # type: ignore[arg-type]
        log_event(log, "parked invalid records", logging.WARNING, db=db, user=user, records=len(bad),
                  first=str(bad[0][1]))
    days: dict[str, list[InteractionLog]] = defaultdict(list)
    for record in valid:
        days[record.metadata.date].append(record)
    report.per_user[user] = report.per_user.get(user, 0) + len(valid)
    return _Prepared(db, user, permitted, leaves, dict(days))


def _prepare_isolated(couch: Couch, settings: Settings, db: str, user: str, permitted: bool, report: PassReport,
                      date: str | None, refs: frozenset[str],
                      read: Future[_Read] | None = None) -> tuple[bool, _Prepared | None]:
    """:func:`_prepare`, with one user's database that cannot be read never stopping the others: (read, what
    to merge)."""
    try:
        try:
            return True, _prepare(couch, settings, db, user, permitted, report, date, refs, read)
        except RecursionError:
            # a record nested too deeply for a JSON reader: read one document at a time, park and remove
            # what cannot be read, then merge the rest
            report.parked += _quarantine_unreadable(couch, settings, db, report)
            return True, _prepare(couch, settings, db, user, permitted, report, date, refs)
    except (FieldsyncError, RecursionError, ValueError) as exc:
        # the pass goes on, and the error is in the log and the pass report
        report.failed += 1
        log_event(log, "merge failed", logging.ERROR, db=db, user=user,
                  error=f"{exc.__class__.__name__}: {str(exc)[:300]}")
        return False, None


def _start_reads(couch: Couch, group: list[tuple[str, str, bool]], date: str | None,
                 pools: _Pools) -> dict[str, Future[_Read]]:
    """The reads of a group's meta databases, ``READ_THREADS`` at once."""
    return {db: pools.read.submit(_read, couch, db, date) for db, _, _ in group}


def _merge_group(couch: Couch, settings: Settings, group: list[tuple[str, str, bool]], report: PassReport,
                 date: str | None, refs: frozenset[str], pools: _Pools, reads: dict[str, Future[_Read]],
                 following: list[tuple[str, str, bool]]) -> tuple[Future[_Written], dict[str, Future[_Read]]]:
    """Merge a group of meta databases (``(db, user, permitted)``, ``reads``: their reads under way): their
    days merged here, then written together by the pass's writer thread (:func:`_write_group`), which only
    then has their records removed and their checkpoints moved. Returns that write, which the caller lets run
    while it merges the next group, and the reads of the ``following`` group, started once this group's are
    in. A kill before the removal leaves records that the next pass merges again into identical documents."""
    done: list[tuple[str, bool]] = []
    prepared: list[_Prepared] = []
    for db, user, permitted in group:
        before = report.records
        read, todo = _prepare_isolated(couch, settings, db, user, permitted, report, date, refs, reads[db])
        if report.records > before:
            report.users += 1
        if todo is not None:
            prepared.append(todo)
        elif read:
            done.append((db, permitted))
    reads_next = _start_reads(couch, following, date, pools)
    cap = settings.interaction_cap
    days = {(p.user, day): records for p in prepared for day, records in p.days.items()}
    try:
        writes: list[Doc] | None = _merge_days(couch, settings, days, cap)
    except FieldsyncError:
        writes = None  # the writer merges each user alone
    positions = {db: _position(read) for db, read in reads.items()}
    return pools.write.submit(_write_group, couch, settings, prepared, done, days, writes, cap, positions,
                              pools), reads_next


def _write_group(couch: Couch, settings: Settings, prepared: list[_Prepared], done: list[tuple[str, bool]],
                 days: dict[tuple[str, str], list[InteractionLog]], writes: list[Doc] | None, cap: int,
                 positions: dict[str, Any], pools: _Pools) -> _Written:
    """(The writer thread.) Write a group's merged days in one ``_bulk_docs``; when they could not be merged
    together (``writes`` None) or the server refuses them, each user's days alone, so that only that user's
    merge fails. Only then are the merged databases finished (their records removed, then their checkpoints
    moved), several at once: these are requests to different databases, a purge being a committed write of its
    own."""
    out = _Written()
    if writes is not None:
        try:
            out.documents = _save_days(couch, settings, days, writes, cap)
        except FieldsyncError:
            writes = None
    if writes is None:
        merged = []
        for p in prepared:
            try:
                alone = {(p.user, day): records for day, records in p.days.items()}
                out.documents += _write_days(couch, settings, alone, cap)
                merged.append(p)
            except FieldsyncError as exc:
                out.failed += 1
                log_event(log, "merge failed", logging.ERROR, db=p.db, user=p.user,
                          error=f"{exc.__class__.__name__}: {str(exc)[:300]}")
        prepared = merged
    jobs = [(p.db, p.permitted, p.leaves) for p in prepared] + [(db, permitted, []) for db, permitted in done]
    out.finishing = [pools.finish.submit(_finish, couch, settings, db, permitted, leaves, positions[db])
                     for db, permitted, leaves in jobs]
    return out


def _position(read: Future[_Read]) -> Any:
    """The feed's position after a database's read; None when that read failed (its database was read again
    another way)."""
    return read.result().position if read.done() and read.exception() is None else None


def _written(report: PassReport, future: Future[_Written], known: dict[str, Doc]) -> None:
    """Wait for a group's write and then for its databases to be finished; count them in the report."""
    written = future.result()
    report.documents_written += written.documents
    report.failed += written.failed
    for finishing in written.finishing:
        finished = finishing.result()
        report.removed += finished.removed
        known[finished.db] = finished.position


@dataclass
class _Pools:
    """A pass's threads: the reads of a group's databases, the writer of the merged groups (one at a time, in
    order) and the finishing of the written groups' databases."""

    read: ThreadPoolExecutor
    write: ThreadPoolExecutor
    finish: ThreadPoolExecutor


@dataclass
class _Written:
    documents: int = 0
    failed: int = 0
    finishing: list[Future[_Finished]] = field(default_factory=list)


@dataclass
class _Finished:
    db: str
    removed: int
    position: Doc  # {"seq": the database's update sequence once its records are removed, "permitted"}


def _finish(couch: Couch, settings: Settings, db: str, permitted: bool, leaves: list[Doc],
            read_at: Any = None) -> _Finished:
    """Remove a merged database's records; its position (kept by :func:`run_pass`) is where its read ended
    (``read_at``): a purge adds nothing to the feed after it. A server without ``_purge`` deletes instead, and
    each deletion is a change: the position is then read after them."""
    removed = couch.purge_or_delete(db, leaves) if leaves else 0
    seq = read_at if read_at is not None and couch.supports("purge") else couch.update_seq(db)
    return _Finished(db, removed, {"seq": seq, "permitted": permitted})


def positions(couch: Couch, settings: Settings) -> dict[str, Doc]:
    """Each meta database's position after the pass that finished it last, by database name."""
    return dict((couch.get_local(settings.dbs.users_meta, POSITIONS) or {}).get("databases") or {})


def _unchanged(couch: Couch, db: str, position: Doc | None) -> bool:
    """Whether ``db`` has no change after ``position`` (its update sequence when a pass finished it). Asked of
    the changes feed, not by comparing sequences: a cluster writes one position differently from one read to
    the next, while a feed resumed from it lists nothing new. A position the server refuses is a change."""
    if not position or position.get("seq") in (None, 0, "0"):
        return False
    try:
        return not couch.changes(db, position["seq"], limit=1, include_docs=False).results
    except FieldsyncError:
        return False


def _save_positions(couch: Couch, settings: Settings, known: dict[str, Doc]) -> None:
    couch.put_local(settings.dbs.users_meta, POSITIONS, {"databases": known, "updatedAt": now_iso()})


def run_pass(couch: Couch, settings: Settings, *, date: str | None = None, full: bool = True,
             group: int = GROUP) -> PassReport:
    """One pass over every meta database (``full``), or only those changed since the last pass; ``group``
    databases at a time share their reads and writes of the users-meta database."""
    started = time.perf_counter()
    report = PassReport()
    app = app_settings(couch, settings)
    users = provision.all_users(couch)
    refs = frozenset(app.interaction_refs)
    known = positions(couch, settings)
    todo: list[tuple[str, str, bool]] = []
    for db in sorted(couch.all_dbs()):
        user = settings.dbs.user_of_meta(db)
        if user is None:
            continue
        report.databases += 1
        # the interval pass skips the databases with nothing new since the last pass (a full pass reads them
        # all: no need to ask). The positions are kept in the users-meta database: a user can write the _local
        # documents of their own meta database
        if not full and date is None and _unchanged(couch, db, known.get(db)):
            report.skipped_unchanged += 1
            continue
        roles = list((users.get(user) or {}).get("roles", []))
        todo.append((db, user, app.has_permission(PERMISSION, roles)))
    # users in name order: a group's daily documents of a day are one id range of the users-meta database
    todo.sort(key=lambda item: item[1])
    with ThreadPoolExecutor(READ_THREADS, thread_name_prefix="merge-read") as reader, \
            ThreadPoolExecutor(1, thread_name_prefix="merge-write") as writer, \
            ThreadPoolExecutor(FINISH_THREADS, thread_name_prefix="merge-finish") as finisher:
        pools = _Pools(reader, writer, finisher)
        writing: Future[_Written] | None = None
        groups = [todo[start : start + group] for start in range(0, len(todo), group)]
        reads = _start_reads(couch, groups[0], date, pools) if groups else {}
        for number, members in enumerate(groups, 1):
            # while this group is merged: the next group is read, the previous one written and then its
            # databases finished; no more than three groups' records in memory
            following = groups[number] if number < len(groups) else []
            ahead, reads = _merge_group(couch, settings, members, report, date, refs, pools, reads, following)
            if writing is not None:
                _written(report, writing, known)
            writing = ahead
            if number % POSITIONS_EVERY == 0:
                _save_positions(couch, settings, known)
        if writing is not None:
            _written(report, writing, known)
    if todo:
        _save_positions(couch, settings, known)
    report.ms = round((time.perf_counter() - started) * 1000, 1)
    _record(couch, settings, report)
    log_event(log, "pass", users=report.users, databases=report.databases, records=report.records,
              documents=report.documents_written, removed=report.removed, not_permitted=report.not_permitted,
              parked=report.parked, failed=report.failed, skipped=report.skipped_unchanged, ms=report.ms, full=full)
    return report


def _record(couch: Couch, settings: Settings, report: PassReport) -> None:
    """Totals for ``fieldsync status``, in a ``_local`` document of the users-meta database."""
    totals = couch.get_local(settings.dbs.users_meta, CHECKPOINT) or {}
    summary = {k: v for k, v in asdict(report).items() if k != "per_user"}
    totals_out = dict(totals.get("totals", {}))
    for key in ("records", "documents_written", "removed", "not_permitted", "parked", "failed"):
        totals_out[key] = int(totals_out.get(key, 0)) + int(summary[key])
    passes = int(totals.get("passes", 0)) + 1
    couch.put_local(settings.dbs.users_meta, CHECKPOINT,
                    {"lastPass": {**summary, "at": now_iso()}, "totals": totals_out, "passes": passes})


def status(couch: Couch, settings: Settings) -> Doc:
    return couch.get_local(settings.dbs.users_meta, CHECKPOINT) or {}
