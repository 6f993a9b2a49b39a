"""Provisioning: databases with their ``_security``, design documents, the default settings, users.

Every function is idempotent and writes only what differs: a second ``init`` changes no revision.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from couch_design import design_docs_for, retired_design_docs
from validators.app_settings import SETTINGS_ID, default_settings
from workers.couch import Couch, Doc
from workers.errors import ConfigError, Conflict
from workers.logs import log_event
from workers.settings import Settings

log = logging.getLogger("fieldsync.provision")

USERS_DB = "_users"
# CouchDB 3 answers ``_db_updates`` (how the runner learns which databases changed) only once it exists
GLOBAL_CHANGES_DB = "_global_changes"
ADMIN_ONLY: Doc = {"admins": {"names": [], "roles": []}, "members": {"names": [], "roles": ["_admin"]}}


def members_security(names: list[str] | None = None, roles: list[str] | None = None) -> Doc:
    """Readable and writable by these users and roles, and by admins; never by anyone else."""
    names = sorted(set(names or []))
    roles = sorted(set(roles or []))
    if not names and not roles:
        return ADMIN_ONLY
    return {"admins": {"names": [], "roles": []}, "members": {"names": names, "roles": roles}}


@dataclass
class Report:
    created: list[str] = field(default_factory=list)
    secured: list[str] = field(default_factory=list)
    design_docs: list[str] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return len(self.created) + len(self.secured) + len(self.design_docs) + len(self.documents)

    def merge(self, other: Report) -> None:
        self.created += other.created
        self.secured += other.secured
        self.design_docs += other.design_docs
        self.documents += other.documents


def _normal_security(security: Doc) -> Doc:
    def part(name: str) -> Doc:
        section = security.get(name) or {}
        return {"names": sorted(section.get("names") or []), "roles": sorted(section.get("roles") or [])}

    return {"admins": part("admins"), "members": part("members")}


def ensure_db(couch: Couch, db: str, security: Doc, design_docs: list[Doc], retired: list[str] | None = None,
              *, shards: int | None = None) -> Report:
    """The database exists, has exactly this ``_security`` and these design documents, and none of the
    ``retired`` ones. ``shards``: a new database's number of shards on CouchDB (see :func:`small_db_shards`)."""
    report = Report()
    if couch.create_db(db, shards):
        report.created.append(db)
    # a new database is world-readable on PouchDB Server until _security is written: always write it
    if db in report.created or _normal_security(couch.get_security(db)) != _normal_security(security):
        _put_security(couch, db, security)
        report.secured.append(db)
    report.merge(write_design_docs(couch, db, design_docs))
    report.merge(remove_design_docs(couch, db, retired or []))
    return report


def _put_security(couch: Couch, db: str, security: Doc, attempts: int = 5) -> None:
    """PouchDB Server keeps ``_security`` as a document with a revision: two writers at once (the sync worker
    making an area's database while an assignment secures it) may get a 409. Written again over the other's."""
    for attempt in range(1, attempts + 1):
        try:
            couch.put_security(db, security)
            return
        except Conflict:
            if attempt == attempts:
                raise


def remove_design_docs(couch: Couch, db: str, ids: list[str]) -> Report:
    """Delete these design documents where they exist (their indexes go with the next view cleanup)."""
    report = Report()
    if not ids:
        return report
    found = couch.get_many(db, ids)
    if found:
        result = couch.save_many(db, [{"_id": d["_id"], "_rev": d["_rev"], "_deleted": True} for d in found.values()])
        if result.conflicts or result.errors:
            raise Conflict(f"{db}: design documents not removed: {result.conflicts or result.errors}")
        report.design_docs += [f"{db}/{i} (removed)" for i in found]
        log_event(log, "design documents retired", db=db, ids=sorted(found))
    return report


def same_security(current: Doc, wanted: Doc) -> bool:
    return _normal_security(current) == _normal_security(wanted)


AREA_TOKEN = "__FIELDSYNC_AREA__"


def area_design_docs(area: str) -> list[Doc]:
    """An area database's design documents: one per area, the area id written into the validation function
    (which has no other way to know which area its database holds)."""
    out = []
    for ddoc in design_docs_for("area"):
        text = ddoc.get("validate_doc_update")
        if isinstance(text, str):
            ddoc = {**ddoc, "validate_doc_update": text.replace(f"'{AREA_TOKEN}'", json.dumps(area))}
        out.append(ddoc)
    return out


def write_design_docs(couch: Couch, db: str, wanted: list[Doc]) -> Report:
    """Write the design documents among ``wanted`` whose content changed; leave the others alone."""
    report = Report()
    if not wanted:
        return report
    current = couch.get_many(db, [d["_id"] for d in wanted])
    writes: list[Doc] = []
    for ddoc in wanted:
        old = current.get(ddoc["_id"])
        if old is not None and _without_meta(old) == _without_meta(ddoc):
            continue
        new = dict(ddoc)
        if old is not None:
            new["_rev"] = old["_rev"]
        writes.append(new)
    if writes:
        result = couch.save_many(db, writes)
        if result.conflicts or result.errors:
            raise Conflict(f"{db}: design documents not written: {result.conflicts or result.errors}")
        report.design_docs += [f"{db}/{d['_id']}" for d in writes]
    return report


def _without_meta(doc: Doc) -> Doc:
    return {k: v for k, v in doc.items() if not k.startswith("_") or k == "_id"}


def init(couch: Couch, settings: Settings) -> Report:
    """Create the databases, their security and design documents, and the default settings document."""
    dbs = settings.dbs
    report = Report()
    report.merge(ensure_db(couch, dbs.main, ADMIN_ONLY, design_docs_for("main"), retired_design_docs("main")))
    report.merge(ensure_db(couch, dbs.users_meta, ADMIN_ONLY, design_docs_for("users-meta")))
    report.merge(ensure_db(couch, dbs.audit, ADMIN_ONLY, design_docs_for("audit")))
    if couch.supports("db_updates") and couch.create_db(GLOBAL_CHANGES_DB):
        report.created.append(GLOBAL_CHANGES_DB)
    if couch.get(dbs.main, SETTINGS_ID) is None:
        try:
            couch.put(dbs.main, default_settings())
            report.documents.append(f"{dbs.main}/{SETTINGS_ID}")
        except Conflict:
            pass  # another init wrote it meanwhile
    # meta databases of existing users get design-document updates too
    for db in couch.all_dbs():
        kind = dbs.kind(db)
        if kind == "user-meta":
            report.merge(write_design_docs(couch, db, design_docs_for(kind)))
        elif kind == "area":
            report.merge(write_design_docs(couch, db, area_design_docs(dbs.area_of(db) or "")))
    log_event(log, "init", created=len(report.created), secured=len(report.secured),
              design_docs=len(report.design_docs), documents=len(report.documents))
    return report


def add_user(couch: Couch, settings: Settings, name: str, password: str | None, roles: list[str]) -> Report:
    """Create or update a CouchDB user and its meta database (readable and writable by it and admins only)."""
    if not name or name.startswith("_") or ":" in name:
        raise ConfigError(f"user name {name!r} is not allowed: no leading '_' and no ':'")
    roles = [r for r in (role.strip() for role in roles) if r]
    if any(r.startswith("_") for r in roles):
        raise ConfigError("roles starting with '_' are reserved by CouchDB")
    report = Report()
    doc_id = f"org.couchdb.user:{name}"
    existing = couch.get(USERS_DB, doc_id)
    if existing is None:
        if not password:
            raise ConfigError(f"user {name} does not exist yet: give it a --password")
        user: Doc = {"_id": doc_id, "name": name, "type": "user", "roles": roles, "password": password}
        couch.put(USERS_DB, user)
        report.documents.append(f"{USERS_DB}/{doc_id}")
    else:
        changed = dict(existing)
        changed["roles"] = roles
        if password:
            changed["password"] = password
        if changed != existing:
            couch.put(USERS_DB, changed)
            report.documents.append(f"{USERS_DB}/{doc_id}")
    report.merge(ensure_db(couch, settings.dbs.user_meta(name), members_security([name]), design_docs_for("user-meta"),
                           shards=settings.small_db_shards))
    log_event(log, "user", user=name, roles=",".join(roles), writes=report.writes)
    return report


def user_roles(couch: Couch, name: str) -> list[str]:
    doc = couch.get(USERS_DB, f"org.couchdb.user:{name}")
    return list(doc.get("roles", [])) if doc else []


def all_users(couch: Couch) -> dict[str, dict[str, Any]]:
    """Every CouchDB user (name -> its _users document)."""
    out: dict[str, dict[str, Any]] = {}
    for row in couch.all_docs(USERS_DB, include_docs=True):
        doc = row.get("doc") or {}
        if doc.get("type") == "user" and doc.get("name"):
            out[doc["name"]] = doc
    return out
