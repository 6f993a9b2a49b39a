"""Build design documents from the ``couch_design/`` file tree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
EVERY_DB = "any"
BUILTIN_REDUCES = {"_count", "_sum", "_stats", "_approx_count_distinct"}
# top-level fields a design document may set in its folder's ddoc.json (CouchDB 3's background indexer skips
# one with "autoupdate": false: its views are brought up to date when queried)
DDOC_FIELDS = {"autoupdate"}
# design documents fieldsync installed once and no longer does, by database kind: init removes them (a design
# document left behind keeps CouchDB indexing every write for nobody)
RETIRED = {
    # the plan worker's view-based lookup, replaced by its read model (workers/readmodel, issue 12):
    # its index took 40% of the server's work during an activation (session 8's profile)
    "main": ["_design/lookup"],
}


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8").strip()


def _ddoc(folder: Path) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": f"_design/{folder.name}", "language": "javascript"}
    views_dir = folder / "views"
    if views_dir.is_dir():
        views: dict[str, dict[str, str]] = {}
        for view in sorted(p for p in views_dir.iterdir() if p.is_dir()):
            map_js = view / "map.js"
            if not map_js.is_file():
                raise ValueError(f"{view}: a view needs a map.js")
            entry = {"map": _read(map_js)}
            reduce_js = view / "reduce.js"
            if reduce_js.is_file():
                reduce = _read(reduce_js)
                if reduce.startswith("_") and reduce not in BUILTIN_REDUCES:
                    raise ValueError(f"{reduce_js}: unknown builtin reduce {reduce!r}")
                entry["reduce"] = reduce
            views[view.name] = entry
        doc["views"] = views
    extra = folder / "ddoc.json"
    if extra.is_file():
        fields = json.loads(_read(extra))
        if not isinstance(fields, dict) or set(fields) - DDOC_FIELDS:
            raise ValueError(f"{extra}: an object of {sorted(DDOC_FIELDS)} only")
        doc.update(fields)
    validate = folder / "validate_doc_update.js"
    if validate.is_file():
        doc["validate_doc_update"] = _read(validate)
    return doc


def load_tree(root: Path = ROOT) -> dict[str, list[dict[str, Any]]]:
    """Every design document of the tree, by database kind."""
    out: dict[str, list[dict[str, Any]]] = {}
    for kind in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        ddocs = [_ddoc(d) for d in sorted(kind.iterdir()) if d.is_dir() and not d.name.startswith(("_", "."))]
        out[kind.name] = ddocs
    return out


def design_docs_for(kind: str, root: Path = ROOT) -> list[dict[str, Any]]:
    """The design documents a database of ``kind`` gets: its own and those of ``any``."""
    tree = load_tree(root)
    return tree.get(kind, []) + tree.get(EVERY_DB, [])


def retired_design_docs(kind: str) -> list[str]:
    """Ids of design documents a database of ``kind`` had from an earlier fieldsync and must not keep."""
    return list(RETIRED.get(kind, []))
