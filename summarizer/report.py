"""``fieldsync report interactions``: the merged daily documents of a date range as a table or CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

from workers.couch import Couch
from workers.settings import Settings

COLUMNS = ("date", "user", "device", "events", "sessions", "task_list_min", "open_to_complete_s",
           "completes", "cap_reached", "dropped_by_cap")


def rows(couch: Couch, settings: Settings, start: str, end: str) -> list[dict[str, Any]]:
    found = couch.view(settings.dbs.users_meta, "interactions", "by_date", startkey=start, endkey=end,
                       reduce=False, include_docs=True)
    out = []
    for row in found:
        doc = row.get("doc") or {}
        summary, meta = doc.get("summary") or {}, doc.get("metadata") or {}
        task_list = summary.get("taskList") or {}
        to_complete = summary.get("openToComplete") or {}
        out.append({
            "date": meta.get("date"), "user": meta.get("user"), "device": meta.get("deviceId"),
            "events": summary.get("events", 0), "sessions": summary.get("sessions", 0),
            "task_list_min": round((task_list.get("totalMs") or 0) / 60000, 1),
            "open_to_complete_s": round((to_complete.get("totalMs") or 0) / 1000 / to_complete["count"], 1)
            if to_complete.get("count") else "",
            "completes": (summary.get("actions") or {}).get("task:complete", 0),
            "cap_reached": bool(summary.get("capReached")), "dropped_by_cap": summary.get("droppedByCap", 0),
        })
    return sorted(out, key=lambda r: (r["date"], r["user"], r["device"]))


def render(data: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(data)
        return buffer.getvalue().rstrip("\n")
    widths = {c: max([len(c), *(len(str(r[c])) for r in data)]) for c in COLUMNS}
    lines = ["  ".join(c.ljust(widths[c]) for c in COLUMNS)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in COLUMNS) for r in data]
    if not data:
        lines.append("(no merged interaction documents in this range)")
    return "\n".join(lines)
