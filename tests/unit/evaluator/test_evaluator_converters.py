"""The converters reproduce converter_*_fhir.json from converter_*_opensrp.json."""

from __future__ import annotations

from datetime import timedelta, timezone

from evaluator_helpers import fixture

from workers.evaluator.fhir import (
    client_to_patient,
    event_to_questionnaire_response,
    location_to_fhir,
    task_to_fhir,
    to_fhir,
)

EAT = timezone(timedelta(hours=3))  # the time zone the fixture was converted in


def test_client_to_patient() -> None:
    expected = fixture("converter_client_fhir.json")
    assert client_to_patient(fixture("converter_client_opensrp.json")) == expected


def test_event_to_questionnaire_response() -> None:
    expected = fixture("converter_event_fhir.json")
    assert event_to_questionnaire_response(fixture("converter_event_opensrp.json")) == expected


def test_location_to_fhir_with_the_custom_properties_the_fhir_side_shows() -> None:
    """The FHIR fixture carries two identifiers (OpenMRS_Id, externalId) that come from the location's custom
    properties, which the stored OpenSRP row lacks: given them, the conversion is exact."""
    row = fixture("converter_location_opensrp.json")
    row["json"]["properties"]["OpenMRS_Id"] = "1b15db0b-9229-4562-81ca-86a11b777169"
    row["json"]["properties"]["externalId"] = "1206030005"
    assert location_to_fhir(row, EAT) == fixture("converter_location_fhir.json")


def test_location_to_fhir_of_the_row_as_stored() -> None:
    expected = fixture("converter_location_fhir.json")
    expected["identifier"] = [i for i in expected["identifier"] if i["system"] == "hasGeometry"]
    assert location_to_fhir(fixture("converter_location_opensrp.json"), EAT) == expected


def test_structure_has_its_type_and_geometry() -> None:
    structure = {"type": "Feature", "id": "s1", "geometry": {"type": "Point", "coordinates": [1, 2]},
                 "properties": {"parentId": "oa", "type": "Residential Structure", "status": "Active"}}
    fhir = location_to_fhir(structure)
    assert fhir["type"] == [{"id": "locationType", "text": "Residential Structure"}]
    assert fhir["physicalType"] == {"coding": [{"code": "bu"}]}
    assert {"system": "hasGeometry", "value": "true"} in fhir["identifier"]


def test_questionnaire_response_items_carry_team_details_and_observations() -> None:
    qr = event_to_questionnaire_response(fixture("MOSQUITTO_COLLECTION_EVENT.json"))
    links = [i["linkId"] for i in qr["item"]]
    assert links[:3] == ["locationId", "teamId", "team"]
    business = [i for i in qr["item"] if i["linkId"] == "task_business_status"]
    assert business == [{"linkId": "task_business_status", "answer": [{"valueString": "Complete"}]}]
    start = [i for i in qr["item"] if i["linkId"] == "163137AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]
    assert start[0]["answer"] == [{"valueString": "2020-11-04 14:59:15"}]
    assert next(i for i in qr["item"] if i["linkId"] == "taskIdentifier")["definition"] == "details"


def test_task_to_fhir() -> None:
    task = fixture("PNC_DAY_49_VISIT_TASK_JSON.json")
    fhir = task_to_fhir(task)
    assert fhir["resourceType"] == "Task" and fhir["id"] == task["identifier"]
    assert fhir["status"] == "ready"
    assert fhir["code"] == {"text": "PNC Day 49 Visit"}
    assert fhir["businessStatus"] == {"text": "Not Visited"}
    assert fhir["for"] == {"reference": task["for"]} and fhir["focus"] == {"reference": task["focus"]}
    assert fhir["basedOn"] == [{"reference": task["planIdentifier"]}]
    assert fhir["authoredOn"] == task["authoredOn"]
    assert to_fhir(task) == fhir
    assert task_to_fhir(dict(task, status="In Progress"))["status"] == "in-progress"
