"""Plan templates and draft plans made from them."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from evaluator_helpers import NOW, fixture

from validators.opensrp import Plan
from workers.evaluator.templates import load_template, new_plan_from_template, template_names


def test_the_three_templates_are_shipped() -> None:
    assert template_names() == ["Dynamic-FI", "Dynamic-IRS", "Dynamic-MDA"]


def test_fi_template_has_the_thailand_routine_fi_actions() -> None:
    template = load_template("Dynamic-FI")
    thailand = fixture("plan_dynamic_fi_thailand_A1.json")
    assert [a["code"] for a in template["action"]] == [a["code"] for a in thailand["action"]]
    for mine, theirs in zip(template["action"], thailand["action"], strict=True):
        assert mine["condition"] == theirs["condition"] and mine["trigger"] == theirs["trigger"]


@pytest.mark.parametrize("name", ["Dynamic-IRS", "Dynamic-FI", "Dynamic-MDA"])
def test_new_plan_is_a_valid_draft(name: str) -> None:
    plan = new_plan_from_template(name, "oa-9", "Ban Rai 2021", date(2021, 11, 1), date(2021, 11, 21), NOW)
    model = Plan.model_validate(plan)
    assert model.status == "draft" and model.type == "Plan"
    assert plan["_id"] == plan["identifier"] and model.jurisdiction_codes == ["oa-9"]
    assert model.effectivePeriod is not None and model.effectivePeriod.end == "2021-11-21"
    assert all(a.timingPeriod is not None and a.timingPeriod.start == "2021-11-01" for a in model.action)
    assert len({a.identifier for a in model.action}) == len(model.action)
    again = new_plan_from_template(name, "oa-9", "Ban Rai 2021", date(2021, 11, 1), date(2021, 11, 21), NOW)
    assert again == plan
    later = new_plan_from_template(name, "oa-9", "Ban Rai 2021", date(2021, 11, 1), date(2021, 11, 21),
                                   NOW + timedelta(seconds=1))
    assert later["identifier"] != plan["identifier"]


def test_unknown_template_and_bad_period_are_refused() -> None:
    with pytest.raises(KeyError):
        new_plan_from_template("Dynamic-XYZ", "oa", "t", date(2021, 1, 1), date(2021, 1, 2), NOW)
    with pytest.raises(ValueError):
        new_plan_from_template("Dynamic-IRS", "oa", "t", date(2021, 1, 2), date(2021, 1, 1), NOW)
