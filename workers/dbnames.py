"""Database names: the fixed databases and the per-user and per-area ones, escaped to valid CouchDB names.

A CouchDB database name must match ``^[a-z][a-z0-9_$()+/-]*$``. User names and area ids are kept as they are
when they use only ``a-z 0-9 _ -``; every other character (upper case, dots, @, non-ASCII...) becomes
``(hh)`` per UTF-8 byte, in lower-case hex. ``(`` never appears in a kept name, so the escaping is injective
and reversible: ``Jo.Smith`` -> ``(4a)o(2e)(53)mith``.
"""

from __future__ import annotations

import re

_KEEP = re.compile(r"[a-z0-9_-]")
_ESCAPED = re.compile(r"\(([0-9a-f]{2})\)")
_VALID_DB = re.compile(r"^[a-z][a-z0-9_$()+/-]*$")


def escape(name: str) -> str:
    """Escape a user name or an area id into a valid database-name fragment."""
    if not name:
        raise ValueError("an empty name cannot name a database")
    out: list[str] = []
    for char in name:
        if _KEEP.fullmatch(char):
            out.append(char)
        else:
            out.extend(f"({byte:02x})" for byte in char.encode("utf-8"))
    return "".join(out)


def unescape(fragment: str) -> str:
    """Invert :func:`escape`."""
    raw = bytearray()
    pos = 0
    for match in _ESCAPED.finditer(fragment):
        raw.extend(fragment[pos : match.start()].encode("ascii"))
        raw.append(int(match.group(1), 16))
        pos = match.end()
    raw.extend(fragment[pos:].encode("ascii"))
    return raw.decode("utf-8")


def is_valid_db_name(name: str) -> bool:
    return bool(_VALID_DB.match(name))


class DbNames:
    """Every database name fieldsync uses, from one prefix."""

    def __init__(self, prefix: str) -> None:
        if not is_valid_db_name(prefix):
            raise ValueError(f"database prefix {prefix!r} is not a valid CouchDB database name")
        self.prefix = prefix

    @property
    def main(self) -> str:
        return self.prefix

    @property
    def audit(self) -> str:
        return f"{self.prefix}-audit"

    @property
    def users_meta(self) -> str:
        return f"{self.prefix}-users-meta"

    def user_meta(self, user: str) -> str:
        return f"{self.prefix}-user-{escape(user)}-meta"

    def area(self, area_id: str) -> str:
        return f"{self.prefix}-area-{escape(area_id)}"

    def user_of_meta(self, db: str) -> str | None:
        """The user whose meta database ``db`` is, or None when it is not one."""
        head, tail = f"{self.prefix}-user-", "-meta"
        if db.startswith(head) and db.endswith(tail) and len(db) > len(head) + len(tail):
            return unescape(db[len(head) : -len(tail)])
        return None

    def area_of(self, db: str) -> str | None:
        head = f"{self.prefix}-area-"
        if db.startswith(head) and len(db) > len(head):
            return unescape(db[len(head) :])
        return None

    def kind(self, db: str) -> str | None:
        """The logical kind of a database, the folder name under ``couch_design/``."""
        if db == self.main:
            return "main"
        if db == self.audit:
            return "audit"
        if db == self.users_meta:
            return "users-meta"
        if self.user_of_meta(db) is not None:
            return "user-meta"
        if self.area_of(db) is not None:
            return "area"
        return None
