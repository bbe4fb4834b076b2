"""Benchmark the Graph view's time to first render against netron's own page, in one Qt application.

For the bundled sample (9 nodes) and a generated chain of ``--nodes`` Add/Relu nodes (5,000 by default):

1. *ours*: a fresh ``GraphView`` per run, from ``show_document()`` to its ``loaded`` signal;
2. *netron*: ``netron.serve(path, browse=False)`` loaded in a plain ``QWebEngineView`` on a private profile
   whose interceptor blocks and records every request that is not to netron's server, from ``load()`` until
   the graph is drawn. Netron's page asks for cookie consent first; the benchmark clicks "Accept" as soon as
   the dialog shows (that wait is part of netron's time, as it is for a user).

Both are detected the same way: ``graph_view.STATE_REPORTER_JS`` reports the page's state when it changes.
One warm-up load of each kind is discarded, then ``--runs`` runs alternate ours/netron; medians are printed
with the ratio ours/netron, the longest the Qt event loop went without running (to show the app does not
freeze) and the hosts netron's own page tried to reach. Exits 1 if a render fails or ours sends a request out.

Run: ``.venv/bin/python benchmarks/bench_graph.py [--nodes N] [--runs N] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
logging.basicConfig(level=logging.WARNING)  # also keeps netron.serve from printing its own log lines

import netron
from shared import chain_model

from workbench.core.formats import open_model
from workbench.gui.qt import QtCore, QtWidgets, prepare_web_engine_environment, web_engine
from workbench.resources import sample_model

TIMEOUT_S = 120.0


@dataclass
class Result:
    """Medians for one model."""

    model: str
    nodes: int
    ours_s: list[float] = field(default_factory=list)
    netron_s: list[float] = field(default_factory=list)
    ours_max_stall_s: float = 0.0
    netron_max_stall_s: float = 0.0
    netron_blocked_hosts: dict[str, int] = field(default_factory=dict)
    ours_blocked: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if not self.ours_s or not self.netron_s:
            return None
        return statistics.median(self.ours_s) / statistics.median(self.netron_s)


class StallMeter:
    """The longest interval between two ticks of a 10 ms timer: how long the window would not respond."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._last = time.monotonic()
        self._timer = QtCore.QTimer(interval=10)
        self._timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.monotonic()
        self.longest = max(self.longest, now - self._last)
        self._last = now

    def start(self) -> None:
        self._last = time.monotonic()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()


def wait_for(done: Callable[[], bool], timeout_s: float = TIMEOUT_S) -> bool:
    """Run the event loop until ``done()`` or the timeout; whether ``done()``.

    (One QEventLoop.exec rather than a processEvents() loop: with PySide6 6.12 on Python 3.11 every call of a
    Qt function returning void drops a reference to None, and thousands of them abort the interpreter.)
    """
    loop = QtCore.QEventLoop()
    deadline = time.monotonic() + timeout_s
    check = QtCore.QTimer(interval=5)
    check.timeout.connect(lambda: (done() or time.monotonic() > deadline) and loop.quit())
    check.start()
    loop.exec()
    check.stop()
    return done()


def time_ours(path: Path) -> tuple[float, float, int, str]:
    """Seconds to first render in a fresh GraphView, longest stall, requests blocked, error ('' if none)."""
    from workbench.gui.graph_view import GraphView

    view = GraphView()
    view.resize(1200, 800)
    view.show()
    doc = open_model(path)
    outcome: dict[str, Any] = {}
    view.loaded.connect(lambda n: outcome.setdefault("nodes", n))
    view.failed.connect(lambda m: outcome.setdefault("error", m))
    view.outline_shown.connect(lambda m: outcome.setdefault("error", f"outline instead: {m}"))
    stall = StallMeter()
    stall.start()
    start = time.monotonic()
    view.show_document(doc)
    finished = wait_for(lambda: bool(outcome))
    seconds = time.monotonic() - start
    stall.stop()
    blocked = view.blocked_requests
    view.shutdown()
    view.deleteLater()
    error = outcome.get("error", "" if finished else "timed out")
    return seconds, stall.longest, blocked, error


def time_netron(path: Path) -> tuple[float, float, list[str], str]:
    """Seconds to first render of netron's own page, longest stall, URLs it tried elsewhere, error."""
    from workbench.gui.graph_view import STATE_PREFIX, STATE_REPORTER_JS

    web = web_engine()
    assert web is not None
    core = web.core
    host, port = netron.serve(str(path), browse=False)
    blocked: list[str] = []

    class Recorder(core.QWebEngineUrlRequestInterceptor):  # type: ignore[misc, name-defined]
        def interceptRequest(self, info: Any) -> None:
            url = info.requestUrl()
            if url.scheme() not in ("data", "blob") and not (url.host() in ("localhost", "127.0.0.1")
                                                             and url.port() == port):
                blocked.append(url.toString())
                info.block(True)

    class ReportingPage(core.QWebEnginePage):  # type: ignore[misc, name-defined]
        """Netron's page as published, plus the same state reporter the Graph view uses."""

        def __init__(self, profile: Any, parent: QtCore.QObject) -> None:
            super().__init__(profile, parent)
            self.states: list[dict[str, Any]] = []
            script = core.QWebEngineScript()
            script.setSourceCode(STATE_REPORTER_JS)
            script.setInjectionPoint(core.QWebEngineScript.InjectionPoint.DocumentCreation)
            script.setWorldId(core.QWebEngineScript.ScriptWorldId.MainWorld)
            self.scripts().insert(script)

        def javaScriptConsoleMessage(self, level: Any, message: str, line: int, source: str) -> None:
            if message.startswith(STATE_PREFIX):
                self.states.append(json.loads(message[len(STATE_PREFIX):]))

    view = web.widgets.QWebEngineView()
    profile = core.QWebEngineProfile()
    recorder = Recorder(profile)  # referenced until the end, or Python would collect it
    profile.setUrlRequestInterceptor(recorder)
    page = ReportingPage(profile, view)
    profile.setParent(page)
    view.setPage(page)
    view.resize(1200, 800)
    view.show()

    def last() -> dict[str, Any]:
        return page.states[-1] if page.states else {}

    error = ""
    accepted = False
    stall = StallMeter()
    stall.start()
    start = time.monotonic()
    view.load(QtCore.QUrl(f"http://{host}:{port}/"))
    while True:
        if not wait_for(lambda: last().get("state") in ("rendered", "notice", "error", "idle")):
            error = "timed out"
            break
        state = last()
        if state["state"] == "notice" and "cookies" in state.get("message", ""):
            page.states.clear()
            page.runJavaScript("document.getElementById('message-button').click()", 0)
            accepted = True
            continue
        if state["state"] == "idle" and accepted:  # the page the dialog covered, before the model opens
            page.states.clear()
            accepted = False
            continue
        if state["state"] == "notice" and "large graph" in state.get("message", ""):
            page.states.clear()
            continue
        if state["state"] != "rendered":
            error = f"{state['state']}: {state.get('message', '')}"
        break
    seconds = time.monotonic() - start
    stall.stop()
    blank: list[bool] = []
    page.loadFinished.connect(blank.append)
    view.setUrl(QtCore.QUrl("about:blank"))  # leave netron's page before its server stops
    wait_for(lambda: bool(blank), 5)
    view.setParent(None)  # deleted on return, with its page and then the page's profile
    netron.stop((host, port))
    return seconds, stall.longest, blocked, error


def run(models: list[tuple[str, Path]], runs: int) -> list[Result]:
    time_ours(models[0][1])  # warm-up: QtWebEngine's first renderer process
    time_netron(models[0][1])
    results = []
    for label, path in models:
        result = Result(label, open_model(path).node_count)
        for _ in range(runs):
            seconds, stall, blocked, error = time_ours(path)
            result.ours_blocked += blocked
            result.ours_max_stall_s = max(result.ours_max_stall_s, stall)
            result.errors += [f"ours: {error}"] if error else []
            result.ours_s += [] if error else [seconds]
            seconds, stall, urls, error = time_netron(path)
            result.netron_max_stall_s = max(result.netron_max_stall_s, stall)
            for url in urls:
                hostname = urllib.parse.urlsplit(url).hostname or url
                result.netron_blocked_hosts[hostname] = result.netron_blocked_hosts.get(hostname, 0) + 1
            result.errors += [f"netron: {error}"] if error else []
            result.netron_s += [] if error else [seconds]
        results.append(result)
    return results


def report(results: list[Result]) -> None:
    def median(values: list[float]) -> str:
        return f"{statistics.median(values):.2f}" if values else "failed"

    print(f"{'model':<22}{'nodes':>7}{'ours s':>9}{'netron s':>10}{'ours/netron':>13}"
          f"{'UI stall ours/netron s':>25}")
    for r in results:
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        print(f"{r.model:<22}{r.nodes:>7,}{median(r.ours_s):>9}{median(r.netron_s):>10}{ratio:>13}"
              f"{r.ours_max_stall_s:>14.3f} / {r.netron_max_stall_s:.3f}")
    for r in results:
        hosts = ", ".join(f"{h} ({n})" for h, n in sorted(r.netron_blocked_hosts.items())) or "none"
        print(f"{r.model}: netron's own page tried to reach {hosts}; ours sent {r.ours_blocked} request(s) out.")
        for error in r.errors:
            print(f"{r.model}: {error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=5000, help="nodes of the generated chain model")
    parser.add_argument("--runs", type=int, default=3, help="runs of each kind per model (median reported)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    prepare_web_engine_environment()
    app = QtWidgets.QApplication(sys.argv[:1])  # noqa: F841 - kept alive for the whole run
    if web_engine() is None:
        print("bench_graph: Qt WebEngine is not available; install PySide6-Addons.", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        chain = chain_model(Path(tmp) / f"chain_{args.nodes}.onnx", args.nodes)
        results = run([(sample_model().name, sample_model()), (chain.name, chain)], args.runs)
    report(results)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) | {"ratio": r.ratio} for r in results], indent=2))
    failed = any(r.errors or r.ours_blocked for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
