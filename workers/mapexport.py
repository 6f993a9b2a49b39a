"""``fieldsync export map --plan ID``: the structures of a plan's jurisdictions as GeoJSON, coloured as the
seed's map view: each structure carries its tasks of the plan (code, status, business status, colour) and the
colour of its main task (the first not cancelled, by the plan's action order) from the ``settings`` styles."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from validators.app_settings import SETTINGS_ID, AppSettings
from workers.couch import Couch, Doc
from workers.errors import NotFound
from workers.evaluator.lookup import is_jurisdiction
from workers.settings import Settings

NO_TASK_COLOR = None  # a structure without a task of the plan is drawn with the map's default


def plan_tasks(couch: Couch, db: str, plan_id: str) -> list[Doc]:
    rows = couch.iter_view(db, "fieldsync", "tasks_by_plan_status", reduce=False, include_docs=True,
                           startkey=[plan_id], endkey=[plan_id, {}])
    return [row["doc"] for row in rows if row.get("doc")]


def child_locations(couch: Couch, db: str, parent: str) -> list[Doc]:
    rows = couch.view(db, "fieldsync", "locations_by_parent", key=parent, reduce=False, include_docs=True)
    return [row["doc"] for row in rows if row.get("doc")]


def structures_of(couch: Couch, db: str, roots: list[str]) -> list[Doc]:
    """Every structure under the jurisdictions ``roots`` (their descendants included), in walk order."""
    seen: set[str] = set()
    out: list[Doc] = []
    queue = list(roots)
    while queue:
        jid = queue.pop(0)
        if jid in seen:
            continue
        seen.add(jid)
        for child in child_locations(couch, db, jid):
            if is_jurisdiction(child):
                queue.append(str(child["_id"]))
            else:
                out.append(child)
    return out


def feature(structure: Doc, tasks: list[Doc], styles: AppSettings, action_order: dict[str, int]) -> Doc:
    ordered = sorted(tasks, key=lambda t: (t.get("status") == "Cancelled", action_order.get(str(t.get("focus")), 99),
                                           str(t.get("code"))))
    entries = [{"code": t.get("code"), "status": t.get("status"), "businessStatus": t.get("businessStatus"),
                "color": styles.color_for(t.get("code"), t.get("businessStatus")), "task": t.get("_id")}
               for t in ordered]
    main = entries[0] if entries and entries[0]["status"] != "Cancelled" else None
    props = structure.get("properties") or {}
    return {
        "type": "Feature",
        "id": structure["_id"],
        "geometry": structure.get("geometry"),
        "properties": {
            "id": structure["_id"],
            "name": props.get("name"),
            "structureType": props.get("type"),
            "jurisdiction": props.get("parentId"),
            "code": main["code"] if main else None,
            "businessStatus": main["businessStatus"] if main else None,
            "color": main["color"] if main else NO_TASK_COLOR,
            "tasks": entries,
        },
    }


def structures_geojson(couch: Couch, settings: Settings, plan_id: str) -> dict[str, Any]:
    db = settings.dbs.main
    plan = couch.get(db, plan_id)
    if plan is None or plan.get("type") != "Plan":
        raise NotFound(f"plan {plan_id}: not in {db}")
    styles = AppSettings.model_validate(couch.get(db, SETTINGS_ID) or {})
    action_order = {str(a.get("identifier")): i for i, a in enumerate(plan.get("action") or [])}
    by_entity: dict[str, list[Doc]] = defaultdict(list)
    for task in plan_tasks(couch, db, plan_id):
        by_entity[str(task.get("for"))].append(task)
    roots = [str(j.get("code")) for j in plan.get("jurisdiction") or [] if j.get("code")]
    features = [feature(s, by_entity.get(str(s["_id"]), []), styles, action_order)
                for s in structures_of(couch, db, roots)]
    return {"type": "FeatureCollection", "features": features,
            "properties": {"plan": plan_id, "title": plan.get("title"), "structures": len(features)}}
