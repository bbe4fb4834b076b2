"""Pruning: unstructured magnitude pruning of ONNX weights, structured channel pruning of PyTorch models."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import ROOT, run_cli
from factories import trained_digits_cnn
from onnx import numpy_helper

from workbench.commands.prune import render_prune
from workbench.core.errors import UnsupportedFormat, WorkbenchError
from workbench.core.evaluate.datasets import sample_data
from workbench.core.optimize.prune import gzip_size, prune_onnx_magnitude, prune_structured

SAMPLE = ROOT / "resources" / "sample"
SAMPLE_ONNX = SAMPLE / "digits_cnn.onnx"
DIGITS_CLASS = f"{SAMPLE / 'digits_cnn.py'}:DigitsCNN"

ort = pytest.importorskip("onnxruntime")


def _run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _weights(path: Path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def test_magnitude_half_of_the_sample(tmp_path: Path) -> None:
    digest = hashlib.sha256(SAMPLE_ONNX.read_bytes()).hexdigest()
    out = tmp_path / "sparse.onnx"
    result = prune_onnx_magnitude(SAMPLE_ONNX, out, sparsity=0.5)
    assert hashlib.sha256(SAMPLE_ONNX.read_bytes()).hexdigest() == digest  # the input is never changed
    assert result.files == [out] and sorted(p.name for p in tmp_path.iterdir()) == ["sparse.onnx"]
    assert result.method == "magnitude" and result.requested == 0.5
    assert result.pruned_tensors == ["features.2.weight", "classifier.1.weight", "classifier.3.weight"]

    before, after = _weights(SAMPLE_ONNX), _weights(out)
    pruned = [after[n] for n in result.pruned_tensors]
    measured = sum(int((a == 0).sum()) for a in pruned) / sum(a.size for a in pruned)
    assert measured == pytest.approx(0.5, abs=1e-3) and result.achieved == pytest.approx(measured)
    for name in before:  # biases and the small first convolution are untouched
        if name not in result.pruned_tensors:
            np.testing.assert_array_equal(before[name], after[name])
    kept = np.concatenate([after[n][after[n] != 0] for n in result.pruned_tensors])
    dropped = np.concatenate([before[n][after[n] == 0] for n in result.pruned_tensors])
    assert np.abs(dropped).max() <= np.abs(kept).min()  # global: the smallest went, wherever they were

    assert result.size_after == result.size_before == SAMPLE_ONNX.stat().st_size == out.stat().st_size
    assert result.gzip_after < 0.7 * result.gzip_before
    assert result.gzip_before == gzip_size([SAMPLE_ONNX]) and result.gzip_after == gzip_size([out])
    assert result.parameters_before == result.parameters_after and result.nonzero_after < result.nonzero_before
    assert any("only the compressed (download) size shrinks" in n for n in result.notes)

    data = sample_data()
    accuracy = float((_run_onnx(out, data.inputs["image"]).argmax(1) == data.labels).mean())
    assert accuracy > 0.9  # measured 0.980 (sample: 0.984); half the weights of this small CNN are near zero
    text = render_prune(result)
    assert "50.0% of the weights set to zero" in text and "Compressed (gzip)" in text
    assert json.loads(json.dumps(result.to_dict()))["achieved"] == result.achieved


def test_magnitude_keeps_external_data(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "pruned.onnx"
    result = prune_onnx_magnitude(corpus / "external" / "model.onnx", out, sparsity=0.5)
    assert result.files == [out, tmp_path / "pruned.onnx.data"] and all(p.exists() for p in result.files)
    assert result.size_before == sum(p.stat().st_size for p in (corpus / "external").iterdir())
    assert result.size_after == sum(p.stat().st_size for p in result.files)
    assert result.pruned_tensors == ["fc.weight"] and result.achieved == pytest.approx(0.5, abs=1e-3)
    assert _run_onnx(out, np.ones((2, 1, 8, 8), np.float32)).shape == (2, 10)  # saved with a fixed batch


def test_magnitude_refuses_what_it_cannot_do(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(WorkbenchError, match="between 0 and 1"):
        prune_onnx_magnitude(SAMPLE_ONNX, tmp_path / "x.onnx", sparsity=1.0)
    with pytest.raises(UnsupportedFormat, match="not ONNX"):
        prune_onnx_magnitude(SAMPLE / "digits_cnn.pt", tmp_path / "x.onnx", sparsity=0.5)
    with pytest.raises(WorkbenchError, match="no Conv, Gemm or MatMul weights"):
        prune_onnx_magnitude(corpus / "if_subgraph.onnx", tmp_path / "x.onnx", sparsity=0.5)
    assert list(tmp_path.iterdir()) == []


def test_channels_really_shrink_digits_cnn(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    tp = pytest.importorskip("torch_pruning")
    out = tmp_path / "narrow.onnx"
    result = prune_structured(SAMPLE / "digits_cnn.pt", out, ratio=0.5, model_class=DIGITS_CLASS,
                              input_shape=(1, 1, 8, 8))
    assert result.method == "channels" and result.achieved == 0.5
    assert result.parameters_before == 38_282 and result.parameters_after < 0.3 * result.parameters_before
    assert result.pruned_tensors == ["features.0", "features.2", "classifier.1"]
    assert out.stat().st_size == result.size_after < 0.4 * SAMPLE_ONNX.stat().st_size  # the unpruned ONNX
    assert result.gzip_after < result.gzip_before
    assert result.export is not None and result.export.dynamic_batch
    ours = onnx.load(str(out))
    conv = next(t for t in ours.graph.initializer if t.name == "features.0.weight")
    assert list(conv.dims) == [8, 1, 3, 3]  # 16 channels became 8: removed, not zeroed

    # The same pruning done here directly with Torch-Pruning gives the PyTorch model to check against.
    model = trained_digits_cnn()
    tp.pruner.MetaPruner(model, torch.randn(1, 1, 8, 8), importance=tp.importance.MagnitudeImportance(p=2),
                         pruning_ratio=0.5, ignored_layers=[model.classifier[3]]).step()
    assert sum(p.numel() for p in model.parameters()) == result.parameters_after
    data = sample_data()
    x = data.inputs["image"]
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = _run_onnx(out, x)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert _run_onnx(out, x[:7]).shape == (7, 10)
    accuracy = float((got.argmax(1) == data.labels).mean())
    assert accuracy == float((expected.argmax(1) == data.labels).mean())  # 0.351 measured: needs fine-tuning
    assert any("not fine-tuned" in n for n in result.notes)
    assert "38,282 -> 9,802" in render_prune(result)


def test_channels_need_the_python_class(tmp_path: Path) -> None:
    pytest.importorskip("torch_pruning")
    with pytest.raises(UnsupportedFormat, match="removing channels needs the model's Python class"):
        prune_structured(SAMPLE / "digits_cnn_scripted.pt", tmp_path / "x.onnx", ratio=0.5,
                         input_shape=(1, 1, 8, 8))
    with pytest.raises(WorkbenchError, match="--model-class"):
        prune_structured(SAMPLE / "digits_cnn.pt", tmp_path / "x.onnx", ratio=0.5, input_shape=(1, 1, 8, 8))
    assert list(tmp_path.iterdir()) == []


def test_cli_prune(tmp_path: Path) -> None:
    out = tmp_path / "sparse.onnx"
    result = run_cli("prune", str(SAMPLE_ONNX), "-o", str(out), "--sparsity", "0.5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Pruned digits_cnn.onnx into {out}: 50.0% of the weights set to zero")
    assert "155.9 KB -> 155.9 KB" in result.stdout and out.exists()

    as_json = run_cli("prune", str(SAMPLE_ONNX), "-o", str(out), "--sparsity", "0.25", "--json")
    assert json.loads(as_json.stdout)["achieved"] == pytest.approx(0.25, abs=1e-3)

    wrong = run_cli("prune", str(SAMPLE_ONNX), "-o", str(tmp_path / "x.onnx"), "--channels", "0.5")
    assert wrong.returncode == 1 and "--channels needs the PyTorch model" in wrong.stderr
    bad = run_cli("prune", str(SAMPLE_ONNX), "-o", str(tmp_path / "x.onnx"), "--sparsity", "2")
    assert bad.returncode == 2 and "must be between 0 and 1" in bad.stderr
