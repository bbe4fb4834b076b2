"""The License & card step, offscreen: choose by questions, see conflicts, edit the card with a live preview, save."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.core import license as lic
from workbench.core.card import load_card_info, validate_card
from workbench.core.formats import open_model
from workbench.core.project import Variant
from workbench.gui.license_page import LicensePage
from workbench.resources import sample_model


@pytest.fixture
def page(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("WORKBENCH_OUTPUT_DIR", str(tmp_path / "out"))
    p = LicensePage(lambda task: task.run_in_background())
    qtbot.addWidget(p)
    p.show()
    yield p
    p.close()


def _answer(page: LicensePage, key: str, value: bool | None) -> None:
    box = page.answers[key]
    box.setCurrentIndex(box.findData(value))


def test_questions_choose_a_license_and_the_card_follows(qtbot, page: LicensePage, tmp_path: Path) -> None:
    assert not page.isEnabled()  # nothing open yet
    page.set_document(open_model(sample_model()))
    assert page.isEnabled() and page.name.text() == "digits_cnn"
    _answer(page, "commercial", False)
    assert page.visible_keys() == ["CC-BY-NC-4.0", "CC-BY-NC-SA-4.0", "CC-BY-NC-ND-4.0", "other"]
    _answer(page, "share_alike", True)
    assert page.visible_keys() == ["CC-BY-NC-SA-4.0", "other"]
    assert page.current_entry().key == "CC-BY-NC-SA-4.0"
    assert "license: cc-by-nc-sa-4.0" in page.card_text
    assert "Non Commercial Share Alike" in page.summary.text()
    page.search.setText("mozilla")  # searching with answers that exclude it finds nothing but "other"...
    assert page.visible_keys() == ["other"]
    page.select_license("MPL-2.0")  # ...and choosing it by id clears the questions
    assert page.current_entry().key == "MPL-2.0" and page.answers["commercial"].currentData() is None
    assert "license: mpl-2.0" in page.card_text

    page.description.setPlainText("认识手写数字的小模型。")
    assert "认识手写数字的小模型。" in page.preview.toPlainText()  # the preview follows the form at once
    assert "---" not in page.preview.toPlainText().splitlines()[0]  # metadata is not shown as text
    assert "intended use" in page.status.text()  # TODO parts are named

    page.base_license.setText("cc-by-nc-4.0")
    assert "forbids commercial use" in page.conflict_label.text()
    page.base_license.setText("")
    assert page.conflict_label.text() == ""


def test_template_licenses_ask_for_the_holder_and_own_licenses_for_a_file(page: LicensePage, tmp_path: Path) -> None:
    page.set_document(open_model(sample_model()))
    page.select_license("MIT")
    assert "copyright holder" in page.status.text()
    page.holder.setText("Ada")
    assert "copyright holder" not in page.status.text()
    page.select_license("other")
    assert page.details.isRowVisible(page.custom_name)
    assert "needs a name" in page.status.text()
    page.custom_name.setText("Acme Model License")
    own = tmp_path / "LICENSE.txt"
    own.write_text("Acme terms.\n", encoding="utf-8")
    page._set_custom_file(str(own))
    page.refresh()
    assert "license_name: acme-model-license" in page.card_text
    page.select_license("Apache-2.0")
    assert not page.details.isRowVisible(page.custom_name)


def test_variant_comparison_hand_edits_and_save(qtbot, page: LicensePage, tmp_path: Path) -> None:
    from workbench.core.evaluate.compare import compare
    from workbench.core.evaluate.datasets import sample_data
    from workbench.core.optimize.quantize import quantize

    doc = open_model(sample_model())
    page.set_document(doc)
    folder = page.folder
    assert folder == tmp_path / "out" / "digits_cnn"
    folder.mkdir(parents=True)
    data = sample_data()
    result = quantize(sample_model(), folder / "static-int8.onnx", method="static-int8", calibration=data)
    variant = Variant("static-int8", result.output_path, "quantized", {"recipe": "static-int8"}, result.to_dict())
    task = page.set_variant(variant)
    assert task is not None
    with qtbot.waitSignal(task.finished, timeout=60_000):
        pass
    assert page.variant_document is not None and page.variant_document.path == variant.path
    comparison = compare(sample_model(), [variant.path], data, latency_runs=3)
    page.set_comparison(comparison)
    accuracy = comparison.results[1].accuracy
    assert f"value: {accuracy}" in page.card_text
    assert f"{accuracy:.2%}" in page.preview.toPlainText()

    page.select_license("Apache-2.0")
    page.name.setText("数字识别 (int8)")
    page.intended_use.setPlainText("教学。")
    page.limitations.setPlainText("只认 8×8 数字。")
    page.description.setPlainText("小模型。")
    assert "The card is complete." in page.status.text()

    page.tabs.setCurrentIndex(1)
    page.editor.setPlainText(page.editor.toPlainText().replace("小模型。", "手工修改的描述。"))
    assert page.hand_edited and "手工修改的描述。" in page.preview.toPlainText()
    page.limitations.setPlainText("changed in the form")
    assert "手工修改的描述。" in page.card_text and "changed in the form" not in page.card_text  # hand edit kept
    assert "edited the Markdown by hand" in page.status.text()

    path = page.save()
    assert path == folder / "README.md"
    saved = path.read_text(encoding="utf-8")
    assert saved == page.card_text and validate_card(saved).ok
    assert lic.load_decision(folder / "license.json").license == "Apache-2.0"
    info = load_card_info(folder)
    assert info is not None and info.name == "数字识别 (int8)"

    page.rebuild()
    assert "changed in the form" in page.card_text and not page.hand_edited

    page.set_document(None)
    page.set_document(doc)  # the saved license and form come back
    assert page.current_entry().key == "Apache-2.0" and page.name.text() == "数字识别 (int8)"
    assert page.limitations.toPlainText() == "changed in the form"


def test_a_comparison_of_other_files_is_left_out_with_a_note(page: LicensePage, tmp_path: Path) -> None:
    page.set_document(open_model(sample_model()))
    page.select_license("CC0-1.0")
    page.set_comparison({"task": "classification", "data": {"source": "x", "samples": 1, "labelled": True,
                                                             "synthetic": False},
                         "models": [{"path": str(tmp_path / "elsewhere.onnx"), "original": True}]})
    assert "did not measure digits_cnn.onnx" in page.status.text()
    assert "This model has not been measured yet." in page.card_text
