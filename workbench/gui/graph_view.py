"""The Graph view: netron drawing the model inside the app, served from this machine, sending nothing out.

Netron's page and the model's files come from a :class:`~.netron_server.NetronServer` on 127.0.0.1. The page
runs in a private, off-the-record browser profile whose request guard blocks (and records) every request not
addressed to that server. Graphs too big to draw quickly are listed as an outline of their nodes instead.
"""

from __future__ import annotations

import glob
import json
import logging
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

from ..core.document import ModelDocument
from .netron_server import NetronServer, ServedModel
from .qt import Qt, QtCore, QtWidgets, Signal, web_engine, web_engine_error

log = logging.getLogger(__name__)

MAX_GRAPH_NODES = 10_000  # above this, the outline is shown and drawing is left to the user (~1 s per 1,000)
RENDER_TIMEOUT_S = 20.0  # drawing that takes longer falls back to the outline
OUTLINE_READ_LIMIT = 256 << 20  # the outline lists node names only for ONNX files up to this size
LARGE_GRAPH_NOTICE = "This large graph layout might take a very long time"
INSTALL_HINT = ("Drawing the graph needs Qt WebEngine, which this installation of PySide6 lacks ({reason}). "
                "Install it with “pip install PySide6-Addons” (or install the full “PySide6” package), "
                "then restart Model Workbench.")

# Reports what netron's page is doing as a console message: STATE_PREFIX + JSON {"state": "loading" |
# "rendered" | "error" | "notice" | "idle", "nodes": int, "message": str, "url": str}, each time the classes of
# <body> change. Netron puts "default" on <body> once a graph is drawn, "alert" (or "message") for errors,
# "notification" for messages with a button (an empty one while it clears them), and "welcome" without
# "spinner" when it has nothing to show.
# Drawn operator nodes are <g class="node graph-node"> inside <svg id="canvas">.
STATE_PREFIX = "workbench-graph-state "
STATE_REPORTER_JS = """(() => {
  const state = () => {
    const classes = document.body.classList;
    const text = document.getElementById('message-text');
    const message = text ? text.innerText : '';
    const canvas = document.getElementById('canvas');
    if (classes.contains('alert') || classes.contains('message')) { return { state: 'error', message }; }
    if (classes.contains('notification')) {
      return message ? { state: 'notice', message } : { state: 'loading' };
    }
    if (classes.contains('default') && canvas) {
      return { state: 'rendered', nodes: canvas.querySelectorAll('g.graph-node').length };
    }
    if (classes.contains('welcome') && !classes.contains('spinner')) { return { state: 'idle' }; }
    return { state: 'loading' };
  };
  let last = '';
  const report = () => {
    const text = JSON.stringify({ ...state(), url: window.location.href });
    if (text !== last) { last = text; console.info('__PREFIX__' + text); }
  };
  document.addEventListener('DOMContentLoaded', () => {
    new MutationObserver(report).observe(document.body, { attributes: true, attributeFilter: ['class'] });
    report();
  });
})();""".replace("__PREFIX__", STATE_PREFIX)

# Netron waits for animation frames before it measures the graph, and a page whose view is hidden (the Graph
# tab behind another one) gets none: a timer stands in for any frame that has not come within 50 ms.
FRAME_STAND_IN_JS = """(() => {
  const requestFrame = window.requestAnimationFrame.bind(window);
  window.requestAnimationFrame = (callback) => {
    let done = false;
    const run = (time) => { if (!done) { done = true; callback(time); } };
    setTimeout(() => run(performance.now()), 50);
    return requestFrame(run);
  };
})();"""

# Opens netron's own Find sidebar, puts ``text`` in it (null keeps the last query) and focuses it.
SEARCH_JS = """((text) => {
  const view = window.__view__;
  if (!view || !document.getElementById('canvas')) { return false; }
  view.find();
  const input = document.getElementById('search');
  if (!input) { return false; }
  if (text !== null) { input.value = text; input.dispatchEvent(new Event('input')); }
  input.focus();
  return true;
})(%s)"""


class GraphView(QtWidgets.QWidget):
    """Shows a model's graph drawn by netron, a plain note when there is none, or an outline of its nodes."""

    loaded = Signal(int)  # netron has drawn the graph; the number of operator nodes on the page
    failed = Signal(str)  # the graph could not be shown; a sentence for the user
    outline_shown = Signal(str)  # the node outline is shown instead of a drawing; the reason

    def __init__(self, parent: QtWidgets.QWidget | None = None, *, max_graph_nodes: int = MAX_GRAPH_NODES,
                 render_timeout_s: float = RENDER_TIMEOUT_S) -> None:
        super().__init__(parent)
        self.max_graph_nodes = max_graph_nodes
        self.render_timeout_s = render_timeout_s
        self._web = web_engine()
        self._unavailable = "" if self._web is not None else INSTALL_HINT.format(reason=web_engine_error())
        self._server = NetronServer()
        self._mode = "empty"
        self._node_count = 0
        self._loads = 0
        self._saw_large_notice = False
        self._url = ""
        self._current: tuple[ServedModel, ModelDocument | None] | None = None

        self._stack = QtWidgets.QStackedWidget(self)
        self._message = QtWidgets.QLabel(alignment=Qt.AlignmentFlag.AlignCenter, wordWrap=True)
        self._message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._message.setMargin(24)
        self._outline = _Outline()
        self._outline.draw_button.clicked.connect(self._draw_anyway)
        self._stack.addWidget(self._message)
        self._stack.addWidget(self._outline)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._stack)

        self._blocked: list[str] = []
        self._browser: Any = None
        self._create_browser()
        self._timeout = QtCore.QTimer(self, singleShot=True)
        self._timeout.timeout.connect(self._timed_out)
        self.destroyed.connect(self._server.stop)
        self.clear()

    # -- public API ----------------------------------------------------------------------------------------
    @property
    def blocked_requests(self) -> int:
        """How many requests the page tried to send anywhere but this view's own server."""
        return len(self.blocked_urls)

    @property
    def blocked_urls(self) -> list[str]:
        """The addresses of those requests, oldest first."""
        return list(self._blocked)

    @property
    def node_count(self) -> int:
        """Operator nodes drawn by netron for the current model (0 until drawn)."""
        return self._node_count

    @property
    def busy(self) -> bool:
        """Whether a graph is being drawn."""
        return self._mode == "loading"

    @property
    def mode(self) -> str:
        """What is shown: "empty", "message", "loading", "graph" or "outline"."""
        return self._mode

    @property
    def message(self) -> str:
        """The text shown instead of a graph (in the "empty" and "message" modes) or above the outline."""
        return self._outline.note.text() if self._mode == "outline" else self._message.text()

    @property
    def page(self) -> Any:
        """The QWebEnginePage showing netron; None without Qt WebEngine, and after :meth:`shutdown` until the
        next graph is shown."""
        return self._browser.page() if self._browser is not None else None

    @property
    def server_url(self) -> str:
        """Address of netron's page on the local server (empty when the server is stopped)."""
        return self._server.url

    def show_document(self, doc: ModelDocument) -> None:
        """Show the graph of an opened model; its companion files (external data) are served with it."""
        if not doc.has_graph:
            self._show_message(doc.graph_note or f"{doc.path.name} has no graph to draw.")
            return
        model = ServedModel.of(doc.path, [f.path for f in doc.files])
        self._current = (model, doc)
        if self._web is None:
            self._show_outline(doc, self._unavailable)
        elif doc.node_count > self.max_graph_nodes:
            self._show_outline(doc, f"{doc.path.name} has {doc.node_count:,} nodes, more than can be drawn "
                                    f"quickly, so they are listed here. Drawing them may take minutes.")
        else:
            self._load(self.render_timeout_s)

    def show_file(self, path: str | Path) -> None:
        """Show the graph of a file the app cannot open itself but netron can draw (for example .tflite).

        Files next to it with the same name and another extension (OpenVINO .bin, Caffe weights) are served too.
        """
        path = Path(path)
        if self._web is None:
            self._show_message(self._unavailable)
            return
        siblings = [Path(p) for p in glob.glob(glob.escape(str(path.with_suffix(""))) + ".*")]
        self._current = (ServedModel.of(path, [p for p in siblings if p.is_file()]), None)
        self._load(self.render_timeout_s)

    def clear(self) -> None:
        """Show nothing (or, without Qt WebEngine, how to get it)."""
        self._current = None
        self._halt_page()
        self._show_message(self._unavailable or "Open a model to see its graph.")
        self._mode = "empty"

    def search(self, text: str) -> None:
        """Find ``text`` among the nodes with netron's Find sidebar (or in the outline)."""
        self._find(text)

    def focus_search(self) -> None:
        """Open the search field, keeping the last query."""
        self._find(None)

    def shutdown(self) -> None:
        """Close netron's page and stop the local server (also done when the widget is destroyed).

        Showing another graph afterwards starts them again.
        """
        self._timeout.stop()
        if self._mode in ("loading", "graph"):
            self._show_message("The graph view was closed.")
        self._delete_browser()
        self._server.stop()

    # -- drawing with netron -------------------------------------------------------------------------------
    def _load(self, timeout_s: float | None) -> None:
        assert self._current is not None
        self._loads += 1  # a new address each time, so reports from an earlier page are told apart
        self._url = f"{self._server.serve(self._current[0])}?load={self._loads}"
        self._node_count = 0
        self._saw_large_notice = False
        self._mode = "loading"
        self._create_browser()
        self._stack.setCurrentWidget(self._browser)
        self._browser.load(QtCore.QUrl(self._url))
        self.page.setVisible(True)
        if timeout_s is None:
            self._timeout.stop()
        else:
            self._timeout.start(int(timeout_s * 1000))

    def _draw_anyway(self) -> None:
        if self._current is not None and self._web is not None:
            self._load(None)

    def _create_browser(self) -> None:
        """A web view on a private, off-the-record profile whose requests pass the guard (if not made yet)."""
        if self._web is None or self._browser is not None:
            return
        guard_class, page_class = _web_classes()
        profile = self._web.core.QWebEngineProfile()  # no storage name: off the record, in memory only
        guard = guard_class(self._server, self._blocked, profile)
        profile.setUrlRequestInterceptor(guard)
        self._browser = self._web.widgets.QWebEngineView()
        page = page_class(guard, profile, self._browser)
        profile.setParent(page)  # children are deleted after their parent: the page goes before its profile
        self._browser.setPage(page)
        page.state_reported.connect(self._on_state)
        page.loadingChanged.connect(self._loading_changed)
        page.visibleChanged.connect(self._keep_drawing)
        self._stack.addWidget(self._browser)

    def _delete_browser(self) -> None:
        """Delete the web view, its page and profile now (in that order), ending netron's renderer process."""
        browser, self._browser = self._browser, None
        if browser is not None:
            self._stack.removeWidget(browser)
            browser.setParent(None)  # owned by Python again, so deleted with its last reference, below
            del browser

    def _halt_page(self) -> None:
        if self._browser is not None and self._browser.url().toString() not in ("", "about:blank"):
            self._browser.setUrl(QtCore.QUrl("about:blank"))

    def _keep_drawing(self, visible: bool) -> None:
        """Keep the page visible to Chromium while it draws, so its timers run at full speed even when the
        Graph tab is not the current one."""
        if not visible and self._mode == "loading":
            self.page.setVisible(True)

    def _loading_changed(self, info: Any) -> None:
        failed = info.status() == info.LoadStatus.LoadFailedStatus
        if failed and self._mode == "loading" and info.url().toString() == self._url:
            self._fail(f"The graph viewer's page could not be loaded from this computer ({info.errorString()}).")

    def _on_state(self, report: str) -> None:
        state = json.loads(report)
        if self._mode != "loading" or state.get("url") != self._url:
            return
        kind, message = state.get("state"), str(state.get("message") or "").strip()
        name = self._current[0].path.name if self._current else "the file"
        if kind == "rendered":
            self._timeout.stop()
            self._mode = "graph"
            self._node_count = int(state.get("nodes") or 0)
            self.page.setVisible(self._browser.isVisible())
            self.loaded.emit(self._node_count)
        elif kind == "notice" and LARGE_GRAPH_NOTICE in message:
            self._saw_large_notice = True
        elif kind in ("error", "notice"):
            self._fail(f"{name} could not be drawn. The graph viewer said: “{message}”" if message
                       else f"{name} could not be drawn.")
        elif kind == "idle" and self._saw_large_notice:
            self._fail(f"Drawing the graph of {name} was cancelled.")
        elif kind == "idle":
            self._fail(f"The graph viewer does not recognise {name} as a model it can draw.")

    def _timed_out(self) -> None:
        if self._mode != "loading":
            return
        doc = self._current[1] if self._current else None
        seconds = f"{self.render_timeout_s:g}"
        if doc is not None:
            self._show_outline(doc, f"Drawing the graph of {doc.path.name} took longer than {seconds} seconds, "
                                    f"so its nodes are listed here instead.")
        else:
            self._fail(f"Drawing the graph took longer than {seconds} seconds, so it was stopped.")

    def _fail(self, message: str) -> None:
        self._show_message(message)
        self.failed.emit(message)

    # -- instead of a drawing ------------------------------------------------------------------------------
    def _show_message(self, text: str) -> None:
        self._timeout.stop()
        self._node_count = 0
        self._message.setText(text)
        self._stack.setCurrentWidget(self._message)
        self._mode = "message"

    def _show_outline(self, doc: ModelDocument, note: str) -> None:
        self._timeout.stop()
        self._node_count = 0
        self._halt_page()
        self._outline.show_document(doc, note, drawable=self._web is not None)
        self._stack.setCurrentWidget(self._outline)
        self._mode = "outline"
        self.outline_shown.emit(note)

    def _find(self, text: str | None) -> None:
        if self._mode == "outline":
            self._outline.find(text)
        elif self._mode == "graph":
            self._browser.setFocus()
            self.page.runJavaScript(SEARCH_JS % json.dumps(text), 0)


class _Outline(QtWidgets.QWidget):
    """A model's nodes in a tree grouped by module (name prefix) or operator, under a note."""

    def __init__(self) -> None:
        super().__init__()
        self.note = QtWidgets.QLabel(wordWrap=True)
        self.draw_button = QtWidgets.QPushButton("Draw the graph anyway")
        self.tree = QtWidgets.QTreeWidget()
        self.tree.setUniformRowHeights(True)
        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.note, 1)
        top.addWidget(self.draw_button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.tree)

    def show_document(self, doc: ModelDocument, note: str, drawable: bool) -> None:
        self.note.setText(note)
        self.draw_button.setVisible(drawable)
        self.tree.clear()
        nodes = _node_names(doc)
        if nodes is None:
            self.tree.setHeaderLabels(["Operator", "Nodes"])
            self.tree.addTopLevelItems([QtWidgets.QTreeWidgetItem([op, f"{n:,}"]) for op, n in doc.operators.items()])
        else:
            self.tree.setHeaderLabels(["Node", "Operator"])
            groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
            for name, op in nodes:
                parts = [p for p in name.split("/") if p]
                groups[parts[0] if len(parts) > 1 else op].append((name, op))
            for group, members in groups.items():
                item = QtWidgets.QTreeWidgetItem([group, f"{len(members):,} nodes"])
                item.addChildren([QtWidgets.QTreeWidgetItem([name or "(unnamed)", op]) for name, op in members])
                self.tree.addTopLevelItem(item)
        self.tree.resizeColumnToContents(0)

    def find(self, text: str | None) -> None:
        if text:
            flags = Qt.MatchFlag.MatchContains | Qt.MatchFlag.MatchRecursive
            found = self.tree.findItems(text, flags, 0) or self.tree.findItems(text, flags, 1)
            if found:
                self.tree.setCurrentItem(found[0])
                self.tree.scrollToItem(found[0])
        self.tree.setFocus()


def _node_names(doc: ModelDocument) -> list[tuple[str, str]] | None:
    """(name, operator) of every top-level node, for ONNX files small enough to read quickly; else None."""
    if doc.format != "onnx" or doc.path.stat().st_size > OUTLINE_READ_LIMIT:
        return None
    import onnx

    graph = onnx.load(str(doc.path), load_external_data=False).graph
    return [(node.name, node.op_type) for node in graph.node]


@cache
def _web_classes() -> tuple[type, type]:
    """The request guard and page classes (defined only once Qt WebEngine is known to be present)."""
    web = web_engine()
    assert web is not None
    core = web.core

    class RequestGuard(core.QWebEngineUrlRequestInterceptor):  # type: ignore[name-defined, misc]
        """Blocks every request not addressed to the view's own server, and records it."""

        def __init__(self, server: NetronServer, blocked: list[str], parent: QtCore.QObject) -> None:
            super().__init__(parent)
            self.server = server
            self.blocked = blocked

        def interceptRequest(self, info: Any) -> None:
            if not self.allows(info.requestUrl()):
                info.block(True)

        def allows(self, url: QtCore.QUrl) -> bool:
            """Whether ``url`` is local (our server, data:, blob:, about:); if not, it is recorded as blocked."""
            if url.scheme() in ("data", "blob", "about") or (
                    url.scheme() == "http" and url.host() == "127.0.0.1" and url.port() == self.server.port != 0):
                return True
            self.blocked.append(url.toString())
            log.info("Blocked a request from the graph view to %s", url.toString())
            return False

    class NetronPage(core.QWebEnginePage):  # type: ignore[name-defined, misc]
        """Netron's page: reports its state, and stays put (links elsewhere are not followed, and count as
        blocked requests)."""

        state_reported = Signal(str)  # the JSON that STATE_REPORTER_JS logs

        def __init__(self, guard: RequestGuard, profile: Any, parent: QtCore.QObject) -> None:
            super().__init__(profile, parent)
            self.guard = guard
            for name, source in (("state-reporter", STATE_REPORTER_JS), ("frame-stand-in", FRAME_STAND_IN_JS)):
                script = core.QWebEngineScript()
                script.setName(name)
                script.setSourceCode(source)
                script.setInjectionPoint(core.QWebEngineScript.InjectionPoint.DocumentCreation)
                script.setWorldId(core.QWebEngineScript.ScriptWorldId.MainWorld)
                self.scripts().insert(script)

        def acceptNavigationRequest(self, url: QtCore.QUrl, kind: Any, main_frame: bool) -> bool:
            return self.guard.allows(url)

        def javaScriptConsoleMessage(self, level: Any, message: str, line: int, source: str) -> None:
            if message.startswith(STATE_PREFIX):
                self.state_reported.emit(message[len(STATE_PREFIX):])
            else:
                log.debug("netron page: %s (%s:%d)", message, source, line)

    return RequestGuard, NetronPage
