"""Publishers: clients that send a package built by :mod:`workbench.core.package` to where people get models.

Each target (``pypi`` now) has its own module with an injectable address and credentials; the errors below
are shared so every front end reports a failed upload the same way, whatever the target.
"""

from __future__ import annotations

from ..errors import WorkbenchError


class PublishError(WorkbenchError):
    """Publishing failed; ``url`` is the address involved."""

    def __init__(self, message: str, *, url: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.url = url


class AuthenticationFailed(PublishError, PermissionError):
    """The server refused the credentials (wrong, expired, or without upload rights)."""


class ServerUnreachable(PublishError, ConnectionError):
    """The server could not be reached, or the connection broke before the upload completed."""


class AlreadyPublished(PublishError, FileExistsError):
    """This exact name and version is already on the server (with different content)."""


class UploadRejected(PublishError):
    """The server answered but refused the upload, for the reason it gave."""
