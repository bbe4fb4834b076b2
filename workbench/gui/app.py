"""Starting the desktop app, and ``--screenshot`` (render the window offscreen once, save it, exit)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def run(path: str | None, *, screenshot: Path | None = None, timeout_s: float = 120.0) -> int:
    """Show the main window on ``path`` (the bundled sample if None). Returns the exit status."""
    if screenshot is not None and not os.environ.get("QT_QPA_PLATFORM"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from .qt import QtCore, QtWidgets, prepare_web_engine_environment

    prepare_web_engine_environment()
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("Model Workbench")
    app.setOrganizationName("ModelWorkbench")
    from ..resources import sample_model
    from .main_window import MainWindow
    from .tasks import wait_for_all

    window = MainWindow()
    window.show()
    target = path or str(sample_model())
    status = 0
    if screenshot is not None:
        status = _screenshot(app, window, target, screenshot, timeout_s)
    else:
        QtCore.QTimer.singleShot(0, lambda: window.open_path(target))
        status = app.exec()
    wait_for_all()
    window.graph.shutdown()
    return status


def _screenshot(app: object, window: object, target: str, out: Path, timeout_s: float) -> int:
    """Open ``target``, wait until its summary and graph are shown, save the window as PNG."""
    from .qt import QtCore

    loop = QtCore.QEventLoop()
    outcome: dict[str, str] = {}

    def loaded(doc: object) -> None:
        if not window.graph.busy:  # type: ignore[attr-defined]
            QtCore.QTimer.singleShot(300, loop.quit)

    def settled() -> None:
        QtCore.QTimer.singleShot(300, loop.quit)  # let the last paint happen

    window.document_loaded.connect(loaded)  # type: ignore[attr-defined]
    window.graph_settled.connect(settled)  # type: ignore[attr-defined]
    task = window.open_path(target)  # type: ignore[attr-defined]
    task.failure(lambda exc, _tb: (outcome.setdefault("error", str(exc)), loop.quit()))
    QtCore.QTimer.singleShot(int(timeout_s * 1000), lambda: (outcome.setdefault("timeout", "1"), loop.quit()))
    loop.exec()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    if not window.grab().save(str(tmp), "PNG"):  # type: ignore[attr-defined]
        print(f"workbench: could not write the screenshot to {out}.", file=sys.stderr)
        return 1
    os.replace(tmp, out)
    if "error" in outcome:
        print(f"workbench: {outcome['error']} (the screenshot shows the window without it)", file=sys.stderr)
        return 2
    if "timeout" in outcome:
        print(f"workbench: the model or its graph took longer than {timeout_s:.0f} s; saved what was shown.",
              file=sys.stderr)
    return 0
