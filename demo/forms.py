"""What the demo's devices write, in the shapes real Reveal and CHT clients write: OpenSRP events (form
submissions with their observations), structures, families and members, and CHT interaction-log records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from demo.synthetic import family, member, structure, uid
from validators.interaction import daily_doc_id

Doc = dict[str, Any]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _obs(code: str, value: str) -> Doc:
    return {"fieldType": "formsubmissionField", "fieldDataType": "text", "fieldCode": code, "parentCode": "",
            "values": [value], "set": [], "formSubmissionField": code, "humanReadableValues": [],
            "saveObsAsArray": False}


def event(seed: str, event_type: str, entity: str, area: str, plan: str, provider: str, when: datetime, *,
          task: str | None = None, business_status: str | None = None, structure_id: str | None = None,
          observations: dict[str, str] | None = None) -> Doc:
    """An OpenSRP form submission: ``locationId`` is the operational area, ``details`` name the plan and, when
    the form completes a task, the task and its business status (OpenSRP's post-save logic reads them)."""
    form_id = uid(seed, "form", event_type, entity, task or "", when.isoformat())
    details: Doc = {"planIdentifier": plan}
    if task:
        details.update({"taskIdentifier": task, "taskStatus": "READY", "taskBusinessStatus": "Not Visited"})
    if structure_id:
        details["locationUUID"] = structure_id
    obs = dict(observations or {})
    if business_status:
        obs["business_status"] = business_status
    return {"_id": form_id, "type": "Event", "eventType": event_type, "baseEntityId": entity, "locationId": area,
            "formSubmissionId": form_id, "providerId": provider, "entityType": event_type, "duration": 0,
            "eventDate": iso(when), "dateCreated": iso(when), "obs": [_obs(k, v) for k, v in obs.items()],
            "details": details, "identifiers": {}, "version": int(when.timestamp() * 1000)}


def dropped_point(seed: str, area: str, n: int, lng: float, lat: float) -> Doc:
    """A structure registered on a device (a point dropped on the map)."""
    return structure(uid(seed, "dropped", area, n), area, "Residential Structure", lng, lat)


def registered_family(seed: str, structure_id: str, when: datetime, members: int = 3) -> list[Doc]:
    """A family registered at a structure: the family client, its head and other members (one under five)."""
    fid = uid(seed, "new-family", structure_id)
    head = uid(seed, "new-member", structure_id, 0)
    docs = [family(fid, structure_id, head, "Registered household", when)]
    births = [datetime(1982, 3, 4, tzinfo=UTC), datetime(1986, 7, 8, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)]
    for m in range(members):
        mid = head if m == 0 else uid(seed, "new-member", structure_id, m)
        docs.append(member(mid, fid, structure_id, ["Somchai", "Malee", "Nid"][m % 3], "Registered",
                           births[m % 3], "Female" if m % 2 else "Male", when))
    return docs


def interactions(user: str, device: str, day: str, start_ms: int, tasks: int) -> Doc:
    """A CHT 5.2 interaction-log record: a task-list session in which ``tasks`` tasks are opened and done."""
    events: list[Doc] = [{"action": "task_list:open", "timestamp": start_ms},
                         {"action": "task_list:loaded", "timestamp": start_ms + 400, "detail": str(tasks)}]
    t = start_ms + 1000
    for i in range(tasks):
        ref = "task.irs.spray" if i % 2 == 0 else "task.fi.register_family"
        events += [{"action": "task_list:scroll", "timestamp": t, "detail": str(i)},
                   {"action": "task:open", "timestamp": t + 2000, "ref": ref},
                   {"action": "task:form_open", "timestamp": t + 3000, "ref": ref},
                   {"action": "task:form_save", "timestamp": t + 45_000, "ref": ref},
                   {"action": "task:complete", "timestamp": t + 46_000, "ref": ref}]
        t += 60_000
    events.append({"action": "task_list:leave", "timestamp": t})
    return {"_id": daily_doc_id(user, device, day), "type": "interaction-log",
            "sessions": [{"session": "tasks", "startedAt": start_ms, "events": events}],
            "metadata": {"user": user, "deviceId": device, "date": day, "version": "5.2.0"}}
