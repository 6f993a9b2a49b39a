"""One typed settings object, read from the environment and checked at start.

Credentials come from ``FIELDSYNC_COUCH_URL`` (``http://user:password@host:port``). The URL may name several
nodes of one CouchDB cluster, comma-separated (``http://user:password@n1:5984,http://n2:5984,http://n3:5984``;
credentials given once, on the first or on each alike): clients fail over between them (``workers.nodes``).
When the URL carries none, the admin account that ``fieldsync server start`` generated is read from
``<data dir>/admin.json``. The password is a ``SecretStr``: it never appears in a repr, a log line or an error message.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator

from workers.dbnames import DbNames, is_valid_db_name
from workers.errors import ConfigError

DEFAULT_URL = "http://127.0.0.1:5984"
ADMIN_FILE = "admin.json"


class Settings(BaseModel):
    """What every fieldsync process needs to know, from ``FIELDSYNC_*`` variables."""

    couch_url: str = Field(DEFAULT_URL, description="server URL without credentials (the first node's)")
    couch_nodes: list[str] = Field(default_factory=list, description="every node's URL; [couch_url] when one")
    admin_user: str | None = None
    admin_password: SecretStr | None = None
    db_prefix: str = "fieldsync"
    data_dir: Path = Path(".fieldsync")
    log_format: Literal["auto", "json", "text"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    http_timeout: float = Field(30.0, gt=0)
    http_retries: int = Field(4, ge=0, le=20)
    batch_size: int = Field(200, ge=1, le=10_000)
    small_db_shards: int = Field(1, ge=0, le=64, description=(
        "CouchDB shards (q) of each database made per user and per area (small and many); 0: the server's "
        "default"))
    change_attempts: int = Field(3, ge=1, le=20)
    poll_seconds: float = Field(10.0, gt=0)
    summarize_interval_minutes: float = Field(15.0, gt=0)
    nightly_hour: int = Field(2, ge=0, le=23)
    interaction_cap: int = Field(500, ge=1)
    failback_seconds: float = Field(30.0, ge=0, description="a failed node is tried again after this long")
    worker_shard: str = Field("0/1", pattern=r"^[0-9]+/[1-9][0-9]*$", description="i/n: this worker's share")

    @field_validator("worker_shard")
    @classmethod
    def _shard_in_range(cls, value: str) -> str:
        index, count = (int(p) for p in value.split("/"))
        if index >= count:
            raise ValueError("i/n needs 0 <= i < n")
        return value

    @property
    def shard(self) -> tuple[int, int]:
        index, count = (int(p) for p in self.worker_shard.split("/"))
        return index, count

    @field_validator("db_prefix")
    @classmethod
    def _prefix_is_a_db_name(cls, value: str) -> str:
        if not is_valid_db_name(value):
            raise ValueError("must start with a-z and use only a-z 0-9 _ $ ( ) + - /")
        return value

    @field_validator("couch_nodes")
    @classmethod
    def _nodes_are_http(cls, value: list[str]) -> list[str]:
        nodes = [cls._url_is_http(url) for url in value]
        if len(set(nodes)) != len(nodes):
            raise ValueError("names a node twice")
        return nodes

    @model_validator(mode="after")
    def _first_node_is_the_url(self) -> Settings:
        if not self.couch_nodes:
            self.couch_nodes = [self.couch_url]
        elif self.couch_nodes[0] != self.couch_url:
            raise ValueError("couch_url must be the first of couch_nodes")
        return self

    @field_validator("couch_url")
    @classmethod
    def _url_is_http(cls, value: str) -> str:
        if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
            raise ValueError("must not contain spaces, newlines or control characters")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL such as http://127.0.0.1:5984")
        parts.port  # noqa: B018  (raises ValueError on a port out of range or not a number)
        if parts.username or parts.password:
            raise ValueError("credentials are split off before validation")
        return value.rstrip("/")

    @property
    def dbs(self) -> DbNames:
        return DbNames(self.db_prefix)

    @property
    def port(self) -> int:
        parts = urlsplit(self.couch_url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def host(self) -> str:
        return urlsplit(self.couch_url).hostname or "127.0.0.1"

    @property
    def credentials(self) -> tuple[str, str] | None:
        if self.admin_user is None or self.admin_password is None:
            return None
        return self.admin_user, self.admin_password.get_secret_value()

    def url_for(self, user: str | None = None, password: str | None = None) -> str:
        """The server URL with the given credentials (for clients such as PouchDB replication)."""
        if user is None:
            return self.couch_url
        parts = urlsplit(self.couch_url)
        netloc = f"{quote(user, safe='')}:{quote(password or '', safe='')}@{parts.netloc}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def admin_url(self) -> str:
        """The first node's URL with the admin's credentials."""
        creds = self.credentials
        return self.url_for(*creds) if creds else self.couch_url

    def env_url(self) -> str:
        """``FIELDSYNC_COUCH_URL`` for another fieldsync process: every node, the admin's credentials on the first."""
        return ",".join([self.admin_url(), *self.couch_nodes[1:]])

    @property
    def home_node(self) -> str:
        """The node this process asks first: a sharded worker ``i/n`` starts at node ``i`` (mod the nodes)."""
        return self.couch_nodes[self.shard[0] % len(self.couch_nodes)]

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        raw_url = env.get("FIELDSYNC_COUCH_URL", DEFAULT_URL).strip()
        if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in raw_url):  # urlsplit would silently drop a newline
            raise ConfigError("bad configuration: FIELDSYNC_COUCH_URL: must not contain spaces, newlines or control "
                              "characters (percent-encode them in a password: %20)")
        nodes, user, password = split_nodes(raw_url)
        values: dict[str, object] = {"couch_url": nodes[0], "couch_nodes": nodes}
        for field in cls.model_fields:
            if field in ("couch_url", "couch_nodes", "admin_user", "admin_password"):
                continue
            key = f"FIELDSYNC_{field.upper()}"
            if key in env:
                values[field] = env[key]
        data_dir = Path(str(values.get("data_dir", ".fieldsync")))
        if user is None:
            user, password = read_admin_file(data_dir)
        values["admin_user"] = user
        values["admin_password"] = password
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"FIELDSYNC_{_env_name(err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise ConfigError(f"bad configuration: {problems}") from None


def _env_name(loc: tuple[int | str, ...]) -> str:
    name = str(loc[0]) if loc else "couch_url"
    return "COUCH_URL" if name in ("couch_url", "couch_nodes") else name.upper()


def split_nodes(raw_url: str) -> tuple[list[str], str | None, str | None]:
    """``http://u:p@n1:1,http://n2:2`` -> ([``http://n1:1``, ``http://n2:2``], ``u``, ``p``): the nodes of one
    server, credentials given once (on any node) or alike on each."""
    nodes: list[str] = []
    found: set[tuple[str, str | None]] = set()
    for part in raw_url.split(","):
        if not part.strip():
            raise ConfigError("bad configuration: FIELDSYNC_COUCH_URL: an empty node in the list (two commas?)")
        try:
            url, user, password = split_credentials(part.strip())
        except ValueError as exc:  # a port that is not a number or out of range, a malformed IPv6 literal...
            raise ConfigError(f"bad configuration: FIELDSYNC_COUCH_URL: not a usable URL ({exc})") from None
        nodes.append(url)
        if user is not None:
            found.add((user, password))
    if len(found) > 1:
        raise ConfigError("bad configuration: FIELDSYNC_COUCH_URL: the nodes carry different credentials "
                          "(one admin account for the whole cluster)")
    user, password = next(iter(found)) if found else (None, None)
    return nodes, user, password


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``http://u:p@h:1/`` -> (``http://h:1``, ``u``, ``p``); percent-escapes in u and p are decoded."""
    parts = urlsplit(url)
    if parts.username is None:
        return url.rstrip("/"), None, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    bare = urlunsplit((parts.scheme, netloc, parts.path, "", "")).rstrip("/")
    return bare, unquote(parts.username), unquote(parts.password or "")


def read_admin_file(data_dir: Path) -> tuple[str | None, str | None]:
    path = data_dir / ADMIN_FILE
    if not path.is_file():
        return None, None
    try:
        data = json.loads(path.read_text())
        return str(data["user"]), str(data["password"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{path}: cannot read the admin account ({exc.__class__.__name__})") from None
