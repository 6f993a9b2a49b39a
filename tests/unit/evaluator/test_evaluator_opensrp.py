"""plan-evaluator-testdata reproduces what OpenSRP's PlanEvaluatorIntegrationTest asserts."""

from __future__ import annotations

from datetime import UTC, datetime

from evaluator_helpers import fixture, jurisdiction

from workers.evaluator.engine import PLAN_ACTIVATION, periodic
from workers.evaluator.engine import evaluate_event as evaluate_plan_for_event
from workers.evaluator.lookup import InMemoryLookup

NOW = datetime(2021, 3, 22, 4, 13, tzinfo=UTC)


def test_mosquito_collection_close_plan_completes_the_ready_task() -> None:
    """evaluatePlanShouldUpdateTaskBasedOnEventObsValues: READY/Not Visited -> COMPLETED/Complete."""
    plan = fixture("MOSQUITTO_COLLECTION_CLOSE_PLAN.json")
    event = fixture("MOSQUITTO_COLLECTION_EVENT.json")
    task = fixture("MOSQUITTO_COLLECTION_TASK.json")
    assert (task["status"], task["businessStatus"]) == ("Ready", "Not Visited")
    lookup = InMemoryLookup([plan, task])

    outcome = evaluate_plan_for_event(plan, event, lookup, NOW)

    assert [t["identifier"] for t in outcome.tasks] == [task["identifier"]]
    final = outcome.tasks[0]
    assert final["status"] == "Completed"
    assert final["businessStatus"] == "Complete"
    assert final["for"] == task["for"] and final["code"] == "Mosquito Collection"
    assert final["lastModified"] != task["lastModified"]


def test_mosquito_close_plan_leaves_other_tasks_alone() -> None:
    """The condition needs a Mosquito Collection task: a task with another code is not updated."""
    plan = fixture("MOSQUITTO_COLLECTION_CLOSE_PLAN.json")
    event = fixture("MOSQUITTO_COLLECTION_EVENT.json")
    task = fixture("MOSQUITTO_COLLECTION_TASK.json")
    task["code"] = "Larval Dipping"
    outcome = evaluate_plan_for_event(plan, event, InMemoryLookup([plan, task]), NOW)
    assert outcome.tasks == []


def test_mosquito_close_plan_is_not_triggered_by_another_form() -> None:
    plan = fixture("MOSQUITTO_COLLECTION_CLOSE_PLAN.json")
    event = fixture("MOSQUITTO_COLLECTION_EVENT.json")
    event["eventType"] = "larval_dipping"
    task = fixture("MOSQUITTO_COLLECTION_TASK.json")
    outcome = evaluate_plan_for_event(plan, event, InMemoryLookup([plan, task]), NOW)
    assert outcome.tasks == []


def _global_task_setup() -> tuple[dict, dict, dict, dict, dict, str]:
    plan = fixture("GLOBAL_TASK_PLAN.json")
    plan2 = fixture("MOSQUITTO_COLLECTION_CLOSE_PLAN.json")
    event = fixture("REGISTER_FAMILY_EVENT.json")
    entity = "5d2b4f6e-0b1c-4a8e-9a53-1f0c2e9d7b11"
    event["details"]["plan_evaluation_entity_id"] = entity
    event["details"]["planIdentifier"] = plan["identifier"]
    task = fixture("MOSQUITTO_COLLECTION_TASK.json")
    task.update({"planIdentifier": plan2["identifier"], "status": "Ready", "code": "RACD Register Family",
                 "for": entity})
    task2 = fixture("TASK_JSON.json")
    task2.update({"status": "Ready", "code": "RACD Register Family", "planIdentifier": plan["identifier"],
                  "for": entity})
    return plan, plan2, event, task, task2, entity


def test_global_task_plan_cancels_both_register_family_tasks_and_reevaluates_the_other_plan() -> None:
    """evaluatePlanWithGlobalTasksShouldUpdateAllTasksAndEvaluateOtherPlans."""
    plan, plan2, event, task, task2, _ = _global_task_setup()
    assert (task2["status"], task2["businessStatus"], task2["code"]) == ("Ready", "Not Visited",
                                                                        "RACD Register Family")
    lookup = InMemoryLookup([plan, plan2, task, task2])

    outcome = evaluate_plan_for_event(plan, event, lookup, NOW)

    assert sorted(t["identifier"] for t in outcome.tasks) == sorted([task["identifier"], task2["identifier"]])
    for final in outcome.tasks:
        assert final["status"] == "Cancelled"
        assert final["businessStatus"] == "Completed in another plan"
    jurisdiction_id = event["locationId"]
    assert (plan["identifier"], "event-submission", jurisdiction_id) in outcome.evaluated
    assert (plan2["identifier"], PLAN_ACTIVATION, jurisdiction_id) in outcome.evaluated
    # the plan's own task does not make it evaluate itself again
    assert sum(1 for p, _, _ in outcome.evaluated if p == plan["identifier"]) == 1
    assert {a["task"] for a in outcome.audit} == {task["identifier"], task2["identifier"]}


def test_global_task_plan_ignores_tasks_that_are_not_ready() -> None:
    plan, plan2, event, task, task2, _ = _global_task_setup()
    task["status"] = "Completed"
    outcome = evaluate_plan_for_event(plan, event, InMemoryLookup([plan, plan2, task, task2]), NOW)
    assert [t["identifier"] for t in outcome.tasks] == [task2["identifier"]]
    assert (plan2["identifier"], PLAN_ACTIVATION, event["locationId"]) not in outcome.evaluated


def _pnc_lookup(authored_on: str | None = None) -> tuple[dict, dict, InMemoryLookup]:
    plan = fixture("SUPERVISOR_PNC_VISIT_FOLLOW_UP_PLAN_JSON.json")
    plan["status"] = "active"
    task = fixture("PNC_DAY_49_VISIT_TASK_JSON.json")
    if authored_on:
        task["authoredOn"] = authored_on
    area = task["groupIdentifier"]
    top = plan["jurisdiction"][0]["code"]
    lookup = InMemoryLookup([plan, task, jurisdiction(top), jurisdiction(area, top)])
    return plan, task, lookup


def test_periodic_pnc_follow_up_plan_creates_the_follow_up_task_for_the_overdue_visit() -> None:
    """evaluatePlanShouldCreateFollowUpPlanIfTaskIsOverdue, at 04:13 (timeOfDay 04:00)."""
    plan, task, lookup = _pnc_lookup()
    outcome = periodic(plan, lookup, NOW, owner="supervisor")

    assert len(outcome.tasks) == 1
    made = outcome.tasks[0]
    assert made["status"] == "Ready"
    assert made["code"] == "PNC Follow Up"
    assert made["planIdentifier"] == "d18f15ec-afaf-42f3-ba96-d207c456645b"
    assert made["groupIdentifier"] == task["groupIdentifier"]
    assert made["owner"] == "supervisor" and made["requester"] == "supervisor"
    assert made["description"] == "Create Follow up tasks when PNC is not completed in 48 hours"
    assert made["focus"] == "5b0afeb7-cc30-4cf4-a632-2222c1d99289"
    assert made["for"] == "7d23d4d7-d53d-4413-8631-02291d338da9"
    assert made["executionPeriod"] == {"start": "2020-06-04", "end": "2021-10-01"}
    assert made["businessStatus"] == "Not Visited" and made["priority"] == "routine"


def test_periodic_plan_does_nothing_outside_its_times_of_day() -> None:
    plan, _, lookup = _pnc_lookup()
    assert periodic(plan, lookup, datetime(2021, 3, 22, 5, 30, tzinfo=UTC)).tasks == []
    assert len(periodic(plan, lookup, datetime(2021, 3, 22, 21, 31, tzinfo=UTC)).tasks) == 1


def test_periodic_plan_skips_a_visit_that_is_not_overdue() -> None:
    plan, _, lookup = _pnc_lookup(authored_on="2021-03-21T11:22:04.458+03:00")
    assert periodic(plan, lookup, NOW).tasks == []


def test_periodic_follow_up_is_not_created_twice() -> None:
    plan, _, lookup = _pnc_lookup()
    first = periodic(plan, lookup, NOW)
    for made in first.tasks:
        lookup.put(made)
    assert periodic(plan, lookup, NOW).tasks == []
