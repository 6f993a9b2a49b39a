"""The fast path: the subset of FHIRPath that plans use (paths, where/exists/not/is/startsWith/endsWith/today/
empty/first/count, indexers, = != < <= > >=, and/or, date arithmetic with calendar quantities) compiled from
fhirpathpy's AST into Python closures over plain JSON, with the compatibility layer's semantics
(:mod:`workers.evaluator.fhirpath_compat`). An expression outside the subset, or a value it does not handle,
raises :class:`Unsupported`: the caller falls back to fhirpathpy."""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from workers.evaluator.fhirpath_compat import CALENDAR_UNITS, Collection, Resource, value_of


class Unsupported(Exception):
    """The fast path does not handle this expression or value: use fhirpathpy."""


@dataclass(frozen=True)
class When:
    """A date or dateTime value: ``moment`` set for a dateTime."""

    day: date
    moment: datetime | None = None


_DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(T.*)?$")


def _as_when(value: Any) -> When | None:
    if isinstance(value, When):
        return value
    if isinstance(value, str):
        return _parse_when(value)
    return None


@lru_cache(maxsize=65536)
def _parse_when(value: str) -> When | None:
    m = _DATE_RE.match(value)
    if not m:
        return None
    try:
        day = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None
    if m.group(4) is None:
        return When(day)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return When(day, datetime(day.year, day.month, day.day, tzinfo=UTC))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return When(day, moment)


def _compare_when(a: When, b: When) -> int | None:
    """-1/0/1, or None when precisions differ on the same day (FHIRPath: empty)."""
    if a.moment is not None and b.moment is not None:
        return (a.moment > b.moment) - (a.moment < b.moment)
    if a.day != b.day:
        return (a.day > b.day) - (a.day < b.day)
    if a.moment is None and b.moment is None:
        return 0
    return None


def _add_calendar(value: When, amount: int | float | Decimal, unit: str) -> When:
    if value.moment is not None:
        raise Unsupported("dateTime arithmetic")
    if amount != int(amount):
        raise Unsupported("fractional calendar quantity")
    n = int(amount)
    unit = unit.rstrip("s") if unit not in {"s", "ms"} else unit
    day = value.day
    if unit in {"year", "month"}:
        months = n * 12 if unit == "year" else n
        total = day.year * 12 + (day.month - 1) + months
        year, month = divmod(total, 12)
        month += 1
        last = calendar.monthrange(year, month)[1]
        return When(date(year, month, min(day.day, last)))
    if unit in {"week", "wk"}:
        return When(day + timedelta(days=7 * n))
    if unit in {"day", "d"}:
        return When(day + timedelta(days=n))
    raise Unsupported(f"date arithmetic in {unit}")


class Env:
    """An evaluation's context: the root collection, ``$this`` (rebound inside ``where``), the day."""

    __slots__ = ("root", "this", "today")

    def __init__(self, root: Collection, this: Collection, today: date) -> None:
        self.root = root
        self.this = this
        self.today = today


Fn = Callable[[Collection, Env], Collection]


def _singleton(values: Collection) -> Any:
    if len(values) != 1:
        raise Unsupported("expected a singleton")
    return values[0]


def _to_bool(values: Collection) -> bool | None:
    if not values:
        return None
    if len(values) > 1:
        raise Unsupported("boolean of a collection")
    value = values[0]
    if value is True or value is False:
        return bool(value)
    raise Unsupported("boolean of a non-boolean")


def _equal(a: Any, b: Any) -> bool | None:
    if isinstance(a, When) or isinstance(b, When):
        wa, wb = _as_when(a), _as_when(b)
        if wa is None or wb is None:
            raise Unsupported("date compared with a non-date")
        cmp = _compare_when(wa, wb)
        return None if cmp is None else cmp == 0
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def _member(name: str) -> Fn:
    prefix_len = len(name)
    choice_possible = name[:1].islower()

    def member(focus: Collection, env: Env) -> Collection:
        out: Collection = []
        for item in focus:
            if type(item) is dict:
                found = item.get(name)
                if found is not None:
                    if type(found) is list:
                        out.extend(found)
                    else:
                        out.append(found)
                elif choice_possible and name not in item:
                    # choice type (value -> valueString): the R4 model resolves it; leave it to fhirpathpy
                    for key in item:
                        if len(key) > prefix_len and key.startswith(name) and key[prefix_len].isupper():
                            raise Unsupported(f"choice type {key}")
        return out

    def value(focus: Collection, env: Env) -> Collection:
        out: Collection = []
        for item in focus:
            out.extend(value_of(item))
        return out

    return value if name == "value" else member


def _type_filter(name: str) -> Fn:
    def type_filter(focus: Collection, env: Env) -> Collection:
        return [item for item in focus if type(item) is dict and item.get("resourceType") == name]

    return type_filter


class _Compiler:
    """fhirpathpy's AST (dicts) -> closures ``fn(focus, env) -> collection``.

    ``constant`` holds the nodes whose value depends only on ``today()`` (literals, date arithmetic on
    them): their closures remember the last day's value.
    """

    def compile(self, node: dict[str, Any]) -> Fn:
        kind = node["type"]
        method = getattr(self, "c_" + kind, None)
        if method is None:
            raise Unsupported(kind)
        result: Fn = method(node)
        return result

    def c_TermExpression(self, node: dict[str, Any]) -> Fn:
        return self.compile(node["children"][0])

    def c_ParenthesizedTerm(self, node: dict[str, Any]) -> Fn:
        return self.compile(node["children"][0])

    def c_InvocationTerm(self, node: dict[str, Any]) -> Fn:
        child = node["children"][0]
        if child["type"] == "MemberInvocation":
            name = child["children"][0]["text"]
            if name[:1].isupper():
                return _type_filter(name)
        return self.compile(child)

    def c_LiteralTerm(self, node: dict[str, Any]) -> Fn:
        return self.compile(node["children"][0])

    def c_StringLiteral(self, node: dict[str, Any]) -> Fn:
        raw = node["text"][1:-1]
        escapes = {"n": "\n", "t": "\t", "r": "\r", "f": "\f"}
        value = re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group(1)), raw)
        result = [value]
        return lambda focus, env: result

    def c_NumberLiteral(self, node: dict[str, Any]) -> Fn:
        number = Decimal(node["text"])
        value: int | Decimal = int(number) if number == int(number) else number
        result = [value]
        return lambda focus, env: result

    def c_BooleanLiteral(self, node: dict[str, Any]) -> Fn:
        result = [node["text"] == "true"]
        return lambda focus, env: result

    def c_QuantityLiteral(self, node: dict[str, Any]) -> Fn:
        text = node["text"]
        m = re.match(r"^\s*([0-9.]+)\s*(.*)$", text)
        if not m:
            raise Unsupported("quantity")
        unit = m.group(2).strip().strip("'")
        if unit not in CALENDAR_UNITS:
            raise Unsupported(f"quantity unit {unit}")
        result = [("quantity", Decimal(m.group(1)), unit)]
        return lambda focus, env: result

    def c_ThisInvocation(self, node: dict[str, Any]) -> Fn:
        return lambda focus, env: env.this

    def c_MemberInvocation(self, node: dict[str, Any]) -> Fn:
        return _member(node["children"][0]["text"])

    def c_InvocationExpression(self, node: dict[str, Any]) -> Fn:
        # a.b.c(...).d: one closure running the steps in turn (not one nested closure per dot)
        rights: list[dict[str, Any]] = []
        current = node
        while current["type"] == "InvocationExpression":
            rights.append(current["children"][1])
            current = current["children"][0]
        rights.reverse()
        head = self.compile(current)
        # $this.a.b: start from $this without calling a closure for it
        starts_at_this = (current["type"] == "TermExpression" and current["children"][0]["type"] == "InvocationTerm"
                          and current["children"][0]["children"][0]["type"] == "ThisInvocation")
        steps = tuple(
            _member(right["children"][0]["text"]) if right["type"] == "MemberInvocation" else self.compile(right)
            for right in rights
        )
        if len(steps) == 1:
            step = steps[0]
            if starts_at_this:

                def invoke_this(focus: Collection, env: Env) -> Collection:
                    return step(env.this, env)

                return invoke_this

            def invoke(focus: Collection, env: Env) -> Collection:
                return step(head(focus, env), env)

            return invoke

        def invoke_chain(focus: Collection, env: Env) -> Collection:
            values = env.this if starts_at_this else head(focus, env)
            for step in steps:
                values = step(values, env)
            return values

        return invoke_chain

    def c_IndexerExpression(self, node: dict[str, Any]) -> Fn:
        base = self.compile(node["children"][0])
        index = self.compile(node["children"][1])

        def indexer(focus: Collection, env: Env) -> Collection:
            values = base(focus, env)
            i = _singleton(index(env.this, env))
            if not isinstance(i, int) or isinstance(i, bool):
                raise Unsupported("index")
            return [values[i]] if 0 <= i < len(values) else []

        return indexer

    def c_FunctionInvocation(self, node: dict[str, Any]) -> Fn:
        functn = node["children"][0]
        name = functn["children"][0]["text"]
        params = functn["children"][1]["children"] if len(functn["children"]) > 1 else []
        builder = getattr(self, "f_" + name, None)
        if builder is None:
            raise Unsupported(f"function {name}")
        result: Fn = builder(params)
        return result

    # functions ------------------------------------------------------------------------------------------

    def _lambda(self, param: dict[str, Any]) -> Callable[[Any, Env], Collection]:
        fn = self.compile(param)

        def per_item(item: Any, env: Env) -> Collection:
            saved = env.this
            env.this = [item]
            try:
                return fn(env.this, env)
            finally:
                env.this = saved

        return per_item

    def _field_equals(self, node: dict[str, Any]) -> tuple[str, str] | None:
        """(name, text) when ``node`` is ``name = 'text'`` with ``name`` a plain lower-case member."""
        if node["type"] != "EqualityExpression" or node["terminalNodeText"][0] != "=":
            return None
        left, right = node["children"]
        try:
            member = left["children"][0]["children"][0]
            literal = right["children"][0]["children"][0]
        except (KeyError, IndexError):
            return None
        if (left["type"] != "TermExpression" or left["children"][0]["type"] != "InvocationTerm"
                or member["type"] != "MemberInvocation" or right["type"] != "TermExpression"
                or right["children"][0]["type"] != "LiteralTerm" or literal["type"] != "StringLiteral"):
            return None
        name = member["children"][0]["text"]
        if not isinstance(name, str) or not re.match(r"^[a-z][A-Za-z0-9_]*$", name):
            return None
        value = self.compile(literal)([], Env([], [], date.min))[0]
        return (name, value) if isinstance(value, str) else None

    def f_where(self, params: list[dict[str, Any]]) -> Fn:
        if len(params) != 1:
            raise Unsupported("where arity")
        criteria = self._lambda(params[0])
        field_equals = self._field_equals(params[0])
        if field_equals is not None:
            # where(name = 'text'): an item whose ``name`` is a string is compared directly; any other item
            # goes through the general criteria
            name, text = field_equals

            def where_equals(focus: Collection, env: Env) -> Collection:
                out: Collection = []
                for item in focus:
                    if type(item) is dict:
                        found = item.get(name)
                        if type(found) is str:
                            if found == text:
                                out.append(item)
                            continue
                    result = criteria(item, env)
                    if result:
                        first = result[0]
                        if isinstance(first, dict) or first:
                            out.append(item)
                return out

            return where_equals

        def where(focus: Collection, env: Env) -> Collection:
            out: Collection = []
            for item in focus:
                result = criteria(item, env)
                if result:
                    first = result[0]
                    if isinstance(first, dict) or first:
                        out.append(item)
            return out

        return where

    def f_exists(self, params: list[dict[str, Any]]) -> Fn:
        if not params:
            return lambda focus, env: [len(focus) > 0]
        filtered = self.f_where(params)
        return lambda focus, env: [len(filtered(focus, env)) > 0]

    def f_empty(self, params: list[dict[str, Any]]) -> Fn:
        if params:
            raise Unsupported("empty arity")
        return lambda focus, env: [len(focus) == 0]

    def f_count(self, params: list[dict[str, Any]]) -> Fn:
        if params:
            raise Unsupported("count arity")
        return lambda focus, env: [len(focus)]

    def f_first(self, params: list[dict[str, Any]]) -> Fn:
        if params:
            raise Unsupported("first arity")
        return lambda focus, env: focus[:1]

    def f_not(self, params: list[dict[str, Any]]) -> Fn:
        if params:
            raise Unsupported("not arity")

        def negate(focus: Collection, env: Env) -> Collection:
            value = _to_bool(focus)
            return [] if value is None else [not value]

        return negate

    def f_today(self, params: list[dict[str, Any]]) -> Fn:
        if params:
            raise Unsupported("today arity")
        return lambda focus, env: [When(env.today)]

    def _type_name(self, params: list[dict[str, Any]]) -> str:
        if len(params) != 1:
            raise Unsupported("type arity")
        text = params[0].get("text") or ""
        name = text.split(".")[-1]
        if not name or not re.match(r"^[A-Za-z]+$", name):
            raise Unsupported("type specifier")
        return name

    def f_is(self, params: list[dict[str, Any]]) -> Fn:
        name = self._type_name(params)

        def is_type(focus: Collection, env: Env) -> Collection:
            if len(focus) != 1:
                if not focus:
                    return []
                raise Unsupported("expected a singleton")
            item = focus[0]
            return [type(item) is dict and item.get("resourceType") == name]

        return is_type

    def f_ofType(self, params: list[dict[str, Any]]) -> Fn:
        return _type_filter(self._type_name(params))

    def _string_test(self, params: list[dict[str, Any]], test: Callable[[str, str], bool]) -> Fn:
        if len(params) != 1:
            raise Unsupported("arity")
        arg = self.compile(params[0])

        def string_test(focus: Collection, env: Env) -> Collection:
            if not focus:
                return []
            value = _singleton(focus)
            other = arg(env.this, env)
            if not other:
                return []
            needle = _singleton(other)
            if not isinstance(value, str) or not isinstance(needle, str):
                raise Unsupported("string function on a non-string")
            return [test(value, needle)]

        return string_test

    def f_startsWith(self, params: list[dict[str, Any]]) -> Fn:
        return self._string_test(params, str.startswith)

    def f_endsWith(self, params: list[dict[str, Any]]) -> Fn:
        return self._string_test(params, str.endswith)

    def f_contains(self, params: list[dict[str, Any]]) -> Fn:
        return self._string_test(params, lambda a, b: b in a)

    # operators ------------------------------------------------------------------------------------------

    def _operands(self, node: dict[str, Any]) -> tuple[Fn, Fn]:
        left, right = node["children"]
        return self.compile(left), self.compile(right)

    def c_EqualityExpression(self, node: dict[str, Any]) -> Fn:
        op = node["terminalNodeText"][0]
        if op not in {"=", "!="}:
            raise Unsupported(op)
        left, right = self._operands(node)
        negate = op == "!="

        def equality(focus: Collection, env: Env) -> Collection:
            a = left(focus, env)
            if not a:
                return []
            b = right(focus, env)
            if not b:
                return []
            if len(a) != len(b):
                return [negate]
            if len(a) == 1:
                x, y = a[0], b[0]
                if type(x) is str and type(y) is str:
                    return [(x == y) != negate]
            for x, y in zip(a, b, strict=True):
                same = _equal(x, y)
                if same is None:
                    return []
                if not same:
                    return [negate]
            return [not negate]

        return equality

    def c_InequalityExpression(self, node: dict[str, Any]) -> Fn:
        op = node["terminalNodeText"][0]
        left, right = self._operands(node)
        checks: dict[str, Callable[[int], bool]] = {
            "<": lambda c: c < 0, "<=": lambda c: c <= 0, ">": lambda c: c > 0, ">=": lambda c: c >= 0,
        }
        check = checks[op]

        def inequality(focus: Collection, env: Env) -> Collection:
            a = left(focus, env)
            if not a:
                return []
            b = right(focus, env)
            if not b:
                return []
            x, y = _singleton(a), _singleton(b)
            if isinstance(x, When) or isinstance(y, When):
                wx, wy = _as_when(x), _as_when(y)
                if wx is None or wy is None:
                    raise Unsupported("date compared with a non-date")
                cmp = _compare_when(wx, wy)
                return [] if cmp is None else [check(cmp)]
            if isinstance(x, str) and isinstance(y, str):
                return [check((x > y) - (x < y))]
            if isinstance(x, int | float | Decimal) and isinstance(y, int | float | Decimal) \
                    and not isinstance(x, bool) and not isinstance(y, bool):
                return [check((x > y) - (x < y))]
            raise Unsupported("comparison of these types")

        return inequality

    def c_AdditiveExpression(self, node: dict[str, Any]) -> Fn:
        op = node["terminalNodeText"][0]
        if op not in {"+", "-"}:
            raise Unsupported(op)
        left, right = self._operands(node)
        sign = 1 if op == "+" else -1
        # today() +/- a quantity depends on the day only: remember the last day's value
        memo: dict[date, Collection] = {}
        constant = _depends_on_today_only(node)

        def additive(focus: Collection, env: Env) -> Collection:
            if constant and env.today in memo:
                return memo[env.today]
            a = left(focus, env)
            b = right(focus, env)
            if not a or not b:
                return []
            x, y = _singleton(a), _singleton(b)
            if isinstance(y, tuple) and y[0] == "quantity":
                when = _as_when(x)
                if when is None:
                    raise Unsupported("arithmetic on a non-date")
                result = [_add_calendar(when, sign * y[1], y[2])]
                if constant:
                    memo.clear()
                    memo[env.today] = result
                return result
            raise Unsupported("arithmetic")

        return additive

    def c_AndExpression(self, node: dict[str, Any]) -> Fn:
        return self._logical(node, decisive=False)

    def c_OrExpression(self, node: dict[str, Any]) -> Fn:
        op = node["terminalNodeText"][0]
        if op != "or":
            raise Unsupported(op)
        return self._logical(node, decisive=True)

    def _logical(self, node: dict[str, Any], decisive: bool) -> Fn:
        """``and`` (an operand False decides: ``decisive=False``) and ``or`` (True decides), three-valued: the
        right operand is not evaluated once the left decides; an empty operand that does not decide gives
        empty."""
        left, right = self._operands(node)
        undecided = not decisive

        def logical(focus: Collection, env: Env) -> Collection:
            x = left(focus, env)
            a = x[0] if len(x) == 1 and (x[0] is True or x[0] is False) else _to_bool(x)
            if a is decisive:
                return [decisive]
            y = right(focus, env)
            b = y[0] if len(y) == 1 and (y[0] is True or y[0] is False) else _to_bool(y)
            if b is decisive:
                return [decisive]
            if a is None or b is None:
                return []
            return [undecided]

        return logical


_TODAY_ONLY_LEAVES = {
    "StringLiteral", "NumberLiteral", "BooleanLiteral", "QuantityLiteral", "Quantity", "Unit",
}


def _depends_on_today_only(node: dict[str, Any]) -> bool:
    """True for a subtree built from literals, ``today()`` and operators (no paths, no ``$this``)."""
    kind = node["type"]
    if kind in _TODAY_ONLY_LEAVES:
        return True
    if kind == "FunctionInvocation":
        functn = node["children"][0]
        return bool(functn["children"][0]["text"] == "today" and len(functn["children"]) == 1)
    if kind in {"TermExpression", "LiteralTerm", "InvocationTerm", "ParenthesizedTerm", "AdditiveExpression"}:
        return all(_depends_on_today_only(c) for c in node.get("children", []))
    return False


def _finish(values: Collection) -> Collection:
    out: Collection = []
    for value in values:
        if isinstance(value, When):
            out.append(value.day.isoformat() if value.moment is None else value.moment.isoformat())
        elif isinstance(value, tuple):
            raise Unsupported("quantity result")
        else:
            out.append(value)
    return out


@dataclass(frozen=True)
class FastExpression:
    text: str
    fn: Fn

    def __call__(self, resource: Resource, today: date) -> Collection:
        root = [resource]
        result = self.fn(root, Env(root, root, today))
        if len(result) == 1 and (result[0] is True or result[0] is False):
            return result
        return _finish(result)


def compile_fast(text: str, parsed: dict[str, Any]) -> FastExpression:
    """``text`` (parsed by fhirpathpy) as closures; raises :class:`Unsupported` outside the subset."""
    return FastExpression(text, _Compiler().compile(parsed["children"][0]))
