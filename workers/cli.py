"""The ``fieldsync`` command line. Expected failures print one line and exit 2; no tracebacks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from workers.commands import areas, data, demo, interactions, ops, setup
from workers.commands.common import Handler
from workers.errors import FieldsyncError
from workers.logs import configure
from workers.settings import Settings

# The command groups, in the order --help lists them.
COMMAND_GROUPS = (setup, demo, data, areas, ops, interactions)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fieldsync",
        description="Server side of offline-first field health work, beside CouchDB. "
        "The server is FIELDSYNC_COUCH_URL (default http://127.0.0.1:5984, the embedded server).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMAND_GROUPS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        # one-shot commands print their own lines; long-running ones (workers, scheduler) log at the set level
        long_running = getattr(args, "long_running", False)
        configure(settings.log_format, settings.log_level if long_running else "WARNING")
        handler: Handler = args.handler
        return handler(args, settings)
    except FieldsyncError as exc:
        sys.stderr.write(f"fieldsync: {exc}\n")
        return exc.exit_status
    except KeyboardInterrupt:
        sys.stderr.write("fieldsync: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
