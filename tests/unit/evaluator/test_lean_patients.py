"""Clients converted without the Patient elements no expression of a plan names (``Subjects(without=...)``):
the same decisions as the whole conversion, on the fast path and wherever fhirpathpy takes over."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from evaluator_helpers import family, member, structure

from workers.evaluator.engine import activate
from workers.evaluator.fhir import OMISSIBLE, client_to_patient
from workers.evaluator.fhirpath import PathEngine
from workers.evaluator.lookup import InMemoryLookup
from workers.evaluator.outcome import Outcome, Overlay
from workers.evaluator.subjects import Subjects, omissible

TODAY = date(2021, 3, 22)


def _subjects(docs: list[dict[str, Any]], without: frozenset[str] = OMISSIBLE) -> Subjects:
    lookup = InMemoryLookup(docs)
    return Subjects(lookup, Overlay(lookup, Outcome()), without=without)


def _person() -> dict[str, Any]:
    return member("c-1", "f-1", "s-1", "1990-04-02", first="Anong")


def test_an_element_is_left_out_only_when_no_expression_names_it() -> None:
    assert omissible(["$this.birthDate <= today() - 5 'years'"]) == OMISSIBLE
    assert omissible(["Patient.name.given.first() = 'Anong'"]) == {"identifier"}
    assert omissible(["$this.identifier.where(system = 'opensrp_id').exists()", "$this.NAME.exists()"]) == set()
    # a lean conversion lacks exactly those; the rest is the whole conversion's
    whole, lean = client_to_patient(_person()), client_to_patient(_person(), without=OMISSIBLE)
    assert "identifier" in whole and "name" in whole
    assert lean == {k: v for k, v in whole.items() if k not in OMISSIBLE}


def test_fhirpathpy_is_given_the_whole_resource() -> None:
    """``descendants()`` is not on the fast path: fhirpathpy counts every element, the left-out ones too."""
    subjects = _subjects([_person()])
    lean = subjects.fhir(_person())
    assert "name" not in lean
    expression = "$this.descendants().count() > 8"
    whole_answer = PathEngine().boolean(expression, client_to_patient(_person()), TODAY)
    assert whole_answer is True
    paths = PathEngine()
    assert paths.boolean(expression, lean, TODAY, subjects.complete) is whole_answer
    assert paths.fallbacks == 1
    # without the whole resource again, fhirpathpy would count fewer elements and decide otherwise
    assert PathEngine().boolean(expression, lean, TODAY) is not whole_answer


def test_contained_clients_are_completed_too() -> None:
    subjects = _subjects([_person()])
    target = {"resourceType": "Location", "id": "s-1", "contained": [subjects.fhir(_person())]}
    complete = subjects.complete(target)
    assert complete["contained"][0] == client_to_patient(_person())
    assert target["contained"][0].get("name") is None  # the target itself is left as it was


def test_resources_compared_whole_compare_as_whole_conversions_do() -> None:
    """Two members with the same birth date and different names: unequal lean as whole (their ids differ);
    one member with itself: equal."""
    a, b = member("c-1", "f-1", "s-1", "1990-04-02", first="Anong"), member("c-2", "f-1", "s-1", "1990-04-02",
                                                                            first="Somsak")
    subjects = _subjects([a, b])
    target = {"resourceType": "Location", "id": "s-1", "contained": [subjects.fhir(a), subjects.fhir(b)]}
    whole = {**target, "contained": [client_to_patient(a), client_to_patient(b)]}
    for expression, expected in (("$this.contained.first() = $this.contained.last()", False),
                                 ("$this.contained.first() = $this.contained.first()", True)):
        assert PathEngine().boolean(expression, target, TODAY, subjects.complete) is expected
        assert PathEngine("fhirpathpy").boolean(expression, whole, TODAY) is expected


def test_an_activation_decides_the_same_with_lean_clients() -> None:
    """Dynamic-FI's conditions name neither element: the activation converts its clients lean, and makes the
    tasks fhirpathpy makes on whole resources."""
    from workers.evaluator.templates import new_plan_from_template

    plan = {**new_plan_from_template("Dynamic-FI", "oa", "t", date(2021, 3, 1), date(2021, 3, 31),
                                     datetime(2021, 3, 1, tzinfo=UTC)), "status": "active"}
    docs = [{"type": "Feature", "id": "oa", "jurisdiction": True, "properties": {"name": "oa", "status": "Active",
                                                                                 "geographicLevel": 3}},
            structure("s-1", "oa"), family("f-1", "s-1"), _person(),
            member("c-2", "f-1", "s-1", "2020-01-01", first="Kid")]
    now = datetime(2021, 3, 22, 8, tzinfo=UTC)
    fast = activate(plan, InMemoryLookup(docs), now, paths=PathEngine("fast"))
    slow = activate(plan, InMemoryLookup(docs), now, paths=PathEngine("fhirpathpy"))
    assert {t["_id"] for t in fast.tasks} == {t["_id"] for t in slow.tasks}
    assert any(t["code"] == "Blood Screening" and t["for"] == "c-1" for t in fast.tasks)
    assert not any(t["code"] == "Blood Screening" and t["for"] == "c-2" for t in fast.tasks)


def test_after_whole_conversions_are_whole_and_earlier_lean_ones_still_complete() -> None:
    """Another plan evaluated with the same subjects (a global task's plan) may read what the first did not."""
    subjects = _subjects([_person()])
    lean = subjects.fhir(_person())
    subjects.whole()
    assert subjects.fhir(_person()) == client_to_patient(_person())
    assert subjects.complete(lean) == client_to_patient(_person())
