"""The bundled sample: its figures are real, and its three forms agree."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.core.formats import open_model
from workbench.resources import sample_dir, sample_model


def test_sample_accuracy_is_measured_not_typed() -> None:
    import onnxruntime as ort

    data = np.load(sample_dir() / "digits_test.npz")
    x, y = data["x"], data["y"]
    assert x.shape[1:] == (1, 8, 8) and x.dtype == np.float32 and len(x) == len(y) == 450
    session = ort.InferenceSession(str(sample_model()), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"image": x})[0]
    accuracy = float((logits.argmax(1) == y).mean())
    manifest = json.loads((sample_dir() / "sample.json").read_text())
    assert accuracy >= 0.95
    assert accuracy == pytest.approx(manifest["test_accuracy"])


def test_sample_forms_agree() -> None:
    import torch

    onnx_doc = open_model(sample_model())
    sd_doc = open_model(sample_dir() / "digits_cnn.pt")
    ts_doc = open_model(sample_dir() / "digits_cnn_scripted.pt")
    assert sd_doc.format == "pytorch-state-dict" and ts_doc.format == "torchscript"
    assert sd_doc.parameters == ts_doc.parameters
    # ONNX adds a small shape constant for Flatten; the weights are the same
    weights = {t.name: t.shape for t in onnx_doc.tensors if t.dtype == "float32"}
    assert weights == {t.name: t.shape for t in sd_doc.tensors}
    module = torch.jit.load(str(sample_dir() / "digits_cnn_scripted.pt"))
    x = torch.from_numpy(np.load(sample_dir() / "digits_test.npz")["x"][:16])
    import onnxruntime as ort

    session = ort.InferenceSession(str(sample_model()), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(module(x).detach().numpy(), session.run(None, {"image": x.numpy()})[0], atol=1e-4)
