"""Every fixture loads unchanged; the invalid plan is rejected with plan, action and expression named."""

from __future__ import annotations

import json

import pytest
from evaluator_helpers import all_fixture_files, fixture

from validators.errors import DocumentError
from validators.expressions import ExpressionError, unescape, validate
from validators.opensrp import Client, Event, FhirResource, Location, Plan, Task, parse_document, unwrap

INVALID_PLAN = "plan_dynamic_fi_reference_scoping.json"

EXPECTED = {
    "plan_dynamic_fi_thailand_A1.json": Plan, "converter_client_opensrp.json": Client,
    "converter_event_opensrp.json": Event, "converter_location_opensrp.json": Location,
    "converter_client_fhir.json": FhirResource, "MOSQUITTO_COLLECTION_TASK.json": Task,
    "TASK_JSON.json": Task, "REGISTER_FAMILY_EVENT.json": Event, "plan_1.json": Plan,
    "DeviceDefinition.json": FhirResource, "GLOBAL_TASK_PLAN.json": Plan,
}


@pytest.mark.parametrize("path", all_fixture_files(), ids=lambda p: p.name)
def test_every_fixture_document_loads_unchanged(path) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, list):  # fhirpath_expressions.json: a catalogue, each entry validated below
        assert all("expression" in entry for entry in data)
        return
    if path.name == INVALID_PLAN:
        with pytest.raises(DocumentError):
            parse_document(data)
        return
    model = parse_document(data)
    if path.name in EXPECTED:
        assert isinstance(model, EXPECTED[path.name])
    # nothing lost, nothing rewritten (HTML-escaped comparators stay as they were stored)
    assert model.model_dump(by_alias=True, exclude_unset=True) == unwrap(data)


def test_the_upper_case_and_is_rejected_naming_plan_action_and_expression() -> None:
    with pytest.raises(DocumentError) as caught:
        parse_document(fixture(INVALID_PLAN))
    error = caught.value
    assert error.doc_id == "test-plan-identifier-"
    assert error.field == "action[0].condition[2].expression.expression"
    message = str(error)
    field = "action[0].condition[2].expression.expression"
    assert message.startswith(f"plan test-plan-identifier- field {field}: ")
    assert "d1c6dac7-1ce8-4723-b28d-ac20621f171e" in message  # the action
    assert "questionnaire = 'Register_Structure' AND item.where" in message  # the expression
    assert "'AND'" in message and "\n" not in message


def test_the_same_plan_with_a_lower_case_and_loads() -> None:
    plan = fixture(INVALID_PLAN)
    condition = plan["action"][0]["condition"][2]["expression"]
    condition["expression"] = condition["expression"].replace(" AND ", " and ")
    assert isinstance(parse_document(plan), Plan)


@pytest.mark.parametrize("text", ["a = 'x' AND b = 'y'", "a = ", "(a", "exists(", "a b", "a.where(x = 1))"])
def test_strict_validation_rejects_partial_expressions(text: str) -> None:
    with pytest.raises(ExpressionError):
        validate(text)


def test_html_escaped_text_is_unescaped_before_use() -> None:
    plan = parse_document(fixture("plan_dynamic_fi_thailand_A1.json"))
    assert isinstance(plan, Plan)
    assert plan.goal[0].target[0].detail is not None
    quantity = plan.goal[0].target[0].detail.detailQuantity
    assert quantity is not None and quantity.comparator == "&amp;gt;=" and quantity.comparator_op == ">="
    blood = plan.action[2].condition[0].expression
    assert blood is not None and "&amp;" in (blood.expression or "")
    assert "birthDate <= today() - 5 'years'" in blood.text
    assert unescape("&amp;amp;lt;=") == "<="


def test_a_bad_document_names_its_id_and_field() -> None:
    task = fixture("TASK_JSON.json")
    task["type"] = "Task"
    task["executionPeriod"] = "tomorrow"
    with pytest.raises(DocumentError) as caught:
        parse_document(task)
    assert caught.value.doc_id == "tsk11231jh22" and caught.value.field == "executionPeriod"
    with pytest.raises(DocumentError) as unknown:
        parse_document({"_id": "x", "type": "Banana"})
    assert unknown.value.field == "type"


def test_a_plan_without_type_is_recognised_by_action_and_identifier() -> None:
    plan = fixture("EUSM_PLAN.json")
    assert "type" not in plan
    model = parse_document(plan)
    assert isinstance(model, Plan) and len(model.action) == 4
