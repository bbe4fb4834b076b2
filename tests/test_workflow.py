"""The whole window, left to right: open → compress → choose a variant → license & card → package."""

from __future__ import annotations

import zipfile
from pathlib import Path

from conftest import open_in

from workbench.gui.main_window import MainWindow
from workbench.resources import sample_model


def test_open_compress_license_and_build_the_wheel(qtbot, window: MainWindow, tmp_path: Path) -> None:
    open_in(qtbot, window, sample_model())
    compress = window.compress_page
    compress.recipe.setCurrentIndex(compress.recipe.findData("static-int8"))
    task = compress.run_recipe()
    assert task is not None
    with qtbot.waitSignal(task.finished, timeout=240_000):
        pass
    compress.table.selectRow(1)
    compress.choose_button.click()
    chosen = compress.project.get(compress.project.chosen)  # type: ignore[union-attr]
    assert chosen.kind == "quantized"

    page = window.license_page
    page.select_license("MIT")
    page.holder.setText("Ada Lovelace")
    page.description.setPlainText("Recognises handwritten digits in 8x8 images.")
    page.intended_use.setPlainText("Teaching and demos.")
    page.limitations.setPlainText("Only 8x8 grey-scale digits like scikit-learn's.")
    with qtbot.waitSignal(page.saved, timeout=10_000):
        assert page.save() is not None
    card = page.card_text
    assert "license: mit" in card and "98.4" in card  # the measured accuracy of the chosen variant

    publish = window.publish_page
    assert publish.pypi.license.text() == "MIT"
    assert publish.variant is not None and publish.variant.path == chosen.path
    publish.pypi.name.setText("digits-cnn-workflow")
    with qtbot.waitSignal(publish.built, timeout=120_000) as built:
        publish.pypi.build_button.click()
    wheel = Path(built.args[0].path)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith("METADATA"))).decode()
        license_text = zf.read(next(n for n in names if n.endswith("licenses/LICENSE"))).decode()
    assert "License-Expression: MIT" in metadata and "Ada Lovelace" in license_text
    assert "Teaching and demos." in metadata  # the card is the package's description
    assert any(n.endswith("model/model.onnx") for n in names)


def test_an_unfinished_card_is_not_published(qtbot, window: MainWindow) -> None:
    from workbench.gui.dialogs import ErrorDialog
    from workbench.gui.qt import QtWidgets

    open_in(qtbot, window, sample_model())
    page = window.license_page
    page.select_license("Apache-2.0")
    with qtbot.waitSignal(page.saved, timeout=10_000):
        page.save()  # a draft: description, intended use and limitations still to write
    publish = window.publish_page
    assert publish.publish() is None  # refused before anything is built or sent
    dialogs = [w for w in QtWidgets.QApplication.topLevelWidgets() if isinstance(w, ErrorDialog) and w.isVisible()]
    assert dialogs and "still has 3 part(s) to write" in dialogs[-1].message_label.text()
    assert window.current_task is None
