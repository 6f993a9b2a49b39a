"""The plan worker against the real server: activation equals the pure evaluator's, resumable, idempotent;
events and offline registrations produce follow-on tasks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from areaworld import NORTH, register_structure, structure, world

from demo.synthetic import AreaSize, operational_areas, uid
from workers.couch import Couch
from workers.evaluator.engine import activate
from workers.evaluator.lookup import InMemoryLookup
from workers.evaluator.templates import new_plan_from_template
from workers.parallel import Pending
from workers.plans import activation
from workers.plans import worker as worker_module
from workers.plans.worker import PlanWorker
from workers.registry import build
from workers.runner import Runner
from workers.settings import Settings

__all__ = ["world"]  # the fixture


def _run(couch: Couch, settings: Settings, workers: list[str] | None = None) -> None:
    built = build(workers or ["plans"], couch, settings)
    Runner(couch, settings, built.handlers, chores=built.chores, discover_every=0).run(until_idle=True)


def _tasks(couch: Couch, settings: Settings, at_least: int = 0) -> dict[str, dict[str, object]]:
    """The tasks as they are: ids from the view, documents by quorum read. On a cluster a view reads one copy
    of each shard, and a copy may not have taken the last write yet (CI once saw 'Ready' there for a task the
    worker had just cancelled, acknowledged by the other two copies; and once 6 of an activation's tasks
    missing): with ``at_least``, the view is read again until it lists that many (30 s at most)."""
    deadline = time.monotonic() + 30
    while True:
        rows = couch.view(settings.dbs.main, "fieldsync", "tasks_by_plan_status", reduce=False)
        ids = sorted({str(row["id"]) for row in rows})
        if len(ids) >= at_least or time.monotonic() > deadline:
            return couch.get_many(settings.dbs.main, ids)
        time.sleep(0.2)


def _fi_plan(district: str) -> dict[str, object]:
    plan = new_plan_from_template("Dynamic-FI", district, "FI test", date(2026, 11, 1), date(2026, 12, 31),
                                  datetime(2026, 11, 1, tzinfo=UTC))
    return plan


def _recording(worker: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the changes handed to ``worker.process`` from now on, in order."""
    seen: list[str] = []
    process = worker.process

    def recording(db: str, changes: list[dict[str, Any]]) -> int:
        seen.extend(str(c.get("id")) for c in changes)
        return process(db, changes)

    monkeypatch.setattr(worker, "process", recording)
    return seen


def _until(condition: Callable[[], bool], seconds: float, pause: float = 0.05) -> bool:
    """Whether ``condition()`` came true within ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(pause)
    return condition()


@contextmanager
def _awake(couch: Couch, settings: Settings, built: Any) -> Iterator[None]:
    """The built workers run awake, as ``fieldsync work`` runs them (a runner thread), until the block ends."""
    runner = Runner(couch, settings, built.handlers, chores=built.chores, discover_every=0, wait_s=1)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(60)


def _activation_done(couch: Couch, settings: Settings) -> bool:
    return (activation.progress_of(couch, settings.dbs.main) or [{}])[0].get("state") == "done"


def test_activation_writes_what_the_pure_evaluator_decides(couch: Couch, initialised: Settings) -> None:
    s = initialised
    size = AreaSize(areas=2, structures_per_area=15)
    docs = list(operational_areas("act", size))
    couch.save_many(s.dbs.main, [dict(d) for d in docs])
    plan = _fi_plan(uid("act", "district"))
    couch.put(s.dbs.main, dict(plan))
    _run(couch, s)
    assert _tasks(couch, s) == {}  # a draft plan generates nothing
    plan = couch.get(s.dbs.main, str(plan["_id"])) or {}
    plan["status"] = "active"
    couch.put(s.dbs.main, plan)
    _run(couch, s)

    expected = activate(plan, InMemoryLookup([*docs, plan]), datetime.now(UTC))
    stored = _tasks(couch, s, at_least=len(expected.tasks))
    parked = couch.view(s.dbs.audit, "audit", "by_kind", reduce=False, include_docs=True,
                        startkey=["parked"], endkey=["parked", {}])
    assert [row["doc"]["error"] for row in parked][:3] == []
    assert stored and set(stored) == {t["_id"] for t in expected.tasks}
    codes = sorted({str(t["code"]) for t in stored.values()})
    assert "Blood Screening" in codes and "Bednet Distribution" in codes
    [progress] = activation.progress_of(couch, s.dbs.main)
    assert progress["state"] == "done" and progress["jurisdictionsDone"] == progress["jurisdictionsTotal"] == 3
    assert progress["tasks"] == len(stored) and 0 < progress["tasksWritten"] <= len(stored)

    # a second worker run (a restart) writes nothing: same ids, no duplicates
    revs = {k: v["_rev"] for k, v in stored.items()}
    _run(couch, s)
    assert {k: v["_rev"] for k, v in _tasks(couch, s).items()} == revs


def _held_activation(couch: Couch, s: Settings, seed: str, monkeypatch: pytest.MonkeyPatch,
                     chunks: list[int] | None = None
                     ) -> tuple[list[dict[str, Any]], dict[str, Any], threading.Event, threading.Semaphore]:
    """Four areas and an active Dynamic-FI plan, with every activation write held until ``release`` is set;
    ``held`` is released once per write that starts, whose request size goes to ``chunks``. Returns
    (documents, plan, release, held)."""
    docs = list(operational_areas(seed, AreaSize(areas=4, structures_per_area=20)))
    couch.save_many(s.dbs.main, [dict(d) for d in docs])
    plan = {**_fi_plan(uid(seed, "district")), "status": "active"}
    couch.put(s.dbs.main, plan)
    release = threading.Event()
    held = threading.Semaphore(0)
    write = activation.Activation._write

    def held_write(self: activation.Activation, batch: list[dict[str, Any]],
                   chunk: int = activation.WRITE_CHUNK) -> Any:
        if chunks is not None:
            chunks.append(chunk)
        held.release()
        assert release.wait(120), "never released"
        return write(self, batch, chunk)

    monkeypatch.setattr(activation.Activation, "_write", held_write)
    return docs, plan, release, held


def test_an_activation_waiting_for_its_writes_lets_feed_batches_run(
    couch: Couch, initialised: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Awake: once the activation's writes in flight fill its pipeline, it waits for them outside the worker's
    turn, so a change arriving meanwhile is processed at once (it used to wait for the oldest write, 4-7 s on a
    loaded CouchDB). The writes are held here until the change has been processed; then the activation ends
    with the pure evaluator's tasks."""
    s = initialised
    docs, plan, release, held = _held_activation(couch, s, "held", monkeypatch)
    built = build(["plans"], couch, s)
    [worker] = built.handlers
    seen = _recording(worker, monkeypatch)
    with _awake(couch, s, built):
        try:
            for _ in range(activation.PIPELINE):  # the pipeline is full: the activation has to wait
                assert held.acquire(timeout=120), "the activation's writes never started"
            couch.put(s.dbs.main, {"_id": "a-change-meanwhile", "type": "Note"})
            assert _until(lambda: "a-change-meanwhile" in seen, 30), (
                "the feed batch waited for the activation's writes")
            release.set()
            _until(lambda: _activation_done(couch, s), 120, 0.2)
        finally:
            release.set()
    expected = activate(plan, InMemoryLookup([*docs, plan]), datetime.now(UTC))
    assert set(_tasks(couch, s)) == {t["_id"] for t in expected.tasks}


def test_an_activations_requests_are_full_across_jurisdictions(
    couch: Couch, initialised: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tail of one jurisdiction's tasks and the start of the next go in one group of ``GROUP_REQUESTS``
    requests of ``WRITE_CHUNK`` tasks (made small here), split where it is full and written in id order, so
    each request holds adjacent ids; each jurisdiction is recorded as done once its last task is written, and
    the tasks are the pure evaluator's. The writes are held until two are in flight, so that the groups are
    made while the pipeline is busy (with nothing in flight, what is ready goes at once)."""
    s = initialised
    monkeypatch.setattr(activation, "WRITE_CHUNK", 40)
    groups: list[list[tuple[str, str]]] = []  # each group's tasks (id, jurisdiction), in the order written
    requests: list[int] = []  # each request's size
    docs, plan, release, held = _held_activation(couch, s, "full", monkeypatch)
    write = activation.Activation._write

    def recording(self: activation.Activation, batch: list[dict[str, Any]], chunk: int = 40) -> Any:
        groups.append([(str(t["_id"]), str(t["groupIdentifier"])) for t in batch])
        requests.extend(len(batch[start : start + chunk]) for start in range(0, len(batch), chunk))
        return write(self, batch, chunk)

    monkeypatch.setattr(activation.Activation, "_write", recording)
    built = build(["plans"], couch, s)
    with _awake(couch, s, built):
        try:
            for _ in range(activation.PIPELINE):
                assert held.acquire(timeout=120), "the activation's writes never started"
        finally:
            release.set()
        assert _until(lambda: _activation_done(couch, s), 120, 0.2)
    expected = activate(plan, InMemoryLookup([*docs, plan]), datetime.now(UTC))
    assert set(_tasks(couch, s)) == {t["_id"] for t in expected.tasks}
    assert sum(requests) == sum(len(g) for g in groups) == len(expected.tasks) > activation.GROUP_REQUESTS * 40
    assert all(size <= 40 for size in requests)
    # a group made while the first writes were held is full and goes across the end of an area (an area of
    # this data has 60-80 tasks); every group is written in id order
    full = [g for g in groups if len(g) == activation.GROUP_REQUESTS * 40]
    assert full, [len(g) for g in groups]
    assert len({jurisdiction for _, jurisdiction in full[0]}) >= 2
    assert all([i for i, _ in g] == sorted(i for i, _ in g) for g in groups)
    progress = activation.progress_of(couch, s.dbs.main)[0]
    jurisdictions = {t["groupIdentifier"] for t in expected.tasks}
    assert jurisdictions <= {j for j, e in progress["jurisdictions"].items() if e.get("done")}
    assert progress["tasks"] == len(expected.tasks)


def _chores_until_done(worker: PlanWorker, timeout: float = 120) -> None:
    """The worker's activation chore run (waiting out its writes) until the activation is done."""
    deadline = time.monotonic() + timeout
    while (done := worker.activation_chore()) is not False and time.monotonic() < deadline:
        if isinstance(done, Pending):
            done.wait(1.0)
    assert done is False


def test_an_activation_keeps_one_write_in_flight_while_peoples_changes_come_in(
    couch: Couch, initialised: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after a feed batch of others' changes (devices' events), an activation has one write in flight, not
    two, in requests of ``PEOPLE_CHUNK`` tasks: the server's time goes first to the people waiting for their
    tasks. Once the feed has been quiet for a while, two again,
    of ``WRITE_CHUNK``; the activation then ends with the pure evaluator's tasks."""
    s = initialised
    chunks: list[int] = []
    docs, plan, release, held = _held_activation(couch, s, "room", monkeypatch, chunks)
    [worker] = build(["plans"], couch, s).handlers
    assert isinstance(worker, PlanWorker)
    rev = couch.put(s.dbs.main, {"_id": "a-devices-change", "type": "Note"})
    worker.process(s.dbs.main, [{"id": "a-devices-change", "changes": [{"rev": rev}]}])
    try:
        assert isinstance(worker.activation_chore(), Pending)
        assert held.acquire(timeout=30), "the first write never started"
        assert not held.acquire(timeout=1), "a second write while people's changes were coming in"
        monkeypatch.setattr(worker, "_events_at", time.monotonic() - worker_module.EVENTS_QUIET_S)
        assert isinstance(worker.activation_chore(), Pending)
        assert held.acquire(timeout=30), "no second write once the feed was quiet"
        assert chunks == [activation.PEOPLE_CHUNK, activation.WRITE_CHUNK]
    finally:
        release.set()
    _chores_until_done(worker)
    expected = activate(plan, InMemoryLookup([*docs, plan]), datetime.now(UTC))
    assert set(_tasks(couch, s)) == {t["_id"] for t in expected.tasks}


def test_the_change_that_activates_a_plan_leaves_the_activation_its_full_pipeline(
    couch: Couch, initialised: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan's own change is an admin's, not people's waiting for their tasks: the activation it starts has
    two writes in flight of ``WRITE_CHUNK`` at once (it used to start with one of ``PEOPLE_CHUNK`` for
    ``EVENTS_QUIET_S``: 6,000 of the 68,399 tasks of the 20,000-structure benchmark). A device's change that
    comes in then takes the room down to one."""
    s = initialised
    chunks: list[int] = []
    docs, plan, release, held = _held_activation(couch, s, "admin", monkeypatch, chunks)
    [worker] = build(["plans"], couch, s).handlers
    assert isinstance(worker, PlanWorker)
    stored = couch.get(s.dbs.main, plan["_id"])
    assert stored is not None
    worker.process(s.dbs.main, [{"id": plan["_id"], "changes": [{"rev": stored["_rev"]}]}])
    assert worker.activation_room() == activation.PIPELINE
    try:
        assert isinstance(worker.activation_chore(), Pending)
        assert held.acquire(timeout=30), "the first write never started"
        assert held.acquire(timeout=30), "no second write: the plan's change was taken for people's"
        assert chunks == [activation.WRITE_CHUNK, activation.WRITE_CHUNK]
        rev = couch.put(s.dbs.main, {"_id": "a-devices-change", "type": "Note"})
        worker.process(s.dbs.main, [{"id": "a-devices-change", "changes": [{"rev": rev}]}])
        assert worker.activation_room() == 1
    finally:
        release.set()
    _chores_until_done(worker)
    expected = activate(plan, InMemoryLookup([*docs, plan]), datetime.now(UTC))
    assert set(_tasks(couch, s)) == {t["_id"] for t in expected.tasks}


def _cancel_ready_tasks_daily_at(plan: dict[str, Any], time_of_day: str) -> dict[str, Any]:
    """The plan with a periodic update action: every Ready task of the plan Cancelled, daily at ``time_of_day``."""
    action = {
        "identifier": "periodic-close", "code": "Close Ready Tasks", "type": "update",
        "subjectCodableConcept": {"text": "Task"},
        "trigger": [{"type": "periodic", "timingTiming": {"repeat": {"frequency": 1, "periodUnit": "d",
                                                                     "timeOfDay": [time_of_day]}}}],
        "condition": [{"kind": "applicability", "expression": {"expression": "Task.status.value = 'ready'"}}],
        "dynamicValue": [{"path": "status", "expression": {"expression": "'Cancelled'"}},
                         {"path": "businessStatus", "expression": {"expression": "'Not Eligible'"}}],
    }
    actions = [a for a in plan["action"] if a["identifier"] != "periodic-close"]  # type: ignore[index]
    return {**plan, "action": [*actions, action]}


def test_a_periodic_cancellation_is_written_and_audited_once(couch: Couch, initialised: Settings) -> None:
    s = initialised
    docs = list(operational_areas("periodic", AreaSize(areas=1, structures_per_area=4)))
    couch.save_many(s.dbs.main, [dict(d) for d in docs])
    now = datetime.now(UTC)
    # activated with its periodic action twelve hours away: the activation's tasks stay Ready
    plan = _cancel_ready_tasks_daily_at(_fi_plan(uid("periodic", "district")),
                                        (now + timedelta(hours=12)).strftime("%H:%M:00"))
    couch.put(s.dbs.main, {**plan, "status": "active"})
    _run(couch, s)
    made = _tasks(couch, s)
    assert made and {t["status"] for t in made.values()} == {"Ready"}

    # the time of day is now: the plan worker's periodic run cancels them, each one audited
    plan = couch.get(s.dbs.main, str(plan["_id"])) or {}
    couch.put(s.dbs.main, _cancel_ready_tasks_daily_at(plan, datetime.now(UTC).strftime("%H:%M:00")))
    _run(couch, s)
    tasks = _tasks(couch, s)
    assert set(tasks) == set(made)
    assert {(t["status"], t["businessStatus"]) for t in tasks.values()} == {("Cancelled", "Not Eligible")}
    rows = couch.view(s.dbs.audit, "audit", "by_kind", reduce=False, include_docs=True,
                      startkey=["cancellation"], endkey=["cancellation", {}])
    audited = {row["doc"]["docId"]: row["doc"] for row in rows}
    assert set(audited) == set(made)
    for record in audited.values():
        assert record["rule"] == "periodic" and record["byAction"] == "periodic-close"
        assert record["cause"]["id"] == plan["_id"] and record["reason"] == "Not Eligible"

    # a second worker at the same time of day finds nothing left to do
    _run(couch, s)
    assert _tasks(couch, s) == tasks
    assert len(couch.view(s.dbs.audit, "audit", "by_kind", reduce=False, startkey=["cancellation"],
                          endkey=["cancellation", {}])) == len(audited)


def test_a_feed_batch_is_evaluated_change_after_change_and_written_together(
    couch: Couch, world: tuple[Settings, dict[str, Any]]
) -> None:
    """One batch of the main feed: a new structure and two registrations of it (the second sees the first's
    pending task and adds none), and two forms on one task (the second writes over the first: what was pending
    is written first, then the second is evaluated again over it). Nothing parked, nothing lost."""
    s, plan = world
    plan_id = str(plan["_id"])
    irs = next(t for t in _tasks(couch, s).values() if t["for"] == "s-n1" and t["code"] == "IRS")
    since = couch.changes(s.dbs.main, "now", limit=1).last_seq

    def sprayed(event_id: str, status: str) -> dict[str, Any]:
        form = register_structure(event_id, "s-n1", NORTH, plan_id)
        form["eventType"] = "Spray"
        form["details"] = {"planIdentifier": plan_id, "taskIdentifier": irs["_id"], "taskBusinessStatus": status}
        return form

    couch.save_many(s.dbs.main, [structure("s-b1", NORTH), register_structure("ev-b1", "s-b1", NORTH, plan_id),
                                 register_structure("ev-b1-again", "s-b1", NORTH, plan_id),
                                 sprayed("ev-spray-1", "Not Sprayed"), sprayed("ev-spray-2", "Sprayed")])
    # on a cluster the feed reads one copy of each shard: wait (bounded) until it shows all five writes
    deadline = time.monotonic() + 30
    changes = couch.changes(s.dbs.main, since, include_docs=False).results
    while len(changes) < 5 and time.monotonic() < deadline:
        time.sleep(0.5)
        changes = couch.changes(s.dbs.main, since, include_docs=False).results
    assert len(changes) == 5
    # the feed's order (not the writes' on CouchDB, whose feed merges its shards) decides which form is last
    last = [c["id"] for c in changes if str(c["id"]).startswith("ev-spray")][-1]
    plans = next(h for h in build(["plans"], couch, s).handlers if isinstance(h, PlanWorker))
    assert plans.process(s.dbs.main, changes) == 4  # IRS and Register Structure for s-b1, the IRS task twice
    def ours() -> list[dict[str, Any]]:
        return [t for t in _tasks(couch, s).values() if t["for"] in ("s-b1", "s-n1")]
    tasks = ours()
    while len(tasks) < 3 and time.monotonic() < deadline + 30:  # a view on a cluster reads one copy per shard
        time.sleep(0.5)
        tasks = ours()
    assert sorted((t["for"], t["code"]) for t in tasks) == [("s-b1", "IRS"), ("s-b1", "Register Structure"),
                                                            ("s-n1", "IRS")]
    done = couch.get(s.dbs.main, irs["_id"])
    assert done is not None
    expected = "Sprayed" if last == "ev-spray-2" else "Not Sprayed"
    assert (done["status"], done["businessStatus"]) == ("Completed", expected)
    assert int(str(done["_rev"]).split("-")[0]) == int(str(irs["_rev"]).split("-")[0]) + 2
    parked = couch.view(s.dbs.audit, "audit", "by_kind", reduce=False, startkey=["parked"], endkey=["parked", {}])
    assert parked == []


def test_a_raced_update_is_evaluated_again_over_fresh_reads(
    couch: Couch, world: tuple[Settings, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A form updates a task that someone else edits between the worker's read and its write: the update answers
    409, and the change is evaluated again over a read model that has read the feed past that edit (not over the
    page the follower handed it), so the form's update lands on top of the edit: nothing parked, nothing lost."""
    s, plan = world
    plan_id = str(plan["_id"])
    built = build(["plans"], couch, s)
    runner = Runner(couch, s, built.handlers, chores=built.chores, discover_every=0)
    runner.run(until_idle=True)  # caught up: the read model follows the follower's pages
    irs = next(t for t in _tasks(couch, s).values() if t["for"] == "s-n1" and t["code"] == "IRS")
    form = register_structure("ev-raced", "s-n1", NORTH, plan_id)
    form["eventType"] = "Spray"
    form["details"] = {"planIdentifier": plan_id, "taskIdentifier": irs["_id"], "taskBusinessStatus": "Sprayed"}
    real = worker_module.write_outcomes
    raced: list[str] = []

    def edited_meanwhile(*args: Any, **kwargs: Any) -> Any:
        if not raced:  # a supervisor's edit lands between the worker's read and its write, once
            task = couch.get(s.dbs.main, irs["_id"])
            assert task is not None
            couch.put(s.dbs.main, {**task, "note": "checked by the supervisor"})
            raced.append(str(task["_id"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(worker_module, "write_outcomes", edited_meanwhile)
    couch.put(s.dbs.main, form)
    # on a cluster the feed read just after the write may come from a shard copy that has yet to take it: the
    # run ends idle before the form, and a later run finds it (awake, the next wake-up does)
    deadline = time.monotonic() + 60
    runner.run(until_idle=True)
    while not raced and time.monotonic() < deadline:
        time.sleep(0.2)
        runner.run(until_idle=True)
    assert raced == [irs["_id"]]
    done = couch.get(s.dbs.main, irs["_id"])
    assert done is not None
    assert (done["status"], done["businessStatus"]) == ("Completed", "Sprayed")
    assert done["note"] == "checked by the supervisor"
    parked = couch.view(s.dbs.audit, "audit", "by_kind", reduce=False, startkey=["parked"], endkey=["parked", {}])
    assert parked == []


def test_a_feed_page_of_writes_in_flight_waits_for_their_answers_instead_of_reading_them(
    couch: Couch, initialised: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Awake, the feed lists an activation's tasks a little before their writer has the answers. The follower
    waits for those answers (``INFLIGHT_WAIT_S``) rather than have the read model read the tasks' bodies back
    (27,000 reads of an activation's 68,000 tasks on CouchDB, 20% of the server's CPU during it): with
    every answer 0.2 s late here, each page waits and no body of the activation's tasks is read."""
    s = initialised
    docs = list(operational_areas("wait", AreaSize(areas=2, structures_per_area=10)))
    couch.save_many(s.dbs.main, [dict(d) for d in docs])
    draft = {**_fi_plan(uid("wait", "district")), "status": "draft"}
    couch.put(s.dbs.main, draft)
    _run(couch, s)
    plan = {**draft, "status": "active"}
    couch.put(s.dbs.main, plan)
    built = build(["plans"], couch, s)
    [worker] = built.handlers
    assert isinstance(worker, PlanWorker)
    remember, read, wait_settled = worker.model.remember, worker.model._read, worker.own_writes.wait_settled
    fetched: list[str] = []
    waited: list[bool] = []

    activation: set[str] = set()

    def late(written: Any) -> None:
        written = list(written)
        if threading.current_thread().name.startswith("activation-"):
            time.sleep(0.2)  # the answer comes late: the feed shows the tasks first
            activation.update(str(d["_id"]) for d in written)
        remember(written)

    def reading(wanted: dict[str, int]) -> Any:
        fetched.extend(wanted)
        return read(wanted)

    def waiting(ids: Any, timeout: float) -> bool:
        done = wait_settled(ids, timeout)
        waited.append(done)
        return done

    # the mechanism, not the production bound: a loaded machine may answer later than INFLIGHT_WAIT_S
    monkeypatch.setattr(worker_module, "INFLIGHT_WAIT_S", 10.0)
    monkeypatch.setattr(worker.model, "remember", late)
    monkeypatch.setattr(worker.model, "_read", reading)
    monkeypatch.setattr(worker.own_writes, "wait_settled", waiting)
    with _awake(couch, s, built):
        assert _until(lambda: _activation_done(couch, s), 120, 0.2)
    assert activation and any(waited), "the feed never listed a write in flight"
    assert all(waited), "an answer came later than the wait"
    assert not set(fetched) & activation, "tasks of the activation's writes were read back"


def test_an_activation_task_the_feed_lists_before_its_answer_is_known_as_the_workers_own(
    couch: Couch, initialised: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Awake, the feed can list an activation's tasks before its writer has the ``_bulk_docs`` answer, so before
    their revisions are known as the worker's own. The follower tells them by their content (as the index has
    just read them): the feed rule never evaluates them as if someone else had written them, and no batch of
    them passes for people's changes (which would slow the activation down). A device's edit of such a task
    (other content) is handed to the feed rule as ever. The activation then ends with the pure evaluator's
    tasks."""
    s = initialised
    docs = list(operational_areas("claim", AreaSize(areas=2, structures_per_area=10)))
    couch.save_many(s.dbs.main, [dict(d) for d in docs])
    draft = {**_fi_plan(uid("claim", "district")), "status": "draft"}
    couch.put(s.dbs.main, draft)
    _run(couch, s)  # the areas and the draft digested: nothing to do from here but the activation
    plan = {**draft, "status": "active"}
    couch.put(s.dbs.main, plan)
    built = build(["plans"], couch, s)
    [worker] = built.handlers
    assert isinstance(worker, PlanWorker)
    seen = _recording(worker, monkeypatch)
    release = threading.Event()
    answers = threading.Semaphore(0)
    add_results = worker.own_writes.add_results

    def late_answers(results: Any) -> None:
        results = list(results)
        if threading.current_thread().name.startswith("activation-"):
            answers.release()
            assert release.wait(120), "never released"
        add_results(results)

    monkeypatch.setattr(worker.own_writes, "add_results", late_answers)
    with _awake(couch, s, built):
        try:
            assert answers.acquire(timeout=120), "the activation never wrote"
            people_at = worker._events_at  # the plan's activation (someone else's change) was the last
            written = {t["_id"]: t for t in _tasks(couch, s).values()}
            assert written, "the first write's tasks are not on the server"
            assert _until(lambda: all((i, t["_rev"]) in worker.own_writes for i, t in written.items()), 60), (
                "never known as its own")
            assert not set(seen) & set(written), "the feed rule evaluated the activation's own tasks"
            assert set(seen) == {plan["_id"]}
            assert worker._events_at == people_at, "the activation's own tasks passed for people's changes"
            edited = next(iter(written.values()))
            couch.put(s.dbs.main, {**edited, "businessStatus": "Not Eligible", "status": "Completed"})
            assert _until(lambda: edited["_id"] in seen, 60), (
                "a device's edit of a task in flight was taken for the worker's own")
            release.set()
            _until(lambda: _activation_done(couch, s), 120, 0.2)
        finally:
            release.set()
    expected = activate(plan, InMemoryLookup([*docs, plan]), datetime.now(UTC))
    assert set(_tasks(couch, s)) == {t["_id"] for t in expected.tasks}
