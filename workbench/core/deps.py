"""Optional libraries, imported when a task needs them, with one clear message when one is missing."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, *, needed_for: str, label: str, pip: str, hint: str | None = None) -> ModuleType:
    """Import ``module``, or raise MissingDependency: "<needed_for> needs <label>, which is not installed."."""
    from .errors import MissingDependency

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(f"{needed_for} needs {label}, which is not installed.",
                                hint=hint or f"Install it with `pip install {pip}`.") from None
