"""What every command module shares: output and the client."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from workers.couch import Couch
from workers.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]
if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subparsers = argparse._SubParsersAction


def out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def couch(settings: Settings) -> Couch:
    return Couch.from_settings(settings)


def group(sub: Subparsers, name: str, help_text: str) -> Subparsers:
    parser = sub.add_parser(name, help=help_text)
    inner: Subparsers = parser.add_subparsers(dest="action", metavar="ACTION")
    inner.required = True
    return inner
