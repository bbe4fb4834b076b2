"""The one module that imports the Qt bindings; the rest of the GUI imports Qt from here.

QtWebEngine is optional: ``web_engine()`` returns its modules, or None with the reason it is missing.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

from PySide6 import QtCore, QtGui, QtWidgets  # noqa: F401  (re-exported)
from PySide6.QtCore import Qt, Signal, Slot  # noqa: F401

_WEB: SimpleNamespace | None = None
_WEB_ERROR: str | None = None


def prepare_web_engine_environment() -> None:
    """Settings QtWebEngine needs before the QApplication exists (root sandbox, no GPU offscreen)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        os.environ.setdefault("QTWEBENGINE_DISABLE_SANDBOX", "1")
    flags = os.environ.get("QTWEBENGINE_CHROMIUM_FLAGS", "")
    extra = "--disable-background-networking --disable-component-update --no-first-run --log-level=3"
    if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        extra += " --disable-gpu"
    if extra not in flags:
        os.environ["QTWEBENGINE_CHROMIUM_FLAGS"] = (flags + " " + extra).strip()
    os.environ.setdefault("QT_LOGGING_RULES", "qt.rhi.*=false;qt.qpa.*=false;qt.webenginecontext.*=false")
    QtCore.QCoreApplication.setAttribute(Qt.ApplicationAttribute.AA_ShareOpenGLContexts)


def web_engine() -> SimpleNamespace | None:
    """QtWebEngine modules (``widgets``, ``core``), or None when unavailable (see ``web_engine_error()``)."""
    global _WEB, _WEB_ERROR
    if _WEB is None and _WEB_ERROR is None:
        if os.environ.get("WORKBENCH_NO_WEBENGINE"):
            _WEB_ERROR = "disabled by WORKBENCH_NO_WEBENGINE"
        else:
            try:
                from PySide6 import QtWebEngineCore, QtWebEngineWidgets

                _WEB = SimpleNamespace(core=QtWebEngineCore, widgets=QtWebEngineWidgets)
            except ImportError as exc:
                _WEB_ERROR = str(exc)
    return _WEB


def web_engine_error() -> str | None:
    web_engine()
    return _WEB_ERROR
