"""Builders for the evaluator's tests: fixtures from ../shared, and small OpenSRP documents."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

Doc = dict[str, Any]

FIXTURES = Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "opensrp"
TESTDATA = FIXTURES / "plan-evaluator-testdata"

NOW = datetime(2021, 11, 10, 9, 30, tzinfo=UTC)


@cache
def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def fixture(name: str) -> Any:
    """A fixture file (a fresh copy), from the fixtures folder or plan-evaluator-testdata."""
    path = FIXTURES / name
    if not path.exists():
        path = TESTDATA / name
    return copy.deepcopy(_read(path))


def all_fixture_files() -> list[Path]:
    return sorted([*FIXTURES.glob("*.json"), *TESTDATA.glob("*.json")])


def jurisdiction(jid: str, parent: str | None = None, name: str | None = None) -> Doc:
    props: Doc = {"name": name or jid, "status": "Active", "geographicLevel": 3, "version": 0}
    if parent:
        props["parentId"] = parent
    return {"_id": jid, "type": "Feature", "id": jid, "jurisdiction": True, "properties": props}


def structure(sid: str, parent: str, kind: str | None = "Residential Structure") -> Doc:
    props: Doc = {"parentId": parent, "status": "Active", "geographicLevel": 5, "version": 0}
    if kind is not None:
        props["type"] = kind
    return {
        "_id": sid, "type": "Feature", "id": sid, "properties": props,
        "geometry": {"type": "Point", "coordinates": [100.5, 13.7]},
    }


def family(fid: str, home: str, name: str = "Somchai") -> Doc:
    return {
        "_id": fid, "type": "Client", "baseEntityId": fid, "firstName": name, "lastName": "Family",
        "birthdate": "1970-01-01T00:00:00.000+07:00", "gender": "Male",
        "attributes": {"residence": home}, "relationships": {},
        "identifiers": {"opensrp_id": f"{fid}_family"},
    }


def member(cid: str, fid: str, home: str, birthdate: str, first: str = "Anong") -> Doc:
    return {
        "_id": cid, "type": "Client", "baseEntityId": cid, "firstName": first, "lastName": "Saelim",
        "birthdate": f"{birthdate}T00:00:00.000+07:00", "gender": "Female",
        "attributes": {"residence": home}, "relationships": {"family": [fid]},
        "identifiers": {"opensrp_id": cid},
    }


def obs(code: str, value: str) -> Doc:
    return {
        "fieldType": "formsubmissionField", "fieldDataType": "text", "fieldCode": code, "parentCode": "",
        "values": [value], "set": [], "formSubmissionField": code, "humanReadableValues": [],
        "saveObsAsArray": False,
    }


def event(
    event_type: str,
    entity: str,
    location: str,
    *,
    form_id: str,
    plan: str | None = None,
    task: str | None = None,
    observations: dict[str, str] | None = None,
    details: Doc | None = None,
) -> Doc:
    all_details: Doc = {}
    if plan:
        all_details["planIdentifier"] = plan
    if task:
        all_details["taskIdentifier"] = task
        all_details["taskBusinessStatus"] = "Not Visited"
        all_details["taskStatus"] = "READY"
    all_details.update(details or {})
    return {
        "_id": form_id, "type": "Event", "eventType": event_type, "baseEntityId": entity,
        "locationId": location, "formSubmissionId": form_id, "providerId": "worker1",
        "entityType": event_type, "duration": 0, "eventDate": "2021-11-10T00:00:00.000+07:00",
        "obs": [obs(k, v) for k, v in (observations or {}).items()],
        "details": all_details, "identifiers": {}, "version": 1636500000000,
    }
