"""The follower awake: the longpoll that wakes it reads the batch the step then processes, and a batch of nothing
but the worker's own writes moves the checkpoint in memory only (written with the next batch that acts, by
``flush`` or after ``defer_s``). Against the real server; the handler is a small recording worker."""

from __future__ import annotations

import time
from typing import Any

from workers.couch import ChangesPage, Couch
from workers.follower import Follower, Worker, read_checkpoint
from workers.settings import Settings


class Recorder(Worker):
    """Records the ids it is handed; writes nothing."""

    name = "recorder"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def follows(self, kind: str) -> bool:
        return True

    def process(self, db: str, changes: list[dict[str, Any]]) -> int:
        self.seen.extend(str(c["id"]) for c in changes)
        return 0


class CountingCouch(Couch):
    """The real client, counting its ``_changes`` reads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reads = 0

    def changes(self, db: str, since: Any = 0, **kwargs: Any) -> ChangesPage:
        self.reads += 1
        return super().changes(db, since, **kwargs)


def _db(couch: Couch, settings: Settings, name: str) -> str:
    db = f"{settings.db_prefix}-{name}"
    couch.create_db(db)
    couch.create_db(settings.dbs.audit)
    return db


def test_the_wake_up_read_is_the_batch(couch: Couch, settings: Settings) -> None:
    db = _db(couch, settings, "follow-wake")
    counting = CountingCouch(settings.couch_nodes, settings.credentials)
    handler = Recorder()
    follower = Follower(counting, db, handler, settings.dbs.audit)
    follower.step()  # the checkpoint checked, nothing there yet
    couch.save_many(db, [{"_id": "a"}, {"_id": "b"}])
    before = counting.reads
    assert follower.wait(5.0) is True
    step = follower.step()
    assert step.changes == 2 and sorted(handler.seen) == ["a", "b"]
    assert counting.reads - before == 1, "the step read the feed again after the longpoll had read it"
    assert read_checkpoint(couch, settings.dbs.audit, "recorder", db)["seq"] == follower.known_checkpoint["seq"]


def test_a_batch_of_own_writes_moves_the_checkpoint_in_memory_until_flushed(
    couch: Couch, settings: Settings
) -> None:
    db = _db(couch, settings, "follow-echo")
    handler = Recorder()
    follower = Follower(couch, db, handler, settings.dbs.audit)
    follower.defer_s = 3600.0
    couch.save_many(db, [{"_id": "theirs"}])
    follower.step()  # acts: written at once
    written = read_checkpoint(couch, settings.dbs.audit, "recorder", db)
    assert written["seq"] == follower.known_checkpoint["seq"] and handler.seen == ["theirs"]

    handler.own_writes.add_results(couch.bulk_docs(db, [{"_id": "mine-1"}, {"_id": "mine-2"}]))
    step = follower.step()
    assert step.changes == 2 and handler.seen == ["theirs"]
    assert follower.known_checkpoint["seq"] != written["seq"]
    assert read_checkpoint(couch, settings.dbs.audit, "recorder", db)["seq"] == written["seq"], \
        "a batch of the worker's own writes wrote the checkpoint"

    follower.flush()
    flushed = read_checkpoint(couch, settings.dbs.audit, "recorder", db)
    assert flushed["seq"] == follower.known_checkpoint["seq"] and flushed["processed"] == 3

    # a follower started afresh (after a kill before the flush) replays from the written position: the own
    # writes come back as changes, nothing is lost
    handler.own_writes.add_results(couch.bulk_docs(db, [{"_id": "mine-3"}]))
    follower.step()
    again = Follower(couch, db, Recorder(), settings.dbs.audit)
    assert again.step().changes == 1


def test_without_defer_every_batch_writes_its_checkpoint(couch: Couch, settings: Settings) -> None:
    db = _db(couch, settings, "follow-exact")
    handler = Recorder()
    follower = Follower(couch, db, handler, settings.dbs.audit)
    handler.own_writes.add_results(couch.bulk_docs(db, [{"_id": "mine"}]))
    follower.step()
    assert read_checkpoint(couch, settings.dbs.audit, "recorder", db)["seq"] == follower.known_checkpoint["seq"]


def test_a_batch_that_acted_holds_its_checkpoint_until_due(couch: Couch, settings: Settings) -> None:
    """Awake (``act_defer_s``): a batch that acted moves the checkpoint in memory; the next batch once the
    position is due writes it, whatever that batch holds, and a follower started afresh before then (a kill)
    replays the held changes: nothing is lost."""
    db = _db(couch, settings, "follow-held")
    handler = Recorder()
    follower = Follower(couch, db, handler, settings.dbs.audit)
    follower.act_defer_s = 0.5
    couch.save_many(db, [{"_id": "first"}])
    follower.step()  # the first write of this follower: at once
    written = read_checkpoint(couch, settings.dbs.audit, "recorder", db)
    assert written["seq"] == follower.known_checkpoint["seq"] and follower.due_in() is None

    couch.save_many(db, [{"_id": "second"}])
    follower.step()  # acted within act_defer_s of the last write: held
    assert handler.seen == ["first", "second"]
    assert read_checkpoint(couch, settings.dbs.audit, "recorder", db)["seq"] == written["seq"]
    due = follower.due_in()
    assert due is not None and 0 < due <= 0.5
    again = Follower(couch, db, Recorder(), settings.dbs.audit)  # a kill now: "second" is replayed
    assert again.step().changes == 1

    time.sleep(due + 0.05)
    assert follower.due_in() == 0
    handler.own_writes.add_results(couch.bulk_docs(db, [{"_id": "mine"}]))
    follower.step()  # nothing to act on, but the held position is due: written
    assert read_checkpoint(couch, settings.dbs.audit, "recorder", db)["seq"] == follower.known_checkpoint["seq"]
    assert follower.due_in() is None


def test_an_awake_runner_writes_a_held_checkpoint_once_the_feed_is_quiet(couch: Couch, settings: Settings) -> None:
    """The runner's longpoll waits no longer than the held position's due time, then writes it: a status
    read or a restart a moment after the last change finds the checkpoint there. (Fails if the held position
    waits for the next change or for the longpoll's full wait.)"""
    import threading

    from workers.runner import CHECKPOINT_ACT_DEFER_S, Runner

    class MetaRecorder(Recorder):
        def follows(self, kind: str) -> bool:
            return kind == "user-meta"

    db = settings.dbs.user_meta("quiet")
    couch.create_db(db)
    couch.create_db(settings.dbs.audit)
    handler = MetaRecorder()
    runner = Runner(couch, settings, [handler], wait_s=60.0)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, kwargs={"stop": stop}, daemon=True)
    thread.start()
    try:
        couch.save_many(db, [{"_id": "a"}])
        deadline = time.monotonic() + 10
        while "a" not in handler.seen and time.monotonic() < deadline:
            time.sleep(0.05)
        couch.save_many(db, [{"_id": "b"}])  # acted on within the deferral of "a"'s write: held
        deadline = time.monotonic() + CHECKPOINT_ACT_DEFER_S + 10
        end = couch.changes(db, 0).last_seq
        while time.monotonic() < deadline:
            if read_checkpoint(couch, settings.dbs.audit, "recorder", db).get("seq") == end:
                break
            time.sleep(0.1)
        assert read_checkpoint(couch, settings.dbs.audit, "recorder", db).get("seq") == end, \
            "the held checkpoint was not written once the feed went quiet"
        assert sorted(handler.seen) == ["a", "b"]
    finally:
        stop.set()
        thread.join(timeout=30)


class RequestCounting(Couch):
    """The real client, counting its requests."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requests = 0

    def request(self, *args: Any, **kwargs: Any) -> Any:
        self.requests += 1
        return super().request(*args, **kwargs)


def test_a_checkpoint_write_is_one_request_and_survives_other_writers(couch: Couch, settings: Settings) -> None:
    """``put_local`` writes over the revision it last saw in one request; another writer in between (or a
    removal) costs it a read and a retry, never a failure, and the last write wins."""
    db = _db(couch, settings, "local-docs")
    client = RequestCounting(settings.couch_nodes, settings.credentials)
    client.put_local(db, "cp", {"seq": 1})
    before = client.requests
    client.put_local(db, "cp", {"seq": 2})
    assert client.requests - before == 1
    couch.put_local(db, "cp", {"seq": "other"})  # another process moves the revision on
    client.put_local(db, "cp", {"seq": 3})
    assert (couch.get_local(db, "cp") or {})["seq"] == 3
    current = couch.get_local(db, "cp") or {}
    couch.request("DELETE", db, "_local/cp", params={"rev": current["_rev"]})
    client.put_local(db, "cp", {"seq": 4})
    assert (couch.get_local(db, "cp") or {})["seq"] == 4


def test_a_followers_next_page_is_read_while_the_chores_run(couch: Couch, settings: Settings) -> None:
    """Rounds (until idle): the page after a full one is read while the chore runs (an activation slice
    overlaps main's feed read), and the next step uses it without reading again; nothing is lost or repeated.
    (Fails if the runner reads the page in the step only: the chore then waits for it in vain.)"""
    from workers.runner import Runner

    db = _db(couch, settings, "follow-prefetch")
    couch.save_many(db, [{"_id": f"d{n:02d}"} for n in range(7)])
    counting = CountingCouch(settings.couch_nodes, settings.credentials)
    handler = Recorder()
    runner = Runner(counting, settings, [handler], discover_every=float("inf"))  # this one database only
    runner.followers[("recorder", db)] = Follower(counting, db, handler, settings.dbs.audit, batch_size=3)
    follower = runner.followers[("recorder", db)]
    during: list[bool] = []

    def chore() -> bool:
        # another thread reads the follower's next page while this runs: wait for it (bounded)
        deadline = time.monotonic() + 5
        while follower._ready is None and time.monotonic() < deadline:
            time.sleep(0.01)
        during.append(follower._ready is not None)
        return False

    runner.chores = {"recorder": [chore]}
    assert runner.run_once() is True  # d00-d02; d03-d05 read during the chore
    assert during == [True] and len(handler.seen) == 3  # (CouchDB's feed order is not the write order)
    assert counting.reads == 2
    runner.run_once()  # d03-d05 from the page read ahead, no read of its own; d06 read during the chore
    assert len(set(handler.seen)) == len(handler.seen) == 6
    assert during == [True, True] and counting.reads == 3
    runner.run(until_idle=True)
    assert sorted(handler.seen) == [f"d{n:02d}" for n in range(7)]


def test_pages_read_from_each_last_seq_miss_and_repeat_no_change(couch: Couch, settings: Settings,
                                                                server_kind: str) -> None:
    """``Couch.changes`` asks CouchDB for one sequence per page (``seq_interval``): the page's last change carries
    to its first change only, and ``last_seq`` is where the next page starts; ``every_seq`` still gives every change
    its own. PouchDB Server ignores the parameter."""
    db = _db(couch, settings, "follow-pages")
    ids = [f"doc-{n:03d}" for n in range(47)]
    couch.save_many(db, [{"_id": i} for i in ids])
    couch.save_many(db, [{"_id": "doc-005", "_rev": couch.get(db, "doc-005")["_rev"], "again": True}])
    read: list[str] = []
    since: Any = 0
    pages = 0
    while True:
        page = couch.changes(db, since, limit=10, include_docs=False)
        if not page.results:
            break
        pages += 1
        read.extend(str(c["id"]) for c in page.results)
        carried = sum(c.get("seq") is not None for c in page.results)
        if server_kind == "couchdb":
            assert carried == 1, f"CouchDB encoded {carried} sequences in a page of {len(page.results)}"
        else:
            assert carried == len(page.results)
        since = page.last_seq
    assert sorted(read) == ids and pages == 5, "a change was missed or read twice across pages"
    every = couch.changes(db, 0, limit=10, include_docs=False, every_seq=True)
    assert all(c.get("seq") is not None for c in every.results)
