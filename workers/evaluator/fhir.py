"""OpenSRP documents -> the FHIR resources plan conditions are written against (OpenSRP's converters).

Location -> Location, Client -> Patient, Event -> QuestionnaireResponse, Task -> Task, in the JSON shapes
OpenSRP's plan evaluator produces (``converter_*_fhir.json`` in the fixtures). Pure functions of the document.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any

from validators.opensrp import unwrap

Doc = dict[str, Any]

# LocationProperty's own fields; any other property becomes an identifier (OpenSRP's customProperties)
_LOCATION_PROPERTIES = {
    "uid", "code", "type", "status", "parentId", "name", "geographicLevel", "effectiveStartDate",
    "effectiveEndDate", "version", "username",
}

_TASK_STATUS = {
    "draft": "draft", "ready": "ready", "cancelled": "cancelled", "in progress": "in-progress",
    "in_progress": "in-progress", "in-progress": "in-progress", "completed": "completed",
    "failed": "failed", "archived": "archived",
}


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def location_is_jurisdiction(doc: Doc) -> bool:
    """``"jurisdiction": true`` decides; OpenSRP rows without it are jurisdictions when they carry location
    tags (OpenSRP keeps jurisdictions, which have tags, and structures, which have none, in two tables)."""
    doc = unwrap(doc)
    flag = doc.get("jurisdiction")
    if isinstance(flag, bool):
        return flag
    return bool(doc.get("locationTags"))


def location_to_fhir(doc: Doc, tz: tzinfo = UTC) -> Doc:
    """An OpenSRP Location (GeoJSON Feature, or a database row wrapping one) as a FHIR Location.

    ``tz`` renders ``serverVersion`` (epoch milliseconds) as ``meta.lastUpdated``, as OpenSRP does in the
    server's time zone.
    """
    doc = unwrap(doc)
    props: Doc = doc.get("properties") or {}
    out: Doc = {"resourceType": "Location", "id": doc["id"]}
    meta: Doc = {}
    if props.get("version") is not None:
        meta["versionId"] = str(props["version"])
    if isinstance(doc.get("serverVersion"), int):
        moment = datetime.fromtimestamp(doc["serverVersion"] / 1000, tz)
        meta["lastUpdated"] = moment.isoformat(timespec="milliseconds")
    if meta:
        out["meta"] = meta
    identifiers = [
        {"system": key, "value": str(value)}
        for key, value in props.items()
        if key not in _LOCATION_PROPERTIES and value is not None
    ]
    identifiers.append({"system": "hasGeometry", "value": "true" if doc.get("geometry") else "false"})
    out["identifier"] = identifiers
    if isinstance(props.get("status"), str):
        out["status"] = props["status"].lower()
    if props.get("name") is not None:
        out["name"] = props["name"]
    out["mode"] = "instance"
    out["_mode"] = {"id": "mode"}
    if props.get("type"):
        out["type"] = [{"id": "locationType", "text": props["type"]}]
    out["physicalType"] = {"coding": [{"code": "jdn" if location_is_jurisdiction(doc) else "bu"}]}
    if props.get("parentId"):
        out["partOf"] = {"reference": props["parentId"]}
    return out


def _relationship(relation: Any, ids: Any) -> Doc:
    return {
        "type": {
            "coding": [{
                "extension": [{"url": "relationships", "valueString": i} for i in ids],
                "code": "relationship",
            }],
            "text": relation,
        }
    }


class SharedParts:
    """A memo for many conversions (the evaluator's, one per evaluation): the identifier elements of the
    relationships and attributes clients have in common (a family's id, a residence) are then one object
    shared by the resources, built once. Such resources must be read only."""

    __slots__ = ("attributes", "relationships")

    def __init__(self) -> None:
        self.relationships: dict[str, dict[str, Doc]] = {}
        self.attributes: dict[str, dict[str, Doc]] = {}


# the Patient elements a conversion may leave out (``client_to_patient(without=...)``): the costly ones
OMISSIBLE = frozenset({"identifier", "name"})


def client_to_patient(doc: Doc, *, shared: SharedParts | None = None, without: frozenset[str] = frozenset()) -> Doc:
    """An OpenSRP Client (family or person) as a FHIR Patient (``shared``: see :class:`SharedParts`).
    ``without``: elements of :data:`OMISSIBLE` left out, for an evaluation whose expressions never read them
    (:mod:`workers.evaluator.subjects` says when that is safe)."""
    get = doc.get
    out: Doc = {"resourceType": "Patient", "id": doc["baseEntityId"]}
    if "identifier" not in without:
        _patient_identifiers(out, get, shared)
    _patient_rest(out, get, "name" not in without)
    return out


def _patient_identifiers(out: Doc, get: Any, shared: SharedParts | None) -> None:
    identifiers: list[Doc]
    found = get("identifiers")
    identifiers = [{"system": key, "value": str(value)} for key, value in found.items()] if found else []
    found = get("relationships")
    if found:
        for relation, ids in found.items():
            if (shared is not None and type(ids) is list and len(ids) == 1 and type(ids[0]) is str
                    and type(relation) is str):
                memo = shared.relationships.get(relation)
                if memo is None:
                    memo = shared.relationships[relation] = {}
                entry = memo.get(ids[0])
                if entry is None:
                    entry = memo[ids[0]] = _relationship(relation, ids)
                identifiers.append(entry)
            else:
                identifiers.append(_relationship(relation, ids))
    found = get("attributes")
    if found:
        for key, value in found.items():
            text = str(value)
            if shared is not None and type(key) is str:
                memo = shared.attributes.get(key)
                if memo is None:
                    memo = shared.attributes[key] = {}
                entry = memo.get(text)
                if entry is None:
                    entry = memo[text] = {"id": key, "type": {"coding": [{"code": "attribute"}]}, "value": text}
                identifiers.append(entry)
            else:
                identifiers.append({"id": key, "type": {"coding": [{"code": "attribute"}]}, "value": text})
    if identifiers:
        out["identifier"] = identifiers


def _patient_rest(out: Doc, get: Any, with_name: bool) -> None:
    if with_name:
        _patient_name(out, get)
    gender = get("gender")
    if isinstance(gender, str):
        out["gender"] = gender.lower()
    birthdate = get("birthdate")
    if isinstance(birthdate, str) and len(birthdate) >= 10:
        out["birthDate"] = birthdate[:10]


def _patient_name(out: Doc, get: Any) -> None:
    # name parts: present, and not blank text
    first, middle, family = get("firstName"), get("middleName"), get("lastName")
    given: list[Any] = []
    if first and not (isinstance(first, str) and not first.strip()):
        given.append(first)
    if middle and not (isinstance(middle, str) and not middle.strip()):
        given.append(middle)
    has_family = bool(family) and not (isinstance(family, str) and not family.strip())
    if given or has_family:
        parts = [*given, family] if has_family else given
        name: Doc = {"text": " ".join(map(str, parts))}
        if has_family:
            name["family"] = family
        if given:
            name["given"] = given
        out["name"] = [name]


def _item(link_id: str, values: list[Any], definition: str | None = None) -> Doc:
    item: Doc = {"linkId": link_id}
    if definition:
        item["definition"] = definition
    item["answer"] = [{"valueString": str(v)} for v in values]
    return item


def event_to_questionnaire_response(doc: Doc) -> Doc:
    """An OpenSRP Event as a FHIR QuestionnaireResponse: eventType is ``questionnaire``; locationId, team,
    each ``details`` entry (``definition: details``) and each observation (``linkId`` = fieldCode) an item."""
    out: Doc = {"resourceType": "QuestionnaireResponse"}
    if doc.get("formSubmissionId"):
        out["id"] = doc["formSubmissionId"]
    if doc.get("serverVersion") is not None:
        out["meta"] = {"versionId": str(doc["serverVersion"])}
    out["questionnaire"] = doc.get("eventType")
    out["_questionnaire"] = {"id": "eventType"}
    out["status"] = "completed"
    out["subject"] = {"id": "baseEntityId", "reference": doc.get("baseEntityId")}
    if not _blank(doc.get("providerId")):
        out["author"] = {"id": "providerId", "reference": doc["providerId"]}
    items: list[Doc] = []
    for key in ("locationId", "teamId", "team"):
        if not _blank(doc.get(key)):
            items.append(_item(key, [doc[key]]))
    for key, value in (doc.get("details") or {}).items():
        if value is not None:
            items.append(_item(key, [value], "details"))
    for obs in doc.get("obs") or []:
        code = obs.get("fieldCode") or obs.get("formSubmissionField")
        values = [v for v in obs.get("values") or [] if v is not None]
        if code and values:
            items.append(_item(code, values))
    out["item"] = items
    return out


def task_to_fhir(doc: Doc) -> Doc:
    """An OpenSRP Task as a FHIR Task (``id`` = identifier, status lower-case, ``for``/``focus`` refs)."""
    out: Doc = {"resourceType": "Task", "id": doc["identifier"]}
    out["identifier"] = [{"use": "official", "value": doc["identifier"]}]
    if doc.get("groupIdentifier"):
        out["groupIdentifier"] = {"value": doc["groupIdentifier"]}
    if doc.get("planIdentifier"):
        out["basedOn"] = [{"reference": doc["planIdentifier"]}]
    status = doc.get("status")
    if isinstance(status, str):
        out["status"] = _TASK_STATUS.get(status.strip().lower(), status.strip().lower())
    if doc.get("businessStatus") is not None:
        out["businessStatus"] = {"text": doc["businessStatus"]}
    if doc.get("statusReason") is not None:
        out["statusReason"] = {"text": doc["statusReason"]}
    if doc.get("priority") is not None:
        out["priority"] = str(doc["priority"]).lower()
    if doc.get("code") is not None:
        out["code"] = {"text": doc["code"]}
    if doc.get("description") is not None:
        out["description"] = doc["description"]
    if doc.get("focus") is not None:
        out["focus"] = {"reference": doc["focus"]}
    if doc.get("for") is not None:
        out["for"] = {"reference": doc["for"]}
    period = doc.get("executionPeriod")
    if isinstance(period, dict):
        out["executionPeriod"] = {k: v for k, v in period.items() if k in ("start", "end") and v is not None}
    for key in ("authoredOn", "lastModified"):
        if doc.get(key) is not None:
            out[key] = doc[key]
    for key in ("owner", "requester"):
        if doc.get(key) is not None:
            out[key] = {"reference": doc[key]}
    return out


def to_fhir(doc: Doc) -> Doc:
    """Any OpenSRP document as the FHIR resource conditions see; a FHIR resource is returned as it is."""
    doc = unwrap(doc)
    if "resourceType" in doc:
        return doc
    kind = doc.get("type")
    if kind == "Feature":
        return location_to_fhir(doc)
    if kind == "Client":
        return client_to_patient(doc)
    if kind == "Event":
        return event_to_questionnaire_response(doc)
    if kind == "Task" or ("identifier" in doc and "planIdentifier" in doc):
        return task_to_fhir(doc)
    raise ValueError(f"no FHIR conversion for a document of type {kind!r}")
