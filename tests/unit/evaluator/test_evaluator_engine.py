"""Engine semantics: triggers, reference scoping, subjects, dynamic values, batches and resumption."""

from __future__ import annotations

import hashlib
import itertools
import uuid

from evaluator_helpers import NOW, event, family, fixture, jurisdiction, structure

from workers.evaluator.engine import activate, activation_batches, evaluate_event
from workers.evaluator.lookup import InMemoryLookup
from workers.evaluator.tasks import NAMESPACE, task_id
from workers.follower import shard_of


def _scoped_plan() -> dict:
    """The reference-scoping plan, its upper-case AND corrected."""
    plan = fixture("plan_dynamic_fi_reference_scoping.json")
    condition = plan["action"][0]["condition"][2]["expression"]
    condition["expression"] = condition["expression"].replace(" AND ", " and ")
    return plan


def _area(plan: dict) -> str:
    return str(plan["jurisdiction"][0]["code"])


def test_reference_scoping_on_activation() -> None:
    """On activation only the plan-activation conditions apply (residential, no family)."""
    plan = _scoped_plan()
    area = _area(plan)
    lookup = InMemoryLookup([plan, jurisdiction(area), structure("s-1", area), structure("s-2", area),
                             structure("s-3", area, "School"), family("fam", "s-2")])
    assert sorted(t["for"] for t in activate(plan, lookup, NOW).tasks) == ["s-1"]


def test_reference_scoping_on_submission() -> None:
    """On submission only the event-submission condition applies: a residential Register_Structure."""
    plan = _scoped_plan()
    area = _area(plan)
    lookup = InMemoryLookup([plan, jurisdiction(area), structure("s-9", area), family("fam", "s-9")])
    residential = event("Register_Structure", "s-9", area, form_id="e1",
                        observations={"structureType": "Residential Structure"})
    # the family at s-9 would fail the plan-activation condition: it is not evaluated on submission
    assert [t["for"] for t in evaluate_event(plan, residential, lookup, NOW).tasks] == ["s-9"]
    school = event("Register_Structure", "s-9", area, form_id="e2", observations={"structureType": "School"})
    assert evaluate_event(plan, school, lookup, NOW).tasks == []


def test_underscore_trigger_name_never_fires_and_default_business_status_applies() -> None:
    plan = fixture("plan_1.json")
    area = _area(plan)
    lookup = InMemoryLookup([plan, jurisdiction(area), structure("s-1", area)])
    assert activate(plan, lookup, NOW).tasks == []  # "plan_activation" is not "plan-activation"
    plan["action"][0]["trigger"][0]["name"] = "plan-activation"
    [task] = activate(plan, InMemoryLookup([plan, jurisdiction(area), structure("s-1", area)]), NOW).tasks
    assert task["businessStatus"] == "expression"  # OpenSRP's defaultBusinessStatus: the literal text
    assert task["executionPeriod"] == {"start": "2020-06-04", "end": "2020-10-01"}


def test_task_ids_are_deterministic_and_distinct() -> None:
    assert task_id("p", "a", "e", "j") == task_id("p", "a", "e", "j")
    ids = {task_id("p", "a", "e", "j"), task_id("p", "a", "f", "j"), task_id("q", "a", "e", "j"),
           task_id("p", "b", "e", "j"), task_id("p", "a", "e", "k")}
    assert len(ids) == 5


def test_a_task_id_is_a_version_8_uuid_a_device_can_compute_from_its_description() -> None:
    made = task_id("p", "a", "e", "j")
    parsed = uuid.UUID(made)
    assert str(parsed) == made
    assert parsed.version == 8 and parsed.variant == uuid.RFC_4122
    group = hashlib.sha1(NAMESPACE.bytes + b"p\x1fj").digest()[:4]
    rest = bytearray(hashlib.sha1(NAMESPACE.bytes + b"p\x1fa\x1fe").digest()[:12])
    rest[2] = (rest[2] & 0x0F) | 0x80  # the version over byte 6 of the UUID
    rest[4] = (rest[4] & 0x3F) | 0x80  # the variant over byte 8
    assert made == str(uuid.UUID(bytes=group + bytes(rest)))


def test_the_tasks_of_a_jurisdiction_sort_together_whatever_their_action_and_entity() -> None:
    """One (plan, jurisdiction) shares its identifiers' first 8 hex digits: a write of its tasks touches
    adjacent entries of a database's id index."""
    area_a = {task_id("p", action, f"e-{n}", "area-a") for action in ("a", "b") for n in range(200)}
    area_b = {task_id("p", "a", f"e-{n}", "area-b") for n in range(200)}
    assert len({i[:8] for i in area_a}) == 1 and len({i[:8] for i in area_b}) == 1
    assert {i[:8] for i in area_a} != {i[:8] for i in area_b}
    prefixes = [i[:8] for i in sorted(area_a | area_b)]
    assert sum(1 for x, y in itertools.pairwise(prefixes) if x != y) == 1  # two runs, not interleaved
    assert task_id("q", "a", "e-0", "area-a")[:8] != task_id("p", "a", "e-0", "area-a")[:8]


def test_activation_batches_and_resumes_after_a_checkpoint() -> None:
    plan = fixture("plan_dynamic_fi_thailand_A1.json")
    top = _area(plan)
    docs: list[dict] = [plan, jurisdiction(top), jurisdiction("oa-a", top), jurisdiction("oa-b", top)]
    docs += [structure(f"a-{i}", "oa-a") for i in range(5)] + [structure(f"b-{i}", "oa-b") for i in range(3)]
    lookup = InMemoryLookup(docs)
    batches = list(activation_batches(plan, lookup, NOW, batch_size=4))
    # each area: a BCC task, and a register family task per residential structure without a family
    assert [(b.jurisdiction_id, len(b.tasks), b.last) for b in batches] == [
        (top, 1, True), ("oa-a", 4, False), ("oa-a", 2, True), ("oa-b", 4, True)]
    everything = [t["_id"] for b in batches for t in b.tasks]
    assert len(everything) == len(set(everything)) == 11
    resumed = list(activation_batches(plan, lookup, NOW, batch_size=4, resume_after="oa-a"))
    assert [b.jurisdiction_id for b in resumed] == ["oa-b"]
    assert [t["_id"] for t in resumed[0].tasks] == [t["_id"] for t in batches[-1].tasks]


class _ReadAhead(InMemoryLookup):
    """Records what an activation asks to read ahead for each jurisdiction."""

    def __init__(self, docs: list[dict]) -> None:
        super().__init__(docs)
        self.asked: list[tuple[str, str | None]] = []

    def begin_jurisdiction(self, jurisdiction_id: str, plan_id: str | None = None) -> None:
        self.asked.append((jurisdiction_id, plan_id))


def test_an_activation_reads_ahead_only_its_own_plans_tasks_unless_it_acts_on_other_plans_tasks() -> None:
    """A second plan over an area need not read the first one's tasks (the index decodes each one read): the
    read-ahead is of the plan's own tasks, except for a plan with an action on any plan's tasks (a
    supervisor's ``Jurisdictional.Task`` or ``Global.Task``), which reads them all."""
    plan = fixture("plan_dynamic_fi_thailand_A1.json")
    top = _area(plan)
    docs: list[dict] = [plan, jurisdiction(top), jurisdiction("oa-a", top), structure("a-0", "oa-a")]
    lookup = _ReadAhead(docs)
    list(activation_batches(plan, lookup, NOW))
    assert lookup.asked == [(top, plan["identifier"]), ("oa-a", plan["identifier"])]
    supervisor = {**plan, "action": [{**plan["action"][0], "subjectCodableConcept": {"text": "Jurisdictional.Task"}}]}
    lookup = _ReadAhead([supervisor, *docs[1:]])
    list(activation_batches(supervisor, lookup, NOW))
    assert lookup.asked == [(top, None), ("oa-a", None)]


def test_sharded_workers_evaluate_only_their_jurisdictions_and_together_make_the_whole() -> None:
    """FIELDSYNC_WORKER_SHARD=i/n: each worker evaluates the jurisdictions of its share only (the others pass
    as empty, done batches); together the shares give every task of the unsharded activation, once."""
    plan = fixture("plan_dynamic_fi_thailand_A1.json")
    top = _area(plan)
    docs: list[dict] = [plan, jurisdiction(top)]
    for a in range(6):
        docs += [jurisdiction(f"oa-{a}", top)] + [structure(f"s-{a}-{i}", f"oa-{a}") for i in range(3)]
    lookup = InMemoryLookup(docs)
    whole = sorted(t["_id"] for b in activation_batches(plan, lookup, NOW) for t in b.tasks)
    shares = []
    for i in range(3):
        batches = list(activation_batches(plan, lookup, NOW, mine=lambda j, i=i: shard_of(j, 3) == i))
        assert all(b.last and not b.tasks and not b.entities for b in batches if shard_of(b.jurisdiction_id, 3) != i)
        assert {b.jurisdiction_id for b in batches} == {top, *(f"oa-{a}" for a in range(6))}  # every one passed
        shares.append([t["_id"] for b in batches for t in b.tasks])
    assert all(shares) and sorted(t for share in shares for t in share) == whole and len(set(whole)) == len(whole)


def test_case_confirmation_on_activation_is_generated_from_the_case_details_event() -> None:
    """A QuestionnaireResponse subject on activation: the events of the jurisdiction, as
    QuestionnaireResponses; the task is for the event's entity."""
    plan = fixture("plan_dynamic_fi_thailand_A1.json")
    area = _area(plan)
    case = fixture("converter_event_opensrp.json")
    case.update(locationId=area, baseEntityId="index-case-house")
    other = event("Register_Structure", "s-77", area, form_id="e-77")
    lookup = InMemoryLookup([plan, jurisdiction(area), case, other])
    confirmations = [t for t in activate(plan, lookup, NOW).tasks if t["code"] == "Case Confirmation"]
    assert [t["for"] for t in confirmations] == ["index-case-house"]
