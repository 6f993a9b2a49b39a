"""The world the area and attack tests share: a district with two operational areas, an active IRS plan, three
users; and what a device test needs (assign a user, a user's URL, run the workers until idle)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from demo.devices import Device
from workers import provision
from workers.areas import assignments
from workers.areas.index import MainIndex
from workers.couch import Couch
from workers.evaluator.templates import new_plan_from_template
from workers.registry import build
from workers.runner import Runner
from workers.settings import Settings

DISTRICT, NORTH, SOUTH = "district-x", "oa-north", "oa-south"
Doc = dict[str, Any]


def jurisdiction(jid: str, parent: str | None, level: int) -> Doc:
    props: Doc = {"name": jid, "status": "Active", "geographicLevel": level, "version": 0}
    if parent:
        props["parentId"] = parent
    return {"_id": jid, "type": "Feature", "id": jid, "jurisdiction": True, "properties": props}


def structure(sid: str, area: str) -> Doc:
    return {"_id": sid, "type": "Feature", "id": sid,
            "properties": {"parentId": area, "status": "Active", "geographicLevel": 5, "version": 0,
                           "type": "Residential Structure"},
            "geometry": {"type": "Point", "coordinates": [100.5, 13.7]}}


def family(fid: str, home: str) -> Doc:
    return {"_id": fid, "type": "Client", "baseEntityId": fid, "firstName": "Somchai", "lastName": "Family",
            "birthdate": "1970-01-01T00:00:00.000+07:00", "gender": "Male", "attributes": {"residence": home},
            "relationships": {}, "identifiers": {"opensrp_id": f"{fid}_family"}}


def register_structure(form_id: str, sid: str, area: str, plan: str) -> Doc:
    obs = {"fieldType": "formsubmissionField", "fieldDataType": "text", "fieldCode": "structureType",
           "parentCode": "", "values": ["Residential Structure"], "set": [],
           "formSubmissionField": "structureType", "humanReadableValues": [], "saveObsAsArray": False}
    return {"_id": form_id, "type": "Event", "eventType": "Register_Structure", "baseEntityId": sid,
            "locationId": area, "formSubmissionId": form_id, "providerId": "ana", "entityType": "Structure",
            "duration": 0, "eventDate": "2026-11-23T08:00:00.000Z", "obs": [obs],
            "details": {"planIdentifier": plan}, "identifiers": {}, "version": 1795400000000}


def run_workers(couch: Couch, settings: Settings) -> None:
    built = build(["sync", "plans", "conflicts"], couch, settings)
    Runner(couch, settings, built.handlers, chores=built.chores, discover_every=0).run(until_idle=True)


@pytest.fixture()
def world(couch: Couch, initialised: Settings) -> tuple[Settings, Doc]:
    """Two operational areas of one district, two structures north and one south, an active IRS plan."""
    s = initialised
    docs = [jurisdiction(DISTRICT, None, 2), jurisdiction(NORTH, DISTRICT, 3), jurisdiction(SOUTH, DISTRICT, 3),
            structure("s-n1", NORTH), structure("s-n2", NORTH), structure("s-s1", SOUTH),
            family("f-n1", "s-n1"), family("f-s1", "s-s1")]
    couch.save_many(s.dbs.main, docs)
    plan = new_plan_from_template("Dynamic-IRS", DISTRICT, "IRS areas", date(2026, 11, 1), date(2026, 12, 31),
                                  datetime(2026, 11, 1, tzinfo=UTC))
    plan["status"] = "active"
    couch.put(s.dbs.main, plan)
    for user in ("ana", "ben", "cara"):
        provision.add_user(couch, s, user, f"{user}-pw", ["spray_operator"])
    run_workers(couch, s)
    return s, plan


def assign(couch: Couch, s: Settings, user: str, *areas: str) -> None:
    assignments.update(couch, s, lambda a: a.users.setdefault(user, []).extend(areas))
    assignments.apply_security(couch, s, MainIndex(couch, s.dbs.main), list(areas))


def user_url(s: Settings, user: str, db: str) -> str:
    return f"{s.url_for(user, f'{user}-pw')}/{db}"


def doc_ids(device: Device, db: str) -> set[str]:
    return {str(d["_id"]) for d in device.docs(db)}


