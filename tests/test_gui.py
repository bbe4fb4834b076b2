"""The main window, driven as a user would (pytest-qt, offscreen)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import ROOT, open_in, run_cli

from workbench.core.jobs import Job
from workbench.gui.dialogs import ErrorDialog
from workbench.gui.main_window import MainWindow
from workbench.gui.qt import QtCore, QtGui, QtWidgets
from workbench.resources import sample_dir, sample_model

CAFFE_PROTOTXT = """name: "tiny"
input: "data"
input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "relu1" }
"""


def test_sample_opens_with_summary_tensors_and_graph(qtbot, window: MainWindow) -> None:
    with qtbot.waitSignal(window.graph.loaded, timeout=60_000) as graph:
        doc = open_in(qtbot, window, sample_model())
    assert doc.format == "onnx"
    assert "digits_cnn.onnx" in window.summary.toPlainText()
    assert "image" in window.summary.toPlainText() and "[batch, 1, 8, 8]" in window.summary.toPlainText()
    assert window.tensors.proxy.rowCount() == len(doc.tensors) == 9
    assert graph.args[0] == doc.node_count == 9  # nodes counted in the rendered page's DOM
    assert window.graph.blocked_requests == 0
    assert window.steps.currentIndex() == 1


@pytest.mark.parametrize("name,fmt", [("digits_cnn.pt", "pytorch-state-dict"),
                                      ("digits_cnn_scripted.pt", "torchscript"),
                                      ("digits_cnn.onnx", "onnx")])
def test_every_sample_format_opens(qtbot, window: MainWindow, name: str, fmt: str) -> None:
    doc = open_in(qtbot, window, sample_dir() / name)
    assert doc.format == fmt
    assert window.document is doc
    assert window.tensors.proxy.rowCount() == len(doc.tensors)


@pytest.mark.parametrize("name,fmt", [("exported.pt2", "torch-export"), ("model.safetensors", "safetensors"),
                                      ("hf_folder", "hf-folder"), ("checkpoint.pth", "pytorch-checkpoint"),
                                      ("external/model.onnx", "onnx")])
def test_corpus_formatsopen_in(qtbot, window: MainWindow, corpus: Path, name: str, fmt: str) -> None:
    assert open_in(qtbot, window, corpus / name).format == fmt


def test_drag_and_drop_opens_the_file(qtbot, window: MainWindow) -> None:
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(sample_dir() / "digits_cnn.pt"))])
    pos = QtCore.QPointF(50, 50)
    enter = QtGui.QDragEnterEvent(pos.toPoint(), QtCore.Qt.DropAction.CopyAction, mime,
                                  QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier)
    window.dragEnterEvent(enter)
    assert enter.isAccepted()
    drop = QtGui.QDropEvent(pos, QtCore.Qt.DropAction.CopyAction, mime, QtCore.Qt.MouseButton.LeftButton,
                            QtCore.Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.document_loaded, timeout=60_000) as blocker:
        window.dropEvent(drop)
    assert blocker.args[0].format == "pytorch-state-dict"


def test_bad_file_shows_one_plain_error(qtbot, window: MainWindow, corpus: Path) -> None:
    window.open_path(str(corpus / "truncated.onnx"))
    qtbot.waitUntil(lambda: any(isinstance(w, ErrorDialog) and w.isVisible()
                                for w in QtWidgets.QApplication.topLevelWidgets()), timeout=30_000)
    dialog = next(w for w in QtWidgets.QApplication.topLevelWidgets() if isinstance(w, ErrorDialog) and w.isVisible())
    assert "truncated.onnx ends too early" in dialog.message_label.text()
    assert "Traceback" not in dialog.message_label.text()
    assert not dialog.details.isVisible()
    dialog.copy.click()
    assert "truncated.onnx" in QtWidgets.QApplication.clipboard().text()
    dialog.accept()
    assert window.document is None


def test_cancelling_a_slow_open_keeps_the_previous_model(qtbot, window: MainWindow,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    first = open_in(qtbot, window, sample_model())
    import workbench.core.formats as formats

    real_open = formats.open_model

    steps: list[int] = []

    def slow_open(path, trust=False, job: Job | None = None):  # type: ignore[no-untyped-def]
        assert job is not None
        for i in range(2000):  # about 20 s unless cancelled
            job.progress(i, 2000, "Reading slowly")
            steps.append(i)
            time.sleep(0.01)
        return real_open(path, trust=trust, job=job)

    monkeypatch.setattr(formats, "open_model", slow_open)
    task = window.open_path(str(sample_dir() / "digits_cnn.pt"))
    qtbot.waitUntil(lambda: task.last_progress is not None, timeout=10_000)
    assert window.cancel_button.isVisible()
    with qtbot.waitSignal(task.finished, timeout=15_000):
        window.cancel_button.click()
    assert len(steps) < 2000  # it stopped at the cancel, not at the end
    assert window.document is first  # nothing half-loaded replaced it
    assert not window.cancel_button.isVisible()
    assert window.statusBar().currentMessage() == "Cancelled."


def test_recent_files_and_layout_persist(qtbot, window: MainWindow) -> None:
    open_in(qtbot, window, sample_dir() / "digits_cnn.pt")
    window.close()
    again = MainWindow()
    qtbot.addWidget(again)
    assert again.recent_files()[0] == str((sample_dir() / "digits_cnn.pt").resolve())
    assert again.open_page.recent.count() >= 1
    assert [a.text() for a in again.recent_menu.actions()][0] == "digits_cnn.pt"
    stored = list((Path.home() / ".config").rglob("*.conf"))
    assert stored and "digits_cnn.pt" in stored[0].read_text(), "settings live in the (isolated) config folder"


def test_tensor_filter_sort_and_zero_count(qtbot, window: MainWindow) -> None:
    doc = open_in(qtbot, window, sample_model())
    window.tensors.filter.setText("bias")
    assert window.tensors.visible_names() and all("bias" in n for n in window.tensors.visible_names())
    window.tensors.filter.clear()
    window.tensors.view.sortByColumn(3, QtCore.Qt.SortOrder.DescendingOrder)
    assert window.tensors.visible_names()[0] == max(doc.tensors, key=lambda t: t.nbytes).name
    window.tensors.sparsity_button.click()
    qtbot.waitUntil(lambda: doc.sparsity is not None and window.current_task is None, timeout=30_000)
    zeros = window.tensors.proxy.index(0, 4).data()
    assert zeros.endswith("%")


def test_untrusted_pickle_asks_before_running_code(qtbot, window: MainWindow, corpus: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "tests" / "corpus"))
    asked: list[str] = []
    monkeypatch.setattr(window, "_ask_trust", lambda path, exc: asked.append(path) or False)
    task = window.open_path(str(corpus / "whole_module.pt"))
    qtbot.waitSignal(task.finished, timeout=30_000).wait()
    assert asked and window.document is None
    monkeypatch.setattr(window, "_ask_trust", lambda path, exc: True)
    with qtbot.waitSignal(window.document_loaded, timeout=60_000) as blocker:
        window.open_path(str(corpus / "whole_module.pt"))
    assert blocker.args[0].trusted


def test_view_only_format_shows_graph(qtbot, window: MainWindow, tmp_path: Path) -> None:
    path = tmp_path / "deploy.prototxt"
    path.write_text(CAFFE_PROTOTXT)
    with qtbot.waitSignal(window.graph.loaded, timeout=60_000) as graph:
        with qtbot.waitSignal(window.document_loaded, timeout=30_000) as loaded:
            window.open_path(str(path))
    assert loaded.args[0] is None
    assert "View only" in window.summary.toPlainText()
    assert graph.args[0] >= 2


def test_shortcuts() -> None:
    w = MainWindow()
    try:
        assert w.open_action.shortcut().toString() == "Ctrl+O"
        assert w.quit_action.shortcut().toString() == "Ctrl+Q"
        assert w.fullscreen_action.shortcut().toString() == "F11"
        assert w.find_action.shortcut().toString() == "Ctrl+F"
    finally:
        w.close()
        w.deleteLater()


def test_screenshot_command(tmp_path: Path) -> None:
    out = tmp_path / "shot.png"
    result = run_cli("--screenshot", str(out), str(sample_model()))
    assert result.returncode == 0, result.stderr
    image = QtGui.QImage(str(out))
    assert image.width() >= 800 and image.height() >= 500
    colours = {image.pixel(x, y) for x in range(0, image.width(), 17) for y in range(0, image.height(), 17)}
    assert len(colours) > 20, "the screenshot looks blank"


def test_ctrl_f_searches_tensors_or_graph(qtbot, window: MainWindow) -> None:
    from PySide6.QtTest import QTest

    open_in(qtbot, window, sample_model())
    window.details.setCurrentWidget(window.tensors)
    window.activateWindow()
    QTest.keySequence(window, QtGui.QKeySequence("Ctrl+F"))
    qtbot.waitUntil(lambda: window.tensors.filter.hasFocus(), timeout=5_000)
    window.details.setCurrentWidget(window.graph)
    QTest.keySequence(window, QtGui.QKeySequence("Ctrl+F"))
    qtbot.waitUntil(lambda: not window.tensors.filter.hasFocus(), timeout=5_000)
    assert window.details.currentWidget() is window.graph
