"""The Compress step in the window: recipes make variants in the project folder, measured side by side."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from conftest import open_in

from workbench.gui.main_window import MainWindow
from workbench.resources import sample_dir, sample_model


def _run(qtbot, window: MainWindow, key: str, amount: int | None = None) -> None:  # type: ignore[no-untyped-def]
    page = window.compress_page
    page.recipe.setCurrentIndex(page.recipe.findData(key))
    if amount is not None:
        page.amount.setValue(amount)
    task = page.run_recipe()
    assert task is not None
    with qtbot.waitSignal(task.finished, timeout=240_000):
        pass


def test_static_int8_variant_is_measured_honestly(qtbot, window: MainWindow, tmp_path: Path) -> None:
    import onnxruntime as ort

    digest = hashlib.sha256(sample_model().read_bytes()).hexdigest()
    open_in(qtbot, window, sample_model())
    page = window.compress_page
    assert window.steps.isTabEnabled(2)
    _run(qtbot, window, "static-int8")
    comparison = page.comparison
    assert comparison is not None and len(comparison.results) == 2
    variant = comparison.results[1]
    assert variant.path.parent == tmp_path / "out" / "digits_cnn"
    data = np.load(sample_dir() / "digits_test.npz")
    session = ort.InferenceSession(str(variant.path), providers=["CPUExecutionProvider"])
    direct = float((session.run(None, {"image": data["x"]})[0].argmax(1) == data["y"]).mean())
    assert variant.accuracy == pytest.approx(direct)  # the table shows what the file really does
    assert page.table.rowCount() == 2
    assert page.table.item(1, 1).text() == f"{direct:.1%}"
    assert (tmp_path / "out" / "digits_cnn" / "comparison.png").exists()
    assert not page.plot.pixmap().isNull()
    assert hashlib.sha256(sample_model().read_bytes()).hexdigest() == digest  # the original is untouched
    page.table.selectRow(1)
    with qtbot.waitSignal(page.chosen_changed) as chosen:
        page.choose_button.click()
    assert chosen.args[0].path == variant.path
    assert page.project is not None and page.project.chosen == chosen.args[0].name
    assert "publish" in page.table.item(1, 0).text()


def test_several_variants_side_by_side(qtbot, window: MainWindow) -> None:
    open_in(qtbot, window, sample_model())
    _run(qtbot, window, "fp16")
    _run(qtbot, window, "magnitude", 50)
    comparison = window.compress_page.comparison
    assert comparison is not None
    assert [r.is_original for r in comparison.results] == [True, False, False]
    assert window.compress_page.table.rowCount() == 3


def test_non_model_documents_cannot_be_compressed(qtbot, window: MainWindow, corpus: Path) -> None:
    open_in(qtbot, window, corpus / "model.safetensors")
    page = window.compress_page
    assert page.project is None and not page.run_button.isEnabled()
    assert "cannot be compressed" in page.intro.text()


def test_cancel_leaves_no_half_variant(qtbot, window: MainWindow, tmp_path: Path) -> None:
    open_in(qtbot, window, sample_model())
    page = window.compress_page
    page.recipe.setCurrentIndex(page.recipe.findData("static-int8"))
    task = page.run_recipe()
    assert task is not None
    qtbot.waitUntil(lambda: task.last_progress is not None, timeout=30_000)
    with qtbot.waitSignal(task.finished, timeout=60_000):
        window.cancel_button.click()
    assert window.statusBar().currentMessage() == "Cancelled."
    assert page.project is not None
    # cancelled while quantizing: nothing recorded; while measuring: the finished variant is kept, whole
    recorded = {v.path for v in page.project.variants if v.kind != "original"}
    out = tmp_path / "out" / "digits_cnn"
    assert {p for p in out.rglob("*") if p.is_file() and p.name != "project.json"} == recorded
    for path in recorded:
        import onnx

        onnx.checker.check_model(str(path))
