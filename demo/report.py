"""The demo's report, read back from the databases: tasks by plan, code, status and business status; conflicts
resolved and where their audit is; cross-plan cancellations; interaction summaries per user; the areas; where
to look next."""

from __future__ import annotations

from collections import Counter
from typing import Any

from workers.areas.assignments import known_areas
from workers.couch import Couch, Doc
from workers.settings import Settings


def _audit(couch: Couch, settings: Settings, kind: str) -> list[Doc]:
    rows = couch.view(settings.dbs.audit, "audit", "by_kind", reduce=False, include_docs=True,
                      startkey=[kind], endkey=[kind, {}])
    return [row["doc"] for row in rows if row.get("doc")]


def collect(couch: Couch, settings: Settings, plans: dict[str, Doc], users: dict[str, Any],
            facts: dict[str, Any]) -> dict[str, Any]:
    dbs = settings.dbs
    titles = {str(p["_id"]): str(p.get("title")) for p in plans.values()}
    rows = couch.view(dbs.main, "fieldsync", "tasks_by_plan_status", group_level=4)
    tasks = [{"plan": titles.get(str(r["key"][0]), str(r["key"][0])), "planId": r["key"][0],
              "status": r["key"][1], "businessStatus": r["key"][2], "code": r["key"][3], "count": int(r["value"])}
             for r in rows]
    tasks.sort(key=lambda t: (t["plan"], t["code"] or "", t["status"] or "", t["businessStatus"] or ""))
    conflicts = [{"docId": d["docId"], "db": d["db"], "rule": d.get("rule"), "auditId": d["_id"],
                  "winner": (d.get("winner") or {}).get("businessStatus"),
                  "losers": [x.get("businessStatus") for x in d.get("losers") or []]}
                 for d in _audit(couch, settings, "conflict")]
    cancellations = [{"task": d.get("docId"), "code": d.get("code"), "entity": d.get("entity"),
                      "plan": titles.get(str(d.get("taskPlan")), d.get("taskPlan")),
                      "byPlan": titles.get(str(d.get("byPlan")), d.get("byPlan")),
                      "reason": d.get("reason"), "cause": d.get("eventType") or (d.get("cause") or {}).get("type")}
                     for d in _audit(couch, settings, "cancellation")]
    daily = [row["doc"] for row in couch.all_docs(dbs.users_meta, include_docs=True, startkey="interaction-",
                                                  endkey="interaction-\ufff0")]
    per_user: dict[str, dict[str, Any]] = {}
    for doc in daily:
        meta, summary = doc.get("metadata") or {}, doc.get("summary") or {}
        entry = per_user.setdefault(str(meta.get("user")), {"devices": 0, "events": 0, "sessions": 0,
                                                            "actions": Counter()})
        entry["devices"] += 1
        entry["events"] += sum(len(s.get("events") or []) for s in doc.get("sessions") or [])
        entry["sessions"] += len(doc.get("sessions") or [])
        entry["actions"].update(summary.get("actions") or {})
    for entry in per_user.values():
        entry["actions"] = dict(sorted(entry["actions"].items()))
    left = {name: len(couch.all_docs(dbs.user_meta(name), include_docs=False, startkey="interaction-",
                                     endkey="interaction-\ufff0")) for name in users}
    areas = []
    for area in known_areas(couch, settings):
        db = dbs.area(area)
        members = couch.get_security(db).get("members") or {}
        areas.append({"area": area, "db": db, "docs": int((couch.db_info(db) or {}).get("doc_count", 0)),
                      "users": members.get("names") or []})
    refused = len(_audit(couch, settings, "refused"))
    parked = len(_audit(couch, settings, "parked"))
    return {"prefix": settings.db_prefix, "server": settings.couch_url, "tasks": tasks,
            "tasksTotal": sum(t["count"] for t in tasks), "conflicts": conflicts, "cancellations": cancellations,
            "interactions": per_user, "interactionRecordsLeft": left, "areas": areas, "refused": refused,
            "parked": parked, "plans": titles, "facts": facts}


def render(report: dict[str, Any]) -> list[str]:
    out: list[str] = []
    url, prefix = report["server"], report["prefix"]
    out.append("")
    out.append(f"Tasks by plan, code, status and business status ({report['tasksTotal']} in all):")
    out.append(f"  {'plan':44} {'code':22} {'status':11} {'business status':20} {'tasks':>6}")
    for t in report["tasks"]:
        out.append(f"  {t['plan'][:44]:44} {str(t['code'])[:22]:22} {t['status']!s:11} "
                   f"{str(t['businessStatus'])[:20]:20} {t['count']:>6}")
    out.append("")
    out.append(f"Conflicts resolved: {len(report['conflicts'])} (audit in {prefix}-audit; "
               "`fieldsync conflicts list`, `fieldsync conflicts revert AUDIT_ID`)")
    for c in report["conflicts"]:
        out.append(f"  {c['docId']} in {c['db']}: kept {c['winner']} over {', '.join(map(str, c['losers']))} "
                   f"({c['rule']}); audit {c['auditId']}")
    facts = report["facts"]
    if "conflict_converged" in facts:
        out.append(f"  both devices converged on the same revision: {'yes' if facts['conflict_converged'] else 'NO'}")
    out.append(f"Cross-plan cancellations: {len(report['cancellations'])}")
    for c in report["cancellations"]:
        out.append(f"  {c['code']} task of {c['plan']} for {str(c['entity'])[:8]}: cancelled, {c['reason']} "
                   f"({c['cause']} in {c['byPlan']})")
    out.append("")
    out.append("Task interactions (merged daily documents, no personal data):")
    for user, e in sorted(report["interactions"].items()):
        actions = ", ".join(f"{k} {v}" for k, v in e["actions"].items())
        out.append(f"  {user}: {e['devices']} device(s), {e['sessions']} session(s), {e['events']} events ({actions})")
    missing = sorted(u for u in report["interactionRecordsLeft"] if u not in report["interactions"])
    if missing:
        out.append(f"  no document for {', '.join(missing)} (role without can_track_task_interactions: records "
                   "removed)")
    out.append("")
    out.append("Operational-area databases:")
    for a in report["areas"]:
        out.append(f"  {a['db']}: {a['docs']} documents, synced by {', '.join(a['users']) or 'admins only'}")
    out.append(f"Refused at sync: {report['refused']}; parked: {report['parked']}; took {facts.get('seconds')} s")
    out.append("")
    out.append("Where to look next (set URL to the server with admin credentials, as in FIELDSYNC_COUCH_URL):")
    out.append(f"  fieldsync status            FIELDSYNC_DB_PREFIX={prefix} fieldsync status")
    out.append(f"  tasks by plan and status    curl \"$URL/{prefix}/_design/fieldsync/_view/tasks_by_plan_status"
               "?group_level=4\"")
    out.append(f"  interactions per user/day   curl \"$URL/{prefix}-users-meta/_design/interactions/_view/"
               "by_user_date?group_level=2\"")
    out.append(f"  audit by kind               curl \"$URL/{prefix}-audit/_design/audit/_view/by_kind?group_level=1\"")
    out.append(f"  the map                     FIELDSYNC_DB_PREFIX={prefix} fieldsync export map --plan "
               f"{next(iter(report['plans']), 'PLAN_ID')} > structures.geojson")
    out.append(f"  Fauxton (browse, log in as admin)  {url}/_utils/  (with --keep-running)")
    return out
