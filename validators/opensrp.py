"""The contract of the OpenSRP / Reveal documents fieldsync stores: Plan, Task, Location, Client, Event.

The shapes are OpenSRP's own, so that real Reveal plans and data load unchanged: every model keeps unknown
fields (``extra="allow"``) and ``model_dump(by_alias=True, exclude_unset=True)`` gives the document back.
Values are never rewritten on load; HTML-escaped text that Reveal leaves in plans (``&amp;gt;=``) is unescaped
by the accessors that use it (``Expression.text``, ``DetailQuantity.comparator_op``).

A plan is validated strictly on load: every FHIRPath expression (trigger, condition, dynamic value) must be
one complete expression, or the plan is rejected with a ``DocumentError`` naming the plan, the action and the
text.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from validators.errors import DocumentError, field_path
from validators.expressions import ExpressionError, unescape, validate


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


# --- plan -------------------------------------------------------------------------------------------------


class CodableConcept(_Model):
    text: str | None = None


class Expression(_Model):
    expression: str | None = None
    description: str | None = None
    name: str | None = None
    reference: str | None = None
    subjectCodableConcept: CodableConcept | None = None

    @property
    def text(self) -> str:
        """The FHIRPath text, HTML entities undone."""
        return unescape(self.expression or "")


class Condition(_Model):
    kind: str | None = None
    expression: Expression | None = None
    subjectCodableConcept: CodableConcept | None = None


class TimingRepeat(_Model):
    frequency: int | None = None
    period: float | None = None
    periodUnit: str | None = None
    timeOfDay: list[str] = Field(default_factory=list)


class Timing(_Model):
    event: list[str] = Field(default_factory=list)
    repeat: TimingRepeat | None = None


class Trigger(_Model):
    type: str | None = None
    name: str | None = None
    expression: Expression | None = None
    timingTiming: Timing | None = None


class DynamicValue(_Model):
    path: str | None = None
    expression: Expression | None = None


class Period(_Model):
    start: str | None = None
    end: str | None = None


class Action(_Model):
    identifier: str
    prefix: int | None = None
    title: str | None = None
    description: str | None = None
    code: str | None = None
    timingPeriod: Period | None = None
    reason: str | None = None
    goalId: str | None = None
    subjectCodableConcept: CodableConcept | None = None
    trigger: list[Trigger] = Field(default_factory=list)
    condition: list[Condition] = Field(default_factory=list)
    definitionUri: str | None = None
    type: str | None = None
    dynamicValue: list[DynamicValue] = Field(default_factory=list)

    @property
    def subject(self) -> str | None:
        return self.subjectCodableConcept.text if self.subjectCodableConcept else None

    @property
    def is_update(self) -> bool:
        return (self.type or "create").lower() == "update"


class DetailQuantity(_Model):
    value: float | None = None
    comparator: str | None = None
    unit: str | None = None

    @property
    def comparator_op(self) -> str | None:
        return unescape(self.comparator) if self.comparator is not None else None


class TargetDetail(_Model):
    detailQuantity: DetailQuantity | None = None


class Target(_Model):
    measure: str | None = None
    detail: TargetDetail | None = None
    due: str | None = None


class Goal(_Model):
    id: str | None = None
    description: str | None = None
    priority: str | None = None
    target: list[Target] = Field(default_factory=list)


class Jurisdiction(_Model):
    code: str


class UseContext(_Model):
    code: str | None = None
    valueCodableConcept: str | None = None


class Plan(_Model):
    """An OpenSRP PlanDefinition. ``type`` is ``"Plan"`` in fieldsync's database; OpenSRP's plans lack it."""

    identifier: str
    type: Literal["Plan"] | None = None
    version: str | None = None
    name: str | None = None
    title: str | None = None
    status: str | None = None
    date: str | None = None
    effectivePeriod: Period | None = None
    useContext: list[UseContext] = Field(default_factory=list)
    jurisdiction: list[Jurisdiction] = Field(default_factory=list)
    goal: list[Goal] = Field(default_factory=list)
    action: list[Action] = Field(default_factory=list)
    experimental: bool | None = None
    serverVersion: int | None = None

    @model_validator(mode="after")
    def _expressions_parse(self) -> Plan:
        for field, action, expression in self.expressions():
            try:
                validate(expression)
            except ExpressionError as error:
                title = f" {action.title!r}" if action.title else ""
                raise DocumentError(
                    self.identifier,
                    field,
                    f"action {action.identifier}{title}: {error}",
                    kind="plan",
                ) from error
        return self

    def expressions(self) -> list[tuple[str, Action, str]]:
        """Every FHIRPath text of the plan, with its field path and action."""
        found: list[tuple[str, Action, str]] = []
        for a, action in enumerate(self.action):
            for t, trigger in enumerate(action.trigger):
                if trigger.expression is not None and trigger.expression.expression is not None:
                    found.append((f"action[{a}].trigger[{t}].expression.expression", action,
                                  trigger.expression.expression))
            for c, condition in enumerate(action.condition):
                if condition.expression is not None and condition.expression.expression is not None:
                    found.append((f"action[{a}].condition[{c}].expression.expression", action,
                                  condition.expression.expression))
            for d, dynamic in enumerate(action.dynamicValue):
                expr = dynamic.expression
                # OpenSRP's "defaultBusinessStatus" dynamic value carries a literal, not FHIRPath
                if expr is not None and expr.expression is not None and expr.name != "defaultBusinessStatus":
                    found.append((f"action[{a}].dynamicValue[{d}].expression.expression", action,
                                  expr.expression))
        return found

    @property
    def intervention_type(self) -> str | None:
        for context in self.useContext:
            if context.code == "interventionType":
                return context.valueCodableConcept
        return None

    @property
    def jurisdiction_codes(self) -> list[str]:
        return [j.code for j in self.jurisdiction]


# --- task -------------------------------------------------------------------------------------------------


class Note(_Model):
    authorString: str | None = None
    time: str | None = None
    text: str | None = None


class Task(_Model):
    identifier: str
    type: Literal["Task"] | None = None
    planIdentifier: str | None = None
    groupIdentifier: str | None = None
    status: str | None = None
    businessStatus: str | None = None
    statusReason: str | None = None
    priority: str | int | None = None
    code: str | None = None
    description: str | None = None
    focus: str | None = None
    for_: str | None = Field(default=None, alias="for")
    executionPeriod: Period | None = None
    authoredOn: str | None = None
    lastModified: str | None = None
    owner: str | None = None
    requester: str | None = None
    note: list[Note] | None = None


# --- location ---------------------------------------------------------------------------------------------


class LocationProperties(_Model):
    parentId: str | None = None
    name: str | None = None
    status: str | None = None
    type: str | None = None
    geographicLevel: int | None = None
    version: int | str | None = None


class Location(_Model):
    """A GeoJSON Feature: a jurisdiction when ``"jurisdiction": true``, a structure otherwise."""

    type: Literal["Feature"]
    id: str
    properties: LocationProperties = Field(default_factory=LocationProperties)
    geometry: dict[str, Any] | None = None
    jurisdiction: bool | None = None
    serverVersion: int | None = None


# --- client and event -------------------------------------------------------------------------------------


class Client(_Model):
    type: Literal["Client"]
    baseEntityId: str
    firstName: str | None = None
    middleName: str | None = None
    lastName: str | None = None
    birthdate: str | None = None
    gender: str | None = None
    identifiers: dict[str, Any] = Field(default_factory=dict)
    attributes: dict[str, Any] = Field(default_factory=dict)
    relationships: dict[str, list[str]] = Field(default_factory=dict)
    locationId: str | None = None


class Obs(_Model):
    fieldCode: str | None = None
    fieldType: str | None = None
    fieldDataType: str | None = None
    formSubmissionField: str | None = None
    parentCode: str | None = None
    values: list[Any] = Field(default_factory=list)
    humanReadableValues: list[Any] = Field(default_factory=list)


class Event(_Model):
    type: Literal["Event"]
    eventType: str
    baseEntityId: str | None = None
    locationId: str | None = None
    formSubmissionId: str | None = None
    entityType: str | None = None
    providerId: str | None = None
    teamId: str | None = None
    team: str | None = None
    eventDate: str | None = None
    obs: list[Obs] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)
    serverVersion: int | None = None


class FhirResource(_Model):
    """A FHIR resource as OpenSRP's converters produce it (test inputs: a Bundle, a QuestionnaireResponse)."""

    resourceType: str
    id: str | None = None


Document = Plan | Task | Location | Client | Event | FhirResource

_BY_TYPE: dict[str, type[_Model]] = {
    "Plan": Plan,
    "Task": Task,
    "Feature": Location,
    "Client": Client,
    "Event": Event,
}


def unwrap(doc: dict[str, Any]) -> dict[str, Any]:
    """OpenSRP's database rows carry the document in ``json`` (``{"id": 8897, "json": {...}}``): unwrap."""
    inner = doc.get("json")
    if "type" not in doc and "resourceType" not in doc and isinstance(inner, dict):
        return inner
    return doc


def document_kind(doc: dict[str, Any]) -> str | None:
    """"Plan", "Task", "Feature", "Client", "Event", "FHIR" or None, from the document's shape."""
    doc = unwrap(doc)
    kind = doc.get("type")
    if isinstance(kind, str) and kind in _BY_TYPE:
        return kind
    if "resourceType" in doc:
        return "FHIR"
    if kind is None and "action" in doc and "identifier" in doc:
        return "Plan"
    if kind is None and "identifier" in doc and "planIdentifier" in doc and "code" in doc:
        return "Task"
    return None


def _doc_id(doc: dict[str, Any]) -> str | None:
    for key in ("_id", "identifier", "id", "baseEntityId", "formSubmissionId"):
        value = doc.get(key)
        if isinstance(value, str | int) and value != "":
            return str(value)
    return None


def parse_document(doc: dict[str, Any]) -> Document:
    """Validate one document and return its model; raise ``DocumentError`` (id, field, reason) otherwise."""
    if not isinstance(doc, dict):
        raise DocumentError(None, "", f"a document is a JSON object, not {type(doc).__name__}")
    doc = unwrap(doc)
    kind = document_kind(doc)
    doc_id = _doc_id(doc)
    if kind is None:
        raise DocumentError(doc_id, "type", f"unknown document type {doc.get('type')!r}")
    model: type[_Model] = FhirResource if kind == "FHIR" else _BY_TYPE[kind]
    try:
        result = model.model_validate(doc)
    except ValidationError as error:
        first = error.errors()[0]
        raise DocumentError(doc_id, field_path(tuple(first["loc"])), first["msg"], kind=kind.lower()) from error
    assert isinstance(result, Plan | Task | Location | Client | Event | FhirResource)
    return result
