"""One typed settings object, read from the environment and checked at start.

Credentials come from ``FIELDSYNC_COUCH_URL`` (``http://user:password@host:port``). When the URL carries none,
the admin account that ``fieldsync server start`` generated is read from ``<data dir>/admin.json``. The password
is a ``SecretStr``: it never appears in a repr, a log line or an error message.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator

from workers.dbnames import DbNames, is_valid_db_name
from workers.errors import ConfigError

DEFAULT_URL = "http://127.0.0.1:5984"
ADMIN_FILE = "admin.json"


class Settings(BaseModel):
    """What every fieldsync process needs to know, from ``FIELDSYNC_*`` variables."""

    couch_url: str = Field(DEFAULT_URL, description="server URL without credentials")
    admin_user: str | None = None
    admin_password: SecretStr | None = None
    db_prefix: str = "fieldsync"
    data_dir: Path = Path(".fieldsync")
    log_format: Literal["auto", "json", "text"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    http_timeout: float = Field(30.0, gt=0)
    http_retries: int = Field(4, ge=0, le=20)
    batch_size: int = Field(200, ge=1, le=10_000)
    change_attempts: int = Field(3, ge=1, le=20)
    poll_seconds: float = Field(10.0, gt=0)
    summarize_interval_minutes: float = Field(15.0, gt=0)
    nightly_hour: int = Field(2, ge=0, le=23)
    interaction_cap: int = Field(500, ge=1)
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
        creds = self.credentials
        return self.url_for(*creds) if creds else self.couch_url

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        raw_url = env.get("FIELDSYNC_COUCH_URL", DEFAULT_URL).strip()
        if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in raw_url):  # urlsplit would silently drop a newline
            raise ConfigError("bad configuration: FIELDSYNC_COUCH_URL: must not contain spaces, newlines or control "
                              "characters (percent-encode them in a password: %20)")
        try:
            url, user, password = split_credentials(raw_url)
        except ValueError as exc:  # a port that is not a number or out of range, a malformed IPv6 literal...
            raise ConfigError(f"bad configuration: FIELDSYNC_COUCH_URL: not a usable URL ({exc})") from None
        values: dict[str, object] = {"couch_url": url}
        for field in cls.model_fields:
            if field in ("couch_url", "admin_user", "admin_password"):
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
                f"FIELDSYNC_{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigError(f"bad configuration: {problems}") from None


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
