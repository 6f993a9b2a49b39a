"""Synthetic operational areas in the real OpenSRP shapes, for the demo, the tests and the benchmarks.

Deterministic for a given seed: ids are UUID5s of the seed and a path, so two runs make the same documents.
A district jurisdiction holds ``areas`` operational areas (jurisdictions); each area holds structures
(mostly residential, some larval breeding sites and mosquito collection points); each residential structure
houses a family (a Client with last name "Family") and its members, of whom some are under five.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

Doc = dict[str, Any]
NAMESPACE = uuid.UUID("5d2b7f9e-3a41-4c56-9d0e-6f1b2c3d4e5f")
FIRST = ["Anong", "Boon", "Chai", "Dao", "Kanya", "Lek", "Mali", "Niran", "Pim", "Somchai", "Tida", "Wan"]
LAST = ["Srisuk", "Thongdee", "Kaewmanee", "Suwan", "Phromma", "Chaiyo", "Rattana", "Boonmee"]


@dataclass(frozen=True)
class AreaSize:
    areas: int = 3
    structures_per_area: int = 50
    members_per_family: int = 4
    non_residential_every: int = 10  # one in N structures is a breeding site or collection point


def uid(seed: str, *path: object) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join([seed, *map(str, path)])))


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def jurisdiction(jid: str, name: str, parent: str | None, level: int) -> Doc:
    props: Doc = {"status": "Active", "name": name, "geographicLevel": level, "version": 0}
    if parent:
        props["parentId"] = parent
    return {"_id": jid, "type": "Feature", "id": jid, "jurisdiction": True, "properties": props,
            "serverVersion": 1, "locationTags": [{"id": 2, "name": "Operational Area" if parent else "District"}]}


def structure(sid: str, area: str, structure_type: str, lng: float, lat: float, level: int = 3) -> Doc:
    return {"_id": sid, "type": "Feature", "id": sid,
            "properties": {"status": "Active", "parentId": area, "geographicLevel": level, "version": 0,
                           "type": structure_type, "name": f"structure {sid[:8]}"},
            "geometry": {"type": "Point", "coordinates": [round(lng, 6), round(lat, 6)]}, "serverVersion": 1}


def family(fid: str, structure_id: str, head: str, name: str, created: datetime) -> Doc:
    return {"_id": fid, "type": "Client", "baseEntityId": fid, "firstName": name, "lastName": "Family",
            "gender": "Male", "birthdate": "1970-01-01T00:00:00.000Z", "attributes": {"residence": structure_id},
            "relationships": {"family_head": [head], "primary_caregiver": [head]}, "identifiers": {},
            "addresses": [], "dateCreated": _iso(created), "serverVersion": 1}


def member(mid: str, fid: str, structure_id: str, first: str, last: str, birth: datetime, gender: str,
           created: datetime) -> Doc:
    return {"_id": mid, "type": "Client", "baseEntityId": mid, "firstName": first, "lastName": last,
            "gender": gender, "birthdate": _iso(birth), "birthdateApprox": False,
            "attributes": {"residence": structure_id}, "relationships": {"family": [fid]}, "identifiers": {},
            "addresses": [], "dateCreated": _iso(created), "serverVersion": 1}


def operational_areas(seed: str = "demo", size: AreaSize | None = None, *, today: datetime | None = None,
                      district: str | None = None) -> Iterator[Doc]:
    """Every document of a district and its operational areas, parents before children."""
    size = size or AreaSize()
    rng = random.Random(seed)
    today = today or datetime(2026, 11, 1, tzinfo=UTC)
    district_id = district or uid(seed, "district")
    yield jurisdiction(district_id, f"District {seed}", None, 1)
    kinds = ["Larval Breeding Site", "Mosquito Collection Point"]
    for a in range(size.areas):
        area_id = uid(seed, "area", a)
        yield jurisdiction(area_id, f"Village {a + 1}", district_id, 2)
        lng0, lat0 = 100.0 + a * 0.05, 14.0 + a * 0.03
        for s in range(size.structures_per_area):
            sid = uid(seed, "structure", a, s)
            residential = size.non_residential_every <= 0 or (s + 1) % size.non_residential_every != 0
            kind = "Residential Structure" if residential else kinds[s % 2]
            yield structure(sid, area_id, kind, lng0 + rng.random() * 0.02, lat0 + rng.random() * 0.02)
            if not residential:
                continue
            fid = uid(seed, "family", a, s)
            last = rng.choice(LAST)
            head = uid(seed, "member", a, s, 0)
            created = today - timedelta(days=rng.randint(30, 900))
            yield family(fid, sid, head, f"{last} household", created)
            for m in range(size.members_per_family):
                mid = head if m == 0 else uid(seed, "member", a, s, m)
                # adults first, then children: one in four members under five
                age_days = rng.randint(20 * 365, 60 * 365) if m < 2 else rng.randint(100, 15 * 365)
                if m == size.members_per_family - 1:
                    age_days = rng.randint(100, 4 * 365)
                yield member(mid, fid, sid, rng.choice(FIRST), last, today - timedelta(days=age_days),
                             "Female" if m % 2 else "Male", created)


def area_ids(seed: str, size: AreaSize) -> list[str]:
    return [uid(seed, "area", a) for a in range(size.areas)]
