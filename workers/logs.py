"""Structured logs: one line per unit of work, JSON when stdout is not a terminal.

Use ``log_event(logger, "batch", db=..., seq=..., docs=3, ms=12)``: the message is a short event name and the
fields travel as data. Credentials never reach a log line: URLs are passed through :func:`redact` first.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

_CREDENTIALS = re.compile(r"(https?://)[^/@\s]+@")


def redact(text: str) -> str:
    """Remove ``user:password@`` from every URL in ``text``."""
    return _CREDENTIALS.sub(r"\1", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": redact(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update({k: redact(v) if isinstance(v, str) else v for k, v in fields.items()})
        if record.exc_info and record.exc_info[1] is not None:
            line["error"] = redact(f"{record.exc_info[0].__name__ if record.exc_info[0] else ''}: {record.exc_info[1]}")
        return json.dumps(line, default=str, sort_keys=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = getattr(record, "fields", None) or {}
        tail = " ".join(f"{k}={redact(str(v))}" for k, v in fields.items())
        text = f"{stamp} {record.levelname.lower():7} {record.name}: {redact(record.getMessage())}"
        if tail:
            text += " " + tail
        if record.exc_info and record.exc_info[1] is not None:
            text += f" error={redact(str(record.exc_info[1]))}"
        return text


def configure(fmt: str = "auto", level: str = "INFO", stream: Any = None) -> None:
    """Install the fieldsync handler on the root logger (idempotent)."""
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_fieldsync", False):
            root.removeHandler(old)
    handler._fieldsync = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # apscheduler is chatty at INFO about every run; our passes log their own line.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    logger.log(level, event, extra={"fields": fields})
