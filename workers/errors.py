"""The exceptions fieldsync raises for expected failures, and their one-line messages.

Every error the CouchDB client can meet is translated here, in one place (Kinto's habit): the command line
prints ``str(error)`` and exits 2, never a traceback.
"""

from __future__ import annotations


class FieldsyncError(Exception):
    """An expected failure with a message fit for an operator (no credentials in it)."""

    exit_status = 2


class ConfigError(FieldsyncError):
    """The environment or the command line asks for something impossible."""


class ServerUnreachable(FieldsyncError):
    """The CouchDB server did not answer (refused, reset, timed out)."""


class Unauthorized(FieldsyncError):
    """Wrong credentials, or none where some are needed (401)."""


class Forbidden(FieldsyncError):
    """Known credentials that may not do this (403)."""


class NotFound(FieldsyncError):
    """A database or document that does not exist (404)."""


class Conflict(FieldsyncError):
    """A write that lost a revision race (409), or a database that exists already (412)."""


class ServerError(FieldsyncError):
    """Any other answer of the server outside 2xx."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class EmbeddedServerError(FieldsyncError):
    """The embedded server cannot be started or stopped."""
