"""The daily merge of interaction records: pure functions of documents, no I/O.

Input of :func:`merge_day`: every record of ONE user and ONE day (``metadata.date``) across all their
devices: daily documents, ``-conflicted-<ms>`` copies, partial batches, every conflicting revision, and the
merged daily documents a previous pass wrote to ``fieldsync-users-meta`` (recognised by their ``summary``).
Output: one merged document per device, ``_id`` ``interaction-YYYY-MM-DD-<user>-<deviceId>``, ordered by
device id, in the record's shape plus ``summary`` (see :mod:`summarizer.summary`) and ``dropped``. No
``_rev``: the writer adds it.

How events are merged:

- An event's identity is ``(deviceId, session.startedAt, session.session, timestamp, action, ref, detail)``.
  Within one record an identity may occur several times (clients with a coarse or fake clock); across
  records it is counted as many times as the record holding it most often holds it. So the same event in two
  copies (a conflicted copy, an older revision, an overlapping batch, the previous pass's daily document)
  counts once, and a merge is a union: commutative, associative and idempotent.
- Order (events within a session, and the cap across devices): ``timestamp``, then the action's place in a
  task's life cycle (``task:open`` before ``task:form_save`` before ``task:complete``...), then ``ref``,
  ``detail`` (numerically), ``deviceId``, ``startedAt``, ``session``, occurrence. It depends only on the
  events, never on the order records arrive in. Sessions are ordered by ``(startedAt, session)``; a session
  left without any kept event is left out.
- The cap: of the user's interactions of the day, all devices together, the first ``cap`` in that order are
  kept. A kept set is closed under re-merging (what the cap drops is behind ``cap`` kept interactions and
  stays behind them), so merging a capped daily document with new records equals merging all raw records
  at once.
- ``dropped``: 16-hex fingerprints (BLAKE2b-64 of the identity and occurrence) of this device's interactions
  the cap refused. They carry nothing personal and let a later pass count each refused interaction once,
  whether its raw record was already deleted or is read again after a crash.
- ``metadata``: ``user``, ``deviceId``, ``date`` and the highest ``version`` seen for the device (an app
  upgraded during the day); ``conflicted`` is not carried over. Only whitelisted fields are ever written.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from summarizer.summary import summarize
from validators.errors import DocumentError
from validators.interaction import (
    ACTION_RANK,
    KIND,
    NOT_OWNER,
    DailyInteractionLog,
    InteractionLog,
    daily_doc_id,
    validate_daily,
    validate_record,
)

__all__ = [
    "DEFAULT_CAP",
    "daily_doc_id",
    "group_by_day",
    "merge_day",
    "merge_user",
    "parse_record",
    "parse_records",
]

DEFAULT_CAP = 500

Record = Mapping[str, Any] | InteractionLog
# (deviceId, startedAt, session, timestamp, action, ref, detail)
EventKey = tuple[str, int, str, int, str, str | None, str | None]
Element = tuple[EventKey, int]  # an event identity and its occurrence number


def _is_tombstone(doc: Record) -> bool:
    return isinstance(doc, Mapping) and bool(doc.get("_deleted"))


def parse_record(
    doc: Record, *, expected_user: str | None = None, allow_daily: bool = True
) -> InteractionLog:
    """A validated record: a raw record, or a merged daily document (one with a ``summary``).

    Documents read from a user's meta database are devices' records: parse them with ``allow_daily=False``
    (a ``summary`` there is refused like any unknown field); those of ``fieldsync-users-meta`` are daily ones.
    """
    if isinstance(doc, InteractionLog):
        record = doc
    elif allow_daily and isinstance(doc, Mapping) and "summary" in doc:
        record = validate_daily(dict(doc))
    else:
        record = validate_record(dict(doc) if isinstance(doc, Mapping) else doc, expected_user=None)
    if expected_user is not None and record.metadata.user != expected_user:
        raise DocumentError(record.id, "metadata.user", NOT_OWNER, KIND)
    return record


def parse_records(
    docs: Iterable[Mapping[str, Any]], *, expected_user: str | None = None, allow_daily: bool = True
) -> tuple[list[InteractionLog], list[tuple[Mapping[str, Any], DocumentError]]]:
    """Split documents into valid records and ``(document, error)`` pairs to park; deletions are skipped."""
    good: list[InteractionLog] = []
    bad: list[tuple[Mapping[str, Any], DocumentError]] = []
    for doc in docs:
        if _is_tombstone(doc):
            continue
        try:
            good.append(parse_record(doc, expected_user=expected_user, allow_daily=allow_daily))
        except DocumentError as error:
            bad.append((doc, error))
    return good, bad


def group_by_day(records: Iterable[Record]) -> dict[str, list[InteractionLog]]:
    """Validated records by ``metadata.date`` (a record that arrives days late goes to its own day).

    Deletions are skipped; an invalid record raises :class:`DocumentError` (use :func:`parse_records` first
    to park those instead).
    """
    days: defaultdict[str, list[InteractionLog]] = defaultdict(list)
    for doc in records:
        if _is_tombstone(doc):
            continue
        record = parse_record(doc)
        days[record.metadata.date].append(record)
    return dict(sorted(days.items()))


def merge_user(records: Iterable[Record], *, cap: int = DEFAULT_CAP) -> dict[str, list[dict[str, Any]]]:
    """:func:`merge_day` for each day of one user's records: ``{date: merged documents}``."""
    return {date: merge_day(day, cap=cap) for date, day in group_by_day(records).items()}


def _order(element: Element) -> tuple[Any, ...]:
    """The order of interactions (the module's doc): time, life-cycle rank, ref, detail as a number, then the
    rest of the identity and the occurrence."""
    (device, started, session, ts, action, ref, detail), occurrence = element
    detail_order = (-1, "") if detail is None else (len(detail), detail)
    return (ts, ACTION_RANK[action], ref or "", detail_order, device, started, session, occurrence)


def _fingerprint(element: Element) -> str:
    raw = json.dumps([*element[0], element[1]], separators=(",", ":"), ensure_ascii=True)
    return hashlib.blake2b(raw.encode("ascii"), digest_size=8).hexdigest()


def _version_order(version: str) -> tuple[Any, ...]:
    parts = tuple((1, int(p), "") if p.isdigit() else (0, 0, p) for p in re.split(r"[.:+~_-]", version))
    return (version != "unknown", parts, version)


def merge_day(records: Iterable[Record], *, cap: int = DEFAULT_CAP) -> list[dict[str, Any]]:
    """Merge every record of one user and one day into one document per device (see the module's doc).

    Raises :class:`DocumentError` for an invalid record and ``ValueError`` when the records are not all of one
    user and one day. Deletions are skipped; no records, no documents.
    """
    if cap < 0:
        raise ValueError("the cap is a number of interactions, never negative")
    parsed = [parse_record(doc) for doc in records if not _is_tombstone(doc)]
    if not parsed:
        return []
    users = {r.metadata.user for r in parsed}
    dates = {r.metadata.date for r in parsed}
    if len(users) != 1 or len(dates) != 1:
        raise ValueError(
            f"merge_day takes one user's records of one day, got {len(users)} users, {len(dates)} days"
        )
    user, date = users.pop(), dates.pop()

    counts: dict[EventKey, int] = {}
    versions: defaultdict[str, set[str]] = defaultdict(set)
    known_dropped: defaultdict[str, set[str]] = defaultdict(set)
    for record in parsed:
        device = record.metadata.deviceId
        versions[device].add(record.metadata.version)
        if isinstance(record, DailyInteractionLog):
            known_dropped[device].update(record.dropped)
        local: Counter[EventKey] = Counter(
            (device, s.startedAt, s.session, ts, action, ref, detail)
            for s in record.sessions
            for action, ts, ref, detail in s.events
        )
        for key, n in local.items():
            if n > counts.get(key, 0):
                counts[key] = n

    elements: list[Element] = sorted(((k, i) for k, n in counts.items() for i in range(n)), key=_order)
    kept, refused = elements[:cap], elements[cap:]
    kept_fps = {_fingerprint(e) for e in kept} if any(known_dropped.values()) else set()
    dropped: dict[str, set[str]] = {device: set() for device in versions}
    for device, fps in known_dropped.items():
        dropped[device] |= fps - kept_fps
    for element in refused:
        dropped[element[0][0]].add(_fingerprint(element))
    cap_reached = len(kept) >= cap or any(dropped.values())

    sessions: dict[str, dict[tuple[int, str], list[dict[str, Any]]]] = {device: {} for device in versions}
    for (device, started, session, ts, action, ref, detail), _ in kept:
        event: dict[str, Any] = {"action": action, "timestamp": ts}
        if ref is not None:
            event["ref"] = ref
        if detail is not None:
            event["detail"] = detail
        sessions[device].setdefault((started, session), []).append(event)

    out: list[dict[str, Any]] = []
    for device in sorted(versions):
        ordered = [
            {"session": name, "startedAt": started, "events": events}
            for (started, name), events in sorted(sessions[device].items())
        ]
        out.append(
            {
                "_id": daily_doc_id(user, device, date),
                "type": "interaction-log",
                "sessions": ordered,
                "metadata": {
                    "user": user,
                    "deviceId": device,
                    "date": date,
                    "version": max(versions[device], key=_version_order),
                },
                "summary": summarize(
                    ordered, dropped=len(dropped[device]), cap_reached=bool(cap_reached), cap=cap
                ),
                "dropped": sorted(dropped[device]),
            }
        )
    return out
