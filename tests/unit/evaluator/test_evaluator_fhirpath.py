# ruff: noqa: E501  (the table of expressions and their cases reads best one expression per entry)
"""Every expression of fhirpath_expressions.json (but the invalid one) gives OpenSRP's answer, true and false,
on the fast path and on fhirpathpy with the compatibility layer alike."""

from __future__ import annotations

from datetime import date
from typing import Any

import fhirpathpy
import pytest
from evaluator_helpers import event, family, fixture, jurisdiction, member, structure
from fhirpathpy.models import models as fhir_models

from workers.evaluator.fhir import (
    client_to_patient,
    event_to_questionnaire_response,
    location_to_fhir,
    task_to_fhir,
)
from workers.evaluator.fhirpath import PathEngine, compile_expression
from workers.evaluator.fhirpath_compat import compat_rewrite

TODAY = date(2021, 3, 22)
INVALID = "questionnaire = 'Register_Structure' AND item.where(linkId='structureType').answer.value ='Residential Structure'"


def _qr(event_type: str, entity: str = "s-1", contained: list[dict] | None = None, **obs: str) -> dict:
    qr = event_to_questionnaire_response(event(event_type, entity, "oa", form_id="f-" + event_type,
                                               observations=obs, details={"taskIdentifier": "t-9",
                                                                         "plan_evaluation_entity_id": "s-1",
                                                                         "location_id": "loc-7"}))
    if contained is not None:
        qr["contained"] = contained
    return qr


def _task(code: str, status: str = "Ready", business: str = "Not Visited", authored: str = "2021-03-05") -> dict:
    return task_to_fhir({"identifier": "t-" + code, "planIdentifier": "p", "code": code, "status": status,
                         "businessStatus": business, "for": "s-1", "authoredOn": authored + "T11:22:04.458+03:00"})


ADULT = client_to_patient(member("m-a", "f", "s-1", "1980-01-01"))
CHILD = client_to_patient(member("m-c", "f", "s-1", "2019-01-01"))
TEEN = client_to_patient(member("m-t", "f", "s-1", "2010-01-01"))
JOHN = dict(ADULT, name=[{"family": "John", "given": ["A"]}])
FAMILY = client_to_patient(family("f", "s-1"))
HOUSE = location_to_fhir(structure("s-1", "oa"))
SITE = location_to_fhir(structure("s-2", "oa", "Larval Breeding Site"))
TRAP = location_to_fhir(structure("s-3", "oa", "Mosquito Collection Point"))
UNTYPED = location_to_fhir(structure("s-4", "oa", None))
AREA = location_to_fhir(jurisdiction("oa"))
NO_GEOMETRY = location_to_fhir({"type": "Feature", "id": "sp", "properties": {"parentId": "oa"}})
REG_HOUSE = _qr("Register_Structure", structureType="Residential Structure")
REG_SITE = _qr("Register_Structure", structureType="Larval Breeding Site")
REG_TRAP = _qr("Register_Structure", structureType="Mosquito Collection Point")
FAMILY_REG = _qr("Family_Registration", "f")
MEMBER_REG = _qr("Family_Member_Registration", "m-a")
MOSQUITO = event_to_questionnaire_response(fixture("MOSQUITTO_COLLECTION_EVENT.json"))
MDA_FULL = _qr("mda_dispense", business_status="Fully Received")
MDA_PART = _qr("mda_dispense", business_status="Partially Received")
BUNDLE = fixture("DeviceDefinition.json")

T, F, E = [True], [False], []

CASES: dict[str, list[tuple[dict, list[Any]]]] = {
    "questionnaire = 'Register_Structure'": [(REG_HOUSE, T), (FAMILY_REG, F)],
    "Location.type.where(id='locationType').text = 'Residential Structure'": [(HOUSE, T), (SITE, F), (UNTYPED, E)],
    "questionnaire = 'mosquito_collection'": [(MOSQUITO, T), (REG_HOUSE, F)],
    "$this.contained.where(Task.code.text.value ='Mosquito Collection').exists()": [
        (dict(MOSQUITO, contained=[_task("Mosquito Collection")]), T),
        (dict(MOSQUITO, contained=[_task("Larval Dipping")]), F)],
    "$this.item.where(linkId='task_business_status').answer[0].value.value": [(MOSQUITO, ["Complete"]), (REG_HOUSE, E)],
    "questionnaire = 'Family_Registration'": [(FAMILY_REG, T), (MEMBER_REG, F)],
    "$this.contained.where(Task.code.text.value = 'RACD Register Family' and Task.status.value = 'ready').exists()": [
        (dict(FAMILY_REG, contained=[_task("RACD Register Family")]), T),
        (dict(FAMILY_REG, contained=[_task("RACD Register Family", "Completed")]), F)],
    "$this.is(FHIR.Bundle)": [(BUNDLE, T), (HOUSE, F)],
    "questionnaire = 'flag_problem'": [(_qr("flag_problem"), T), (REG_HOUSE, F)],
    "$this.is(FHIR.QuestionnaireResponse)": [(REG_HOUSE, T), (HOUSE, F)],
    "$this.identifier.where(system='hasGeometry').value='false'": [(NO_GEOMETRY, T), (HOUSE, F)],
    "$this.is(FHIR.Location)": [(HOUSE, T), (REG_HOUSE, F)],
    "Task.code.text.value.startsWith('PNC Day') and Task.code.text.value.endsWith('Visit') and Task.status.value = "
    "'ready' and Task.authoredOn < today() - 2 'days'": [
        (_task("PNC Day 49 Visit"), T), (_task("PNC Day 49 Visit", authored="2021-03-21"), F),
        (_task("PNC Day 49 Visit", "Completed"), F), (_task("ANC Visit"), F)],
    "$this.type.where(id='locationType').text = 'Residential Structure'": [(HOUSE, T), (SITE, F)],
    "$this.contained.exists().not()": [(HOUSE, T), (dict(HOUSE, contained=[FAMILY]), F)],
    "$this.is(FHIR.QuestionnaireResponse) or $this.type.where(id='locationType').text = 'Residential Structure'": [
        (REG_SITE, T), (HOUSE, T), (SITE, F)],
    "$this.is(FHIR.Location) or (questionnaire = 'Register_Structure' and item.where(linkId='structureType')"
    ".answer.value ='Residential Structure')": [(HOUSE, T), (REG_HOUSE, T), (REG_SITE, F)],
    "$this.is(FHIR.QuestionnaireResponse) or (($this.type.where(id='locationType').exists().not() or $this.type."
    "where(id='locationType').text = 'Residential Structure') and $this.contained.exists().not())": [
        (FAMILY_REG, T), (HOUSE, T), (UNTYPED, T), (dict(HOUSE, contained=[FAMILY]), F), (SITE, F)],
    "$this.is(FHIR.Location) or (questionnaire = 'Register_Structure' and $this.item.where(linkId='structureType')"
    ".answer.value ='Residential Structure')": [(SITE, T), (REG_HOUSE, T), (REG_TRAP, F)],
    "questionnaire = 'Family_Registration' or questionnaire = 'Family_Member_Registration'": [
        (FAMILY_REG, T), (MEMBER_REG, T), (REG_HOUSE, F)],
    "($this.is(FHIR.Patient) and $this.birthDate &amp;amp;lt;= today() - 5 'years') or ($this.contained.where("
    "Patient.birthDate &amp;amp;lt;= today() - 5 'years').exists())": [
        (ADULT, T), (CHILD, F), (dict(MEMBER_REG, contained=[ADULT]), T), (dict(MEMBER_REG, contained=[CHILD]), F)],
    "$this.is(FHIR.QuestionnaireResponse) or (($this.type.where(id='locationType').exists().not() or $this.type."
    "where(id='locationType').text = 'Residential Structure') and $this.contained.exists())": [
        (FAMILY_REG, T), (dict(HOUSE, contained=[FAMILY]), T), (HOUSE, F), (dict(SITE, contained=[FAMILY]), F)],
    "$this.is(FHIR.QuestionnaireResponse) or $this.type.where(id='locationType').text = 'Larval Breeding Site'": [
        (SITE, T), (REG_HOUSE, T), (HOUSE, F)],
    "$this.is(FHIR.Location) or (questionnaire = 'Register_Structure' and $this.item.where(linkId='structureType')"
    ".answer.value ='Larval Breeding Site')": [(HOUSE, T), (REG_SITE, T), (REG_HOUSE, F)],
    "$this.is(FHIR.QuestionnaireResponse) or $this.type.where(id='locationType').text = 'Mosquito Collection Point'": [
        (TRAP, T), (SITE, F)],
    "$this.is(FHIR.Location) or (questionnaire = 'Register_Structure' and $this.item.where(linkId='structureType')"
    ".answer.value ='Mosquito Collection Point')": [(REG_TRAP, T), (REG_SITE, F)],
    "Location.physicalType.text = 'jdn'": [(dict(AREA, physicalType={"text": "jdn"}), T), (HOUSE, E)],
    "questionnaire = 'Case_Details'": [(_qr("Case_Details"), T), (REG_HOUSE, F)],
    "$this.is(FHIR.Location)  or (questionnaire = 'Register_Structure' and $this.item.where(linkId='structureType')"
    ".answer.value ='Residential Structure')": [(HOUSE, T), (REG_HOUSE, T), (FAMILY_REG, F)],
    "Location.physicalType.coding.exists(code='jdn')": [(AREA, T), (HOUSE, F)],
    "($this.is(FHIR.Patient) and $this.birthDate <= today() - 5 'years') or ($this.contained.where(Patient.birthDate"
    " <= today() - 5 'years').exists())": [(ADULT, T), (CHILD, F), (dict(FAMILY_REG, contained=[CHILD, ADULT]), T)],
    "questionnaire = 'Family_Member_Registration'": [(MEMBER_REG, T), (FAMILY_REG, F)],
    "$this.item.where(linkId='business_status').answer.value = 'Fully Received'": [(MDA_FULL, T), (MDA_PART, F)],
    "questionnaire = 'mda_dispense'": [(MDA_FULL, T), (REG_HOUSE, F)],
    "($this.is(FHIR.Patient) and $this.birthDate <= today() - 5 'years' and $this.birthDate > today() - 15 'years')"
    " or ($this.contained.where(Patient.birthDate <= today() - 5 'years' and $this.birthDate > today() - 15 'years')"
    ".exists())": [(TEEN, T), (ADULT, F), (CHILD, F), (dict(MEMBER_REG, contained=[TEEN]), T),
                   (dict(MEMBER_REG, contained=[ADULT]), F)],
    "questionnaire = 'Register_Structure' or questionnaire = 'Archive_Family'": [
        (_qr("Archive_Family"), T), (FAMILY_REG, F)],
    "$this.is(FHIR.QuestionnaireResponse) or $this.type.where(id='locationType').exists().not() or $this.type.where("
    "id='locationType').text = 'Residential Structure'": [(UNTYPED, T), (HOUSE, T), (SITE, F)],
    "$this.contained.identifier.where(id='residence' and type.coding.code ='attribute').value": [
        (dict(MEMBER_REG, contained=[ADULT]), ["s-1"]), (MEMBER_REG, E)],
    "QuestionnaireResponse.item.where(linkId='locationId').answer": [(REG_HOUSE, [{"valueString": "oa"}]), (HOUSE, E)],
    "$this.item.where(linkId='taskIdentifier' and definition='details').answer.value.value": [
        (REG_HOUSE, ["t-9"]), (HOUSE, E)],
    "$this.item.where(linkId='plan_evaluation_entity_id' and definition='details').answer.value.value": [
        (REG_HOUSE, ["s-1"]), (MOSQUITO, E)],
    "$this.item.where(definition='details' and linkId='location_id').answer": [
        (REG_HOUSE, [{"valueString": "loc-7"}]), (FAMILY, E)],
    "$this.contained.where(Task.code.text='MDA_Round_1' and Task.businessStatus.text='Completed').exists()": [
        (dict(MDA_FULL, contained=[_task("MDA_Round_1", business="Completed")]), T),
        (dict(MDA_FULL, contained=[_task("MDA_Round_1")]), F)],
    "QuestionnaireResponse.item.where(linkId='structureType').answer.value ='Residential Structure'": [
        (REG_HOUSE, T), (REG_SITE, F)],
    "Task.code.text='MDA_Round_1' and Task.businessStatus.text='Completed'": [
        (_task("MDA_Round_1", business="Completed"), T), (_task("MDA_Round_1"), F)],
    "Patient.birthDate <= today() - 5 'years'": [(ADULT, T), (CHILD, F), (HOUSE, E)],
    "$this.identifier.where(id='hasGeometry').value='true'": [
        (dict(HOUSE, identifier=[{"id": "hasGeometry", "value": "true"}]), T),
        (dict(HOUSE, identifier=[{"id": "hasGeometry", "value": "false"}]), F)],
    "$this.contained.where(Patient.name.family = 'John').exists()": [
        (dict(FAMILY_REG, contained=[JOHN]), T), (dict(FAMILY_REG, contained=[ADULT]), F)],
    "$this.is(FHIR.Patient).not()": [(HOUSE, T), (ADULT, F)],
    "$this.entry.resource.where(identifier.where(value='d3fdac0e-061e-b068-2bed-5a95e803636f')).property.where("
    "type.where(text='RDTScan Configuration')).valueCode": [(HOUSE, E)],
    "today() + 7 'days'": [(HOUSE, ["2021-03-29"])],
    "today() + 2 'months'": [(HOUSE, ["2021-05-22"])],
    "'Completed in another plan'": [(HOUSE, ["Completed in another plan"])],
    "'Cancelled'": [(HOUSE, ["Cancelled"])],
    "'Completed'": [(HOUSE, ["Completed"])],
}


def _catalogue() -> list[str]:
    return [e["expression"] for e in fixture("fhirpath_expressions.json") if e["expression"] != INVALID]


def test_every_catalogued_expression_has_cases() -> None:
    assert sorted(_catalogue()) == sorted(CASES)
    booleans = [e for e, cases in CASES.items() if any(r in (T, F) for _, r in cases)]
    for expression in booleans:
        results = {tuple(r) for _, r in CASES[expression]}
        assert (True,) in results and ((False,) in results or () in results), expression


CASE_LIST = [(e, i, r, x) for e, cases in CASES.items() for i, (r, x) in enumerate(cases)]


@pytest.mark.parametrize(("expression", "index", "resource", "expected"), CASE_LIST,
                         ids=[f"{e[:50]}#{i}" for e, i, _, _ in CASE_LIST])
def test_expression_gives_opensrps_answer(expression: str, index: int, resource: dict, expected: list) -> None:
    fast, slow = PathEngine("fast"), PathEngine("fhirpathpy")
    assert slow.evaluate(expression, resource, TODAY) == expected
    assert fast.evaluate(expression, resource, TODAY) == expected
    assert fast.fallbacks == 0


def test_rdt_configuration_is_found_in_the_device_bundle() -> None:
    expression = next(e for e in CASES if e.startswith("$this.entry.resource"))
    fast = PathEngine("fast").evaluate(expression, BUNDLE, TODAY)
    assert PathEngine("fhirpathpy").evaluate(expression, BUNDLE, TODAY) == fast
    assert len(fast) == 9 and fast[0]["coding"] == [{"code": "REF_IMG"}]
    assert PathEngine("fast").evaluate(expression.replace("d3fdac0e", "00000000"), BUNDLE, TODAY) == []


def test_plain_fhirpathpy_has_the_gaps_the_layer_closes() -> None:
    r4 = fhir_models["r4"]
    with pytest.raises(KeyError):
        fhirpathpy.evaluate(HOUSE, "$this.is(FHIR.Location)", {}, r4)
    assert fhirpathpy.evaluate(HOUSE, "is(FHIR.Location)", {}, r4) == [False]
    assert fhirpathpy.evaluate(REG_HOUSE, "questionnaire = 'Register_Structure'", {}, r4) == [False]
    assert fhirpathpy.evaluate(_task("X"), "Task.code.text.value", {}, r4) == []
    with pytest.raises(ValueError):
        fhirpathpy.evaluate(ADULT, "birthDate <= today() - 5 'years'", {}, r4)
    contained = dict(MEMBER_REG, contained=[ADULT])
    assert fhirpathpy.evaluate(contained, "contained.where(Patient.birthDate <= today() - 5 years).exists()",
                               {}, r4) == [False]
    assert fhirpathpy.evaluate({}, "1 = 1 AND 1 = 2", {}, r4) == [True]  # the trailing text is dropped


def test_the_compatibility_rewrite() -> None:
    assert compat_rewrite("$this.is(FHIR.Location)") == "$this.fsIs('Location')"
    assert compat_rewrite("contained.where(Patient.birthDate <= today() - 5 'years')") == \
        "contained.where(fsType('Patient').birthDate <= today() - 5 years)"
    assert compat_rewrite("answer[0].value.value = 'x'") == "answer[0].fsValue().fsValue() = 'x'"
    assert compat_rewrite("name = 'value.value'") == "name = 'value.value'"


def test_expressions_are_compiled_once() -> None:
    first = compile_expression("questionnaire = 'Family_Registration'")
    assert compile_expression("questionnaire = 'Family_Registration'") is first
    assert first.fast is not None


def test_today_is_an_argument() -> None:
    engine = PathEngine()
    assert engine.evaluate("today()", HOUSE, date(2000, 2, 29)) == ["2000-02-29"]
    assert engine.boolean("Patient.birthDate <= today() - 5 'years'", CHILD, date(2024, 1, 1)) is True
    assert engine.boolean("Patient.birthDate <= today() - 5 'years'", CHILD, date(2023, 12, 31)) is False


def test_unsupported_expressions_fall_back_to_fhirpathpy() -> None:
    engine = PathEngine()
    assert compile_expression("name.given.select($this.length())").fast is None
    assert engine.evaluate("name.given.select($this.length())", ADULT, TODAY) == [5]
    assert engine.fallbacks == 1
