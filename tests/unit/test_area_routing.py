"""Which operational areas a document goes to, and what the sync worker refuses: pure, no server."""

from __future__ import annotations

from typing import Any

from workers.areas.assignments import Assignments, security_for
from workers.areas.routing import (
    Place,
    Resident,
    areas_of,
    chain,
    device_write_refusal,
    home_area,
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
    assert device_write_refusal(_client("fam2", "s2"), "north", INDEX) == (
        "Client fam2 belongs to operational area south, not north")
    assert device_write_refusal(_client("fam3", "s1"), "north", INDEX) is None
    assert device_write_refusal(_client("fam4", "s-unknown"), "north", INDEX) is None  # nothing to prove
    assert device_write_refusal({"_id": "x", "_deleted": True}, "north", INDEX) is None


def test_security_admits_assigned_users_and_the_teams_of_covering_plans() -> None:
    who = Assignments(users={"ana": ["north"], "ben": ["south", "north"], "cy": []}, teams={"p": ["team-a"]})
    plans = [{"_id": "p", "type": "Plan", "jurisdiction": [{"code": "district"}]},
             {"_id": "q", "type": "Plan", "jurisdiction": [{"code": "elsewhere"}]}]
    security = security_for("north", chain("north", INDEX), who, plans)
    assert security["members"] == {"names": ["ana", "ben"], "roles": ["team-a"]}
    nobody = security_for("north", chain("north", INDEX), Assignments(), plans)
    assert nobody["members"]["roles"] == ["_admin"] and nobody["members"]["names"] == []
