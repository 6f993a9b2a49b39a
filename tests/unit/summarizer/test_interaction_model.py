"""The pydantic contract of ``interaction-log`` records (validators/interaction.py)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from validators import interaction
from validators.errors import DocumentError
from validators.interaction import (
    ACTIONS,
    MAX_EVENTS_PER_RECORD,
    daily_doc_id,
    validate_daily,
    validate_record,
)

T0 = 1_774_600_000_000  # 2026-03-27T08:26:40Z


def good_record() -> dict[str, Any]:
    """The shape CHT 5.2 writes (taken from its end-to-end test), with real-clock timestamps."""
    return {
        "_id": "interaction-2026-03-27-greg-3f2a9c1e-device",
        "_rev": "1-abc",
        "type": "interaction-log",
        "sessions": [
            {
                "session": "tasks",
                "startedAt": T0,
                "events": [
                    {"action": "task_list:open", "timestamp": T0},
                    {"action": "task_list:loaded", "timestamp": T0 + 10, "detail": "4"},
                    {"action": "task_list:scroll", "timestamp": T0 + 500},
                    {"action": "task:open", "timestamp": T0 + 900, "ref": "person_create", "detail": "0"},
                    {"action": "task:form_open", "timestamp": T0 + 950, "ref": "home_visit"},
                    {"action": "task:form_save", "timestamp": T0 + 9000, "ref": "home_visit"},
                    {"action": "task:complete", "timestamp": T0 + 9001, "ref": "home_visit"},
                    {"action": "task_list:leave", "timestamp": T0 + 12000},
                ],
            }
        ],
        "metadata": {"user": "greg", "deviceId": "3f2a9c1e-device", "date": "2026-03-27", "version": "5.2.0"},
    }


def refused(mutate: Callable[[dict[str, Any]], None], expected_user: str | None = "greg") -> DocumentError:
    doc = good_record()
    mutate(doc)
    with pytest.raises(DocumentError) as info:
        validate_record(doc, expected_user=expected_user)
    return info.value


def event(doc: dict[str, Any], index: int = 3) -> dict[str, Any]:
    events: list[dict[str, Any]] = doc["sessions"][0]["events"]
    return events[index]


def test_a_cht_record_is_accepted_as_it_is() -> None:
    record = validate_record(good_record(), expected_user="greg")
    assert record.id == "interaction-2026-03-27-greg-3f2a9c1e-device"
    assert record.is_daily
    assert record.metadata.user == "greg"
    assert [e.action for e in record.sessions[0].events][:2] == ["task_list:open", "task_list:loaded"]
    assert record.sessions[0].events[3].ref == "person_create"
    assert record.sessions[0].events[3].detail == "0"
    assert record.sessions[0].events[0].ref is None


def test_every_documented_action_is_known() -> None:
    assert set(ACTIONS) == {
        "task_list:open", "task_list:loaded", "task_list:scroll", "task_list:leave",
        "task:open", "task:back", "task:form_open", "task:form_save", "task:complete", "task:cancel",
        "task_group:show", "task_group:select", "task_group:leave",
        "task_filter:open", "task_filter:close", "task_filter:select",
        "task_filter:reset", "task_filter:clear",
    }  # fmt: skip
    doc = good_record()
    doc["sessions"][0]["events"] = [{"action": a, "timestamp": T0 + i} for i, a in enumerate(ACTIONS)]
    assert len(validate_record(doc, expected_user="greg").sessions[0].events) == len(ACTIONS)


def test_an_integer_detail_is_normalised_to_its_string() -> None:
    doc = good_record()
    event(doc)["detail"] = 6
    assert validate_record(doc, expected_user=None).sessions[0].events[3].detail == "6"


@pytest.mark.parametrize(
    ("suffix", "conflicted"),
    [("-conflicted-1774600099999", True), ("-part-1", None), ("-part-2", None), ("-batch.7", None)],
)
def test_conflicted_copies_and_partial_batches_are_records(suffix: str, conflicted: bool | None) -> None:
    doc = good_record()
    doc["_id"] += suffix
    if conflicted is not None:
        doc["metadata"]["conflicted"] = conflicted
    record = validate_record(doc, expected_user="greg")
    assert not record.is_daily
    assert record.daily_id == "interaction-2026-03-27-greg-3f2a9c1e-device"


def test_couchdb_members_are_allowed() -> None:
    doc = good_record()
    doc["_conflicts"] = ["2-def"]
    doc["_revisions"] = {"start": 1, "ids": ["abc"]}
    doc["_deleted_conflicts"] = ["2-xyz"]
    assert validate_record(doc, expected_user="greg").conflicts == ["2-def"]


def test_user_names_with_dashes_and_dots_are_fine() -> None:
    doc = good_record()
    doc["metadata"]["user"] = "jo.smith-2"
    doc["_id"] = daily_doc_id("jo.smith-2", "3f2a9c1e-device", "2026-03-27") + "-part-3"
    assert validate_record(doc, expected_user="jo.smith-2").metadata.user == "jo.smith-2"


E3 = "sessions[0].events[3]"
REFUSALS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("form answer in an event", lambda d: event(d).update(answer="yes"), E3 + ".answer"),
    ("patient name at the top", lambda d: d.update(patient_name="Jane Doe"), "patient_name"),
    ("name in the metadata", lambda d: d["metadata"].update(name="Jane"), "metadata.name"),
    ("field in a session", lambda d: d["sessions"][0].update(form={"q1": "yes"}), "sessions[0].form"),
    ("unknown action", lambda d: event(d).update(action="task:delete"), E3 + ".action"),
    ("long ref", lambda d: event(d).update(ref="x" * 65), E3 + ".ref"),
    ("ref with spaces", lambda d: event(d).update(ref="Jane Doe"), E3 + ".ref"),
    ("name and phone as a ref", lambda d: event(d).update(ref="JaneDoe_0812345678"), E3 + ".ref"),
    ("phone in a lower-case ref", lambda d: event(d).update(ref="jane.doe.0812345678"), E3 + ".ref"),
    ("null ref", lambda d: event(d).update(ref=None), E3 + ".ref"),
    ("non-numeric detail", lambda d: event(d).update(detail="Jane"), E3 + ".detail"),
    ("answer as detail", lambda d: event(d).update(detail="12 weeks"), E3 + ".detail"),
    ("detail with leading zero", lambda d: event(d).update(detail="06"), E3 + ".detail"),
    ("long detail", lambda d: event(d).update(detail="1234567890"), E3 + ".detail"),
    ("negative detail", lambda d: event(d).update(detail=-1), E3 + ".detail"),
    ("boolean detail", lambda d: event(d).update(detail=True), E3 + ".detail"),
    ("null detail", lambda d: event(d).update(detail=None), E3 + ".detail"),
    ("seconds timestamp", lambda d: event(d).update(timestamp=1_774_600_000), E3 + ".timestamp"),
    ("string timestamp", lambda d: event(d).update(timestamp=str(T0)), E3 + ".timestamp"),
    ("fractional timestamp", lambda d: event(d).update(timestamp=T0 + 0.5), E3 + ".timestamp"),
    ("boolean timestamp", lambda d: event(d).update(timestamp=True), E3 + ".timestamp"),
    ("missing timestamp", lambda d: event(d).pop("timestamp"), E3 + ".timestamp"),
    ("missing startedAt", lambda d: d["sessions"][0].pop("startedAt"), "sessions[0].startedAt"),
    ("session name with spaces", lambda d: d["sessions"][0].update(session="a b"), "sessions[0].session"),
    ("impossible date", lambda d: d["metadata"].update(date="2026-02-30"), "metadata.date"),
    ("date not padded", lambda d: d["metadata"].update(date="2026-3-27"), "metadata.date"),
    ("version with spaces", lambda d: d["metadata"].update(version="5.2 beta"), "metadata.version"),
    ("id of another day", lambda d: d.update(_id="interaction-2026-03-28-greg-3f2a9c1e-device"), "_id"),
    ("id of another device", lambda d: d.update(_id="interaction-2026-03-27-greg-other"), "_id"),
    ("id with a spaced suffix", lambda d: d.update(_id=d["_id"] + "-part 1"), "_id"),
    ("id with an empty suffix", lambda d: d.update(_id=d["_id"] + "-"), "_id"),
    ("wrong type", lambda d: d.update(type="telemetry"), "type"),
    ("attachments", lambda d: d.update(_attachments={"a.txt": {"data": "SmFuZQ=="}}), "_attachments"),
    ("a deletion", lambda d: d.update(_deleted=True), "_deleted"),
    ("a summary written by a device", lambda d: d.update(summary={"events": 1}), "summary"),
    ("sessions not a list", lambda d: d.update(sessions={"0": {}}), "sessions"),
]


@pytest.mark.parametrize(("case", "mutate", "field"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refused_records_name_the_document_and_the_field(
    case: str, mutate: Callable[[dict[str, Any]], None], field: str
) -> None:
    error = refused(mutate)
    assert error.field == field, case
    assert error.doc_id is not None and error.doc_id.startswith("interaction-2026-03-2"), case
    assert field in str(error) and error.doc_id in str(error)


@pytest.mark.parametrize("secret", ["Jane Doe", "12 weeks", "HIV positive"])
def test_a_reason_never_repeats_the_refused_value(secret: str) -> None:
    for mutate in (
        lambda d: event(d).update(detail=secret),
        lambda d: event(d).update(ref=secret),
        lambda d: event(d).update(answer=secret),
        lambda d: event(d).update(action=secret),
    ):
        error = refused(mutate)
        assert secret not in str(error)


def test_another_users_record_is_refused() -> None:
    doc = good_record()
    doc["metadata"]["user"] = "eve"
    doc["_id"] = daily_doc_id("eve", "3f2a9c1e-device", "2026-03-27")
    with pytest.raises(DocumentError) as info:
        validate_record(doc, expected_user="greg")
    assert info.value.field == "metadata.user"
    assert validate_record(doc, expected_user=None).metadata.user == "eve"


def test_not_a_json_object() -> None:
    with pytest.raises(DocumentError) as info:
        validate_record([good_record()], expected_user=None)  # type: ignore[arg-type]
    assert "JSON object" in info.value.reason


def test_a_record_has_a_bounded_number_of_events() -> None:
    doc = good_record()
    events = [{"action": "task_list:scroll", "timestamp": T0 + i} for i in range(MAX_EVENTS_PER_RECORD)]
    doc["sessions"] = [{"session": "tasks", "startedAt": T0, "events": events}]
    assert len(validate_record(doc, expected_user="greg").sessions[0].events) == MAX_EVENTS_PER_RECORD
    events.append({"action": "task_list:scroll", "timestamp": T0 - 1})
    with pytest.raises(DocumentError) as info:
        validate_record(doc, expected_user="greg")
    assert info.value.field == "sessions"


def test_the_daily_document_model() -> None:
    doc = good_record()
    del doc["_rev"]
    doc["summary"] = {"events": 8}
    doc["dropped"] = ["0123456789abcdef"]
    assert validate_daily(copy.deepcopy(doc)).dropped == ["0123456789abcdef"]

    bad_fp = copy.deepcopy(doc)
    bad_fp["dropped"] = ["not-a-fingerprint"]
    with pytest.raises(DocumentError) as info:
        validate_daily(bad_fp)
    assert info.value.field == "dropped[0]"

    suffixed = copy.deepcopy(doc)
    suffixed["_id"] += "-part-1"
    with pytest.raises(DocumentError) as info:
        validate_daily(suffixed)
    assert info.value.field == "_id"

    answer = copy.deepcopy(doc)
    answer["sessions"][0]["events"][0]["answer"] = "yes"
    with pytest.raises(DocumentError) as info:
        validate_daily(answer)
    assert info.value.field == "sessions[0].events[0].answer"


def test_daily_doc_id() -> None:
    assert daily_doc_id("greg", "dev-1", "2026-03-27") == "interaction-2026-03-27-greg-dev-1"


class _Str(str):
    """A str subclass: strict validation may treat it apart; the plain check must leave it to the model."""


EVENT_MUTATIONS: list[Callable[[dict[str, Any]], Any]] = [
    *(mutate for _, mutate, field in REFUSALS if field.startswith(E3)),
    lambda d: event(d).update(timestamp=float(T0)),  # accepted by the model, as its integer
    lambda d: event(d).update(detail=6),  # accepted by the model, as "6"
    lambda d: event(d).update(ref=_Str("person_create")),
    lambda d: event(d).update(action=["task:open"]),
    lambda d: event(d).update(timestamp=4_102_444_800_000),
    lambda d: event(d).update(timestamp=946_684_800_000 - 1),
    lambda d: event(d).pop("action"),
    lambda d: event(d).update(detail=""),
    lambda d: event(d).update(ref=""),
    lambda d: d["sessions"][0].update(events=tuple(d["sessions"][0]["events"])),
]


@pytest.mark.parametrize("number", range(len(EVENT_MUTATIONS)))
def test_the_plain_check_of_events_never_accepts_what_the_model_refuses(number: int) -> None:
    """Events are checked in plain Python first (:func:`validators.interaction._plain_events`), the model
    taking over for anything that check does not accept: whatever the check accepts, the model accepts as the
    very same events, and what the model refuses the check never accepts."""
    doc = good_record()
    EVENT_MUTATIONS[number](doc)
    events = doc["sessions"][0]["events"]
    plain = interaction._plain_events(events)
    try:
        by_model = tuple(
            interaction.Interaction(e.action, e.timestamp, e.ref, e.detail)
            for e in interaction._EVENTS.validate_python(events)
        )
    except ValidationError:
        assert plain is None
        with pytest.raises(DocumentError):
            validate_record(doc, expected_user="greg")
        return
    assert plain is None or plain == by_model
    assert validate_record(doc, expected_user="greg").sessions[0].events == by_model


def test_plain_events_are_the_records_events() -> None:
    record = validate_record(good_record(), expected_user="greg")
    assert interaction._plain_events(good_record()["sessions"][0]["events"]) == record.sessions[0].events
    assert record.sessions[0].events[1] == ("task_list:loaded", T0 + 10, None, "4")
