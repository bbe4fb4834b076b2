"""Cold start of the desktop app: process launch to a shown window with the sample model, and to its graph.

Each run is a fresh process (offscreen Qt). Prints the median of N runs next to a bare PySide6 window
(QApplication + empty QMainWindow shown) measured the same way, and checks that opening an ONNX file
never imports torch.

    .venv/bin/python benchmarks/bench_startup.py [--runs N] [--model PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

OURS = r"""
import os, sys, time, json
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from workbench.gui.qt import QtCore, QtWidgets, prepare_web_engine_environment
prepare_web_engine_environment()
app = QtWidgets.QApplication([])
from workbench.gui.main_window import MainWindow
marks = {}
w = MainWindow()
w.show()
def loaded(doc):
    app.processEvents()
    marks["shown"] = time.time()
def graph():
    marks["graph"] = time.time()
    QtCore.QTimer.singleShot(0, app.quit)
w.document_loaded.connect(loaded)
w.graph_settled.connect(graph)
QtCore.QTimer.singleShot(0, lambda: w.open_path(sys.argv[1]))
QtCore.QTimer.singleShot(120000, app.quit)
app.exec()
marks["torch_imported"] = "torch" in sys.modules
print(json.dumps(marks))
w.close()
from workbench.gui.tasks import wait_for_all
wait_for_all()
w.graph.shutdown()
"""

BARE = r"""
import os, time, json
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PySide6 import QtWidgets
app = QtWidgets.QApplication([])
w = QtWidgets.QMainWindow(); w.resize(1280, 800); w.show(); app.processEvents()
print(json.dumps({"shown": time.time()}))
"""


def _run(code: str, *args: str) -> dict[str, float]:
    start = time.time()
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    marks = json.loads(out.stdout.strip().splitlines()[-1])
    return {k: (v - start if isinstance(v, float) else v) for k, v in marks.items()}


def main() -> int:
    from workbench.resources import sample_model

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", default=str(sample_model()))
    args = parser.parse_args()
    ours = [_run(OURS, args.model) for _ in range(args.runs)]
    bare = [_run(BARE) for _ in range(args.runs)]
    shown = statistics.median(r["shown"] for r in ours)
    graph = statistics.median(r["graph"] for r in ours)
    bare_shown = statistics.median(r["shown"] for r in bare)
    print(f"Model: {args.model}   runs: {args.runs} (fresh process each, offscreen, files in page cache)")
    print(f"  bare PySide6 window shown           {bare_shown:6.2f} s")
    print(f"  Model Workbench, summary shown      {shown:6.2f} s   ({shown / bare_shown:.1f}x the bare window;"
          f" target < 1.5 s)")
    print(f"  Model Workbench, graph rendered     {graph:6.2f} s")
    torch_seen = any(r["torch_imported"] for r in ours)
    print(f"  torch imported while opening it:    {'yes' if torch_seen else 'no'}")
    return 1 if torch_seen and args.model.endswith(".onnx") else 0


if __name__ == "__main__":
    raise SystemExit(main())
