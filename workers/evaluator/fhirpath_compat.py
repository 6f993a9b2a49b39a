"""The fhirpathpy compatibility layer: plan expressions evaluated by fhirpathpy as OpenSRP's IBM FHIR engine
evaluates them (the slow path, and the reference the fast path is checked against).

fhirpathpy 2.x differs on real Reveal plans (see the fixtures README). The rewrite, applied to every expression
before fhirpathpy sees it:

- an expression starting with ``$this`` fails (KeyError): ``$this`` is seeded with the root resource;
- ``is(FHIR.Location)`` answers false on the root resource: ``is(...)`` becomes ``fsIs('Location')``, which
  compares the ``resourceType``;
- a type name as a path prefix inside ``where`` (``contained.where(Patient.birthDate ...)``) answers empty:
  ``Patient.`` at the start of a term becomes ``fsType('Patient').`` (the focus, if it is a Patient);
- quoted calendar units (``today() - 5 'years'``) fail: the quotes are dropped (``5 years``);
- ``.value`` on a primitive (``Task.code.text.value``) answers empty, and choice types (``answer.value``)
  need the model: ``.value`` becomes ``fsValue()``: a primitive is its own value, an element gives its
  ``value`` or its ``value[x]`` children; the R4 model is passed as well;
- primitive extension keys (``"_questionnaire": {"id": "eventType"}``) are read as extra items: keys starting
  with ``_`` are dropped from the resource before evaluation;
- ``today()`` is an argument of every evaluation, never the clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from antlr4 import InputStream
from fhirpathpy import engine as _fp_engine
from fhirpathpy.engine.invocations.constants import constants as _fp_constants
from fhirpathpy.engine.nodes import FP_DateTime
from fhirpathpy.engine.util import get_data, process_user_invocation_table
from fhirpathpy.models import models as _fp_models
from fhirpathpy.parser import parse as _fp_parse
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer

# fhirpathpy is untyped: its entry points, typed once here
_get_data: Callable[[Any], Any] = get_data
_reset_constants: Callable[[], None] = _fp_constants.reset
_fp_datetime: Callable[[str], Any] = FP_DateTime
_user_table: Callable[[dict[str, Any]], dict[str, Any]] = process_user_invocation_table
_do_eval: Callable[[dict[str, Any], Any, dict[str, Any]], Any] = _fp_engine.do_eval
parse: Callable[[str], dict[str, Any]] = _fp_parse  # fhirpathpy's parser: the AST both paths compile

Resource = dict[str, Any]
Collection = list[Any]

CALENDAR_UNITS = {
    "year", "years", "month", "months", "week", "weeks", "day", "days",
    "hour", "hours", "minute", "minutes", "second", "seconds", "millisecond", "milliseconds",
}

_R4 = _fp_models["r4"]


def strip_primitive_extensions(value: Any) -> Any:
    """Drop FHIR JSON's ``_name`` keys (primitive ids/extensions) that fhirpathpy reads as values."""
    if isinstance(value, dict):
        return {k: strip_primitive_extensions(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [strip_primitive_extensions(v) for v in value]
    return value


def value_of(item: Any) -> list[Any]:
    """``.value`` as OpenSRP's engine sees it: a primitive is its own value; an element its value[x]."""
    if isinstance(item, dict):
        if "value" in item:
            found = item["value"]
            return list(found) if isinstance(found, list) else [found]
        out: list[Any] = []
        for key, found in item.items():
            if len(key) > 5 and key.startswith("value") and key[5].isupper():
                out.extend(found if isinstance(found, list) else [found])
        return out
    if item is None:
        return []
    return [item]


def compat_rewrite(text: str) -> str:
    """Rewrite a (valid, unescaped) expression so that fhirpathpy evaluates it as OpenSRP does."""
    tokens = [t for t in FHIRPathLexer(InputStream(text)).getAllTokens() if t.channel == 0]
    edits: list[tuple[int, int, str]] = []
    consumed: set[int] = set()
    n = len(tokens)

    def tx(i: int) -> str:
        return str(tokens[i].text) if 0 <= i < n else ""

    for i in range(n):
        if i in consumed:
            continue
        text_i = tx(i)
        # is(FHIR.X) / is(X)
        if text_i == "is" and tx(i + 1) == "(":
            if tx(i + 2) == "FHIR" and tx(i + 3) == "." and tx(i + 5) == ")":
                name, end = tx(i + 4), i + 5
            elif tx(i + 3) == ")":
                name, end = tx(i + 2), i + 3
            else:
                continue
            edits.append((tokens[i].start, tokens[end].stop, f"fsIs('{name}')"))
            consumed.update(range(i, end + 1))
            continue
        if tokens[i].type == FHIRPathLexer.IDENTIFIER:
            prev = tx(i - 1)
            # Type name as a path prefix at the start of a term
            if text_i[:1].isupper() and tx(i + 1) == "." and prev != ".":
                edits.append((tokens[i].start, tokens[i].stop, f"fsType('{text_i}')"))
                continue
            # .value (not a function call)
            if text_i == "value" and prev == "." and tx(i + 1) != "(":
                edits.append((tokens[i].start, tokens[i].stop, "fsValue()"))
                continue
        # 5 'years' -> 5 years
        if tokens[i].type == FHIRPathLexer.STRING and i > 0 and tokens[i - 1].type == FHIRPathLexer.NUMBER:
            unit = text_i[1:-1]
            if unit in CALENDAR_UNITS:
                edits.append((tokens[i].start, tokens[i].stop, unit))
    out = text
    for start, stop, replacement in sorted(edits, reverse=True):
        out = out[:start] + replacement + out[stop + 1 :]
    return out


def _fs_is(inputs: list[Any], name: str) -> list[Any]:
    if not inputs:
        return []
    if len(inputs) > 1:
        raise ValueError("is() expects a singleton")
    item = inputs[0]
    return [isinstance(item, dict) and item.get("resourceType") == name]


def _fs_type(inputs: list[Any], name: str) -> list[Any]:
    return [item for item in inputs if isinstance(item, dict) and item.get("resourceType") == name]


def _fs_value(inputs: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in inputs:
        out.extend(value_of(item))
    return out


_COMPAT_TABLE = {
    "fsIs": {"fn": _fs_is, "arity": {1: ["String"]}},
    "fsType": {"fn": _fs_type, "arity": {1: ["String"]}},
    "fsValue": {"fn": _fs_value, "arity": {0: []}},
}


def _fp_result(node: Any) -> list[Any]:
    out: list[Any] = []
    for item in node if isinstance(node, list) else [node]:
        data = _get_data(item)
        if isinstance(data, FP_DateTime):
            data = str(data)
        out.append(data)
    return out


@dataclass(frozen=True)
class SlowExpression:
    """An expression compiled for fhirpathpy (parsed once, evaluated with the compatibility table)."""

    text: str
    rewritten: str
    parsed: dict[str, Any]

    def __call__(self, resource: Resource, today: date) -> Collection:
        _reset_constants()
        data = strip_primitive_extensions(resource)
        root = [data]
        today_value = _fp_datetime(today.isoformat())
        table = dict(_COMPAT_TABLE)
        table["today"] = {"fn": lambda inputs: today_value, "arity": {0: []}}
        ctx: dict[str, Any] = {
            "dataRoot": root,
            "vars": {"context": data, "ucum": "http://unitsofmeasure.org"},
            "model": _R4,
            "userInvocationTable": _user_table(table),
            "$this": root,
        }
        return _fp_result(_do_eval(ctx, root, self.parsed["children"][0]))
