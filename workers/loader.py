"""``fieldsync load``: OpenSRP JSON files (one document, an array, or a folder of them) into the main
database. Each document is validated on its own: the valid ones are written, each invalid one is reported
with its file, id, field and reason, and nothing of it is written."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from validators.errors import DocumentError
from validators.storage import to_storage
from workers.couch import Couch, Doc


@dataclass
class Rejected:
    file: str
    index: int | None
    doc_id: str | None
    field: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}" + (f"[{self.index}]" if self.index is not None else "")
        return f"{where}: {self.doc_id or '(no id)'}: field {self.field or '-'}: {self.reason}"


@dataclass
class LoadReport:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*.json") if p.is_file()))
        else:
            out.append(path)
    return out


def read_documents(paths: list[Path], report: LoadReport) -> list[Doc]:
    docs: list[Doc] = []
    for path in _files(paths):
        if path.exists() and not path.is_file():  # a FIFO, a device, a socket: reading it could block for ever
            report.rejected.append(Rejected(str(path), None, None, "", "not a regular file"))
            continue
        try:
            data: Any = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            report.rejected.append(Rejected(str(path), None, None, "", f"cannot read ({exc.strerror})"))
            continue
        except (ValueError, RecursionError) as exc:
            report.rejected.append(Rejected(str(path), None, None, "", f"not JSON ({str(exc)[:200]})"))
            continue
        items = data if isinstance(data, list) else [data]
        for index, item in enumerate(items):
            try:
                docs.append(to_storage(item))
            except DocumentError as err:
                report.rejected.append(Rejected(str(path), index if isinstance(data, list) else None,
                                                err.doc_id, err.field, err.reason))
    return docs


def load(couch: Couch, db: str, paths: list[Path]) -> LoadReport:
    report = LoadReport()
    docs = read_documents(paths, report)
    latest: dict[str, Doc] = {}
    for doc in docs:  # the same id twice: the last one in reading order
        latest[doc["_id"]] = doc
    current = couch.get_many(db, list(latest))
    writes: list[Doc] = []
    for doc_id, doc in latest.items():
        old = current.get(doc_id)
        if old is not None:
            if {k: v for k, v in old.items() if k != "_rev"} == doc:
                report.unchanged.append(doc_id)
                continue
            doc = {**doc, "_rev": old["_rev"]}
        writes.append(doc)
    result = couch.save_many(db, writes)
    report.written += [str(r["id"]) for r in result.ok]
    for failed in result.conflicts:
        report.rejected.append(Rejected("(server)", None, failed, "_rev", "changed while loading: load again"))
    for error in result.errors:
        report.rejected.append(Rejected("(server)", None, error.get("id"), "", str(error.get("reason"))))
    return report
