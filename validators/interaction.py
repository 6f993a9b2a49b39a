"""The ``interaction-log`` record of Community Health Toolkit 5.2 clients, and fieldsync's daily document.

A client (CHT webapp ``InteractionTrackingService``) writes, into the user's meta database, one document per
user, device and local day::

    {"_id": "interaction-2026-03-27-greg-3f2a...",
     "type": "interaction-log",
     "sessions": [{"session": "tasks", "startedAt": 1774600000000,
                   "events": [{"action": "task:open", "timestamp": 1774600001000,
                               "ref": "person_create", "detail": "0"}]}],
     "metadata": {"user": "greg", "deviceId": "3f2a...", "date": "2026-03-27", "version": "5.2.0"}}

The contract (the same rules as ``couch_design/user-meta/fieldsync/validate_doc_update.js``):

- ``_id`` grammar: ``interaction-<date>-<user>-<deviceId>`` built from ``metadata`` (the daily id),
  optionally followed by ``-<suffix>``, ``<suffix>`` 1-64 characters of ``[A-Za-z0-9_.:-]``. CHT writes
  ``-conflicted-<ms>`` copies when the daily id is taken (and sets ``metadata.conflicted: true``); clients
  that flush partial batches should use ``-part-<n>``; any other suffix is accepted the same way. The id is
  never parsed (user names and device ids may contain ``-``): ``metadata`` is the truth, the id must agree.
- Only the listed fields, everywhere (``extra="forbid"``): a form answer, a name or any other field is
  refused.
  Of CouchDB's own members ``_rev``, ``_revisions``, ``_conflicts`` and ``_deleted_conflicts`` are allowed;
  ``_attachments`` is not, and a deletion (``_deleted``) is not a record.
- ``action``: one of :data:`ACTIONS`. ``timestamp`` and ``startedAt``: epoch milliseconds, integers (as CHT's
  ``Date.now()``; a float with no fraction, which JSON cannot tell apart, is taken as its integer), between
  2000-01-01 and 2100-01-01 (catches seconds-for-milliseconds mistakes).
- ``session``: 1-64 characters of ``[A-Za-z0-9_.:-]``, no spaces: a key, never a free text.
- ``ref`` (a task title key or a form id, ``task.malaria.followup``, ``pnc_home_visit``): 1-64 characters, lower
  case ``a-z 0-9 _`` in parts separated by ``.``, ``:`` or ``-``, starting with a letter, with no run of 4 digits
  (a phone number, an id or a date never passes). A name written as such a key would still fit: where the
  programme lists its refs (``settings.interactionRefs``), the summarizer keeps only those.
- ``detail``: a count or a list position: a string of digits without leading zeros (``"0"``, ``"6"``), at most
  9 digits. CHT sends strings; a non-negative integer (not a boolean) is accepted too and normalised to its
  string, so ``6`` and ``"6"`` are the same event.
- ``ref`` and ``detail`` are absent when unknown (CHT omits them); an explicit ``null`` is refused.
- ``metadata.date``: ``YYYY-MM-DD``, a real calendar date (the device's local day: event timestamps are not
  checked against it). ``metadata.deviceId``: 1-128 key characters. ``metadata.version``: 1-64 characters of
  ``[A-Za-z0-9_.:+~-]``. ``metadata.user``: 1-255 characters without control characters.
- At most :data:`MAX_EVENTS_PER_RECORD` events in one document.

Error reasons never repeat the refused value: it may be the very answer or name that must not leave.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Annotated, Any, Literal, NamedTuple, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictInt,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from validators.errors import DocumentError, field_path

DOC_TYPE = "interaction-log"
ID_PREFIX = "interaction"
KIND = "interaction-log"
NOT_OWNER = "not the user of the database it was written to"

Action = Literal[
    "task_list:open",
    "task_list:loaded",
    "task_list:scroll",
    "task_filter:open",
    "task_filter:select",
    "task_filter:reset",
    "task_filter:clear",
    "task_filter:close",
    "task_group:show",
    "task_group:select",
    "task:open",
    "task:form_open",
    "task:form_save",
    "task:complete",
    "task:cancel",
    "task:back",
    "task_group:leave",
    "task_list:leave",
]
#: Every known action, in the order of a task's life cycle (used to order events recorded in the same ms).
ACTIONS: tuple[str, ...] = get_args(Action)
ACTION_RANK: dict[str, int] = {action: rank for rank, action in enumerate(ACTIONS)}

KEY_RE = r"^[A-Za-z0-9_.:-]{1,64}$"
REF_RE = r"^(?=.{1,64}$)(?!.*[0-9]{4})[a-z][a-z0-9_]*(?:[.:-][a-z0-9_]+)*$"
DEVICE_RE = r"^[A-Za-z0-9_.:-]{1,128}$"
VERSION_RE = r"^[A-Za-z0-9_.:+~-]{1,64}$"
DETAIL_RE = r"^(0|[1-9][0-9]{0,8})$"
DATE_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
SUFFIX_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
FINGERPRINT_RE = r"^[0-9a-f]{16}$"
MIN_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
MAX_EVENTS_PER_RECORD = 5000

_DETAIL = re.compile(DETAIL_RE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _detail(value: object) -> object:
    """Accept a non-negative integer as its string; refuse ``null`` (absent means unknown)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("detail is a count or a position: never negative")
        value = str(value)
    if isinstance(value, str):
        if not _DETAIL.fullmatch(value):
            raise ValueError("detail is a count or a position: digits only, no leading zero, at most 9")
        return value
    if value is None:
        raise ValueError("detail, when present, is a string of digits (leave it out when unknown)")
    return value  # the str type refuses it


def _millis(value: object) -> object:
    """JSON has one number type: ``1.7e12`` is the integer CouchDB's door saw; ``1.5`` is refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _not_null(value: object) -> object:
    if value is None:
        raise ValueError("leave the field out when unknown: null is not accepted")
    return value


Millis = Annotated[StrictInt, BeforeValidator(_millis), Field(ge=MIN_MS, lt=MAX_MS)]
Key = Annotated[str, Field(pattern=KEY_RE)]
OptionalKey = Annotated[Key | None, BeforeValidator(_not_null)]
_REF = re.compile(REF_RE)


def _ref(value: object) -> object:
    if isinstance(value, str) and not _REF.fullmatch(value):
        raise ValueError("ref is a task title key or a form id: lower case a-z 0-9 _ separated by . : -, at most 64 "
                         "characters, no run of 4 digits (never a name, a number or free text)")
    return value


Ref = Annotated[str, AfterValidator(_ref)]
OptionalRef = Annotated[Ref | None, BeforeValidator(_not_null)]
OptionalDetail = Annotated[str | None, BeforeValidator(_detail)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


class Event(_Strict):
    """The contract of one event. Records are checked by :func:`_events` first; this model validates (and
    names the field of) what that plain check did not accept."""

    action: Action
    timestamp: Millis
    ref: OptionalRef = None
    detail: OptionalDetail = None


class Interaction(NamedTuple):
    """One validated event, as a record holds it (``ref`` and ``detail`` ``None`` when absent)."""

    action: str
    timestamp: int
    ref: str | None
    detail: str | None


_EVENTS = TypeAdapter(list[Event])


@functools.lru_cache(maxsize=4096)  # a programme has a few dozen refs and details: each checked once
def _matches(pattern: re.Pattern[str], value: str) -> bool:
    return pattern.fullmatch(value) is not None


def _plain_events(value: object) -> tuple[Interaction, ...] | None:
    """The events when each is a plain case of :class:`Event` (``detail`` already a string, ``timestamp`` an
    ``int``), checked here in plain Python, several times faster than the model; ``None`` for anything else,
    which the model then validates, normalises or refuses with its reason. Never accepts what the model
    refuses."""
    if type(value) is not list:
        return None
    out: list[Interaction] = []
    append = out.append
    for event in value:
        if type(event) is not dict:
            return None
        action, ts, ref, detail = event.get("action"), event.get("timestamp"), event.get("ref"), event.get("detail")
        # every key known (action and timestamp present, ref and detail counted only when not null)
        if len(event) != 2 + (ref is not None) + (detail is not None):
            return None
        if type(action) is not str or action not in ACTION_RANK or type(ts) is not int or not MIN_MS <= ts < MAX_MS:
            return None
        if ref is not None and (type(ref) is not str or not _matches(_REF, ref)):
            return None
        if detail is not None and (type(detail) is not str or not _matches(_DETAIL, detail)):
            return None
        append(Interaction(action, ts, ref, detail))
    return tuple(out)


def _events(value: object) -> tuple[Interaction, ...]:
    plain = _plain_events(value)
    if plain is not None:
        return plain
    return tuple(Interaction(e.action, e.timestamp, e.ref, e.detail) for e in _EVENTS.validate_python(value))


class Session(_Strict):
    session: Key
    startedAt: Millis
    events: Annotated[tuple[Interaction, ...], PlainValidator(_events)]


class Metadata(_Strict):
    user: Annotated[str, Field(min_length=1, max_length=255)]
    deviceId: Annotated[str, Field(pattern=DEVICE_RE)]
    date: Annotated[str, Field(pattern=DATE_RE)]
    version: Annotated[str, Field(pattern=VERSION_RE)]
    conflicted: bool | None = None  # set by CHT on a -conflicted-<ms> copy

    @field_validator("user")
    @classmethod
    def _printable(cls, value: str) -> str:
        if _CONTROL.search(value):
            raise ValueError("a user name has no control characters")
        return value

    @field_validator("date")
    @classmethod
    def _calendar(cls, value: str) -> str:
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError("not a calendar date (YYYY-MM-DD)") from None
        return value

    @property
    def daily_id(self) -> str:
        return daily_doc_id(self.user, self.deviceId, self.date)


class Revisions(_Strict):
    start: StrictInt
    ids: list[str]


class InteractionLog(_Strict):
    """A record as a client writes it (the daily document, a conflicted copy or a partial batch)."""

    id: str = Field(alias="_id", min_length=1)
    rev: str | None = Field(None, alias="_rev")
    revisions: Revisions | None = Field(None, alias="_revisions")
    conflicts: list[str] | None = Field(None, alias="_conflicts")
    deleted_conflicts: list[str] | None = Field(None, alias="_deleted_conflicts")
    type: Literal["interaction-log"]
    sessions: list[Session]
    metadata: Metadata

    @model_validator(mode="after")
    def _consistent(self) -> InteractionLog:
        if sum(len(s.events) for s in self.sessions) > MAX_EVENTS_PER_RECORD:
            raise DocumentError(self.id, "sessions", f"more than {MAX_EVENTS_PER_RECORD} events", KIND)
        base = self.metadata.daily_id
        suffix_ok = self.id.startswith(base + "-") and SUFFIX_RE.fullmatch(self.id[len(base) + 1 :])
        if self.id != base and not suffix_ok:
            raise DocumentError(
                self.id,
                "_id",
                "the id must be interaction-<metadata.date>-<metadata.user>-<metadata.deviceId>, "
                "optionally followed by -<suffix> (1-64 of A-Za-z0-9_.:-)",
                KIND,
            )
        return self

    @property
    def daily_id(self) -> str:
        return self.metadata.daily_id

    @property
    def is_daily(self) -> bool:
        return self.id == self.metadata.daily_id


class DailyInteractionLog(InteractionLog):
    """A merged daily document of ``fieldsync-users-meta``: a record plus the merge's own fields.

    ``summary`` is recomputed by every merge (read back, it is not trusted); ``dropped`` holds the
    fingerprints of the interactions the cap refused, so that a later merge counts each of them once.
    """

    summary: dict[str, Any]
    dropped: list[Annotated[str, Field(pattern=FINGERPRINT_RE)]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _daily_id(self) -> DailyInteractionLog:
        if self.id != self.metadata.daily_id:
            raise DocumentError(
                self.id, "_id", "a merged daily document's id is exactly its daily id (no suffix)", KIND
            )
        if self.metadata.conflicted is not None:
            raise DocumentError(self.id, "metadata.conflicted", "not in a merged daily document", KIND)
        return self


def daily_doc_id(user: str, device_id: str, date: str) -> str:
    """``interaction-YYYY-MM-DD-<user>-<deviceId>``: the id of one user's and one device's day."""
    return f"{ID_PREFIX}-{date}-{user}-{device_id}"


def _doc_id(doc: dict[str, Any]) -> str | None:
    value = doc.get("_id")
    return value if isinstance(value, str) and value else None


def _parse(model: type[InteractionLog], doc: object) -> InteractionLog:
    if not isinstance(doc, dict):
        raise DocumentError(None, "", f"a document is a JSON object, not {type(doc).__name__}", KIND)
    doc_id = _doc_id(doc)
    if doc.get("_deleted"):
        raise DocumentError(doc_id, "_deleted", "a deletion is not an interaction record", KIND)
    if doc.get("type") != DOC_TYPE:
        raise DocumentError(doc_id, "type", f"an interaction record has type {DOC_TYPE!r}", KIND)
    try:
        return model.model_validate(doc)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        reason = str(first["msg"]).removeprefix("Value error, ")
        raise DocumentError(doc_id, field_path(tuple(first["loc"])), reason, KIND) from None


def validate_record(doc: dict[str, Any], *, expected_user: str | None) -> InteractionLog:
    """Check one record a device wrote; raise :class:`DocumentError` (id, field path, reason) if invalid.

    ``expected_user``: the owner of the meta database the record was read from (``None``: any user).
    """
    record = _parse(InteractionLog, doc)
    if expected_user is not None and record.metadata.user != expected_user:
        raise DocumentError(record.id, "metadata.user", NOT_OWNER, KIND)
    return record


def validate_daily(doc: dict[str, Any]) -> DailyInteractionLog:
    """Check a merged daily document read back from ``fieldsync-users-meta``."""
    record = _parse(DailyInteractionLog, doc)
    assert isinstance(record, DailyInteractionLog)
    return record
