"""Who works where: users assigned to operational areas, teams (CouchDB roles) assigned to plans, kept in the
``assignments`` document of the main database (never replicated to a device), and the ``_security`` of each area
database derived from them.

An area database admits the users assigned to the area and the roles of the teams assigned to a plan covering
it, plus admins; nobody else. A change of assignment rewrites the affected areas' ``_security`` at once, so a
user who loses an area is refused (401/403) at the next sync, and nothing they synced before is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydantic import BaseModel, Field

from workers import provision
from workers.areas.routing import ASSIGNMENTS_ID, Index, chain, plan_covers
from workers.couch import Couch, Doc
from workers.errors import ConfigError, Conflict
from workers.logs import log_event
from workers.settings import Settings

log = logging.getLogger("fieldsync.areas")

class Assignments(BaseModel):
    users: dict[str, list[str]] = Field(default_factory=dict)  # user -> area ids
    teams: dict[str, list[str]] = Field(default_factory=dict)  # plan id -> team roles

    def users_of(self, area: str) -> list[str]:
        return sorted(user for user, areas in self.users.items() if area in areas)

    def teams_of(self, plans: list[str]) -> list[str]:
        return sorted({team for plan in plans for team in self.teams.get(plan, [])})


def load(couch: Couch, settings: Settings) -> tuple[Assignments, Doc]:
    doc = couch.get(settings.dbs.main, ASSIGNMENTS_ID) or {"_id": ASSIGNMENTS_ID, "type": "Assignments"}
    return Assignments.model_validate({k: doc.get(k, {}) for k in ("users", "teams")}), doc


def update(couch: Couch, settings: Settings, change: Callable[[Assignments], None]) -> Assignments:
    """Apply ``change`` to the stored assignments (retried on a concurrent write)."""
    for _ in range(10):
        current, doc = load(couch, settings)
        change(current)
        body = {**doc, "type": "Assignments", **current.model_dump()}
        body["users"] = {u: sorted(set(a)) for u, a in sorted(body["users"].items()) if a}
        body["teams"] = {p: sorted(set(t)) for p, t in sorted(body["teams"].items()) if t}
        if body == doc:
            return current
        try:
            couch.put(settings.dbs.main, body)
            return current
        except Conflict:
            continue
    raise Conflict("assignments: too many concurrent changes, try again")


def security_for(area: str, parents: list[str], assignments: Assignments, plans: list[Doc]) -> Doc:
    covering = [str(p.get("_id")) for p in plans if plan_covers(p, parents)]
    names = assignments.users_of(area)
    roles = assignments.teams_of(covering)
    if not names and not roles:
        return provision.ADMIN_ONLY
    return provision.members_security(names, roles)


def is_plan(doc: Doc) -> bool:
    """A plan, as the ``plans_by_status`` view takes one: ``type: Plan``, or an untyped OpenSRP plan."""
    return doc.get("type") == "Plan" or (not doc.get("type") and bool(doc.get("identifier"))
                                         and bool(doc.get("action")))


def all_plans(couch: Couch, settings: Settings) -> list[Doc]:
    rows = couch.view(settings.dbs.main, "fieldsync", "plans_by_status", include_docs=True, reduce=False)
    return list({r["doc"]["_id"]: r["doc"] for r in rows if r.get("doc")}.values())


def ensure_area(couch: Couch, settings: Settings, area: str, security: Doc) -> bool:
    """The area's database exists with this ``_security`` and its design documents; True when it was created."""
    db = settings.dbs.area(area)
    report = provision.ensure_db(couch, db, security, provision.area_design_docs(area),
                                 shards=settings.small_db_shards)
    if report.secured:
        log_event(log, "area security", area=area, db=db, names=",".join(security["members"]["names"]),
                  roles=",".join(security["members"]["roles"]))
    return bool(report.created)


def known_areas(couch: Couch, settings: Settings) -> list[str]:
    out = []
    for db in couch.all_dbs():
        area = settings.dbs.area_of(db)
        if area is not None:
            out.append(area)
    return sorted(out)


def apply_security(couch: Couch, settings: Settings, index: Index, areas: list[str] | None = None,
                   plans: list[Doc] | None = None) -> list[str]:
    """Rewrite the ``_security`` of ``areas`` (default: every area database) from the assignments; creates
    the databases of assigned areas that have none yet. Returns the areas whose security changed. ``plans``:
    every plan, when the caller knows them (else they are read from the main database's view)."""
    assignments, _ = load(couch, settings)
    plans = plans if plans is not None else all_plans(couch, settings)
    existing = set(known_areas(couch, settings))
    targets = set(areas) if areas is not None else existing | {a for v in assignments.users.values() for a in v}
    changed = []
    for area in sorted(targets):
        parents = chain(area, index)
        wanted = security_for(area, parents, assignments, plans)
        db = settings.dbs.area(area)
        if area in existing and provision.same_security(couch.get_security(db), wanted):
            continue
        ensure_area(couch, settings, area, wanted)
        changed.append(area)
    return changed


def check_user(couch: Couch, name: str) -> None:
    """Only an existing CouchDB user may be assigned: an assignment to a name nobody has yet would go to whoever
    signs up under it (and the empty name matches no one CouchDB would authenticate)."""
    if not name or not name.strip() or name != name.strip():
        raise ConfigError(f"user {name!r}: a user name, without surrounding spaces")
    if couch.get("_users", f"org.couchdb.user:{name}") is None:
        raise ConfigError(f"user {name}: no such user (create it first: fieldsync users add {name} ...)")


def check_team(team: str) -> None:
    if not team or not team.strip() or team.startswith("_"):
        raise ConfigError(f"team {team!r}: a role name, not empty and not starting with _ (CouchDB's own roles)")


def check_area(index: Index, area: str) -> None:
    place = index.place(area)
    if place is None:
        raise ConfigError(f"area {area}: no such location in the main database")
    if not place.jurisdiction:
        raise ConfigError(f"area {area}: a structure, not a jurisdiction (an operational area is the jurisdiction "
                          "structures hang under)")
