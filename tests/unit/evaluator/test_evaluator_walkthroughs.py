"""The seed's two walk-throughs (IRS, Focus Investigation), step by step, and the cross-plan duplicates."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from evaluator_helpers import NOW, event, family, jurisdiction, member, structure

from workers.evaluator.engine import activate
from workers.evaluator.flows import on_event, on_task_change
from workers.evaluator.lookup import InMemoryLookup
from workers.evaluator.templates import new_plan_from_template

AREA = "oa-1"
DISTRICT = "district-1"


def _plan(name: str, title: str = "Walk-through", now: datetime = NOW) -> dict:
    plan = new_plan_from_template(name, AREA, title, date(2021, 11, 1), date(2021, 11, 30), now)
    plan["status"] = "active"
    return plan


def _apply(lookup: InMemoryLookup, tasks: list[dict]) -> None:
    for task in tasks:
        lookup.put(task)


def _by_code(tasks: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for task in tasks:
        out.setdefault(task["code"], []).append(task)
    return out


# --- IRS --------------------------------------------------------------------------------------------------


def test_irs_walkthrough() -> None:
    plan = _plan("Dynamic-IRS")
    lookup = InMemoryLookup([plan, jurisdiction(DISTRICT), jurisdiction(AREA, DISTRICT)])

    # the plan becomes active: no structure yet, nothing to spray
    assert activate(plan, lookup, NOW).tasks == []

    # the user drops a point: the structure and its Register_Structure form sync
    point = structure("s-new", AREA, "Residential Structure")
    lookup.put(point)
    registered = event("Register_Structure", "s-new", AREA, form_id="ev-1", plan=plan["identifier"],
                       observations={"structureType": "Residential Structure"})
    outcome = on_event(registered, lookup, NOW)
    found = _by_code(outcome.tasks)
    assert set(found) == {"Register Structure", "IRS"}
    [done] = found["Register Structure"]
    assert (done["status"], done["businessStatus"], done["for"]) == ("Completed", "Complete", "s-new")
    [spray] = found["IRS"]
    assert (spray["status"], spray["businessStatus"], spray["for"]) == ("Ready", "Not Visited", "s-new")
    assert spray["planIdentifier"] == plan["identifier"] and spray["groupIdentifier"] == AREA
    assert spray["_id"] == spray["identifier"] and spray["type"] == "Task"
    _apply(lookup, outcome.tasks)

    # the spray form is saved: its task's business status is updated, nothing else is generated
    sprayed = event("Spray", "s-new", AREA, form_id="ev-2", plan=plan["identifier"], task=spray["identifier"],
                    observations={"business_status": "Sprayed"})
    outcome = on_event(sprayed, lookup, NOW + timedelta(minutes=20))
    assert [t["identifier"] for t in outcome.tasks] == [spray["identifier"]]
    assert (outcome.tasks[0]["status"], outcome.tasks[0]["businessStatus"]) == ("Completed", "Sprayed")
    assert outcome.audit == []


def test_irs_non_residential_point_gets_no_spray_task() -> None:
    plan = _plan("Dynamic-IRS")
    lookup = InMemoryLookup([plan, jurisdiction(AREA)])
    lookup.put(structure("s-school", AREA, "School"))
    registered = event("Register_Structure", "s-school", AREA, form_id="ev-3", plan=plan["identifier"],
                       observations={"structureType": "School"})
    outcome = on_event(registered, lookup, NOW)
    assert [t["code"] for t in outcome.tasks] == ["Register Structure"]


def test_irs_activation_sprays_residential_structures_only() -> None:
    """The walk covers the plan's jurisdiction and its descendants, and nothing above."""
    plan = new_plan_from_template("Dynamic-IRS", DISTRICT, "IRS", date(2021, 11, 1), date(2021, 11, 30), NOW)
    plan["status"] = "active"
    lookup = InMemoryLookup([plan, jurisdiction(DISTRICT), jurisdiction(AREA, DISTRICT),
                             jurisdiction("elsewhere"), structure("s-4", "elsewhere"),
                             structure("s-1", AREA), structure("s-2", AREA, "School"),
                             structure("s-3", DISTRICT)])
    outcome = activate(plan, lookup, NOW)
    assert sorted(t["for"] for t in outcome.tasks) == ["s-1", "s-3"]
    assert {t["groupIdentifier"] for t in outcome.tasks} == {AREA, DISTRICT}


# --- Focus investigation ----------------------------------------------------------------------------------


def test_fi_walkthrough() -> None:
    plan = _plan("Dynamic-FI")
    home = structure("s-home", AREA)
    lookup = InMemoryLookup([plan, jurisdiction(AREA), home])

    # activation: a residential structure without a family gets a register family task; the area a BCC task
    outcome = activate(plan, lookup, NOW)
    found = _by_code(outcome.tasks)
    assert set(found) == {"RACD Register Family", "BCC"}
    [register] = found["RACD Register Family"]
    assert (register["for"], register["status"]) == ("s-home", "Ready")
    assert found["BCC"][0]["for"] == AREA
    _apply(lookup, outcome.tasks)

    # the family registration form: the family and its head, two events
    lookup.put(family("fam-1", "s-home"))
    lookup.put(member("head-1", "fam-1", "s-home", "1980-02-03", "Somchai"))
    registration = event("Family_Registration", "fam-1", AREA, form_id="ev-f1", plan=plan["identifier"],
                         task=register["identifier"], observations={"business_status": "Complete"},
                         details={"locationUUID": "s-home"})
    head = event("Family_Member_Registration", "head-1", AREA, form_id="ev-f2", plan=plan["identifier"],
                 details={"locationUUID": "s-home"})
    outcome = on_event(registration, lookup, NOW)
    _apply(lookup, outcome.tasks)
    outcome_head = on_event(head, lookup, NOW)
    _apply(lookup, outcome_head.tasks)
    found = _by_code(outcome.tasks + outcome_head.tasks)
    assert [t["status"] for t in found["RACD Register Family"] if t["for"] == "s-home"] == ["Completed"]
    [bednet] = found["Bednet Distribution"]
    assert (bednet["for"], bednet["status"]) == ("s-home", "Ready")
    [screening] = found["Blood Screening"]
    assert (screening["for"], screening["status"]) == ("head-1", "Ready")
    # the head's registration, done without a task, is counted by a Completed task
    assert [t["status"] for t in found["RACD Register Family"] if t["for"] == "head-1"] == ["Completed"]
    assert "Larval Dipping" not in found and "Mosquito Collection" not in found

    # a new family member aged 5 or over: a blood screening task for that member only
    lookup.put(member("spouse-1", "fam-1", "s-home", "1984-06-01", "Malee"))
    outcome = on_event(event("Family_Member_Registration", "spouse-1", AREA, form_id="ev-f3",
                             plan=plan["identifier"], details={"locationUUID": "s-home"}), lookup, NOW)
    found = _by_code(outcome.tasks)
    assert [t["for"] for t in found["Blood Screening"]] == ["spouse-1"]
    assert "Bednet Distribution" not in found
    _apply(lookup, outcome.tasks)

    # a child under 5: registered (and counted), but not screened
    lookup.put(member("child-1", "fam-1", "s-home", "2019-01-01", "Nid"))
    outcome = on_event(event("Family_Member_Registration", "child-1", AREA, form_id="ev-f4",
                             plan=plan["identifier"]), lookup, NOW)
    assert [t["code"] for t in outcome.tasks] == ["RACD Register Family"]
    _apply(lookup, outcome.tasks)

    # the blood screening form for the head: only its task changes
    screened = event("blood_screening", "head-1", AREA, form_id="ev-b1", plan=plan["identifier"],
                     task=screening["identifier"], observations={"business_status": "Tested"})
    outcome = on_event(screened, lookup, NOW)
    assert [(t["identifier"], t["status"], t["businessStatus"]) for t in outcome.tasks] == [
        (screening["identifier"], "Completed", "Tested")]
    _apply(lookup, outcome.tasks)

    # editing the blood screening form: again only its task, with the new business status
    edited = event("blood_screening", "head-1", AREA, form_id="ev-b2", plan=plan["identifier"],
                   task=screening["identifier"], observations={"business_status": "Positive"})
    outcome = on_event(edited, lookup, NOW + timedelta(hours=1))
    assert [(t["identifier"], t["businessStatus"]) for t in outcome.tasks] == [
        (screening["identifier"], "Positive")]


def test_fi_activation_is_deterministic_and_not_duplicated() -> None:
    plan = _plan("Dynamic-FI")
    docs = [plan, jurisdiction(AREA), structure("s-1", AREA), structure("s-2", AREA),
            structure("s-site", AREA, "Larval Breeding Site"), family("fam-2", "s-2"),
            member("m-1", "fam-2", "s-2", "1990-01-01"), member("m-2", "fam-2", "s-2", "2020-05-05")]
    first = activate(plan, InMemoryLookup(docs), NOW)
    # another machine, later: the same tasks, the same ids
    second = activate(plan, InMemoryLookup(docs), NOW + timedelta(days=1))
    assert sorted(t["_id"] for t in first.tasks) == sorted(t["_id"] for t in second.tasks)
    assert len({t["_id"] for t in first.tasks}) == len(first.tasks)
    pairs = sorted((t["code"], t["for"]) for t in first.tasks)
    assert pairs == sorted([("BCC", AREA), ("RACD Register Family", "s-1"), ("Bednet Distribution", "s-2"),
                            ("Blood Screening", "m-1"), ("Larval Dipping", "s-site")])
    # generating again over the written tasks adds nothing
    lookup = InMemoryLookup(docs)
    _apply(lookup, first.tasks)
    assert activate(plan, lookup, NOW).tasks == []


# --- duplicates across plans ------------------------------------------------------------------------------


def test_family_registration_cancels_the_register_family_task_of_another_plan() -> None:
    plan1 = _plan("Dynamic-FI", "Plan 1")
    lookup = InMemoryLookup([plan1, jurisdiction(AREA), structure("s-a", AREA)])
    first = activate(plan1, lookup, NOW)
    _apply(lookup, first.tasks)
    [task1] = [t for t in first.tasks if t["code"] == "RACD Register Family"]

    # plan 2 is created and activated while the device is offline: a second register family task
    plan2 = _plan("Dynamic-FI", "Plan 2", NOW + timedelta(hours=2))
    lookup.put(plan2)
    second = activate(plan2, lookup, NOW + timedelta(hours=2))
    _apply(lookup, second.tasks)
    [task2] = [t for t in second.tasks if t["code"] == "RACD Register Family"]
    assert task2["identifier"] != task1["identifier"]

    # the offline family registration of plan 1 syncs
    lookup.put(family("fam-a", "s-a"))
    registration = event("Family_Registration", "fam-a", AREA, form_id="ev-x", plan=plan1["identifier"],
                         task=task1["identifier"], observations={"business_status": "Complete"})
    outcome = on_event(registration, lookup, NOW + timedelta(hours=3))
    written = {t["identifier"]: t for t in outcome.tasks}
    assert written[task1["identifier"]]["status"] == "Completed"
    cancelled = written[task2["identifier"]]
    assert cancelled["status"] == "Cancelled"
    assert cancelled["businessStatus"] == cancelled["statusReason"] == "Completed in another plan"
    [record] = outcome.audit
    assert (record["task"], record["taskPlan"], record["byPlan"]) == (
        task2["identifier"], plan2["identifier"], plan1["identifier"])
    # plan 2 evaluated again for the structure: its follow-on task (bednet distribution) exists now
    bednets = {t["planIdentifier"] for t in outcome.tasks if t["code"] == "Bednet Distribution"}
    assert bednets == {plan1["identifier"], plan2["identifier"]}


def test_registration_in_the_same_plan_cancels_nothing() -> None:
    plan = _plan("Dynamic-FI")
    lookup = InMemoryLookup([plan, jurisdiction(AREA), structure("s-b", AREA)])
    tasks = activate(plan, lookup, NOW).tasks
    _apply(lookup, tasks)
    [task] = [t for t in tasks if t["code"] == "RACD Register Family"]
    lookup.put(family("fam-b", "s-b"))
    outcome = on_event(event("Family_Registration", "fam-b", AREA, form_id="ev-y", plan=plan["identifier"],
                             task=task["identifier"]), lookup, NOW)
    assert outcome.audit == []
    assert all(t["status"] != "Cancelled" for t in outcome.tasks)


def test_task_change_evaluates_the_plan_again_for_its_entity() -> None:
    plan = _plan("Dynamic-FI")
    lookup = InMemoryLookup([plan, jurisdiction(AREA), structure("s-c", AREA)])
    tasks = activate(plan, lookup, NOW).tasks
    _apply(lookup, tasks)
    [register] = [t for t in tasks if t["code"] == "RACD Register Family"]
    # the family registered (synced) and the task completed: the bednet task follows
    lookup.put(family("fam-c", "s-c"))
    completed = dict(register, status="Completed", businessStatus="Complete")
    lookup.put(completed)
    outcome = on_task_change(completed, lookup, NOW)
    assert [(t["code"], t["for"]) for t in outcome.tasks] == [("Bednet Distribution", "s-c")]
