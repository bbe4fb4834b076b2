"""One error hierarchy for everything Model Workbench can report to a user.

Every error carries a full sentence (``str(err)``) that names the file or address involved and, where
there is one, what the user can do next (``err.hint``). Subclasses also inherit the matching builtin
exception so callers can catch either.
"""

from __future__ import annotations

from pathlib import Path


class WorkbenchError(Exception):
    """Base of all errors meant to be shown to a user.

    ``message`` is one plain sentence; ``hint`` (optional) says what to do next.
    """

    def __init__(self, message: str, *, hint: str | None = None, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.path = Path(path) if path is not None else None

    def user_message(self) -> str:
        """The message and the hint, as one line."""
        if self.hint:
            return f"{self.message} {self.hint}"
        return self.message

    def __str__(self) -> str:
        return self.user_message()


class Cancelled(WorkbenchError):
    """The user cancelled a long task. Front ends swallow it quietly."""

    def __init__(self, message: str = "Cancelled.") -> None:
        super().__init__(message)


class MissingDependency(WorkbenchError, ImportError):
    """An optional library needed for this file or task is not installed."""


# --- problems with an input file -------------------------------------------------------------------


class FileProblem(WorkbenchError):
    """Something is wrong with a file the user gave us."""


class ModelNotFound(FileProblem, FileNotFoundError):
    """The path does not exist."""


class AccessDenied(FileProblem, PermissionError):
    """The operating system refused to let us read the file."""


class EmptyFile(FileProblem, ValueError):
    """The file has no content (0 bytes)."""


class CorruptFile(FileProblem, ValueError):
    """The file has the right kind of start but its content cannot be read."""


class TruncatedFile(CorruptFile):
    """The file ends before its own structure says it should."""


class UnsupportedFormat(FileProblem, ValueError):
    """The file is not a model format we can open (or not a model at all)."""


class MissingExternalData(FileProblem, FileNotFoundError):
    """A model refers to a weights file next to it that is missing or too short."""


class UntrustedPickle(FileProblem):
    """Opening the file would run Python code from it, and the user has not said they trust it.

    ``imports`` lists the ``module.name`` globals the pickle would import.
    """

    def __init__(self, message: str, *, imports: list[str], hint: str | None = None,
                 path: str | Path | None = None) -> None:
        super().__init__(message, hint=hint, path=path)
        self.imports = list(imports)


class DangerousPickle(UntrustedPickle):
    """The pickle would call something that runs commands or code; refused even when trusted."""
