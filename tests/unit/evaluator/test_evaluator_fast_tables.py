"""The activation's precomputed pieces answer as the plain functions do: task ids, new tasks, the fast path's
``where(name = 'text')`` and flattened invocation chains, and one activation's tasks and decisions."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

import pytest
from evaluator_helpers import NOW, family, jurisdiction, member, structure

from validators.opensrp import Action, Plan
from workers.evaluator import tasks as T
from workers.evaluator.engine import activate, activation_batches
from workers.evaluator.fhir import SharedParts, client_to_patient
from workers.evaluator.fhirpath import PathEngine
from workers.evaluator.lookup import InMemoryLookup
from workers.evaluator.templates import new_plan_from_template

TODAY = date(2021, 3, 22)


def test_task_ids_of_a_prefix_equal_task_id() -> None:
    rng = random.Random(7)
    for n in range(2000):
        plan, key, entity = f"p-{rng.random()}", f"a\x1e{n}", f"e-{rng.randint(0, 10**9)}"
        jurisdiction = f"j-{rng.randint(0, 20)}"
        assert T.TaskIds(plan, key)(jurisdiction, entity) == T.task_id(plan, key, entity, jurisdiction)


@pytest.mark.parametrize("period", [None, {"start": "2021-01-01", "end": "2021-02-01"}, {"start": "2021-01-01"}])
def test_new_tasks_equal_new_task(period: dict[str, str] | None) -> None:
    action = Action.model_validate({"identifier": "act-1", "code": "BCC", "description": "d", "timingPeriod": period})
    now = datetime(2021, 3, 22, 10, 0, tzinfo=UTC)
    made = T.NewTasks(action, "plan-1", now, "owner-1")
    identifier = made.ids("j-1", "e-1")
    expected = T.new_task(action=action, plan_id="plan-1", jurisdiction_id="j-1", entity_id="e-1", now=now,
                          owner="owner-1")
    task = made(identifier, "j-1", "e-1")
    assert task == expected
    assert list(task) == list(expected)
    if "executionPeriod" in task:  # each task has its own period
        assert task["executionPeriod"] is not made(identifier, "j-1", "e-1")["executionPeriod"]


def test_evaluates_on_create() -> None:
    literal = {"identifier": "a", "dynamicValue": [{"path": "businessStatus", "expression": {
        "name": "defaultBusinessStatus", "expression": "Not Visited"}}]}
    evaluated = {"identifier": "a", "dynamicValue": [{"path": "status", "expression": {"expression": "'Ready'"}}]}
    assert not T.evaluates_on_create(Action.model_validate(literal))
    assert not T.evaluates_on_create(Action.model_validate({"identifier": "a"}))
    assert T.evaluates_on_create(Action.model_validate(evaluated))


ITEMS = {
    "resourceType": "Location",
    "type": [{"id": "locationType", "text": "A"}, {"id": ["locationType"], "text": "B"}, {"id": 3, "text": "C"},
             {"text": "D"}, {"id": "other", "text": "E"}, "plain"],
}


@pytest.mark.parametrize("expression", [
    "$this.type.where(id='locationType').text",
    "type.where(id='locationType').exists()",
    "type.where(id='nothing').exists()",
    "$this.type.where(id='locationType').text = 'A'",
    "Location.type.where(id = 'other').text.first()",
])
def test_where_equals_and_chains_answer_as_fhirpathpy(expression: str) -> None:
    fast, slow = PathEngine("fast"), PathEngine("fhirpathpy")
    assert fast.evaluate(expression, ITEMS, TODAY) == slow.evaluate(expression, ITEMS, TODAY)


def test_activation_decisions_do_not_depend_on_the_engine() -> None:
    plan = new_plan_from_template("Dynamic-FI", "oa", "T", date(2021, 11, 1), date(2021, 11, 30), NOW)
    plan["status"] = "active"
    docs = [plan, jurisdiction("oa"), structure("s-1", "oa"), structure("s-2", "oa", "Larval Breeding Site"),
            structure("s-3", "oa", None), family("f-1", "s-1"), member("m-1", "f-1", "s-1", "1980-01-01"),
            member("m-2", "f-1", "s-1", "2020-01-01")]
    lookup = InMemoryLookup(docs)
    runs = []
    for mode in ("fast", "fhirpathpy"):
        record: list[tuple[str, str, bool]] = []
        tasks = [t for b in activation_batches(plan, lookup, NOW, paths=PathEngine(mode), record=record)
                 for t in b.tasks]
        runs.append((record, sorted((t["_id"], t["code"], t["for"]) for t in tasks)))
    assert runs[0] == runs[1]
    assert runs[0][1]  # tasks were made
    assert sorted(t["_id"] for t in activate(Plan.model_validate(plan), lookup, NOW).tasks) == \
        sorted(t[0] for t in runs[0][1])


def test_shared_parts_give_the_same_patients() -> None:
    rng = random.Random(3)
    shared = SharedParts()
    values: list[object] = [None, "", "  ", "A", 0, 1, True, "x y"]
    for n in range(3000):
        doc: dict[str, object] = {"baseEntityId": f"c-{n}", "firstName": rng.choice(values),
                                  "lastName": rng.choice(values), "birthdate": "2020-01-01T00:00"}
        doc["relationships"] = rng.choice([{}, {"family": [f"f-{rng.randint(0, 3)}"]}, {"family": []},
                                           {"m": ["a", "b"]}, {"x": [1]}])
        doc["attributes"] = rng.choice([{}, {"residence": f"s-{rng.randint(0, 3)}"}, {"a": 1}, {"a": True},
                                        {"a": "1"}])
        assert client_to_patient(doc, shared=shared) == client_to_patient(doc)
