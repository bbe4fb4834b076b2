"""The Graph view: netron served from this machine in a QWebEngineView (pytest-qt, offscreen).

The shared conftest calls ``prepare_web_engine_environment()`` before pytest-qt creates the QApplication.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from factories import chain_model
from onnx import TensorProto, helper, numpy_helper

from workbench.core.document import ModelDocument
from workbench.core.formats import open_model
from workbench.gui import netron_server, qt
from workbench.gui.graph_view import GraphView
from workbench.gui.netron_server import NetronServer, ServedModel
from workbench.gui.qt import QtCore
from workbench.resources import sample_model

LOAD_MS = 30_000

pytestmark = pytest.mark.skipif(qt.web_engine() is None, reason=f"Qt WebEngine missing: {qt.web_engine_error()}")

# Moves the page's clock (Date and Date.now) two years ahead; injected before netron's scripts run.
CLOCK_AHEAD_JS = """(() => {
  const shift = 730 * 24 * 60 * 60 * 1000;
  const RealDate = Date;
  class ShiftedDate extends RealDate {
    constructor(...args) { if (args.length === 0) { super(RealDate.now() + shift); } else { super(...args); } }
    static now() { return RealDate.now() + shift; }
  }
  window.Date = ShiftedDate;
})();"""

# How netron's message overlay (consent dialog, update request, errors) looks in the DOM.
MESSAGE_JS = """JSON.stringify({
  cookie: document.cookie, classes: document.body.className,
  display: getComputedStyle(document.getElementById('message')).display,
  text: document.getElementById('message-text').innerText })"""


# -- helpers --------------------------------------------------------------------------------------------------
@pytest.fixture
def view(qtbot: Any) -> Iterator[GraphView]:
    w = GraphView()
    w.resize(1000, 700)
    qtbot.addWidget(w, before_close_func=lambda v: v.shutdown())
    w.show()
    yield w
    w.shutdown()


def run_js(qtbot: Any, view: GraphView, script: str) -> Any:
    """The value of ``script`` evaluated in netron's page."""
    result: list[Any] = []
    view.page.runJavaScript(script, 0, result.append)
    qtbot.waitUntil(lambda: bool(result), timeout=5_000)
    return result[0]


def show(qtbot: Any, view: GraphView, doc: ModelDocument | Path) -> int:
    """Show a document (or a file) and return the node count that ``loaded`` reported."""
    with qtbot.waitSignal(view.loaded, timeout=LOAD_MS, raising=True) as blocker:
        view.show_document(doc) if isinstance(doc, ModelDocument) else view.show_file(doc)
    return int(blocker.args[0])


def shift_clock(view: GraphView) -> None:
    core = qt.web_engine().core
    script = core.QWebEngineScript()
    script.setName("clock-two-years-ahead")
    script.setSourceCode(CLOCK_AHEAD_JS)
    script.setInjectionPoint(core.QWebEngineScript.InjectionPoint.DocumentCreation)
    script.setWorldId(core.QWebEngineScript.ScriptWorldId.MainWorld)
    view.page.scripts().insert(script)


def external_data_model(folder: Path) -> Path:
    """A MatMul model whose weight lives in ``model.onnx.data`` next to it (plus an unrelated file)."""
    weight = numpy_helper.from_array(np.full((64, 64), 0.5, dtype=np.float32), "w")  # raw data, so external
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")], "ext",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [weight])
    path = folder / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path,
              save_as_external_data=True, location="model.onnx.data", size_threshold=0)
    (folder / "secret.txt").write_text("not part of the model")
    return path


def tiny_tflite(path: Path) -> Path:
    """A TFLite model, input -> RELU -> LOGISTIC -> output, written with the flatbuffers library."""
    flatbuffers = pytest.importorskip("flatbuffers")
    b = flatbuffers.Builder(1024)

    def ints(values: list[int]) -> int:
        b.StartVector(4, len(values), 4)
        for v in reversed(values):
            b.PrependInt32(v)
        return b.EndVector()

    def offsets(items: list[int]) -> int:
        b.StartVector(4, len(items), 4)
        for item in reversed(items):
            b.PrependUOffsetTRelative(item)
        return b.EndVector()

    def table(*fields: tuple[int, str, int]) -> int:  # (slot, "offset" | "int", value), per tflite's schema.fbs
        b.StartObject(max(slot for slot, _, _ in fields) + 1)
        for slot, kind, value in fields:
            if kind == "offset":
                b.PrependUOffsetTRelativeSlot(slot, value, 0)
            else:
                b.PrependInt32Slot(slot, value, -1)
        return b.EndObject()

    tensors = []
    for name in ("input", "hidden", "output"):
        shape, label = ints([1, 4]), b.CreateString(name)
        tensors.append(table((0, "offset", shape), (1, "int", 0), (2, "int", 0), (3, "offset", label)))
    operators = []
    for i in range(2):
        ins, outs = ints([i]), ints([i + 1])
        operators.append(table((0, "int", i), (1, "offset", ins), (2, "offset", outs)))
    codes = [table((0, "int", code), (2, "int", 1), (3, "int", code)) for code in (19, 14)]  # RELU, LOGISTIC
    parts = offsets(tensors), ints([0]), ints([2]), offsets(operators), b.CreateString("main")
    subgraph = table(*((slot, "offset", part) for slot, part in enumerate(parts)))
    b.StartObject(1)
    empty_buffer = b.EndObject()
    parts = offsets(codes), offsets([subgraph]), b.CreateString("tiny"), offsets([empty_buffer])
    model = table((0, "int", 3), *((slot + 1, "offset", part) for slot, part in enumerate(parts)))
    b.Finish(model, file_identifier=b"TFL3")
    path.write_bytes(bytes(b.Output()))
    return path


def hosts(urls: list[str]) -> set[str | None]:
    return {urllib.parse.urlsplit(url).hostname for url in urls}


def server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("netron-server")]


# -- the local server -----------------------------------------------------------------------------------------
def test_server_serves_netron_and_the_model_files_only(tmp_path: Path) -> None:
    model = external_data_model(tmp_path)
    doc = open_model(model)
    assert [f.path.name for f in doc.files] == ["model.onnx", "model.onnx.data"]
    server = NetronServer()
    url = server.serve(ServedModel.of(doc.path, [f.path for f in doc.files]))
    try:
        assert server.missing_patches == []
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/[\w-]{20,}/", url)
        page = urllib.request.urlopen(url)
        html = page.read().decode()
        assert '<meta name="file" content="data/model.onnx">' in html
        assert '<meta name="date"' not in html
        assert page.headers["Set-Cookie"].startswith("consent=")
        assert "packaged: false," in urllib.request.urlopen(url + "browser.js").read().decode()
        data = urllib.request.urlopen(url + "data/model.onnx.data").read()
        assert data == (tmp_path / "model.onnx.data").read_bytes()
        base = url.rsplit("/", 2)[0]
        for bad in (url + "data/secret.txt", url + "data/../secret.txt", url + "server.py", url + "../index.html",
                    base + "/index.html", base + "/wrong-prefix/index.html", url + "data/%2e%2e/secret.txt"):
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(bad)
            assert info.value.code == 404, bad
        rebinding = urllib.request.Request(url, headers={"Host": "attacker.example:80"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(rebinding)
        assert info.value.code == 403
    finally:
        server.stop()
    assert not server_threads() and server.url == ""


# -- rendering, privacy, consent, expiry ----------------------------------------------------------------------
def test_sample_renders_offline_without_consent_dialog(qtbot: Any, view: GraphView) -> None:
    doc = open_model(sample_model())
    assert show(qtbot, view, doc) == view.node_count == doc.node_count == 9
    assert view.mode == "graph" and not view.busy
    assert view.blocked_requests == 0, view.blocked_urls  # nothing tried to leave the machine
    message = json.loads(run_js(qtbot, view, MESSAGE_JS))
    assert "consent=" in message["cookie"]
    assert message["display"] == "none" and "notification" not in message["classes"]
    assert "cookies" not in message["text"]
    text = run_js(qtbot, view, "document.getElementById('canvas').textContent")
    assert "Conv" in text and "\u27e8" in text and "\u3008" not in text  # shapes use a bracket DejaVu has
    qtbot.wait(300)  # let the last frame paint
    image = view.grab().toImage()
    assert image.save("/tmp/graph.png")
    colours = {image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}
    assert len(colours) > 10  # coloured node boxes, not a blank page


def test_unneutralised_netron_would_phone_home_and_everything_is_blocked(
        qtbot: Any, view: GraphView, monkeypatch: pytest.MonkeyPatch) -> None:
    """Control: netron as published (only kept from expiring) asks ipinfo.io, asks consent, sends analytics."""
    monkeypatch.setattr(netron_server, "PATCHES", tuple(p for p in netron_server.PATCHES if p.file == "index.html"))
    monkeypatch.setattr(netron_server, "CONSENT_COOKIE", "not-netrons")
    with qtbot.waitSignal(view.failed, timeout=LOAD_MS) as blocker:
        view.show_document(open_model(sample_model()))
    assert "cookies" in blocker.args[0]  # the consent dialog
    assert any(url.startswith("https://ipinfo.io/json") for url in view.blocked_urls)
    run_js(qtbot, view, "document.getElementById('message-button').click()")  # accept, as a user would
    qtbot.waitUntil(lambda: "analytics.google.com" in hosts(view.blocked_urls), timeout=LOAD_MS)
    assert hosts(view.blocked_urls) == {"ipinfo.io", "analytics.google.com"}  # all blocked: none was sent


def test_works_with_the_clock_two_years_ahead(qtbot: Any, view: GraphView, monkeypatch: pytest.MonkeyPatch) -> None:
    control = GraphView()  # netron's build date left in: it refuses
    qtbot.addWidget(control, before_close_func=lambda v: v.shutdown())
    shift_clock(control)
    with monkeypatch.context() as m:
        m.setattr(netron_server, "PATCHES", tuple(p for p in netron_server.PATCHES if p.file != "index.html"))
        with qtbot.waitSignal(control.failed, timeout=LOAD_MS) as blocker:
            control.show_document(open_model(sample_model()))
        control.shutdown()
    assert "Please update to the newest version" in blocker.args[0]
    shift_clock(view)
    assert show(qtbot, view, open_model(sample_model())) == 9
    assert int(run_js(qtbot, view, "new Date().getFullYear()")) >= time.gmtime().tm_year + 2
    assert "update" not in json.loads(run_js(qtbot, view, MESSAGE_JS))["text"].lower()
    assert view.blocked_requests == 0, view.blocked_urls


# -- documents and files --------------------------------------------------------------------------------------
def test_external_data_is_served_with_the_model(qtbot: Any, view: GraphView, tmp_path: Path) -> None:
    assert show(qtbot, view, open_model(external_data_model(tmp_path))) == 1
    fetch = "(() => { const r = new XMLHttpRequest(); r.open('GET', '%s', false); r.send(); return r.status; })()"
    assert run_js(qtbot, view, fetch % "data/model.onnx.data") == 200
    assert run_js(qtbot, view, fetch % "data/secret.txt") == 404
    assert view.blocked_requests == 0


def tiny_torch_files(folder: Path) -> tuple[Path, Path]:
    """A Linear -> ReLU -> add module saved with TorchScript and with torch.export (three nodes each)."""
    torch = pytest.importorskip("torch")

    class TinyNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.linear(x)) + 1

    module = TinyNet()
    script, exported = folder / "tiny_script.pt", folder / "tiny.pt2"
    torch.jit.save(torch.jit.script(module), str(script))
    torch.export.save(torch.export.export(module, (torch.randn(2, 4),)), str(exported))
    return script, exported


@pytest.mark.filterwarnings("ignore:`torch.jit.(script|save)` is deprecated:DeprecationWarning")
def test_torch_formats_render(qtbot: Any, view: GraphView, tmp_path: Path) -> None:
    script, exported = tiny_torch_files(tmp_path)
    for path, fmt in ((script, "torchscript"), (exported, "torch-export")):
        doc = open_model(path)
        assert doc.format == fmt and doc.has_graph
        assert show(qtbot, view, doc) == doc.node_count == 3
    assert view.blocked_requests == 0


def test_a_new_document_replaces_one_still_loading(qtbot: Any, view: GraphView, tmp_path: Path) -> None:
    counts: list[int] = []
    view.loaded.connect(counts.append)
    view.show_document(open_model(sample_model()))
    assert show(qtbot, view, open_model(chain_model(tmp_path / "chain.onnx", 4))) == 4
    qtbot.wait(500)
    assert counts == [4]
    view.clear()
    assert view.mode == "empty" and view.node_count == 0


def test_view_only_file_renders_and_unknown_file_fails_plainly(qtbot: Any, view: GraphView, tmp_path: Path) -> None:
    assert show(qtbot, view, tiny_tflite(tmp_path / "tiny.tflite")) == 2
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with qtbot.waitSignal(view.failed, timeout=LOAD_MS) as blocker:
        view.show_file(notes)
    assert blocker.args[0].startswith("notes.txt could not be drawn.")
    assert view.mode == "message" and view.message == blocker.args[0]


def test_draws_while_the_view_is_hidden(qtbot: Any, view: GraphView) -> None:
    """Another tab may be in front while the graph loads; hidden pages get no animation frames by default."""
    with qtbot.waitSignal(view.loaded, timeout=LOAD_MS) as blocker:
        view.show_document(open_model(sample_model()))
        view.hide()
    assert blocker.args[0] == 9


def test_document_without_graph_shows_its_note(qtbot: Any, view: GraphView) -> None:
    note = "A PyTorch state_dict stores weights only, not the computation, so there is no graph to show."
    doc = ModelDocument(path=sample_model(), format="pytorch-state-dict", format_label="PyTorch state_dict",
                        files=[], has_graph=False, graph_note=note)
    view.show_document(doc)
    assert view.mode == "message" and view.message == note
    assert view.server_url == ""  # nothing was served


def test_search_uses_netrons_find(qtbot: Any, view: GraphView) -> None:
    show(qtbot, view, open_model(sample_model()))
    view.search("Relu")
    qtbot.waitUntil(lambda: run_js(qtbot, view, "document.querySelectorAll('.sidebar-find-content li').length") > 0,
                    timeout=5_000)
    assert run_js(qtbot, view, "document.getElementById('search').value") == "Relu"
    view.focus_search()
    assert run_js(qtbot, view, "document.getElementById('search').value") == "Relu"


# -- large graphs ---------------------------------------------------------------------------------------------
def test_large_graph_gets_an_outline_and_can_still_be_drawn_without_freezing(qtbot: Any, tmp_path: Path) -> None:
    doc = open_model(chain_model(tmp_path / "big.onnx", 5000))
    view = GraphView(max_graph_nodes=1000)
    qtbot.addWidget(view, before_close_func=lambda v: v.shutdown())
    view.show()
    with qtbot.waitSignal(view.outline_shown, timeout=5_000) as blocker:
        view.show_document(doc)
    assert "5,000 nodes" in blocker.args[0] and view.mode == "outline" and not view.busy
    tree = view._outline.tree
    assert tree.topLevelItemCount() == 25  # /block0 ... /block24
    assert sum(tree.topLevelItem(i).childCount() for i in range(tree.topLevelItemCount())) == 5000
    view.search("relu2499")
    assert tree.currentItem().text(0) == "/block24/relu2499"

    gaps: list[float] = []
    last = [time.monotonic()]

    def tick() -> None:
        now = time.monotonic()
        gaps.append(now - last[0])
        last[0] = now

    timer = QtCore.QTimer(interval=20)
    timer.timeout.connect(tick)
    timer.start()
    with qtbot.waitSignal(view.loaded, timeout=60_000) as drawn:
        view._outline.draw_button.click()
    timer.stop()
    assert drawn.args[0] == 5000
    assert max(gaps) < 2.0, f"the window did not respond for {max(gaps):.2f} s"  # drawing takes ~5 s
    view.shutdown()


def test_slow_drawing_falls_back_to_the_outline(qtbot: Any, tmp_path: Path) -> None:
    view = GraphView(render_timeout_s=0.2)
    qtbot.addWidget(view, before_close_func=lambda v: v.shutdown())
    with qtbot.waitSignal(view.outline_shown, timeout=10_000) as blocker:
        view.show_document(open_model(chain_model(tmp_path / "big.onnx", 5000)))
    assert "took longer than 0.2 seconds" in blocker.args[0]
    assert view.mode == "outline" and view.message == blocker.args[0]
    view.shutdown()


# -- without Qt WebEngine, and shutting down ------------------------------------------------------------------
def test_without_web_engine_explains_and_lists_nodes(qtbot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_NO_WEBENGINE", "1")
    monkeypatch.setattr(qt, "_WEB", None)
    monkeypatch.setattr(qt, "_WEB_ERROR", None)
    view = GraphView()
    qtbot.addWidget(view, before_close_func=lambda v: v.shutdown())
    assert view.page is None
    assert "needs Qt WebEngine" in view.message and "pip install PySide6-Addons" in view.message
    view.show_document(open_model(sample_model()))
    assert view.mode == "outline" and "pip install PySide6-Addons" in view.message
    tree = view._outline.tree
    assert sum(tree.topLevelItem(i).childCount() for i in range(tree.topLevelItemCount())) == 9
    view.search("linear_1")
    assert tree.currentItem().text(0) == "node_linear_1" and tree.currentItem().parent().text(0) == "Gemm"
    view.show_file(sample_model())
    assert view.mode == "message" and "Qt WebEngine" in view.message
    view.clear()
    assert view.blocked_requests == 0 and view.node_count == 0 and view.server_url == ""
    view.shutdown()


def test_shutdown_and_destruction_stop_the_server(qtbot: Any) -> None:
    for destroy in (False, True):
        view = GraphView()
        with qtbot.waitSignal(view.loaded, timeout=LOAD_MS):
            view.show_document(open_model(sample_model()))
        assert len(server_threads()) == 1
        if destroy:
            view.deleteLater()
            qtbot.waitUntil(lambda: not server_threads(), timeout=5_000)
        else:
            view.shutdown()
            assert view.server_url == "" and view.page is None
            assert not server_threads()
            view.deleteLater()
