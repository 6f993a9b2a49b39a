"""The daily merge (summarizer/merge.py, summarizer/summary.py): pure functions on hand-made records."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from summarizer.merge import DEFAULT_CAP, group_by_day, merge_day, merge_user, parse_records
from validators.errors import DocumentError
from validators.interaction import daily_doc_id, validate_daily

T0 = 1_774_600_000_000  # 2026-03-27T08:26:40Z
DAY = "2026-03-27"
USER = "greg"


def ev(action: str, ts: int, ref: str | None = None, detail: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"action": action, "timestamp": ts}
    if ref is not None:
        out["ref"] = ref
    if detail is not None:
        out["detail"] = detail
    return out


def rec(
    device: str,
    sessions: list[tuple[int, list[dict[str, Any]]]],
    *,
    suffix: str = "",
    user: str = USER,
    date: str = DAY,
    version: str = "5.2.0",
    rev: str | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": daily_doc_id(user, device, date) + suffix,
        "type": "interaction-log",
        "sessions": [{"session": "tasks", "startedAt": s, "events": events} for s, events in sessions],
        "metadata": {"user": user, "deviceId": device, "date": date, "version": version},
    }
    if rev is not None:
        doc["_rev"] = rev
    return doc


def scrolls(start: int, n: int, step: int = 1) -> list[dict[str, Any]]:
    return [ev("task_list:scroll", start + i * step) for i in range(n)]


def all_events(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for s in doc["sessions"] for e in s["events"]]


def by_device(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["deviceId"]: d for d in docs}


def canonical(docs: list[dict[str, Any]]) -> str:
    return json.dumps(docs, sort_keys=True)


# --- the hand-computed example --------------------------------------------------------------------------


def test_summary_figures_on_a_hand_computed_example() -> None:
    s1 = [
        ev("task_list:open", T0),
        ev("task_list:loaded", T0 + 100, detail="4"),
        ev("task:open", T0 + 1_000, ref="anc_visit", detail="0"),
        ev("task:form_open", T0 + 1_200, ref="home_visit"),
        ev("task:form_save", T0 + 31_000, ref="home_visit"),
        ev("task:complete", T0 + 31_500, ref="home_visit"),
        ev("task:open", T0 + 40_000, ref="pnc_visit", detail="1"),
        ev("task:back", T0 + 45_000),
        ev("task_list:leave", T0 + 60_000),
    ]
    s2_start = T0 + 3_600_000
    s2 = [
        ev("task_list:open", s2_start),
        ev("task:open", s2_start + 2_000, ref="anc_visit", detail="2"),
        ev("task:form_open", s2_start + 2_100, ref="home_visit"),
        ev("task:form_save", s2_start + 12_000, ref="home_visit"),
        ev("task:complete", s2_start + 12_000, ref="home_visit"),
    ]
    # given in the wrong order: sessions and events are put in order by the merge
    doc = rec("dev1", [(s2_start, list(reversed(s2))), (T0, s1[::2] + s1[1::2])])
    [out] = merge_day([doc])
    assert out["_id"] == "interaction-2026-03-27-greg-dev1"
    assert [s["startedAt"] for s in out["sessions"]] == [T0, s2_start]
    assert out["sessions"][0]["events"] == s1
    assert out["sessions"][1]["events"] == s2
    summary = out["summary"]
    assert summary["events"] == 14
    assert summary["sessions"] == 2
    assert summary["firstEventAt"] == T0
    assert summary["lastEventAt"] == s2_start + 12_000
    assert summary["actions"] == {
        "task:back": 1,
        "task:complete": 2,
        "task:form_open": 2,
        "task:form_save": 2,
        "task:open": 3,
        "task_list:leave": 1,
        "task_list:loaded": 1,
        "task_list:open": 2,
    }
    assert summary["refs"] == {"anc_visit": 2, "home_visit": 6, "pnc_visit": 1}
    # one closed visit of 60 s; the second session never left the list
    assert summary["taskList"] == {"count": 1, "totalMs": 60_000, "minMs": 60_000, "maxMs": 60_000}
    assert summary["taskListUnclosed"] == 1
    # 30 000 and 10 000 ms; the pnc_visit open went back without saving
    assert summary["openToFormSave"] == {"count": 2, "totalMs": 40_000, "minMs": 10_000, "maxMs": 30_000}
    assert summary["openToComplete"] == {"count": 2, "totalMs": 40_500, "minMs": 10_000, "maxMs": 30_500}
    assert summary["transitions"] == {
        "task:back": {"task_list:leave": 1},
        "task:complete": {"task:open": 1},
        "task:form_open": {"task:form_save": 2},
        "task:form_save": {"task:complete": 2},
        "task:open": {"task:back": 1, "task:form_open": 2},
        "task_list:loaded": {"task:open": 1},
        "task_list:open": {"task:open": 1, "task_list:loaded": 1},
    }
    assert sum(sum(n.values()) for n in summary["transitions"].values()) == 14 - 2  # per session: events - 1
    assert summary["droppedByCap"] == 0
    assert summary["capReached"] is False
    assert summary["cap"] == DEFAULT_CAP
    assert out["dropped"] == []


def test_events_in_the_same_millisecond_follow_the_task_life_cycle() -> None:
    # CHT with a fake clock stamps a whole sequence with one time: the order must still make sense.
    same = [
        ev("task:complete", T0, ref="home_visit"),
        ev("task_list:leave", T0),
        ev("task:form_save", T0, ref="home_visit"),
        ev("task:open", T0, ref="anc", detail="0"),
        ev("task_list:open", T0),
        ev("task:form_open", T0, ref="home_visit"),
    ]
    [out] = merge_day([rec("dev1", [(T0, same)])])
    assert [e["action"] for e in all_events(out)] == [
        "task_list:open",
        "task:open",
        "task:form_open",
        "task:form_save",
        "task:complete",
        "task_list:leave",
    ]
    assert out["summary"]["openToComplete"]["count"] == 1
    assert out["summary"]["taskList"] == {"count": 1, "totalMs": 0, "minMs": 0, "maxMs": 0}


def test_back_or_cancel_ends_a_task_attempt() -> None:
    events = [
        ev("task:open", T0, ref="anc", detail="0"),
        ev("task:back", T0 + 1_000),
        ev("task:form_save", T0 + 2_000, ref="home_visit"),
        ev("task:open", T0 + 3_000, ref="anc", detail="1"),
        ev("task:cancel", T0 + 4_000, ref="home_visit"),
        ev("task:complete", T0 + 5_000, ref="home_visit"),
        ev("task:open", T0 + 6_000, ref="anc", detail="2"),
        ev("task:form_save", T0 + 8_000, ref="home_visit"),
        ev("task:form_save", T0 + 9_000, ref="home_visit"),
    ]
    [out] = merge_day([rec("dev1", [(T0, events)])])
    assert out["summary"]["openToFormSave"] == {"count": 1, "totalMs": 2_000, "minMs": 2_000, "maxMs": 2_000}
    assert out["summary"]["openToComplete"]["count"] == 0
    assert out["summary"]["openToComplete"]["minMs"] is None


# --- the cap ----------------------------------------------------------------------------------------------


def test_cap_300_plus_300_keeps_the_500_earliest_across_devices() -> None:
    a = rec("devA", [(T0, scrolls(T0, 300, step=2))])  # T0, T0+2, ...
    b = rec("devB", [(T0 + 1, scrolls(T0 + 1, 300, step=2))])  # T0+1, T0+3, ...
    docs = by_device(merge_day([a, b]))
    kept = sorted(e["timestamp"] for d in docs.values() for e in all_events(d))
    assert kept == list(range(T0, T0 + 500))
    assert len(all_events(docs["devA"])) == 250 and len(all_events(docs["devB"])) == 250
    for d in docs.values():
        assert d["summary"]["capReached"] is True
        assert d["summary"]["droppedByCap"] == 50
        assert len(d["dropped"]) == 50
        assert d["summary"]["events"] == 250


def test_cap_when_one_device_worked_earlier() -> None:
    a = rec("devA", [(T0, scrolls(T0, 300))])
    b = rec("devB", [(T0 + 10_000, scrolls(T0 + 10_000, 300))])
    for order in ([a, b], [b, a]):
        docs = by_device(merge_day(order))
        assert len(all_events(docs["devA"])) == 300
        assert len(all_events(docs["devB"])) == 200
        assert all_events(docs["devB"])[-1]["timestamp"] == T0 + 10_000 + 199
        assert docs["devA"]["summary"]["droppedByCap"] == 0
        assert docs["devB"]["summary"]["droppedByCap"] == 100
        assert docs["devA"]["summary"]["capReached"] is True


def test_a_device_whose_every_event_is_capped_still_gets_its_document() -> None:
    a = rec("devA", [(T0, scrolls(T0, 10))])
    b = rec("devB", [(T0 + 100, scrolls(T0 + 100, 5))])
    docs = by_device(merge_day([a, b], cap=10))
    assert docs["devB"]["sessions"] == []
    assert docs["devB"]["summary"]["events"] == 0
    assert docs["devB"]["summary"]["droppedByCap"] == 5
    assert docs["devB"]["summary"]["firstEventAt"] is None


def test_the_cap_ties_are_broken_by_the_events_not_by_arrival() -> None:
    # two devices, same timestamps: which ones are kept may not depend on the order records arrive in
    a = rec("devA", [(T0, scrolls(T0, 5))])
    b = rec("devB", [(T0, scrolls(T0, 5))])
    first = merge_day([a, b], cap=5)
    assert canonical(first) == canonical(merge_day([b, a], cap=5))
    kept = {d["metadata"]["deviceId"]: len(all_events(d)) for d in first}
    assert kept == {"devA": 3, "devB": 2}  # T0..T0+2 from both devices, devA before devB at T0+2


def test_no_cap_reached_below_the_cap() -> None:
    [out] = merge_day([rec("devA", [(T0, scrolls(T0, 499))])])
    assert out["summary"]["capReached"] is False
    [out] = merge_day([rec("devA", [(T0, scrolls(T0, 500))])])
    assert out["summary"]["capReached"] is True
    assert out["summary"]["droppedByCap"] == 0


# --- copies, revisions, batches ---------------------------------------------------------------------------


def day_of_records() -> list[dict[str, Any]]:
    """Device 1: two revisions of its daily doc, a conflicted copy, two overlapping partial batches.
    Device 2: one daily doc. 9 distinct interactions in all."""
    e = [ev("task_list:open" if i == 0 else "task_list:scroll", T0 + i * 1000) for i in range(7)]
    s = T0
    rev1 = rec("dev1", [(s, e[:2])], rev="1-aaa")
    rev2 = rec("dev1", [(s, e[:4])], rev="2-bbb")  # the same document, a later (or conflicting) revision
    conflicted = rec("dev1", [(s, e[:4] + e[4:5])], suffix="-conflicted-1774600099999")
    conflicted["metadata"]["conflicted"] = True
    part1 = rec("dev1", [(s, e[5:6])], suffix="-part-1")
    part2 = rec("dev1", [(s, e[5:7])], suffix="-part-2")  # re-sent e[5] with the next batch
    other = rec("dev2", [(T0 + 500, [ev("task_list:open", T0 + 500), ev("task_list:leave", T0 + 900)])])
    return [rev1, rev2, conflicted, part1, part2, other]


def test_conflicted_copy_partial_batches_and_conflicting_revisions_count_once() -> None:
    docs = by_device(merge_day(day_of_records()))
    assert set(docs) == {"dev1", "dev2"}
    dev1 = docs["dev1"]
    assert dev1["_id"] == "interaction-2026-03-27-greg-dev1"
    assert [e["timestamp"] for e in all_events(dev1)] == [T0 + i * 1000 for i in range(7)]
    assert len(dev1["sessions"]) == 1
    assert dev1["summary"]["events"] == 7
    assert dev1["summary"]["actions"] == {"task_list:open": 1, "task_list:scroll": 6}
    assert "conflicted" not in dev1["metadata"]
    assert docs["dev2"]["summary"]["events"] == 2
    assert docs["dev2"]["summary"]["taskList"]["totalMs"] == 400


def test_genuine_repeats_in_one_record_are_kept_but_copies_do_not_add() -> None:
    same_ms = [ev("task:form_open", T0, ref="home_visit"), ev("task:form_open", T0, ref="home_visit")]
    one = rec("dev1", [(T0, same_ms)])
    copy_ = rec("dev1", [(T0, same_ms)], suffix="-conflicted-1")
    [out] = merge_day([one, copy_])
    assert out["summary"]["actions"] == {"task:form_open": 2}


def test_sessions_are_told_apart_by_start() -> None:
    s1 = rec("dev1", [(T0, [ev("task_list:open", T0 + 5)])])
    s2 = rec("dev1", [(T0 + 1, [ev("task_list:open", T0 + 5)])], suffix="-part-2")
    [out] = merge_day([s2, s1])
    assert [s["startedAt"] for s in out["sessions"]] == [T0, T0 + 1]
    assert out["summary"]["events"] == 2


def test_only_whitelisted_fields_leave_and_the_output_is_a_valid_daily_document() -> None:
    docs = merge_day(day_of_records())
    for doc in docs:
        assert set(doc) == {"_id", "type", "sessions", "metadata", "summary", "dropped"}
        assert set(doc["metadata"]) == {"user", "deviceId", "date", "version"}
        for session in doc["sessions"]:
            assert set(session) == {"session", "startedAt", "events"}
            for event in session["events"]:
                assert set(event) <= {"action", "timestamp", "ref", "detail"}
        validate_daily(copy.deepcopy(doc))


def test_the_highest_version_of_the_day_is_kept() -> None:
    old = rec("dev1", [(T0, scrolls(T0, 1))], version="5.2.0")
    new = rec("dev1", [(T0, scrolls(T0 + 10, 1))], suffix="-part-2", version="5.10.1")
    unknown = rec("dev1", [(T0, scrolls(T0 + 20, 1))], suffix="-part-3", version="unknown")
    for order in ([old, new, unknown], [unknown, new, old]):
        [out] = merge_day(order)
        assert out["metadata"]["version"] == "5.10.1"


# --- order, idempotence, associativity --------------------------------------------------------------------


def shuffled(records: list[dict[str, Any]], rnd: random.Random) -> list[dict[str, Any]]:
    """The same records in another order, each with its sessions and events in another order."""
    out = copy.deepcopy(records)
    rnd.shuffle(out)
    for doc in out:
        rnd.shuffle(doc["sessions"])
        for session in doc["sessions"]:
            rnd.shuffle(session["events"])
    return out


def random_day(rnd: random.Random, devices: int = 3, per_device: int = 260) -> list[dict[str, Any]]:
    """A busy day: every device over the cap together, copies and batches overlapping at random."""
    actions = ["task_list:open", "task_list:scroll", "task:open", "task:form_save", "task:complete"]
    records: list[dict[str, Any]] = []
    for d in range(devices):
        device = f"dev{d}"
        starts = sorted(rnd.sample(range(T0, T0 + 3_600_000), 4))
        events: list[tuple[int, dict[str, Any]]] = []
        for _ in range(per_device):
            start = rnd.choice(starts)
            ts = start + rnd.randrange(0, 30_000)
            action = rnd.choice(actions)
            ref = rnd.choice([None, "anc_visit", "home_visit"])
            events.append((start, ev(action, ts, ref, rnd.choice([None, "0", "3", "12"]))))
        for n in range(4):  # overlapping batches, one of them a conflicted copy
            chosen = [e for e in events if rnd.random() < 0.4]
            by_start: dict[int, list[dict[str, Any]]] = {}
            for start, e in chosen:
                by_start.setdefault(start, []).append(copy.deepcopy(e))
            suffix = ["", "-part-1", "-part-2", "-conflicted-1774600123456"][n]
            records.append(rec(device, sorted(by_start.items()), suffix=suffix))
    return records


@pytest.mark.parametrize("seed", range(6))
def test_the_result_does_not_depend_on_the_order_of_records_or_events(seed: int) -> None:
    rnd = random.Random(seed)
    records = random_day(rnd)
    expected = canonical(merge_day(records))
    assert json.loads(expected)[0]["summary"]["capReached"] is True
    for _ in range(5):
        assert canonical(merge_day(shuffled(records, rnd))) == expected


@pytest.mark.parametrize("seed", range(6))
def test_merging_again_is_idempotent_and_associative(seed: int) -> None:
    rnd = random.Random(100 + seed)
    records = random_day(rnd)
    everything = merge_day(records)
    expected = canonical(everything)
    # the daily documents alone, again: unchanged
    assert canonical(merge_day(copy.deepcopy(everything))) == expected
    # a crash after writing, before deleting: the daily documents and every raw record again
    assert canonical(merge_day(copy.deepcopy(everything) + shuffled(records, rnd))) == expected
    # passes over arbitrary slices of the records, each pass reading the previous pass's documents
    order = shuffled(records, rnd)
    daily: list[dict[str, Any]] = []
    cut = sorted(rnd.sample(range(1, len(order)), 3))
    for lo, hi in zip([0, *cut], [*cut, len(order)], strict=True):
        daily = merge_day(daily + order[lo:hi])
    assert canonical(daily) == expected


def test_a_late_device_with_earlier_events_displaces_kept_ones_without_double_counting() -> None:
    a = rec("devA", [(T0 + 1_000, scrolls(T0 + 1_000, 400))])
    b = rec("devB", [(T0, scrolls(T0, 300))])
    first = merge_day([a])
    assert by_device(first)["devA"]["summary"]["capReached"] is False
    second = by_device(merge_day([*first, b]))
    assert canonical(list(second.values())) == canonical(merge_day([a, b]))
    assert len(all_events(second["devB"])) == 300
    assert len(all_events(second["devA"])) == 200
    assert second["devA"]["summary"]["droppedByCap"] == 200
    # and again, with the raw records read once more: still 200 dropped, not 400
    third = by_device(merge_day([*second.values(), a, b]))
    assert third["devA"]["summary"]["droppedByCap"] == 200
    assert third["devA"]["dropped"] == second["devA"]["dropped"]


# --- days, grouping, refusals -----------------------------------------------------------------------------


def test_a_record_that_arrives_days_late_merges_into_its_own_day() -> None:
    earlier = "2026-03-25"
    t_earlier = T0 - 2 * 86_400_000
    today = rec("dev1", [(T0, scrolls(T0, 3))])
    late = rec("dev1", [(t_earlier, scrolls(t_earlier, 2))], date=earlier)
    existing_today = merge_day([today])
    days = group_by_day([*existing_today, late])
    assert list(days) == [earlier, DAY]
    merged = merge_user([*existing_today, late])
    assert [d["_id"] for d in merged[earlier]] == ["interaction-2026-03-25-greg-dev1"]
    assert merged[earlier][0]["summary"]["events"] == 2
    assert canonical(merged[DAY]) == canonical(existing_today)


def test_one_user_and_one_day_per_merge() -> None:
    with pytest.raises(ValueError, match="one user"):
        merge_day([rec("dev1", [(T0, scrolls(T0, 1))]), rec("dev1", [(T0, scrolls(T0, 1))], user="eve")])
    with pytest.raises(ValueError, match="one day"):
        other_day = rec("dev1", [(T0, scrolls(T0, 1))], date="2026-03-28")
        merge_day([rec("dev1", [(T0, scrolls(T0, 1))]), other_day])
    with pytest.raises(ValueError):
        merge_day([rec("dev1", [(T0, scrolls(T0, 1))])], cap=-1)


def test_an_invalid_record_stops_the_merge_and_parse_records_parks_it() -> None:
    good = rec("dev1", [(T0, scrolls(T0, 2))])
    bad = rec("dev1", [(T0, [ev("task:open", T0, ref="x") | {"answer": "yes"}])], suffix="-part-9")
    tomb = {"_id": "interaction-2026-03-27-greg-dev1-part-8", "_rev": "2-x", "_deleted": True}
    with pytest.raises(DocumentError) as info:
        merge_day([good, bad])
    assert info.value.doc_id == bad["_id"]
    assert info.value.field == "sessions[0].events[0].answer"
    valid, parked = parse_records([good, bad, tomb], expected_user=USER)
    assert [r.id for r in valid] == [good["_id"]]
    assert [(doc["_id"], err.field) for doc, err in parked] == [(bad["_id"], "sessions[0].events[0].answer")]
    _, parked = parse_records([good], expected_user="eve")
    assert parked[0][1].field == "metadata.user"
    # a device cannot pass a record off as a merged daily document
    daily = merge_day([good])
    assert len(parse_records(daily, expected_user=USER)[0]) == 1
    valid, parked = parse_records(daily, expected_user=USER, allow_daily=False)
    assert valid == [] and parked[0][1].field == "summary"
    # a tombstone is no record: skipped, not an error
    assert len(merge_day([good, tomb])) == 1
    assert merge_day([tomb]) == []
    assert merge_day([]) == []
