"""The routing index over the main database: locations and clients by id, read in bulk and cached (bounded)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

from workers.areas.routing import Doc, Place, Resident, place_of, references, resident_of
from workers.couch import Couch


class MainIndex:
    """Answers ``place``/``resident`` from a bounded cache; ``prefetch`` fills it for a batch in one request,
    ``learn`` from documents already in hand (a batch's own structures and families)."""

    def __init__(self, couch: Couch, db: str, capacity: int = 200_000) -> None:
        self.couch = couch
        self.db = db
        self.capacity = capacity
        self._places: OrderedDict[str, Place | None] = OrderedDict()
        self._residents: OrderedDict[str, Resident | None] = OrderedDict()
        self._lock = threading.Lock()  # the sync worker's batches of different areas run at once

    def _remember(self, cache: OrderedDict[str, Place | None] | OrderedDict[str, Resident | None],
                  key: str, value: Place | Resident | None) -> None:
        with self._lock:
            cache[key] = value  # type: ignore[assignment]
            cache.move_to_end(key)
            if len(cache) > self.capacity:
                cache.popitem(last=False)

    def learn(self, docs: Iterable[Doc]) -> None:
        for doc in docs:
            place = place_of(doc)
            if place is not None:
                self._remember(self._places, place.id, place)
                continue
            resident = resident_of(doc)
            if resident is not None:
                self._remember(self._residents, resident.id, resident)

    def prefetch(self, docs: Iterable[Doc], depth: int = 3) -> None:
        """Read what routing ``docs`` will ask about, a level at a time (structure -> jurisdiction -> ...)."""
        wanted: set[str] = set()
        for doc in docs:
            wanted |= references(doc)
        for _ in range(depth):
            missing = sorted(i for i in wanted if i not in self._places and i not in self._residents)
            if not missing:
                return
            found = self.couch.get_many(self.db, missing)
            self.learn(found.values())
            for doc_id in missing:
                if doc_id not in found:
                    self._remember(self._places, doc_id, None)
            wanted = set()
            for doc in found.values():
                wanted |= references(doc)

    def _load(self, doc_id: str) -> None:
        doc = self.couch.get(self.db, doc_id)
        if doc is None:
            self._remember(self._places, doc_id, None)
        else:
            self.learn([doc])
            if doc_id not in self._places and doc_id not in self._residents:
                self._remember(self._places, doc_id, None)

    def place(self, location_id: str) -> Place | None:
        if location_id not in self._places and location_id not in self._residents:
            self._load(location_id)
        return self._places.get(location_id)

    def resident(self, client_id: str) -> Resident | None:
        if client_id not in self._places and client_id not in self._residents:
            self._load(client_id)
        return self._residents.get(client_id)
