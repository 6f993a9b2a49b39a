"""The workers' JSON codec gives the standard library's values, whatever the text (orjson where it can)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from workers.jsoncodec import dumps, dumps_text, loads

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "opensrp"


def _samples() -> list[object]:
    found: list[object] = [json.loads(p.read_text()) for p in sorted(FIXTURES.glob("*.json"))]
    return found or [{"type": "Task", "identifier": "x", "n": [1, 2.5, None, True, "é", {"a": []}]}]


def test_documents_read_back_as_the_standard_library_reads_them() -> None:
    for sample in _samples():
        text = json.dumps(sample)
        assert loads(text) == json.loads(text)
        assert loads(text.encode()) == json.loads(text)
        assert json.loads(dumps(sample)) == sample
        assert loads(dumps_text(sample)) == sample


@pytest.mark.parametrize("text", [
    '{"n": 123456789012345678901234567890}',  # orjson would read a float
    '{"n": -18446744073709551617, "m": [9223372036854775808]}',
    '{"s": "\\ud800"}',  # a lone surrogate: orjson refuses it
    '{"x": NaN, "y": Infinity}',  # the standard library accepts these, CouchDB never sends them
    '{"id": "a string of 1234567890123456789012 digits"}',
])
def test_what_orjson_reads_differently_or_refuses_is_read_by_the_standard_library(text: str) -> None:
    got, expected = loads(text), json.loads(text)
    assert json.dumps(got) == json.dumps(expected)
    for key, value in expected.items():
        assert type(got[key]) is type(value)
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(got[key])


def test_an_integer_beyond_64_bits_keeps_every_digit() -> None:
    big = 123456789012345678901234567890
    assert loads(f'{{"n": {big}}}'.encode())["n"] == big
    assert json.loads(dumps({"n": big, "m": -(2**70)})) == {"n": big, "m": -(2**70)}


def test_values_orjson_cannot_encode_are_encoded_by_the_standard_library() -> None:
    assert json.loads(dumps({"s": "\ud800"})) == {"s": "\ud800"}
    assert json.loads(dumps({1: "non-string key"})) == {"1": "non-string key"}


def test_invalid_text_raises_value_error_and_deep_nesting_recursion_error() -> None:
    with pytest.raises(ValueError):
        loads(b'{"a": ')
    with pytest.raises(RecursionError):  # the follower goes one change at a time past such a document
        loads("[" * 100_000 + "]" * 100_000)
