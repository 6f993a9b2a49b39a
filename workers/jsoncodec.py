"""JSON in and out of the workers: orjson where it gives the standard library's answer, the standard library
everywhere else.

Encoding and decoding were a third of the plan worker's Python time during an activation (session 15,
``py-spy --gil``: each task encoded for its ``_bulk_docs`` and again for the read model, every feed page and every
body of the read model decoded). orjson does both several times faster. It is used only where it cannot change
what a document says:

- :func:`dumps`: orjson refuses what JSON cannot hold exactly (integers beyond 64 bits, lone surrogates, keys
  that are not strings); those values are encoded by the standard library, as before. The text differs only in
  form (UTF-8 instead of ``\\uXXXX`` escapes), never in value: CouchDB computes a revision from the parsed body,
  so a replay still writes the very revision of the first attempt.
- :func:`loads`: orjson reads an integer beyond 64 bits as a float, silently. A text with a run of 19 digits or
  more (such an integer, or a string that merely holds many digits) is read by the standard library instead.
  Texts orjson refuses (``NaN``, a lone surrogate escape, nesting deeper than 1,024) go to the standard library
  too, which accepts or refuses them as it always did: a document nested too deeply still raises
  ``RecursionError`` there, which the follower handles.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# every ASCII digit made "0": a run of 19 digits is then a plain substring search (a regular expression took
# 7-17 us on a 450-byte document, this 1 us)
_DIGITS = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_RUN = b"0" * 19


def dumps(value: Any) -> bytes:
    """Compact JSON, UTF-8."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value, separators=(",", ":")).encode()


def dumps_text(value: Any) -> str:
    """:func:`dumps` as text (for SQLite's TEXT columns)."""
    return dumps(value).decode()


def loads(data: bytes | str) -> Any:
    """The value of a JSON text, as :func:`json.loads` reads it."""
    raw = data.encode(errors="surrogatepass") if isinstance(data, str) else data
    if _LONG_RUN not in raw.translate(_DIGITS):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)
