"""Plan templates shipped with the package (``workers/templates/*.json``) and draft plans made from them.

The only I/O of the evaluator: reading the package's own template files.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from datetime import date, datetime
from importlib import resources
from typing import Any

from validators.opensrp import Plan

Doc = dict[str, Any]

TEMPLATES = {
    "Dynamic-IRS": "dynamic-irs.json",
    "Dynamic-FI": "dynamic-fi.json",
    "Dynamic-MDA": "dynamic-mda.json",
}

_NAMESPACE = uuid.UUID("0b7d8a52-3c1e-5f4a-9a6e-1d2c3b4a5f60")


def template_names() -> list[str]:
    return sorted(TEMPLATES)


def load_template(name: str) -> Doc:
    """The template plan (a draft with blank identifiers and dates). ``KeyError`` for an unknown name."""
    if name not in TEMPLATES:
        raise KeyError(f"unknown plan template {name!r}; known: {', '.join(template_names())}")
    text = resources.files("workers").joinpath("templates", TEMPLATES[name]).read_text(encoding="utf-8")
    loaded: Doc = json.loads(text)
    return loaded


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def new_plan_from_template(
    name: str,
    jurisdiction_id: str,
    title: str,
    start: date,
    end: date,
    now: datetime,
) -> Doc:
    """A draft plan (``status: draft``) from a template, for one jurisdiction and period.

    The identifier is derived from (template, jurisdiction, title, start, now): pure, and distinct for two
    plans made at different times. Actions get identifiers derived from the plan's; their timing and the
    goals' due dates are the plan's period. The result is validated as a Plan before it is returned.
    """
    if end < start:
        raise ValueError(f"plan end {end} is before its start {start}")
    plan = copy.deepcopy(load_template(name))
    identifier = str(uuid.uuid5(_NAMESPACE, f"{name}|{jurisdiction_id}|{title}|{start}|{now.isoformat()}"))
    plan.update({
        "_id": identifier,
        "type": "Plan",
        "identifier": identifier,
        "name": f"{_slug(name)}-{_slug(title)}-{start.isoformat()}",
        "title": title,
        "status": "draft",
        "date": now.date().isoformat(),
        "effectivePeriod": {"start": start.isoformat(), "end": end.isoformat()},
        "jurisdiction": [{"code": jurisdiction_id}],
    })
    for goal in plan.get("goal", []):
        for target in goal.get("target", []):
            target["due"] = end.isoformat()
    for action in plan.get("action", []):
        key = f"{action.get('prefix')}|{action.get('code')}"
        action["identifier"] = str(uuid.uuid5(uuid.UUID(identifier), key))
        action["timingPeriod"] = {"start": start.isoformat(), "end": end.isoformat()}
    Plan.model_validate(plan)
    return plan
