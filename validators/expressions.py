"""Strict validation of the FHIRPath expressions found in plans.

fhirpathpy's parser stops at the first token that cannot continue an expression and silently drops the rest:
``questionnaire = 'x' AND item.exists()`` evaluates as ``questionnaire = 'x'``. Here the same ANTLR grammar
is run with an error listener that raises and an end-of-input check, so the whole text must be one expression.
Reveal's stack leaves HTML entities in plans (``&amp;amp;lt;=``): they are unescaped before anything else.
"""

from __future__ import annotations

import html
from functools import lru_cache
from typing import Any

from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.error.ErrorListener import ErrorListener
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser


class ExpressionError(ValueError):
    """A FHIRPath text that is not exactly one valid expression."""

    def __init__(self, expression: str, column: int | None, reason: str) -> None:
        self.expression = expression
        self.column = column
        self.reason = reason
        at = f" at column {column + 1}" if column is not None else ""
        super().__init__(f"invalid FHIRPath{at}: {reason} in {expression!r}")


def unescape(text: str) -> str:
    """Undo HTML escaping, however many times it was applied (``&amp;amp;lt;`` -> ``<``)."""
    previous = None
    current = text
    while previous != current and "&" in current:
        previous = current
        current = html.unescape(current)
    return current


class _Raise(ErrorListener):  # type: ignore[misc,unused-ignore]
    def __init__(self, expression: str) -> None:
        super().__init__()
        self.expression = expression

    def syntaxError(
        self, recognizer: Any, offendingSymbol: Any, line: int, column: int, msg: str, e: Any
    ) -> None:
        raise ExpressionError(self.expression, column, msg)


@lru_cache(maxsize=4096)
def validate(expression: str) -> str:
    """Return the unescaped expression if the whole text is one FHIRPath expression, else raise.

    Cached: a plan is validated on load and the same texts recur in every plan of a deployment.
    """
    text = unescape(expression)
    if not text.strip():
        raise ExpressionError(expression, None, "empty expression")
    listener = _Raise(text)
    lexer = FHIRPathLexer(InputStream(text))
    lexer.removeErrorListeners()
    lexer.addErrorListener(listener)
    stream = CommonTokenStream(lexer)
    parser = FHIRPathParser(stream)
    parser.removeErrorListeners()
    parser.addErrorListener(listener)
    parser.expression()
    rest = parser.getCurrentToken()
    if rest is not None and rest.type != Token.EOF:
        raise ExpressionError(
            text,
            rest.column,
            f"unexpected {rest.text!r} after a complete expression (FHIRPath operators are lower-case:"
            " and, or, xor, implies)"
            if rest.text.lower() in {"and", "or", "xor", "implies"}
            else f"unexpected {rest.text!r} after a complete expression",
        )
    return text
