"""How OpenSRP documents are stored: validated, unchanged, with the ``_id`` and ``type`` DESIGN.md gives.

| kind | ``_id`` | ``type`` |
| --- | --- | --- |
| Plan | ``identifier`` | ``Plan`` (added) |
| Location | ``id`` | ``Feature`` |
| Client | ``baseEntityId`` | ``Client`` |
| Event | ``_id`` if given, else ``formSubmissionId`` | ``Event`` |
| Task | ``identifier`` | ``Task`` (added) |
"""

from __future__ import annotations

from typing import Any

from validators.errors import DocumentError
from validators.opensrp import document_kind, parse_document, unwrap

ID_FIELDS = {"Plan": "identifier", "Feature": "id", "Client": "baseEntityId", "Event": "formSubmissionId",
             "Task": "identifier"}


def to_storage(raw: Any) -> dict[str, Any]:
    """The document to store for one raw OpenSRP document; raises ``DocumentError`` naming id and field."""
    parse_document(raw)  # the whole contract, FHIRPath of plans included; raises DocumentError
    doc = dict(unwrap(raw))
    kind = document_kind(doc)
    if kind == "FHIR" or kind is None:
        raise DocumentError(doc.get("id"), "resourceType",
                            "FHIR resources are what conditions see, not documents to store: load OpenSRP JSON")
    id_field = ID_FIELDS[kind]
    doc_id = doc.get("_id") if kind == "Event" and doc.get("_id") else doc.get(id_field)
    if not isinstance(doc_id, str) or not doc_id or doc_id.startswith("_"):
        raise DocumentError(None, id_field, f"a {kind} needs a non-empty {id_field} (not starting with '_')",
                            kind=kind.lower())
    doc["_id"] = doc_id
    doc["type"] = kind
    doc.pop("_rev", None)
    return doc
