"""The workers, in an explicit, ordered registry (CHT Sentinel's habit): a name, and how to build its handler
and its chores. A bad configuration stops ``fieldsync work`` before anything runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from workers.areas.sync import SYNC_KINDS, AreaSync
from workers.conflicts.resolver import CONFLICT_KINDS, ConflictResolver
from workers.couch import Couch
from workers.errors import ConfigError
from workers.follower import Handler
from workers.plans.worker import PlanWorker
from workers.runner import Chore
from workers.settings import Settings


@dataclass
class Built:
    handlers: list[Handler]
    chores: dict[str, list[Chore]]  # by worker name: a worker's chores take turns with its feed batches


@dataclass(frozen=True)
class Spec:
    """A worker: how to build it, and the kinds of database it follows (what ``fieldsync status`` reads
    checkpoints of, without building the worker)."""

    build: Callable[[Couch, Settings], Built]
    follows: frozenset[str]


def _plans(couch: Couch, settings: Settings) -> Built:
    worker = PlanWorker(couch, settings)
    return Built([worker], {worker.name: [worker.activation_chore, worker.periodic_chore]})


def _conflicts(couch: Couch, settings: Settings) -> Built:
    return Built([ConflictResolver(couch, settings)], {})


def _sync(couch: Couch, settings: Settings) -> Built:
    return Built([AreaSync(couch, settings)], {})


WORKERS: dict[str, Spec] = {
    "plans": Spec(_plans, frozenset({"main"})),
    "conflicts": Spec(_conflicts, CONFLICT_KINDS),
    "sync": Spec(_sync, SYNC_KINDS),
}


def build(names: list[str] | None, couch: Couch, settings: Settings) -> Built:
    chosen = names or list(WORKERS)
    unknown = [n for n in chosen if n not in WORKERS]
    if unknown:
        raise ConfigError(f"unknown worker {', '.join(unknown)}: choose from {', '.join(WORKERS)}")
    built = Built([], {})
    for name in chosen:
        part = WORKERS[name].build(couch, settings)
        built.handlers += part.handlers
        built.chores.update(part.chores)
    _fast_lane(built.handlers)
    return built


def _fast_lane(handlers: list[Handler]) -> None:
    """When the plan and sync workers run in one process, the tasks the plan worker writes for an event go to
    their areas at once (:meth:`AreaSync.expedite`) instead of after everything before them in main's feed."""
    syncs = [h for h in handlers if isinstance(h, AreaSync)]
    for handler in handlers:
        if isinstance(handler, PlanWorker):
            handler.written_listeners += [sync.expedite for sync in syncs]
