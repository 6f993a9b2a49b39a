"""Plan operations the command line offers: activation (the plan worker does the rest)."""

from __future__ import annotations

from workers.audit import now_iso
from workers.couch import Couch, Doc
from workers.errors import Conflict, NotFound
from workers.settings import Settings


def set_status(couch: Couch, settings: Settings, plan_id: str, status: str) -> Doc:
    """Set a plan's status (``active`` starts its activation by the plan worker); idempotent."""
    for _ in range(3):
        plan = couch.get(settings.dbs.main, plan_id)
        if plan is None or plan.get("type") != "Plan":
            raise NotFound(f"plan {plan_id} is not in {settings.dbs.main}: load it first (fieldsync load)")
        if plan.get("status") == status:
            return plan
        plan["status"] = status
        plan["serverVersion"] = int(plan.get("serverVersion") or 0) + 1
        plan["dateEdited"] = now_iso()
        try:
            couch.put(settings.dbs.main, plan)
            return plan
        except Conflict:
            continue
    raise Conflict(f"plan {plan_id} kept changing while its status was set: try again")
