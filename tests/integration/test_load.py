"""fieldsync load: real OpenSRP fixtures in, invalid ones reported and not written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workers.couch import Couch
from workers.loader import load
from workers.settings import Settings

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "opensrp"
if not FIXTURES.is_dir():
    pytest.skip(f"needs the OpenSRP fixtures of ../shared beside the clone ({FIXTURES} not found)",
                allow_module_level=True)


def test_load_fixtures_reports_the_invalid_plan_and_loads_the_rest(couch: Couch, initialised: Settings) -> None:
    s = initialised
    report = load(couch, s.dbs.main, [FIXTURES / "plan_dynamic_fi_thailand_A1.json",
                                      FIXTURES / "plan_dynamic_fi_reference_scoping.json",
                                      FIXTURES / "converter_location_opensrp.json",
                                      FIXTURES / "converter_client_opensrp.json",
                                      FIXTURES / "converter_event_opensrp.json"])
    [bad] = report.rejected
    assert "plan_dynamic_fi_reference_scoping.json" in bad.file and "AND" in bad.reason
    assert "action" in bad.field
    plan = couch.get(s.dbs.main, "877a0d0b-5602-4223-bd43-7a2acf2638b1") or {}
    stored = [couch.get(s.dbs.main, i) for i in report.written]
    assert len(report.written) == 4 and all(d is not None for d in stored)
    assert {d["type"] for d in stored if d} == {"Plan", "Feature", "Client", "Event"}
    assert plan["type"] == "Plan" and plan["action"][0]["identifier"]
    again = load(couch, s.dbs.main, [FIXTURES / "plan_dynamic_fi_thailand_A1.json"])
    assert again.written == [] and len(again.unchanged) == 1


def test_load_cli_lists_each_bad_document(tmp_path: Path, cli_env: dict[str, str], couch: Couch,
                                          initialised: Settings) -> None:
    docs = [
        {"type": "Feature", "id": "s-1", "properties": {"parentId": "j-1", "geographicLevel": 2}},
        {"type": "Client", "firstName": "No", "lastName": "Id"},
        {"type": "Spaceship", "id": "x"},
    ]
    (tmp_path / "mixed.json").write_text(json.dumps(docs))
    (tmp_path / "broken.json").write_text("{not json")
    result = subprocess.run([sys.executable, "-m", "workers.cli", "load", str(tmp_path)], env=cli_env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "1 documents written" in result.stdout
    assert "mixed.json[1]" in result.stderr and "baseEntityId" in result.stderr
    assert "mixed.json[2]" in result.stderr and "Spaceship" in result.stderr
    assert "broken.json" in result.stderr and "not JSON" in result.stderr
    assert couch.get(initialised.dbs.main, "s-1") is not None
