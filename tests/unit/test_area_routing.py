"""Which operational areas a document goes to, and what the sync worker refuses: pure, no server."""

from __future__ import annotations

from typing import Any

from workers.areas.assignments import Assignments, security_for
from workers.areas.replicate import first_revision
from workers.areas.routing import (
    OnServer,
    Place,
    Resident,
    areas_of,
    chain,
    device_write_refusal,
    home_area,
    parent_rev,
    place_of,
    resident_of,
)

Doc = dict[str, Any]


class Index:
    def __init__(self, docs: list[Doc]) -> None:
        self.places = {p.id: p for p in (place_of(d) for d in docs) if p}
        self.residents = {r.id: r for r in (resident_of(d) for d in docs) if r}

    def place(self, location_id: str) -> Place | None:
        return self.places.get(location_id)

    def resident(self, client_id: str) -> Resident | None:
        return self.residents.get(client_id)


def _j(jid: str, parent: str | None = None) -> Doc:
    props = {"parentId": parent} if parent else {}
    return {"_id": jid, "type": "Feature", "jurisdiction": True, "properties": props}


def _s(sid: str, parent: str) -> Doc:
    return {"_id": sid, "type": "Feature", "properties": {"parentId": parent}}


def _client(cid: str, home: str | None = None, family: str | None = None) -> Doc:
    return {"_id": cid, "type": "Client", "baseEntityId": cid, "attributes": {"residence": home} if home else {},
            "relationships": {"family": [family]} if family else {}}


WORLD = [_j("country"), _j("district", "country"), _j("north", "district"), _j("south", "district"),
         _s("s1", "north"), _s("s2", "south"), _client("fam1", "s1"), _client("kid", family="fam1"),
         _client("adult", "s2", "fam1")]
INDEX = Index(WORLD)
KNOWN = {"north": chain("north", INDEX), "south": chain("south", INDEX)}


def test_chain_goes_up_to_the_root_and_stops_on_cycles() -> None:
    assert chain("north", INDEX) == ["north", "district", "country"]
    looped = Index([_j("a", "b"), _j("b", "a")])
    assert chain("a", looped) == ["a", "b"]


def test_entities_events_and_tasks_have_one_home() -> None:
    assert home_area(_s("s9", "north"), INDEX) == "north"
    assert home_area(_client("fam1", "s1"), INDEX) == "north"
    assert home_area(_client("kid", family="fam1"), INDEX) == "north"  # through the family
    assert home_area(_client("adult", "s2", "fam1"), INDEX) == "south"  # their own residence first
    event = {"_id": "e", "type": "Event", "locationId": "south", "baseEntityId": "s1"}
    assert home_area(event, INDEX) == "south"  # OpenSRP's jurisdiction of the event
    assert home_area({**event, "locationId": "s1"}, INDEX) == "north"  # a structure id there: its area
    assert home_area({**event, "locationId": None}, INDEX) == "north"  # else the entity's
    assert home_area({"_id": "t", "type": "Task", "groupIdentifier": "south", "for": "s1"}, INDEX) == "south"
    assert home_area({"_id": "t", "type": "Task", "for": "kid"}, INDEX) == "north"
    assert home_area({"_id": "t", "type": "Task", "for": "nobody"}, INDEX) is None


def test_shared_documents_go_to_every_area_they_concern() -> None:
    assert areas_of(_j("district", "country"), INDEX, KNOWN) == {"north", "south"}
    assert areas_of(_j("north", "district"), INDEX, KNOWN) == {"north"}
    plan = {"_id": "p", "type": "Plan", "jurisdiction": [{"code": "north"}]}
    assert areas_of(plan, INDEX, KNOWN) == {"north"}
    assert areas_of({**plan, "jurisdiction": [{"code": "country"}]}, INDEX, KNOWN) == {"north", "south"}
    assert areas_of({"_id": "settings", "type": "settings"}, INDEX, KNOWN) == {"north", "south"}
    assert areas_of({"_id": "assignments", "type": "Assignments", "users": {}}, INDEX, KNOWN) == set()
    # a jurisdiction's own task goes to the known areas under it, and never names a new one
    bcc = {"_id": "t", "type": "Task", "groupIdentifier": "district", "for": "district"}
    assert areas_of(bcc, INDEX, KNOWN) == {"north", "south"}
    assert areas_of({**bcc, "groupIdentifier": "north", "for": "north"}, INDEX, KNOWN) == {"north"}
    assert areas_of({**bcc, "groupIdentifier": "north", "for": "north"}, INDEX, {}) == set()
    # an entity of an area without a database yet still names it (the worker creates the database)
    assert areas_of(_s("s-east", "east"), INDEX, KNOWN) == {"east"}


def test_the_worker_refuses_a_family_of_another_area() -> None:
    assert device_write_refusal(_client("fam2", "s2"), "north", INDEX, KNOWN) == (
        "Client fam2 belongs to operational area south, not north")
    assert device_write_refusal(_client("fam3", "s1"), "north", INDEX, KNOWN) is None
    # a new client the worker cannot place is not waved through
    assert "cannot tell" in str(device_write_refusal(_client("fam4", "s-unknown"), "north", INDEX, KNOWN))
    assert "devices do not delete" in str(device_write_refusal({"_id": "x", "_deleted": True}, "north", INDEX, KNOWN))


def _task(tid: str, area: str, entity: str, **fields: Any) -> Doc:
    return {"_id": tid, "type": "Task", "identifier": tid, "planIdentifier": "p", "groupIdentifier": area,
            "for": entity, "code": "IRS", "status": "Ready", "businessStatus": "Not Visited",
            "lastModified": "2026-11-23T08:00:00.000Z", **fields}


def test_spoofed_ids_are_refused_whatever_type_the_device_claims() -> None:
    """The attacks of issue 10, item 1, against the pure rule: the id decides, not what the content says."""
    assignments_doc = {"_id": "assignments", "users": {"ana": ["north"]}}
    spoof = {**_client("assignments", "s1"), "users": {"ana": ["north", "south"]}, "dateEdited": "2099-01-01"}
    assert "reserved id" in str(device_write_refusal(spoof, "north", INDEX, KNOWN, OnServer(assignments_doc)))
    assert "reserved id" in str(device_write_refusal({**spoof, "_id": "settings"}, "north", INDEX, KNOWN))
    assert "reserved id" in str(device_write_refusal({**spoof, "_id": "_design/x"}, "north", INDEX, KNOWN))
    # another area's member, rewritten to live here
    theirs = _client("fam2", "s2")
    hijack = {**_client("fam2", "s1"), "firstName": "HIJACKED"}
    assert "belongs to south on the server" in str(
        device_write_refusal(hijack, "north", INDEX, KNOWN, OnServer(theirs)))
    # another area's structure moved into this one
    moved = _s("s2", "north")
    assert "belongs to south on the server" in str(
        device_write_refusal(moved, "north", INDEX, KNOWN, OnServer(_s("s2", "south"))))
    # a plan, a task, a jurisdiction turned into a client of this area
    plan = {"_id": "p", "type": "Plan", "jurisdiction": [{"code": "district"}]}
    for existing in (plan, _task("t1", "north", "s1"), _j("north", "district")):
        refusal = device_write_refusal({**_client(str(existing["_id"]), "s1")}, "north", INDEX, KNOWN,
                                       OnServer(existing))
        assert refusal is not None and "type" in refusal, existing
    # an id deleted on the server is not brought back
    assert "deleted on the server" in str(
        device_write_refusal(_client("fam9", "s1"), "north", INDEX, KNOWN, OnServer(None, deleted=True)))
    # devices never create tasks or plans, even with new ids
    assert "creates structures, clients and events only" in str(
        device_write_refusal(_task("t-new", "north", "s1"), "north", INDEX, KNOWN))


def test_a_device_edits_its_own_areas_documents() -> None:
    mine = _client("fam1", "s1")
    assert device_write_refusal({**mine, "firstName": "Edited"}, "north", INDEX, KNOWN, OnServer(mine)) is None
    task = _task("t1", "north", "s1")
    done = {**task, "status": "Completed", "businessStatus": "Sprayed", "lastModified": "2026-11-23T09:00:00Z",
            "note": [{"authorString": "ana", "time": "2026-11-23T09:00:00Z", "text": "ok"}]}
    assert device_write_refusal(done, "north", INDEX, KNOWN, OnServer(task)) is None
    # the task's plan fields are the plan's; the status is one a task may hold; a note is a list of annotations
    assert "code: a device may change" in str(
        device_write_refusal({**done, "code": "Other"}, "north", INDEX, KNOWN, OnServer(task)))
    assert "status: not a task status" in str(
        device_write_refusal({**done, "status": "Bogus"}, "north", INDEX, KNOWN, OnServer(task)))
    assert "note: a list" in str(
        device_write_refusal({**done, "note": "free text"}, "north", INDEX, KNOWN, OnServer(task)))
    # compared with the revision the device started from, not with a later server edit
    later = {**task, "executionPeriod": {"start": "2026-11-24"}}
    assert device_write_refusal(done, "north", INDEX, KNOWN, OnServer(later, parent=task)) is None
    # another area's task, even unchanged in its fields, is not this area's to edit
    south_task = _task("t2", "south", "s2")
    assert "belongs to south" in str(
        device_write_refusal({**south_task, "status": "Completed"}, "north", INDEX, KNOWN, OnServer(south_task)))


def test_parent_rev_reads_the_revision_history() -> None:
    assert parent_rev({"_revisions": {"start": 3, "ids": ["c", "b", "a"]}}) == "2-b"
    assert parent_rev({"_revisions": {"start": 1, "ids": ["a"]}}) is None
    assert parent_rev({}) is None


def test_security_admits_assigned_users_and_the_teams_of_covering_plans() -> None:
    who = Assignments(users={"ana": ["north"], "ben": ["south", "north"], "cy": []}, teams={"p": ["team-a"]})
    plans = [{"_id": "p", "type": "Plan", "jurisdiction": [{"code": "district"}]},
             {"_id": "q", "type": "Plan", "jurisdiction": [{"code": "elsewhere"}]}]
    security = security_for("north", chain("north", INDEX), who, plans)
    assert security["members"] == {"names": ["ana", "ben"], "roles": ["team-a"]}
    nobody = security_for("north", chain("north", INDEX), Assignments(), plans)
    assert nobody["members"]["roles"] == ["_admin"] and nobody["members"]["names"] == []


def test_a_first_revision_in_hand_is_copied_with_its_own_history_and_nothing_else_is() -> None:
    new = {"_id": "t1", "_rev": "1-abc", "type": "Task", "status": "Ready", "_conflicts": ["1-def"]}
    assert first_revision(new) == {"_id": "t1", "_rev": "1-abc", "type": "Task", "status": "Ready",
                                   "_revisions": {"start": 1, "ids": ["abc"]}}
    # a later revision needs its ancestors, a deletion and attachment stubs are read from the source
    assert first_revision({**new, "_rev": "2-abc"}) is None
    assert first_revision({**new, "_deleted": True}) is None
    assert first_revision({**new, "_attachments": {"a": {"stub": True}}}) is None
    assert first_revision({"_id": "t1", "_rev": "1-"}) is None
    assert first_revision({"_rev": "1-abc"}) is None
