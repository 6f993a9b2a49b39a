"""``fieldsync demo``: the seed's two walk-throughs end to end, from nothing, with devices replicating.

1. The embedded server (started if none runs), the databases (prefix ``demo`` by default, emptied first), users
   with their roles, the permission to track task interactions for ``chw`` and ``spray_operator``.
2. A generated district of operational areas (structures, families, members; some homes not yet registered),
   the IRS and Focus Investigation plans from the templates, activated: the workers generate the tasks and fill
   each area's database.
3. Simulated devices (PouchDB databases replicating as their users, ``server/device.js``) pull their areas and
   work offline: IRS (points dropped, structures sprayed), Focus Investigation (a family registered at a home
   with a register-family task: bednet and blood screening tasks follow, a blood screening done), two devices
   editing the same task offline (a conflict, settled latest-wins), and a device offline while a second FI plan
   is activated over its area registering a family against the first plan (the other plan's task is cancelled
   "Completed in another plan"). Devices also record task interactions, one user without the permission.
4. The workers and the summarizer run until idle after each step; at the end, every device pulls again.

The report (``demo.report``) is read back from the databases, not counted along the way.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from demo import forms, report
from demo.devices import Device
from demo.progressbar import Progress
from demo.synthetic import AreaSize, area_ids, operational_areas, uid
from summarizer import job as summarizer
from workers import embedded, provision, registry
from workers.areas import assignments
from workers.areas.index import MainIndex
from workers.couch import Couch, Doc
from workers.errors import ConfigError
from workers.evaluator.templates import new_plan_from_template
from workers.runner import Runner
from workers.settings import Settings

SEED = "demo"
DEMO_MARK = "fieldsyncDemo"  # on the demo's users: the prefix of the demo that made them
PERMITTED = ["chw", "spray_operator"]


@dataclass(frozen=True)
class DemoUsers:
    """The demo's CouchDB users: ``ana``, ``ben``, ``cara`` and ``dan``, named ``<prefix>ana``... On a server
    of the operator's own (``--use-couch-url``) the prefix is the demo's database prefix, so that no existing
    user is touched; on the embedded server it is empty, as the walk-throughs tell it."""

    prefix: str = ""

    def name(self, short: str) -> str:
        return f"{self.prefix}{short}"


@dataclass(frozen=True)
class DemoSize:
    areas: int = 3
    structures_per_area: int = 80
    members_per_family: int = 4
    unregistered_every: int = 4  # one residential structure in N has no family registered yet


@dataclass
class DemoUser:
    name: str
    roles: list[str]
    area_index: int
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))

    @property
    def device_id(self) -> str:
        return f"{self.name}-phone"


@dataclass
class Demo:
    settings: Settings
    couch: Couch
    size: DemoSize
    workdir: Path
    say: Callable[[str], None]
    names: DemoUsers = field(default_factory=DemoUsers)
    areas: list[str] = field(default_factory=list)
    plans: dict[str, Doc] = field(default_factory=dict)
    users: dict[str, DemoUser] = field(default_factory=dict)
    devices: dict[str, Device] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    runner: Runner | None = None
    clock: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    # ------------------------------------------------------------------------------------------ plumbing

    def tick(self, minutes: int = 7) -> datetime:
        self.clock += timedelta(minutes=minutes)
        return self.clock

    def settle(self, label: str) -> None:
        """Run every worker until each feed is caught up (and every activation done)."""
        if self.runner is None:
            built = registry.build(None, self.couch, self.settings)
            self.runner = Runner(self.couch, self.settings, built.handlers, chores=built.chores, discover_every=0)
        runner = self.runner
        start = runner.stats.changes
        with Progress(label) as bar:
            runner.discover()
            while True:
                busy = runner.run_once()
                bar.update(runner.stats.changes - start)
                if busy:
                    continue
                before = len(runner.followers)
                runner.discover()
                if len(runner.followers) == before and not runner.run_once():
                    break

    def url(self, user: DemoUser, db: str) -> str:
        return f"{self.settings.url_for(user.name, user.password)}/{db}"

    def area_db(self, user: DemoUser) -> str:
        return self.settings.dbs.area(self.areas[user.area_index])

    def device(self, name: str) -> Device:
        return self.devices[name]

    def pull(self, name: str) -> dict[str, Any]:
        user = self.users[name]
        return self.device(name).pull("area", self.url(user, self.area_db(user)))

    def push(self, name: str) -> dict[str, Any]:
        user = self.users[name]
        return self.device(name).push("area", self.url(user, self.area_db(user)))

    def tasks_on(self, name: str, **match: Any) -> list[Doc]:
        return [d for d in self.device(name).docs("area") if d.get("type") == "Task"
                and all(d.get(k) == v for k, v in match.items())]


# ---------------------------------------------------------------------------------------------- data


def demo_documents(size: DemoSize) -> Iterator[Doc]:
    """The generated district, with one residential structure in ``unregistered_every`` left without a family
    (the Focus Investigation plan gives those a register-family task)."""
    area_size = AreaSize(areas=size.areas, structures_per_area=size.structures_per_area,
                         members_per_family=size.members_per_family)
    unregistered: set[str] = set()
    residential = 0
    for doc in operational_areas(SEED, area_size):
        props = doc.get("properties") or {}
        if doc.get("type") == "Feature" and props.get("type") == "Residential Structure":
            residential += 1
            if size.unregistered_every and residential % size.unregistered_every == 0:
                unregistered.add(str(doc["_id"]))
        if doc.get("type") == "Client" and (doc.get("attributes") or {}).get("residence") in unregistered:
            continue
        yield doc


def wipe(couch: Couch, settings: Settings) -> int:
    """Drop the databases of this prefix (the demo starts from nothing)."""
    dropped = 0
    for db in couch.all_dbs():
        if settings.dbs.kind(db) is not None:
            couch.delete_db(db)
            dropped += 1
    return dropped


# ---------------------------------------------------------------------------------------------- steps


def prepare(demo: Demo) -> None:
    c, s = demo.couch, demo.settings
    dropped = wipe(c, s)
    provision.init(c, s)
    app = c.get(s.dbs.main, "settings") or {}
    app.setdefault("permissions", {})["can_track_task_interactions"] = PERMITTED
    c.put(s.dbs.main, app)
    n = demo.names.name
    demo.users = {short: DemoUser(n(short), roles, index) for short, roles, index in (
        ("ana", ["spray_operator", "chw"], 0), ("ben", ["spray_operator"], 0),
        ("cara", ["chw"], 1 % demo.size.areas), ("dan", ["supervisor"], 2 % demo.size.areas))}
    for user in demo.users.values():
        existing = c.get(provision.USERS_DB, f"org.couchdb.user:{user.name}")
        if demo.names.prefix and existing is not None and existing.get(DEMO_MARK) != s.db_prefix:
            raise ConfigError(f"user {user.name} exists on this server and is not a user of the demo with prefix "
                              f"{s.db_prefix}: choose another --prefix")
        provision.add_user(c, s, user.name, user.password, user.roles)
        doc = c.get(provision.USERS_DB, f"org.couchdb.user:{user.name}") or {}
        if doc.get(DEMO_MARK) != s.db_prefix:
            c.put(provision.USERS_DB, {**doc, DEMO_MARK: s.db_prefix})
    demo.say(f"databases with prefix {s.db_prefix} ready ({dropped} old ones dropped); users "
             + ", ".join(f"{u.name} ({','.join(u.roles)})" for u in demo.users.values()))


def load_area(demo: Demo) -> None:
    c, s = demo.couch, demo.settings
    size = demo.size
    total = size.areas * (1 + size.structures_per_area * (2 + size.members_per_family)) + 1
    part: list[Doc] = []
    written = 0
    with Progress("loading the operational areas", total) as bar:
        for doc in demo_documents(size):
            part.append(doc)
            if len(part) == 500:
                written += len(c.save_many(s.dbs.main, part).ok)
                part = []
                bar.update(written)
        written += len(c.save_many(s.dbs.main, part).ok)
        bar.update(written, written)
    demo.areas = area_ids(SEED, AreaSize(areas=size.areas, structures_per_area=size.structures_per_area))
    demo.facts["loaded"] = written


def plan(demo: Demo, key: str, template: str, jurisdiction: str, title: str) -> Doc:
    doc = new_plan_from_template(template, jurisdiction, title, date.today() - timedelta(days=1),
                                 date.today() + timedelta(days=60), demo.tick())
    doc["status"] = "active"
    demo.couch.put(demo.settings.dbs.main, doc)
    demo.plans[key] = doc
    return doc


def activate_plans(demo: Demo) -> None:
    district = uid(SEED, "district")
    plan(demo, "irs", "Dynamic-IRS", district, "IRS 2026 round 1")
    plan(demo, "fi", "Dynamic-FI", district, "Focus investigation 2026")
    demo.say("plans activated: IRS and Focus Investigation over the whole district")
    demo.settle("activating plans, filling area databases")


def open_devices(demo: Demo) -> None:
    c, s = demo.couch, demo.settings
    index = MainIndex(c, s.dbs.main)
    wanted = {user.name: demo.areas[user.area_index] for user in demo.users.values()}

    def assign(current: assignments.Assignments) -> None:
        for name, area in wanted.items():
            current.users.setdefault(name, []).append(area)

    assignments.update(c, s, assign)
    assignments.apply_security(c, s, index, sorted(set(demo.areas)))
    with Progress("devices pulling their areas", len(demo.users)) as bar:
        for name, user in demo.users.items():
            demo.devices[name] = Device(demo.workdir / user.device_id, user.device_id)
            demo.pull(name)
            bar.advance()
    for name, user in demo.users.items():
        demo.say(f"{user.device_id} pulled area {demo.areas[user.area_index][:8]}: "
                 f"{len(demo.device(name).docs('area'))} documents")


def irs_walkthrough(demo: Demo) -> None:
    """ana drops points (each a Register_Structure form) and sprays structures, offline."""
    ana, area, irs = demo.device("ana"), demo.areas[demo.users["ana"].area_index], demo.plans["irs"]
    who = demo.users["ana"].name
    dropped = []
    for n in range(2):
        point = forms.dropped_point(SEED, area, n, 100.001 + n * 0.001, 14.001)
        ana.put("area", point)
        ana.put("area", forms.event(SEED, "Register_Structure", point["_id"], area, irs["_id"], who, demo.tick(),
                                    observations={"structureType": "Residential Structure"}))
        dropped.append(point["_id"])
    ready = sorted((t for t in demo.tasks_on("ana", planIdentifier=irs["_id"], code="IRS", status="Ready")),
                   key=lambda t: str(t["_id"]))
    sprayed = ready[:5]
    for i, task in enumerate(sprayed):
        outcome = "Not Sprayed" if i == 4 else "Sprayed"
        ana.put("area", forms.event(SEED, "Spray", task["for"], area, irs["_id"], who, demo.tick(),
                                    task=task["_id"], business_status=outcome))
    demo.facts.update(dropped=dropped, sprayed=[t["_id"] for t in sprayed])
    demo.facts["conflict_task"] = ready[5]["_id"] if len(ready) > 5 else None
    demo.say(f"ana (offline): dropped {len(dropped)} points, sprayed {len(sprayed)} structures")


def conflicting_edits(demo: Demo) -> None:
    """ana and ben, both offline, record the same spray task differently: ben earlier, ana later.

    Their times are real times, before either syncs: the server clamps a device's claimed time to when it first
    sees the revision (a clock ahead of the server's cannot win), and the demo's own clock runs ahead."""
    task_id = demo.facts.get("conflict_task")
    if not task_id:
        return
    now = datetime.now(UTC).replace(microsecond=0)
    for name, outcome, minutes in (("ben", "Not Sprayed", 20), ("ana", "Sprayed", 5)):
        device = demo.device(name)
        task = device.get("area", task_id)
        device.put("area", {**task, "status": "Completed", "businessStatus": outcome,
                            "lastModified": forms.iso(now - timedelta(minutes=minutes))})
    demo.say(f"ana and ben (both offline) edited task {task_id[:8]} differently")


def fi_walkthrough(demo: Demo) -> None:
    """cara registers a family at a home that has a register-family task, then syncs."""
    area, fi = demo.areas[demo.users["cara"].area_index], demo.plans["fi"]
    tasks = sorted(demo.tasks_on("cara", planIdentifier=fi["_id"], code="RACD Register Family", status="Ready"),
                   key=lambda t: str(t["_id"]))
    if not tasks:
        return
    task = tasks[0]
    demo.facts["fi_home"] = task["for"]
    register_family(demo, "cara", task, area, fi)
    demo.say(f"cara (offline): registered a family at {task['for'][:8]}")
    demo.push("cara")


def register_family(demo: Demo, name: str, task: Doc, area: str, plan_doc: Doc) -> list[Doc]:
    device = demo.device(name)
    when = demo.tick()
    docs = forms.registered_family(SEED, str(task["for"]), when)
    family_doc, members = docs[0], docs[1:]
    for doc in docs:
        device.put("area", doc)
    device.put("area", forms.event(SEED, "Family_Registration", family_doc["_id"], area, plan_doc["_id"],
                                   demo.users[name].name,
                                   when, task=task["_id"], business_status="Complete",
                                   structure_id=str(task["for"])))
    for m in members:
        device.put("area", forms.event(SEED, "Family_Member_Registration", m["_id"], area, plan_doc["_id"],
                                   demo.users[name].name,
                                       demo.tick(1), structure_id=str(task["for"])))
    return docs


def second_plan_while_offline(demo: Demo) -> None:
    """A second FI plan is activated over ben's area while ben is offline; ben registers a family against the
    first plan's task: the second plan's task for the same home is cancelled, its follow-on tasks generated."""
    area = demo.areas[demo.users["ben"].area_index]
    plan(demo, "fi2", "Dynamic-FI", area, "Focus investigation 2026, second case")
    demo.settle("second FI plan activated (ben offline)")
    fi = demo.plans["fi"]
    tasks = sorted(demo.tasks_on("ben", planIdentifier=fi["_id"], code="RACD Register Family", status="Ready"),
                   key=lambda t: str(t["_id"]))
    if tasks:
        register_family(demo, "ben", tasks[0], area, fi)
        demo.facts["two_plan_home"] = tasks[0]["for"]
        demo.say(f"ben (offline): registered a family at {tasks[0]['for'][:8]} against the first FI plan")


def sync_everyone(demo: Demo, label: str) -> None:
    for name in ("ana", "ben"):
        demo.push(name)
    demo.settle(label)
    with Progress("devices pulling", len(demo.devices)) as bar:
        for name in demo.devices:
            demo.pull(name)
            bar.advance()


def follow_ups(demo: Demo) -> None:
    """cara finds the follow-on tasks of her registration and completes the head's blood screening and the
    home's bednet distribution."""
    home = demo.facts.get("fi_home")
    if not home:
        return
    cara, area, fi = demo.device("cara"), demo.areas[demo.users["cara"].area_index], demo.plans["fi"]
    who = demo.users["cara"].name
    members = {d["_id"] for d in cara.docs("area") if d.get("type") == "Client"
               and (d.get("attributes") or {}).get("residence") == home}
    follow = [t for t in demo.tasks_on("cara", planIdentifier=fi["_id"], status="Ready")
              if t["for"] == home or t["for"] in members]
    demo.facts["fi_follow_ups"] = sorted(str(t["code"]) for t in follow)
    for task in follow:
        if task["code"] == "Blood Screening":
            cara.put("area", forms.event(SEED, "blood_screening", task["for"], area, fi["_id"], who,
                                         demo.tick(), task=task["_id"], business_status="Tested"))
            break
    for task in follow:
        if task["code"] == "Bednet Distribution":
            cara.put("area", forms.event(SEED, "bednet_distribution", task["for"], area, fi["_id"], who,
                                         demo.tick(), task=task["_id"], business_status="Complete"))
            break
    demo.push("cara")
    demo.say(f"cara: follow-on tasks {', '.join(demo.facts['fi_follow_ups']) or 'none'}; screened and "
             "distributed bednets")


def record_interactions(demo: Demo) -> None:
    day = demo.clock.date().isoformat()
    start = int(demo.clock.timestamp() * 1000)
    for i, (name, user) in enumerate(demo.users.items()):
        device = demo.device(name)
        device.put("meta", forms.interactions(user.name, user.device_id, day, start + i * 1000, 3 + i))
        device.push("meta", f"{demo.settings.url_for(user.name, user.password)}/"
                    f"{demo.settings.dbs.user_meta(user.name)}")
    started = time.perf_counter()
    passed = summarizer.run_pass(demo.couch, demo.settings)
    demo.facts["summarize"] = {"records": passed.records, "documents": passed.documents_written,
                               "not_permitted": passed.not_permitted,
                               "ms": round((time.perf_counter() - started) * 1000)}
    demo.say(f"interactions: {passed.records} records merged into {passed.documents_written} daily documents, "
             f"{passed.not_permitted} removed (no permission)")


def converge(demo: Demo) -> None:
    task_id = demo.facts.get("conflict_task")
    if not task_id:
        return
    revs = {name: demo.device(name).get("area", task_id, conflicts=True) for name in ("ana", "ben")}
    main = demo.couch.get(demo.settings.dbs.main, task_id) or {}
    demo.facts["conflict_converged"] = all(d["_rev"] == main.get("_rev") and "_conflicts" not in d
                                           for d in revs.values())
    demo.facts["conflict_winner"] = main.get("businessStatus")


def run(settings: Settings, size: DemoSize, say: Callable[[str], None], workdir: Path | None = None, *,
        users: DemoUsers | None = None) -> dict[str, Any]:
    """The whole demo on ``settings``' server; returns the report (see :mod:`demo.report`)."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fieldsync-demo-devices-") as tmp:
        demo = Demo(settings, Couch.from_settings(settings), size, workdir or Path(tmp), say, users or DemoUsers())
        try:
            prepare(demo)
            load_area(demo)
            activate_plans(demo)
            open_devices(demo)
            irs_walkthrough(demo)
            conflicting_edits(demo)
            fi_walkthrough(demo)
            second_plan_while_offline(demo)
            sync_everyone(demo, "devices synced: evaluating, resolving")
            follow_ups(demo)
            sync_everyone(demo, "follow-up forms synced")
            record_interactions(demo)
            demo.settle("last pass of the workers")
            converge(demo)
        finally:
            for device in demo.devices.values():
                device.close()
        demo.facts["seconds"] = round(time.perf_counter() - started, 1)
        return report.collect(demo.couch, settings, demo.plans, {u.name: u for u in demo.users.values()},
                              demo.facts)


def use_server(settings: Settings, say: Callable[[str], None]) -> Settings:
    """The server of ``FIELDSYNC_COUCH_URL``, as it is (never started nor stopped here): it must answer, as an
    admin."""
    if settings.credentials is None:
        raise ConfigError("--use-couch-url needs admin credentials in FIELDSYNC_COUCH_URL "
                          "(http://USER:PASSWORD@HOST:PORT)")
    couch = Couch.from_settings(settings)
    described = couch.describe()
    if "_admin" not in (couch.session().get("userCtx") or {}).get("roles", []):
        raise ConfigError(f"--use-couch-url: {settings.admin_user} is not an admin of {settings.couch_url}")
    say(f"using {described} at {settings.couch_url}: databases with prefix {settings.db_prefix} only")
    return settings


def ensure_server(settings: Settings, say: Callable[[str], None]) -> tuple[Settings, bool]:
    """The embedded server, started when the URL is local and none is running; (settings, started)."""
    if settings.host in embedded.LOOPBACK and embedded.running_pid(settings.data_dir.resolve()) is None:
        started = embedded.start(settings)
        say(f"embedded server running at {started.url} (pid {started.pid}, data {started.data_dir})")
        if settings.credentials is None:
            settings = Settings.from_env().model_copy(update={"db_prefix": settings.db_prefix})
        return settings, True
    return settings, False
