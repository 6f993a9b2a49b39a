"""The JavaScript of couch_design/ for interactions, run for real under ``node`` (no server needed).

- ``user-meta/fieldsync/validate_doc_update.js``: accept/refuse cases, and the same verdict as the pydantic
  model on every case the two share;
- ``users-meta/interactions/views/*``: the map functions over documents produced by ``merge_day``, and the
  custom reduce, including rereduce;
- every file parses as ES5 (acorn, from the embedded server's locked node_modules).
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from summarizer.merge import merge_day
from validators.errors import DocumentError
from validators.interaction import daily_doc_id, validate_record

ROOT = Path(__file__).resolve().parents[3]
DESIGN = ROOT / "couch_design"
VDU = DESIGN / "user-meta" / "fieldsync" / "validate_doc_update.js"
VIEWS = DESIGN / "users-meta" / "interactions" / "views"
ACORN = ROOT / "server" / "node_modules" / "acorn"
NODE = shutil.which("node")

T0 = 1_774_600_000_000
USER = "greg"
DEVICE = "3f2a9c1e-device"
DB = "fieldsync-user-greg-meta"

# Loads a function the way CouchDB and pouchdb-validation do (an expression, trailing ';' stripped), in strict
# mode as PouchDB's map/reduce sandbox does, and runs the requested calls.
RUNNER = r"""
'use strict';
var fs = require('fs');
var input = JSON.parse(fs.readFileSync(0, 'utf8'));
var emitted = [];
function emit(key, value) { emitted.push([key, value]); }
function load(src) {
  return new Function('emit', '"use strict"; return (' + src.replace(/;\s*$/, '') + ');')(emit);
}
var out = {};
if (input.es5) {
  var acorn = require(input.acorn);
  out.es5 = input.es5.map(function (src) {
    try { acorn.parse('(' + src + ')', { ecmaVersion: 5 }); return null; }
    catch (e) { return String(e.message); }
  });
}
if (input.validate) {
  var vdu = load(input.validate.src);
  out.validate = input.validate.cases.map(function (c) {
    try {
      vdu(c.newDoc, c.oldDoc, c.userCtx, c.secObj);
      return { ok: true };
    } catch (e) {
      if (e && typeof e.forbidden === 'string') { return { forbidden: e.forbidden }; }
      if (e && typeof e.unauthorized === 'string') { return { unauthorized: e.unauthorized }; }
      return { crash: String(e && e.stack || e) };
    }
  });
}
if (input.maps) {
  out.maps = {};
  Object.keys(input.maps).forEach(function (name) {
    var fn = load(input.maps[name]);
    out.maps[name] = input.docs.map(function (doc) {
      emitted = [];
      fn(JSON.parse(JSON.stringify(doc)));
      return emitted;
    });
  });
}
if (input.reduce) {
  var rfn = load(input.reduce.src);
  out.reduce = input.reduce.calls.map(function (c) { return rfn(c.keys, c.values, c.rereduce); });
}
process.stdout.write(JSON.stringify(out));
"""


def run_node(payload: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    assert NODE, "node is required (fieldsync's embedded server runs on it)"
    runner = tmp_path / "runner.js"
    runner.write_text(RUNNER, encoding="utf-8")
    done = subprocess.run(
        [NODE, str(runner)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# --- documents ---------------------------------------------------------------------------------------------


def record(**metadata: Any) -> dict[str, Any]:
    meta = {"user": USER, "deviceId": DEVICE, "date": "2026-03-27", "version": "5.2.0", **metadata}
    return {
        "_id": daily_doc_id(meta["user"], meta["deviceId"], meta["date"]),
        "type": "interaction-log",
        "sessions": [
            {
                "session": "tasks",
                "startedAt": T0,
                "events": [
                    {"action": "task_list:open", "timestamp": T0},
                    {"action": "task_list:loaded", "timestamp": T0 + 10, "detail": "4"},
                    {"action": "task:open", "timestamp": T0 + 900, "ref": "person_create", "detail": "0"},
                    {"action": "task:form_open", "timestamp": T0 + 950, "ref": "home_visit"},
                    {"action": "task:form_save", "timestamp": T0 + 9000, "ref": "home_visit"},
                    {"action": "task_list:leave", "timestamp": T0 + 12000},
                ],
            }
        ],
        "metadata": meta,
    }


def owner(name: str = USER) -> dict[str, Any]:
    return {"db": DB, "name": name, "roles": ["chw"]}


def security(*names: str) -> dict[str, Any]:
    return {"admins": {"names": [], "roles": []}, "members": {"names": list(names or (USER,)), "roles": []}}


def case(
    new_doc: dict[str, Any],
    *,
    old_doc: dict[str, Any] | None = None,
    user_ctx: dict[str, Any] | None = None,
    sec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "newDoc": new_doc,
        "oldDoc": old_doc,
        "userCtx": user_ctx if user_ctx is not None else owner(),
        "secObj": sec if sec is not None else security(),
    }


def ev3(doc: dict[str, Any]) -> dict[str, Any]:
    event: dict[str, Any] = doc["sessions"][0]["events"][2]
    return event


def mutated(mutate: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    doc = record()
    mutate(doc)
    return doc


E = "sessions[0].events[2]"

# (name, document, field the refusal must name); the user writing is always greg, in greg's database.
REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("form answer field", mutated(lambda d: ev3(d).update(answer="yes")), f"{E}.answer"),
    ("form answers at the top", mutated(lambda d: d.update(fields={"lmp": "2026-01-01"})), "fields"),
    (
        "patient name in metadata",
        mutated(lambda d: d["metadata"].update(patient="Jane Doe")),
        "metadata.patient",
    ),
    ("another user's name", record(user="eve"), "metadata.user"),
    ("unknown action", mutated(lambda d: ev3(d).update(action="task:delete")), f"{E}.action"),
    ("long ref", mutated(lambda d: ev3(d).update(ref="r" * 65)), f"{E}.ref"),
    ("ref with a space", mutated(lambda d: ev3(d).update(ref="Jane Doe")), f"{E}.ref"),
    ("a name and a phone number as a ref", mutated(lambda d: ev3(d).update(ref="JaneDoe_0812345678")), f"{E}.ref"),
    ("a phone number in a lower-case ref", mutated(lambda d: ev3(d).update(ref="jane.doe.0812345678")), f"{E}.ref"),
    ("a capitalised name as a ref", mutated(lambda d: ev3(d).update(ref="JaneDoe")), f"{E}.ref"),
    ("null ref", mutated(lambda d: ev3(d).update(ref=None)), f"{E}.ref"),
    ("non-numeric detail", mutated(lambda d: ev3(d).update(detail="Jane")), f"{E}.detail"),
    ("detail with a leading zero", mutated(lambda d: ev3(d).update(detail="06")), f"{E}.detail"),
    ("detail with a newline", mutated(lambda d: ev3(d).update(detail="6\n")), f"{E}.detail"),
    ("ref with a newline", mutated(lambda d: ev3(d).update(ref="anc\n")), f"{E}.ref"),
    ("negative detail", mutated(lambda d: ev3(d).update(detail=-3)), f"{E}.detail"),
    ("boolean detail", mutated(lambda d: ev3(d).update(detail=True)), f"{E}.detail"),
    ("fractional timestamp", mutated(lambda d: ev3(d).update(timestamp=T0 + 0.5)), f"{E}.timestamp"),
    ("timestamp in seconds", mutated(lambda d: ev3(d).update(timestamp=1_774_600_000)), f"{E}.timestamp"),
    ("string timestamp", mutated(lambda d: ev3(d).update(timestamp=str(T0))), f"{E}.timestamp"),
    ("missing startedAt", mutated(lambda d: d["sessions"][0].pop("startedAt")), "sessions[0].startedAt"),
    (
        "extra session field",
        mutated(lambda d: d["sessions"][0].update(household="H1")),
        "sessions[0].household",
    ),
    ("impossible date", mutated(lambda d: d["metadata"].update(date="2026-02-30")), "metadata.date"),
    ("bad version", mutated(lambda d: d["metadata"].update(version="5.2 beta")), "metadata.version"),
    ("id of another device", mutated(lambda d: d.update(_id="interaction-2026-03-27-greg-other")), "_id"),
    ("id with a spaced suffix", mutated(lambda d: d.update(_id=d["_id"] + "-part 2")), "_id"),
    ("attachments", mutated(lambda d: d.update(_attachments={"x": {"data": "eA=="}})), "_attachments"),
    ("sessions not a list", mutated(lambda d: d.update(sessions={})), "sessions"),
]

ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("a good record", record()),
    ("a conflicted copy", mutated(lambda d: (d.update(_id=d["_id"] + "-conflicted-1774600099999"),
                                             d["metadata"].update(conflicted=True)))),
    ("a partial batch", mutated(lambda d: d.update(_id=d["_id"] + "-part-2"))),
    ("an integer detail", mutated(lambda d: ev3(d).update(detail=6))),
    ("couch members", mutated(lambda d: d.update(_rev="2-b", _revisions={"start": 2, "ids": ["b", "a"]}))),
    ("no events", mutated(lambda d: d["sessions"][0].update(events=[]))),
]  # fmt: skip


def python_verdict(doc: dict[str, Any]) -> str | None:
    try:
        validate_record(copy.deepcopy(doc), expected_user=USER)
    except DocumentError as error:
        return error.field
    return None


@pytest.fixture(scope="module")
def vdu_src() -> str:
    return VDU.read_text(encoding="utf-8")


def test_refused_and_accepted_records_agree_with_the_pydantic_model(vdu_src: str, tmp_path: Path) -> None:
    cases = [case(doc) for _, doc, _ in REFUSED] + [case(doc) for _, doc in ACCEPTED]
    results = run_node({"validate": {"src": vdu_src, "cases": cases}}, tmp_path)["validate"]
    for (name, doc, field), result in zip(REFUSED, results[: len(REFUSED)], strict=True):
        assert "forbidden" in result, f"{name}: {result}"
        assert result["forbidden"].startswith(f"{doc['_id']}: {field}: "), f"{name}: {result}"
        assert python_verdict(doc) is not None, f"{name}: the pydantic model accepts what the door refuses"
    for (name, doc), result in zip(ACCEPTED, results[len(REFUSED) :], strict=True):
        assert result == {"ok": True}, f"{name}: {result}"
        assert python_verdict(doc) is None, f"{name}: the pydantic model refuses what the door accepts"


def test_a_refusal_never_repeats_the_value(vdu_src: str, tmp_path: Path) -> None:
    secret = "Jane Doe HIV positive"
    docs = [
        mutated(lambda d: ev3(d).update(detail=secret)),
        mutated(lambda d: ev3(d).update(ref=secret)),
        mutated(lambda d: ev3(d).update(action=secret)),
        mutated(lambda d: d["metadata"].update(version=secret)),
    ]
    results = run_node({"validate": {"src": vdu_src, "cases": [case(d) for d in docs]}}, tmp_path)["validate"]
    for result in results:
        assert "forbidden" in result and secret not in result["forbidden"]


def test_who_may_write(vdu_src: str, tmp_path: Path) -> None:
    bad = mutated(lambda d: ev3(d).update(answer="yes"))
    eves = record(user="eve")
    other_type = {"_id": "settings-device", "type": "device-settings", "metadata": {"user": USER}}
    cases = {
        "admin writes anything": case(bad, user_ctx={"db": DB, "name": "root", "roles": ["_admin"]}),
        "admin without a name (server process)": case(
            bad, user_ctx={"db": DB, "name": None, "roles": ["_admin"]}
        ),
        "anonymous": case(record(), user_ctx={"db": DB, "name": None, "roles": []}),
        "a stranger writing as himself": case(eves, user_ctx=owner("eve"), sec=security(USER)),
        "a stranger writing as the owner": case(record(), user_ctx=owner("eve"), sec=security(USER)),
        "no security object": case(record(), sec={}),
        "owner, other document type": case(other_type),
        "owner, other type without metadata": case({"_id": "x", "type": "device-settings"}),
        "interaction id with another type": case(
            {"_id": daily_doc_id(USER, DEVICE, "2026-03-27"), "type": "telemetry", "metadata": {"user": USER}}
        ),
        "owner deletes his record": case(
            {"_id": record()["_id"], "_rev": "2-x", "_deleted": True}, old_doc=record()
        ),
        "owner deletes, old revision unknown (replication)": case(
            {"_id": record()["_id"], "_rev": "2-x", "_deleted": True}
        ),
        "owner deletes another user's document": case(
            {"_id": eves["_id"], "_rev": "2-x", "_deleted": True}, old_doc=eves
        ),
        "owner updates another user's document": case(record(), old_doc=record(user="eve")),
    }
    results = run_node({"validate": {"src": vdu_src, "cases": list(cases.values())}}, tmp_path)["validate"]
    verdicts = {name: next(iter(r)) for name, r in zip(cases, results, strict=True)}
    assert verdicts == {
        "admin writes anything": "ok",
        "admin without a name (server process)": "ok",
        "anonymous": "forbidden",
        "a stranger writing as himself": "forbidden",
        "a stranger writing as the owner": "forbidden",
        # no security object: PouchDB Server hands none to validation on _bulk_docs; _security admits only the
        # owner at the HTTP level, and metadata.user must still be the writer
        "no security object": "ok",
        # a meta database holds interaction records only (a device once kept "notes" with a patient there)
        "owner, other document type": "forbidden",
        "owner, other type without metadata": "forbidden",
        "interaction id with another type": "forbidden",
        "owner deletes his record": "ok",
        "owner deletes, old revision unknown (replication)": "ok",
        "owner deletes another user's document": "forbidden",
        "owner updates another user's document": "forbidden",
    }
    by_name = dict(zip(cases, results, strict=True))
    assert ": userCtx: " in by_name["anonymous"]["forbidden"]
    assert ": metadata.user: " in by_name["owner deletes another user's document"]["forbidden"]
    assert ": type: " in by_name["interaction id with another type"]["forbidden"]
    assert ": _id: a meta database holds interaction records only" in by_name["owner, other document type"]["forbidden"]


def test_an_owner_may_write_when_others_are_members_too(vdu_src: str, tmp_path: Path) -> None:
    result = run_node(
        {"validate": {"src": vdu_src, "cases": [case(record(), sec=security("summarizer", USER))]}}, tmp_path
    )["validate"]
    assert result == [{"ok": True}]


# --- the analyst views -------------------------------------------------------------------------------------


def merged_docs() -> list[dict[str, Any]]:
    def rec(device: str, date: str, start: int, events: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "_id": daily_doc_id(USER, device, date),
            "type": "interaction-log",
            "sessions": [{"session": "tasks", "startedAt": start, "events": events}],
            "metadata": {"user": USER, "deviceId": device, "date": date, "version": "5.2.0"},
        }

    visit = [
        {"action": "task_list:open", "timestamp": T0},
        {"action": "task:open", "timestamp": T0 + 1_000, "ref": "anc_visit", "detail": "0"},
        {"action": "task:form_save", "timestamp": T0 + 21_000, "ref": "home_visit"},
        {"action": "task:complete", "timestamp": T0 + 22_000, "ref": "home_visit"},
        {"action": "task_list:leave", "timestamp": T0 + 30_000},
    ]
    t1 = T0 + 3_600_000
    second = [
        {"action": "task_list:open", "timestamp": t1},
        {"action": "task:open", "timestamp": t1 + 1_000, "ref": "anc_visit", "detail": "1"},
        {"action": "task:complete", "timestamp": t1 + 6_000, "ref": "home_visit"},
    ]
    day1 = merge_day([rec("devA", "2026-03-27", T0, visit), rec("devB", "2026-03-27", t1, second)])
    late = T0 + 86_400_000
    day2 = merge_day([rec("devA", "2026-03-28", late, [{"action": "task_list:open", "timestamp": late}])])
    return [*day1, *day2, {"_id": "_design/x", "language": "javascript"}, {"_id": "other", "type": "Task"}]


def view_src(name: str, part: str) -> str:
    return (VIEWS / name / f"{part}.js").read_text(encoding="utf-8").strip()


def test_views_map_the_merged_documents(tmp_path: Path) -> None:
    docs = merged_docs()
    names = sorted(p.name for p in VIEWS.iterdir() if p.is_dir())
    assert {"by_date", "by_user_date", "by_action", "by_ref", "by_device"} <= set(names)
    out = run_node({"maps": {n: view_src(n, "map") for n in names}, "docs": docs}, tmp_path)["maps"]

    def rows(view: str) -> list[list[Any]]:
        return [row for per_doc in out[view] for row in per_doc]

    assert out["by_date"][-2:] == [[], []]  # design and foreign documents emit nothing
    assert sorted(rows("by_date")) == [["2026-03-27", 3], ["2026-03-27", 5], ["2026-03-28", 1]]
    assert sorted(rows("by_user_date")) == [
        [[USER, "2026-03-27"], 3],
        [[USER, "2026-03-27"], 5],
        [[USER, "2026-03-28"], 1],
    ]
    assert sorted(rows("by_device")) == [
        [[USER, "devA", "2026-03-27"], 5],
        [[USER, "devA", "2026-03-28"], 1],
        [[USER, "devB", "2026-03-27"], 3],
    ]
    actions: dict[tuple[str, str, str], list[int]] = {}
    for key, value in rows("by_action"):
        actions.setdefault(tuple(key), []).append(value)
    assert actions[("task:open", "2026-03-27", USER)] == [1, 1]
    assert actions[("task_list:open", "2026-03-28", USER)] == [1]
    assert sum(sum(v) for v in actions.values()) == 9
    refs: dict[tuple[str, str], int] = {}
    for key, value in rows("by_ref"):
        refs[tuple(key)] = refs.get(tuple(key), 0) + value
    assert refs == {("anc_visit", "2026-03-27"): 2, ("home_visit", "2026-03-27"): 3}
    transitions = {tuple(k): v for k, v in rows("by_transition") if k[0] == "task:open"}
    assert transitions == {
        ("task:open", "task:form_save", "2026-03-27"): 1,
        ("task:open", "task:complete", "2026-03-27"): 1,
    }
    assert rows("capped") == []
    durations = sorted(rows("durations"))
    assert durations == [
        [["openToComplete", "2026-03-27", USER], [1, 5_000, 5_000, 5_000]],
        [["openToComplete", "2026-03-27", USER], [1, 21_000, 21_000, 21_000]],
        [["openToFormSave", "2026-03-27", USER], [1, 20_000, 20_000, 20_000]],
        [["taskList", "2026-03-27", USER], [1, 30_000, 30_000, 30_000]],
    ]


def test_the_capped_view_lists_days_over_the_cap(tmp_path: Path) -> None:
    events = [{"action": "task_list:scroll", "timestamp": T0 + i} for i in range(8)]
    doc = {
        "_id": daily_doc_id(USER, DEVICE, "2026-03-27"),
        "type": "interaction-log",
        "sessions": [{"session": "tasks", "startedAt": T0, "events": events}],
        "metadata": {"user": USER, "deviceId": DEVICE, "date": "2026-03-27", "version": "5.2.0"},
    }
    merged = merge_day([doc], cap=5)
    out = run_node({"maps": {"capped": view_src("capped", "map")}, "docs": merged}, tmp_path)["maps"]
    assert out["capped"] == [[[["2026-03-27", USER, DEVICE], 3]]]


def test_the_durations_reduce_combines_and_rereduces(tmp_path: Path) -> None:
    calls = [
        {"keys": None, "values": [[1, 5_000, 5_000, 5_000], [2, 30_000, 9_000, 21_000]], "rereduce": False},
        {"keys": None, "values": [[3, 35_000, 5_000, 21_000], [1, 100, 100, 100]], "rereduce": True},
        {"keys": None, "values": [], "rereduce": True},
    ]
    out = run_node({"reduce": {"src": view_src("durations", "reduce"), "calls": calls}}, tmp_path)["reduce"]
    assert out == [[3, 35_000, 5_000, 21_000], [4, 35_100, 100, 21_000], [0, 0, None, None]]


def test_every_reduce_is_a_builtin_or_a_function() -> None:
    for view in VIEWS.iterdir():
        reduce = view / "reduce.js"
        if reduce.is_file():
            text = reduce.read_text(encoding="utf-8").strip()
            assert text in {"_sum", "_count", "_stats"} or text.startswith("function"), view.name


def test_every_function_is_es5(tmp_path: Path) -> None:
    files = [VDU, *sorted(VIEWS.glob("*/*.js"))]
    sources = [f.read_text(encoding="utf-8").strip() for f in files]
    functions = [s for s in sources if s.startswith("function")]
    assert len(functions) >= 9
    out = run_node({"es5": functions, "acorn": str(ACORN)}, tmp_path)["es5"]
    assert out == [None] * len(functions)
    # and the check itself can fail
    es6 = run_node({"es5": ["function (doc) { let x = () => 1; }"], "acorn": str(ACORN)}, tmp_path)
    assert es6["es5"] != [None]
