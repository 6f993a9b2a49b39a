"""The subjects of a plan's actions (OpenSRP's ActionHelper): the documents an action is evaluated for, in a
jurisdiction's scope or for an event; the documents a condition's subject concept loads beside its target;
and each document as its FHIR resource, converted once per evaluation."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from workers.evaluator.fhir import (
    OMISSIBLE,
    SharedParts,
    client_to_patient,
    event_to_questionnaire_response,
    location_to_fhir,
    task_to_fhir,
)
from workers.evaluator.fhirpath_compat import Resource
from workers.evaluator.lookup import Lookup, is_family, is_jurisdiction, residence
from workers.evaluator.outcome import Overlay
from workers.evaluator.tree import Scope

Doc = dict[str, Any]


class SubjectKind(StrEnum):
    """What a ``subjectCodableConcept.text`` names (compared lower-case)."""

    JURISDICTION = "jurisdiction"
    LOCATION = "location"
    FAMILY = "family"
    PERSON = "person"
    TASK = "task"
    GLOBAL_TASK = "global.task"
    JURISDICTIONAL_TASK = "jurisdictional.task"
    QUESTIONNAIRE_RESPONSE = "questionnaireresponse"

    @classmethod
    def of(cls, text: str | None) -> SubjectKind | None:
        """The kind a concept's text names, None for no text or a kind the evaluator does not know."""
        return _KINDS.get(text.strip().lower()) if isinstance(text, str) else None


_KINDS = {kind.value: kind for kind in SubjectKind}

# kinds of subjects read from the jurisdiction's scope only (the same for every action of an evaluation)
SCOPE_KINDS = frozenset({SubjectKind.JURISDICTION, SubjectKind.LOCATION, SubjectKind.FAMILY, SubjectKind.PERSON})


@dataclass
class Subject:
    entity_id: str
    resource: Doc
    doc: Doc


def omissible(expressions: Iterable[str]) -> frozenset[str]:
    """The Patient elements (of :data:`~workers.evaluator.fhir.OMISSIBLE`) that none of ``expressions`` names,
    in any case: an evaluation of those expressions alone may convert clients without them.

    Why that decides as the whole resource would: the fast path reads a resource only through the elements it
    names (a missing name reads nothing, and neither omissible name is the prefix of a choice type); it counts
    resources and tests their type (``resourceType``, always kept); and two clients' resources compared whole
    differ by ``id`` (always kept) with or without the omitted elements, which sit at the top of a resource
    only. Everything fhirpathpy evaluates (an expression the fast path does not compile, or hands over) is
    given the whole resources again (:meth:`Subjects.complete`)."""
    texts = [text.lower() for text in expressions]
    return frozenset(name for name in OMISSIBLE if not any(name.lower() in text for text in texts))


class Subjects:
    """Subjects read through a lookup (``base``) and the pending writes of the evaluation (``view``).
    ``without``: Patient elements the clients are converted without (see :func:`omissible`)."""

    def __init__(self, base: Lookup, view: Overlay, *, without: frozenset[str] = frozenset()) -> None:
        self.base = base
        self.view = view
        self._cache: dict[str, Doc] = {}
        self._shared = SharedParts()  # identifier elements the converted clients share (read only)
        self.without = without
        # id() of a resource converted without some elements -> (that resource, its client): holding the resource
        # keeps its id its own for as long as the map lives
        self._lean: dict[int, tuple[Doc, Doc]] = {}
        self._whole: dict[int, Doc] = {}  # the same id() -> the whole conversion, once asked for

    def whole(self) -> None:
        """From now on, clients are converted whole (another plan is evaluated with these subjects, whose
        expressions may read what the first plan's did not): the conversions cached so far are forgotten, and
        the lean ones the first plan's evaluation still holds can still be completed."""
        if self.without:
            self.without = frozenset()
            self._cache.clear()

    def complete(self, resource: Resource) -> Resource:
        """``resource`` as the whole conversion gives it: a client converted without some elements is converted
        again whole, and so is each one a target holds in ``contained`` (the targets conditions are evaluated
        on). Anything else is returned as it is."""
        lean = self._lean
        if not lean or not isinstance(resource, dict):
            return resource
        found = lean.get(id(resource))
        if found is not None:
            doc = found[1]
            whole = self._whole.get(id(resource))
            if whole is None:
                whole = self._whole[id(resource)] = client_to_patient(doc, shared=self._shared)
            return whole
        contained = resource.get("contained")
        if isinstance(contained, list) and any(id(r) in lean for r in contained):
            return {**resource, "contained": [self.complete(r) for r in contained]}
        return resource

    def fhir(self, doc: Doc) -> Doc:
        """A location or client as FHIR, converted once per evaluation; events and tasks every time (they
        change during an evaluation)."""
        kind = doc.get("type")
        cache = self._cache
        if kind == "Feature":
            key = "L" + doc["id"]
            found = cache.get(key)
            if found is None:
                found = cache[key] = location_to_fhir(doc)
            return found
        if kind == "Client":
            key = "C" + doc["baseEntityId"]
            found = cache.get(key)
            if found is None:
                found = cache[key] = client_to_patient(doc, shared=self._shared, without=self.without)
                if self.without:
                    self._lean[id(found)] = (found, doc)
            return found
        if kind == "Event":
            return event_to_questionnaire_response(doc)
        return task_to_fhir(doc)

    def subject(self, doc: Doc) -> Subject:
        resource = self.fhir(doc)
        if resource["resourceType"] == "QuestionnaireResponse":
            entity = str((resource.get("subject") or {}).get("reference") or "")
        else:
            entity = str(resource["id"])
        return Subject(entity, resource, doc)

    def in_scope(self, kind: SubjectKind | None, plan_id: str, where: Scope) -> list[Subject]:
        """An action's subjects in a jurisdiction's scope (activation, periodic triggers)."""
        jid = where.jurisdiction["id"]
        docs: list[Doc]
        if kind == SubjectKind.JURISDICTION:
            docs = [where.jurisdiction] if where.jurisdiction.get("type") == "Feature" else []
        elif kind == SubjectKind.LOCATION:
            docs = where.structures
        elif kind == SubjectKind.FAMILY:
            docs = where.families
        elif kind == SubjectKind.PERSON:
            docs = [m for m in where.members if not is_family(m)]
        elif kind == SubjectKind.TASK:
            docs = self.view.tasks_in(jid, plan_id)
        elif kind == SubjectKind.JURISDICTIONAL_TASK:
            # every task of the jurisdiction: a supervisor plan follows up the tasks of other plans
            docs = self.view.tasks_in(jid, None)
        elif kind == SubjectKind.QUESTIONNAIRE_RESPONSE:
            docs = self.base.events_in(jid)
        else:
            docs = []
        return [self.subject(d) for d in docs]

    def for_event(self, kind: SubjectKind | None, plan_id: str, event: Doc, jurisdiction_id: str) -> list[Subject]:
        """An action's subjects for a submitted event: its entity, as the action's kind reads it."""
        entity = str(event.get("baseEntityId") or "")
        details: Doc = event.get("details") or {}
        docs: list[Doc] = []
        if kind == SubjectKind.JURISDICTION:
            location = self.base.location(entity)
            docs = [location] if location and is_jurisdiction(location) else []
        elif kind == SubjectKind.LOCATION:
            client = self.base.client(entity)
            target = (residence(client) if client else None) or entity
            location = self.base.location(target)
            docs = [location] if location else []
        elif kind in (SubjectKind.FAMILY, SubjectKind.PERSON):
            client = self.base.client(entity)
            if client is not None and is_family(client) == (kind == SubjectKind.FAMILY):
                docs = [client]
        elif kind == SubjectKind.TASK:
            identifier = details.get("taskIdentifier")
            task = self.view.task(identifier) if isinstance(identifier, str) and identifier else None
            if task is not None:
                docs = [task]
            else:
                docs = [t for t in self.view.tasks_for(entity) if t.get("planIdentifier") == plan_id]
        elif kind == SubjectKind.GLOBAL_TASK:
            other = details.get("plan_evaluation_entity_id")
            docs = self.view.tasks_for(other if isinstance(other, str) and other else entity)
        elif kind == SubjectKind.JURISDICTIONAL_TASK:
            docs = self.view.tasks_in(jurisdiction_id, None)
        elif kind == SubjectKind.QUESTIONNAIRE_RESPONSE:
            docs = [event]
        return [self.subject(d) for d in docs]

    def related(self, kind: SubjectKind | None, subject: Subject, plan_id: str) -> list[Doc]:
        """ActionHelper.getConditionSubjectResources for an entity target: the resources of ``kind`` related
        to the subject, as FHIR."""
        doc = subject.doc
        doc_kind = doc.get("type")
        found: list[Doc] = []
        if kind == SubjectKind.FAMILY:
            if doc_kind == "Feature":
                found = self.base.families_at(doc["id"])
            elif doc_kind == "Client":
                found = [f for f in (self.base.client(i) for i in
                                     (doc.get("relationships") or {}).get("family", [])) if f]
        elif kind == SubjectKind.PERSON:
            if doc_kind == "Feature":
                found = [m for f in self.base.families_at(doc["id"])
                         for m in self.base.members_of(f["baseEntityId"])]
            elif doc_kind == "Client":
                found = self.base.members_of(doc["baseEntityId"])
        elif kind == SubjectKind.LOCATION:
            if doc_kind == "Client":
                home = residence(doc)
                location = self.base.location(home) if home else None
                found = [location] if location else []
            elif doc_kind == "Feature":
                found = [doc]
        elif kind == SubjectKind.JURISDICTION:
            parent = (doc.get("properties") or {}).get("parentId") if doc_kind == "Feature" else None
            location = self.base.location(parent) if isinstance(parent, str) else None
            found = [location] if location else []
        elif kind == SubjectKind.TASK:
            found = [t for t in self.view.tasks_for(subject.entity_id) if t.get("planIdentifier") == plan_id]
        elif kind == SubjectKind.GLOBAL_TASK:
            found = self.view.tasks_for(subject.entity_id)
        elif kind == SubjectKind.QUESTIONNAIRE_RESPONSE:
            found = self.base.events_for(subject.entity_id)
        return [self.fhir(d) for d in found]
