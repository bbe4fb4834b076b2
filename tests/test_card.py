"""The model card: Hugging Face format, checked offline, carrying the real figures of the variant it describes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from workbench.core import license as lic
from workbench.core.card import (
    CardInfo,
    CardProblem,
    build_card,
    check_publishable,
    load_card_info,
    render_card,
    save_card,
    validate_card,
)
from workbench.core.formats import open_model
from workbench.core.project import Variant
from workbench.resources import sample_model

COMPLETE = CardInfo(name="Digits CNN (int8)", description="Reads 8x8 handwritten digits.",
                    intended_use="Teaching and demos.", limitations="Only 8x8 grey digits like scikit-learn's.",
                    pipeline_tag="image-classification")


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real static-int8 variant of the sample model and a real comparison of it with the original."""
    from workbench.core.evaluate.compare import compare
    from workbench.core.evaluate.datasets import sample_data
    from workbench.core.optimize.quantize import quantize

    folder = tmp_path_factory.mktemp("project")
    data = sample_data()
    result = quantize(sample_model(), folder / "static-int8.onnx", method="static-int8", calibration=data)
    comparison = compare(sample_model(), [result.output_path], data, latency_runs=3)
    variant = Variant("static-int8", result.output_path, "quantized",
                      {"recipe": "static-int8", "amount": None, "max_drop": None}, result.to_dict())
    return {"variant": variant, "comparison": comparison, "document": open_model(result.output_path),
            "folder": folder}


def _card(measured: dict[str, Any], info: CardInfo = COMPLETE, decision: lic.LicenseDecision | None = None,
          **overrides: Any) -> str:
    sources = {"document": measured["document"], "variant": measured["variant"],
               "comparison": measured["comparison"], **overrides}
    return render_card(info, decision or lic.decide("Apache-2.0"), **sources)


def test_card_passes_hub_validation_offline_and_carries_the_measured_figures(measured: dict[str, Any]) -> None:
    from huggingface_hub import ModelCard

    text = _card(measured)
    report = validate_card(text)
    assert report.ok and report.todos == ()
    card = ModelCard(text)  # parses back: YAML + ModelCardData (model-index included)
    assert card.data.license == "apache-2.0" and card.data.library_name == "onnx"
    assert "quantized" in card.data.tags
    mine = measured["comparison"].results[1]
    assert mine.path == measured["variant"].path
    [accuracy] = [r for r in card.data.eval_results if r.metric_type == "accuracy"]
    assert accuracy.metric_value == mine.accuracy  # exactly what was measured
    assert accuracy.task_type == "image-classification"
    assert accuracy.dataset_name == measured["comparison"].data_source
    assert card.data.model_name == "Digits CNN (int8)"
    body = card.text
    assert f"{mine.accuracy:.2%}" in body and f"{measured['comparison'].original.accuracy:.2%}" in body
    for verdict in mine.verdicts:
        assert verdict in body
    assert "| Input | `image` | float32 | [batch, 1, 8, 8] |" in body
    assert "static int8 (QDQ, calibrated)" in body and "Quantized | 4 of 4 operators" in body
    versions = measured["variant"].result["versions"]
    assert f"onnxruntime {versions['onnxruntime']}" in body
    assert "pip install digits-cnn-int8" in body and "from digits_cnn_int8 import load, predict" in body
    assert "digits-cnn-int8-predict input.npz" in body
    assert 'hf_hub_download(repo_id="your-username/digits-cnn-int8", filename="static-int8.onnx")' in body
    assert "podman run" in body and "docker run" in body
    assert '{"image": np.zeros((1, 1, 8, 8), dtype=np.float32)}' in body
    check_publishable(text)


def test_comparison_from_the_cli_json_gives_the_same_card(measured: dict[str, Any]) -> None:
    as_json = json.loads(json.dumps(measured["comparison"].to_dict()))
    assert _card(measured, comparison=as_json) == _card(measured)


def test_no_figures_are_made_up(measured: dict[str, Any]) -> None:
    unmeasured = _card(measured, comparison=None)
    assert "This model has not been measured yet." in unmeasured
    assert "model-index" not in unmeasured and "%" not in unmeasured.split("## Evaluation")[1].split("##")[0]
    noise = copy.deepcopy(measured["comparison"].to_dict())
    noise["data"]["synthetic"] = True
    on_noise = _card(measured, comparison=noise)
    assert "model-index" not in on_noise  # figures on random inputs are not evaluation results
    other = copy.deepcopy(measured["comparison"].to_dict())
    other["models"] = other["models"][:1]
    with pytest.raises(CardProblem, match="did not measure static-int8.onnx"):
        _card(measured, comparison=other)
    with pytest.raises(CardProblem, match="workbench compare --json"):
        _card(measured, comparison={"models": "nope"})


def test_what_only_the_author_knows_is_asked_for_not_invented(measured: dict[str, Any]) -> None:
    text = _card(measured, info=CardInfo(name="Digits"))
    report = validate_card(text)
    assert report.ok  # a draft is valid for the Hub...
    assert report.todos == ("description", "intended use", "limitations")
    assert text.count("> **TODO (author):**") == 3
    with pytest.raises(CardProblem, match="3 part\\(s\\) to write: description, intended use, limitations"):
        check_publishable(text)  # ...but not publishable
    with pytest.raises(CardProblem, match="needs a name"):
        _card(measured, info=CardInfo(name="  \n "))


def test_metadata_the_hub_would_reject_is_caught(measured: dict[str, Any], tmp_path: Path) -> None:
    good = _card(measured)
    assert validate_card("").problems == ("The model card is empty.",)
    assert "no metadata block" in validate_card("# Title\n\ntext\n").problems[0]
    assert "not valid YAML" in validate_card("---\nlicense: [mit\n---\n# T\n").problems[0]
    assert "not one the Hugging Face Hub accepts" in validate_card(good.replace("license: apache-2.0",
                                                                                "license: apache")).problems[0]
    assert "names no license" in validate_card(good.replace("license: apache-2.0\n", "")).problems[0]
    other = good.replace("license: apache-2.0", "license: other\nlicense_name: My License")
    assert "license_name of lowercase" in validate_card(other).problems[0]
    broken_index = good.replace("type: accuracy", "typo: accuracy")
    assert validate_card(broken_index).problems
    bad_index = "---\nlicense: mit\nmodel-index:\n- name: x\n  results: 5\n---\n# T\n"
    assert "not valid for the Hub" in validate_card(bad_index).problems[0]
    assert "no title" in validate_card("---\nlicense: mit\n---\ntext only\n").problems[0]
    with pytest.raises(CardProblem, match="was not saved"):
        save_card(tmp_path, good.replace("license: apache-2.0", "license: apache"), lic.decide("Apache-2.0"))
    assert not (tmp_path / "README.md").exists()


def test_chinese_names_and_descriptions_round_trip(measured: dict[str, Any], tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    own = tmp_path / "许可.txt"
    own.write_text("示例许可证全文。\n", encoding="utf-8")
    decision = lic.decide("other", custom_name="示例许可证", custom_file=str(own))
    info = CardInfo(name="数字识别模型（8位）", description="识别手写数字的小型卷积网络。",
                    intended_use="教学与演示。", limitations="只适用于 8×8 的灰度数字图像。",
                    datasets=("scikit-learn/digits",))
    text = _card(measured, info=info, decision=decision)
    assert validate_card(text).ok
    saved = save_card(tmp_path / "out", text, decision, info)
    assert saved.read_text(encoding="utf-8") == text
    card = ModelCard.load(saved)
    assert card.data.model_name == "数字识别模型（8位）"
    assert card.data.license == "other" and card.data.license_link == "LICENSE"
    assert card.data.license_name == lic.hf_license_name(decision)
    assert card.data.datasets == ["scikit-learn/digits"]
    assert "# 数字识别模型（8位）" in card.text and "只适用于 8×8 的灰度数字图像。" in card.text
    assert "**示例许可证**" in card.text
    assert str(card) == text  # re-serialising through huggingface_hub changes nothing
    assert load_card_info(tmp_path / "out") == info
    assert lic.load_decision(tmp_path / "out" / "license.json") == decision
    assert not list((tmp_path / "out").glob("*.part"))


def test_a_card_without_records_still_builds(measured: dict[str, Any]) -> None:
    text = render_card(COMPLETE, lic.decide("CC0-1.0"), document=open_model(sample_model()))
    assert "it was not compressed" in text and validate_card(text).ok
    card = build_card(COMPLETE, lic.decide("MIT", holder="A"))
    assert "The model file does not record its inputs and outputs." in card.text
    assert "{...}" in card.text


def test_cli_writes_the_card_from_compare_json(measured: dict[str, Any], tmp_path: Path) -> None:
    variant = measured["variant"]
    compared = run_cli("compare", str(sample_model()), str(variant.path), "--json", "--runs", "3")
    assert compared.returncode == 0, compared.stderr
    (tmp_path / "comparison.json").write_text(compared.stdout, encoding="utf-8")
    (tmp_path / "quantize.json").write_text(json.dumps(variant.result), encoding="utf-8")
    out = tmp_path / "card" / "README.md"
    result = run_cli("card", str(variant.path), "--license", "mit", "--holder", "Ada", "--name", "数字 CNN",
                     "--description", "手写数字。", "--comparison", str(tmp_path / "comparison.json"),
                     "--compression", str(tmp_path / "quantize.json"), "--base-model-license", "cc-by-nc-4.0",
                     "-o", str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text(encoding="utf-8")
    report = validate_card(text)
    assert report.ok and report.todos == ("intended use", "limitations")
    accuracy = json.loads(compared.stdout)["models"][1]["accuracy"]
    assert report.metadata["model-index"][0]["results"][0]["metrics"][0]["value"] == accuracy
    assert "static int8 (QDQ, calibrated)" in text and "# 数字 CNN" in text
    assert "license conflict" in result.stderr and "forbids commercial use" in result.stderr
    assert "intended use, limitations" in result.stderr
    bad = run_cli("card", str(variant.path), "--license", "gpl3", "-o", str(tmp_path / "x.md"))
    assert bad.returncode == 1 and "Did you mean GPL-3.0-only" in bad.stderr
    assert not (tmp_path / "x.md").exists()
    missing = run_cli("card", str(variant.path), "--license", "MIT", "-o", str(tmp_path / "y.md"))
    assert missing.returncode == 1 and "copyright holder" in missing.stderr
