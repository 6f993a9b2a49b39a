"""The one exception a document that breaks the contract raises: which document, which field, why."""

from __future__ import annotations


class DocumentError(Exception):
    """A document that cannot be loaded: nothing of it is used.

    ``str()`` is one line, e.g. ``plan FI_2020 field action[2].condition[0].expression.expression: ...``.
    It is deliberately not a ``ValueError``: raised inside a pydantic validator it propagates as it is
    instead of being folded into a ``ValidationError``.
    """

    def __init__(self, doc_id: str | None, field: str, reason: str, kind: str = "document") -> None:
        self.doc_id = doc_id
        self.field = field
        self.reason = reason
        self.kind = kind
        super().__init__(str(self))

    def __str__(self) -> str:
        ident = self.doc_id if self.doc_id else "(no id)"
        where = f" field {self.field}" if self.field else ""
        reason = " ".join(self.reason.split())
        return f"{self.kind} {ident}{where}: {reason}"

    def __reduce__(self) -> tuple[type[DocumentError], tuple[str | None, str, str, str]]:
        return (DocumentError, (self.doc_id, self.field, self.reason, self.kind))


def field_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a field path: ``("action", 2, "condition")`` -> ``action[2].condition``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out
