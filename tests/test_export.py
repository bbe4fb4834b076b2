"""PyTorch -> ONNX export: every kind of source, numeric validation, clear failures, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_cli
from factories import trained_digits_cnn

from workbench.commands.export import render_export
from workbench.core.errors import Cancelled, UntrustedPickle, WorkbenchError
from workbench.core.evaluate.datasets import sample_data
from workbench.core.export import export_to_onnx
from workbench.core.jobs import Job, Progress

SAMPLE = ROOT / "resources" / "sample"
DIGITS_CLASS = f"{SAMPLE / 'digits_cnn.py'}:DigitsCNN"
TINY_CLASS = f"{ROOT / 'tests' / 'corpus' / 'corpus_models.py'}:TinyNet"
SHAPE = (1, 1, 8, 8)

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")


def _run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


def _only_output_left(folder: Path, name: str) -> None:
    assert sorted(p.name for p in folder.iterdir()) == [name]  # no temporary folder or side file left


def _check_digits_export(out: Path, reference: torch.nn.Module) -> None:
    """Same accuracy as PyTorch on the digits split, and a batch size that really varies."""
    data = sample_data()
    x = data.inputs["image"]
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    got = _run_onnx(out, x)
    assert _accuracy(got, data.labels) == _accuracy(expected, data.labels) > 0.95
    for batch in (1, 7):
        assert _run_onnx(out, x[:batch]).shape == (batch, 10)


def test_torchscript_sample(tmp_path: Path) -> None:
    out = tmp_path / "scripted.onnx"
    result = export_to_onnx(SAMPLE / "digits_cnn_scripted.pt", out, input_shape=SHAPE)
    assert result.exporter == "torchscript" and result.dynamic_batch and result.opset == 18
    assert result.checked_batches == (2, 5)
    assert 0 < result.max_abs_diff["output"] <= result.limits["output"]
    assert result.inputs[0].shape == ("batch", 1, 8, 8) and result.outputs[0].shape == ("batch", 10)
    assert result.files == [out] and result.size_bytes == out.stat().st_size
    assert any("dynamo exporter does not accept TorchScript" in n for n in result.notes)
    _check_digits_export(out, torch.jit.load(str(SAMPLE / "digits_cnn_scripted.pt")))
    _only_output_left(tmp_path, "scripted.onnx")
    text = render_export(result)
    assert text.startswith(f"Exported digits_cnn_scripted.pt (TorchScript model) to {out}.")
    assert "opset 18, variable batch size, TorchScript-based exporter" in text
    assert "x  float32  [batch, 1, 8, 8]" in text and "(batch 2 and 5)" in text


def test_fixed_batch(tmp_path: Path) -> None:
    result = export_to_onnx(SAMPLE / "digits_cnn_scripted.pt", tmp_path / "f.onnx", input_shape=(3, 1, 8, 8),
                            dynamic_batch=False)
    assert not result.dynamic_batch and result.checked_batches == (3,)
    assert result.inputs[0].shape == (3, 1, 8, 8) and result.outputs[0].shape == (3, 10)
    assert "fixed batch size" in render_export(result)


def test_model_that_only_runs_at_one_batch_size_gets_a_fixed_batch(tmp_path: Path) -> None:
    class OnlyTwo(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.reshape(2, 64))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.trace is deprecated, still widely used
        torch.jit.trace(OnlyTwo(), torch.zeros(2, 1, 8, 8)).save(str(tmp_path / "only_two.pt"))
    result = export_to_onnx(tmp_path / "only_two.pt", tmp_path / "only_two.onnx", input_shape=(2, 1, 8, 8))
    assert not result.dynamic_batch and result.inputs[0].shape == (2, 1, 8, 8)
    assert ("only_two.pt runs in PyTorch only with a batch of 2, so the ONNX model takes that fixed batch."
            in result.notes)


def test_state_dict_with_model_class(tmp_path: Path) -> None:
    out = tmp_path / "digits.onnx"
    steps: list[Progress] = []
    result = export_to_onnx(SAMPLE / "digits_cnn.pt", out, model_class=DIGITS_CLASS, input_shape=SHAPE,
                            job=Job(steps.append, min_interval=0))
    assert result.exporter == "dynamo" and result.source_kind == "pytorch-state-dict"
    assert "DigitsCNN" in result.source_label
    assert list(dict.fromkeys(s.message for s in steps)) == [
        "Loading digits_cnn.pt", "Exporting to ONNX", "Checking the ONNX model against PyTorch", "Exported"]
    assert set(result.versions) == {"torch", "onnx", "onnxruntime"}
    assert str(ROOT) not in out.read_bytes().decode("latin-1")  # no stack traces naming local folders
    _check_digits_export(out, trained_digits_cnn())
    _only_output_left(tmp_path, "digits.onnx")


def test_pt2_program_gets_a_dynamic_batch(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "exported.onnx"
    result = export_to_onnx(corpus / "exported.pt2", out)  # shapes come from the program itself
    assert result.dynamic_batch and result.inputs[0].shape == ("batch", 1, 8, 8)
    assert any("fixed batch size" in n for n in result.notes)
    monkeypatch.syspath_prepend(str(ROOT / "tests" / "corpus"))
    from corpus_models import TinyNet

    net = TinyNet().eval()
    net.load_state_dict(torch.load(corpus / "state_dict.pt", weights_only=True))  # the same weights
    x = np.random.default_rng(1).standard_normal((7, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(_run_onnx(out, x), net(torch.from_numpy(x)).numpy(), atol=1e-5)
    fixed = export_to_onnx(corpus / "exported.pt2", tmp_path / "fixed.onnx", dynamic_batch=False)
    assert not fixed.dynamic_batch and fixed.inputs[0].shape == (2, 1, 8, 8) and fixed.checked_batches == (2,)


def test_whole_module_needs_trust(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "tests" / "corpus"))
    with pytest.raises(UntrustedPickle):
        export_to_onnx(corpus / "whole_module.pt", tmp_path / "m.onnx", input_shape=SHAPE)
    result = export_to_onnx(corpus / "whole_module.pt", tmp_path / "m.onnx", input_shape=SHAPE, trust=True)
    assert result.source_kind == "pytorch-module" and result.dynamic_batch
    assert _run_onnx(result.path, np.zeros((7, 1, 8, 8), np.float32)).shape == (7, 10)


def test_checkpoint_uses_the_weights_inside(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Models over 2 GB get their weights in a side file; a lowered limit sends this small one down that path.
    monkeypatch.setattr("workbench.core.export.SINGLE_FILE_LIMIT", 0)
    out = tmp_path / "c.onnx"
    result = export_to_onnx(corpus / "checkpoint.pth", out, model_class=TINY_CLASS, input_shape=SHAPE)
    assert result.source_kind == "pytorch-checkpoint"
    assert "Used the weights stored under 'model' in the checkpoint." in result.notes
    assert result.files == [out, tmp_path / "c.onnx.data"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.onnx", "c.onnx.data"]
    assert result.size_bytes == sum(p.stat().st_size for p in result.files) > 5_000  # 1,490 float32 weights
    assert _run_onnx(out, np.zeros((7, 1, 8, 8), np.float32)).shape == (7, 10)


def test_outputs_that_differ_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    # Convolutions and matrix products in onnxruntime and PyTorch round differently in the last bits, so a
    # tolerance of 0 cannot be met; the older file at the output path must survive untouched.
    out = tmp_path / "digits.onnx"
    out.write_bytes(b"older file")
    with pytest.raises(WorkbenchError, match=r"The exported model's outputs differ from PyTorch's by [0-9.e-]+ "
                                             r"\(limit 0\)") as err:
        export_to_onnx(SAMPLE / "digits_cnn.pt", out, model_class=DIGITS_CLASS, input_shape=SHAPE, tolerance=0.0)
    assert "not kept" in str(err.value)
    assert out.read_bytes() == b"older file"
    _only_output_left(tmp_path, "digits.onnx")


def test_state_dict_without_class_says_what_is_needed(tmp_path: Path) -> None:
    with pytest.raises(WorkbenchError) as err:
        export_to_onnx(SAMPLE / "digits_cnn.pt", tmp_path / "x.onnx", input_shape=SHAPE)
    message = str(err.value)
    assert "state_dict" in message and "--model-class path/to/model.py:ClassName" in message
    assert not (tmp_path / "x.onnx").exists()


def test_wrong_class_is_named_with_the_mismatch(tmp_path: Path) -> None:
    narrow = tmp_path / "narrow.py"
    source = (SAMPLE / "digits_cnn.py").read_text().replace("nn.Conv2d(1, 16", "nn.Conv2d(1, 8").replace(
        "nn.Conv2d(16, 32", "nn.Conv2d(8, 32")
    narrow.write_text(source)
    with pytest.raises(WorkbenchError, match=r"The weights in digits_cnn\.pt do not fit DigitsCNN: size mismatch "
                                             r"for features\.0\.weight"):
        export_to_onnx(SAMPLE / "digits_cnn.pt", tmp_path / "x.onnx", model_class=f"{narrow}:DigitsCNN",
                       input_shape=SHAPE)
    with pytest.raises(WorkbenchError, match="has no PyTorch model class named Nope.*Model classes in it: DigitsCNN"):
        export_to_onnx(SAMPLE / "digits_cnn.pt", tmp_path / "x.onnx", model_class=f"{narrow}:Nope", input_shape=SHAPE)


def test_missing_or_wrong_input_shape(tmp_path: Path) -> None:
    scripted = SAMPLE / "digits_cnn_scripted.pt"
    with pytest.raises(WorkbenchError, match="does not record the shape of its input.*--input-shape"):
        export_to_onnx(scripted, tmp_path / "x.onnx")
    with pytest.raises(WorkbenchError, match=r"fails when run in PyTorch on an input of shape 1x3x8x8: .*channels"):
        export_to_onnx(scripted, tmp_path / "x.onnx", input_shape=(1, 3, 8, 8))


def test_unsupported_operation_is_one_clear_sentence(tmp_path: Path) -> None:
    code = tmp_path / "svd_model.py"
    code.write_text("import torch\n\nclass Svd(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                    "        self.lin = torch.nn.Linear(4, 4)\n\n    def forward(self, x):\n"
                    "        return torch.linalg.svd(self.lin(x))[1]\n")
    weights = {f"lin.{k}": v for k, v in torch.nn.Linear(4, 4).state_dict().items()}
    torch.save(weights, tmp_path / "svd.pt")
    with pytest.raises(WorkbenchError) as err:
        export_to_onnx(tmp_path / "svd.pt", tmp_path / "svd.onnx", model_class=f"{code}:Svd", input_shape=(1, 4, 4))
    message = str(err.value)
    assert message.startswith("PyTorch could not export svd.pt to ONNX: No ONNX function found for")
    assert "svd" in message and "\n" not in message.split(". ")[0]
    assert not (tmp_path / "svd.onnx").exists()


def test_cancel_during_export_leaves_nothing(corpus: Path, tmp_path: Path) -> None:
    job: Job

    def cancel_when_exporting(p: Progress) -> None:
        if p.message == "Exporting to ONNX":
            job.cancel()

    job = Job(cancel_when_exporting, min_interval=0)
    with pytest.raises(Cancelled):
        export_to_onnx(corpus / "state_dict.pt", tmp_path / "t.onnx", model_class=TINY_CLASS, input_shape=SHAPE,
                       job=job)
    assert list(tmp_path.iterdir()) == []


def test_modules_import_nothing_heavy() -> None:
    code = ("import workbench.core.export, workbench.core.optimize.prune, workbench.commands.export, "
            "workbench.commands.prune, sys; print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'torch', 'onnx', 'onnxruntime', 'numpy', 'torch_pruning'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_export(tmp_path: Path) -> None:
    out = tmp_path / "cli.onnx"
    result = run_cli("export", str(SAMPLE / "digits_cnn.pt"), "-o", str(out), "--model-class", DIGITS_CLASS,
                     "--input-shape", "1,1,8,8", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["path"] == str(out) and data["dynamic_batch"] is True and data["opset"] == 18
    assert data["inputs"] == [{"name": "x", "shape": ["batch", 1, 8, 8], "dtype": "float32"}]
    assert data["max_abs_diff"]["output"] <= data["limits"]["output"]
    assert "[torch.onnx]" not in result.stdout + result.stderr and result.stderr == ""

    failed = run_cli("export", str(SAMPLE / "digits_cnn.pt"), "-o", str(tmp_path / "f.onnx"))
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.startswith("workbench: digits_cnn.pt is a PyTorch state_dict")
    assert len(failed.stderr.strip().splitlines()) == 1 and "Traceback" not in failed.stderr
