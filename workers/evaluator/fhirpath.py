"""FHIRPath for plan conditions, as the evaluator calls it: each expression validated strictly (the whole text
one expression, ``validators.expressions``), then compiled once (cached) for both paths: the fast compiler
(:mod:`workers.evaluator.fhirpath_fast`) and fhirpathpy behind its compatibility layer
(:mod:`workers.evaluator.fhirpath_compat`), which takes over whatever the fast path does not handle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from time import perf_counter
from typing import Literal

from validators.expressions import validate
from workers.evaluator.fhirpath_compat import Collection, Resource, SlowExpression, compat_rewrite, parse
from workers.evaluator.fhirpath_fast import FastExpression, Unsupported, compile_fast

Mode = Literal["fast", "fhirpathpy"]
Complete = Callable[[Resource], Resource]  # a resource as its whole conversion gives it


@dataclass(frozen=True)
class Compiled:
    text: str
    slow: SlowExpression
    fast: FastExpression | None


@lru_cache(maxsize=4096)
def compile_expression(expression: str) -> Compiled:
    """Validate (strictly), rewrite and compile an expression once; HTML entities are undone first."""
    text = validate(expression)
    rewritten = compat_rewrite(text)
    slow = SlowExpression(text, rewritten, parse(rewritten))
    fast: FastExpression | None
    try:
        fast = compile_fast(text, parse(text))
    except Unsupported:
        fast = None
    return Compiled(text, slow, fast)


class PathEngine:
    """Evaluates plan expressions; ``mode="fhirpathpy"`` forces the (compatible) fhirpathpy path.

    ``evaluations`` counts evaluations, ``fallbacks`` those the fast path handed to fhirpathpy; with
    ``timed=True``, ``seconds`` sums the time spent evaluating.
    """

    def __init__(self, mode: Mode = "fast", *, timed: bool = False) -> None:
        self.mode: Mode = mode
        self.evaluations = 0
        self.fallbacks = 0
        self.timed = timed
        self.seconds = 0.0

    def evaluate(self, expression: str, resource: Resource, today: date,
                 complete: Complete | None = None) -> Collection:
        """``complete``: gives fhirpathpy the whole resource where ``resource`` may lack elements the
        expression never names (:func:`workers.evaluator.subjects.omissible`)."""
        if self.timed:
            started = perf_counter()
            try:
                return self._evaluate(expression, resource, today, complete)
            finally:
                self.seconds += perf_counter() - started
        return self._evaluate(expression, resource, today, complete)

    def _evaluate(self, expression: str, resource: Resource, today: date, complete: Complete | None) -> Collection:
        self.evaluations += 1
        compiled = compile_expression(expression)
        if self.mode == "fast" and compiled.fast is not None:
            try:
                return compiled.fast(resource, today)
            except Unsupported:
                pass
        if self.mode == "fast":
            self.fallbacks += 1
        return compiled.slow(resource if complete is None else complete(resource), today)

    def boolean(self, expression: str, resource: Resource, today: date, complete: Complete | None = None) -> bool:
        """OpenSRP's evaluateBooleanExpression: true only for a single ``true``."""
        result = self.evaluate(expression, resource, today, complete)
        return len(result) == 1 and result[0] is True

    def string(self, expression: str, resource: Resource, today: date,
               complete: Complete | None = None) -> str | None:
        """OpenSRP's evaluateStringExpression: the first item as text, or None."""
        result = self.evaluate(expression, resource, today, complete)
        if not result:
            return None
        first = result[0]
        if isinstance(first, bool):
            return "true" if first else "false"
        if isinstance(first, dict):
            return None
        return str(first)
