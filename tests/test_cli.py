"""The command line as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ROOT, run_cli

SAMPLE = ROOT / "resources" / "sample" / "digits_cnn.onnx"


HEADLESS = ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")


def test_no_display_says_so_and_shows_the_summary() -> None:
    result = run_cli(unset=HEADLESS)
    assert result.returncode == 0, result.stderr
    assert "no display was found" in result.stderr and "--screenshot" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert "digits_cnn.onnx - ONNX model" in result.stdout
    assert "image  float32  [batch, 1, 8, 8]" in result.stdout
    assert "logits  float32  [batch, 10]" in result.stdout


def test_file_argument_alone_inspects_it(corpus: Path) -> None:
    result = run_cli(str(corpus / "state_dict.pt"), unset=HEADLESS)
    assert result.returncode == 0, result.stderr
    assert "PyTorch state_dict" in result.stdout and "1,490" in result.stdout


def test_inspect_json_schema() -> None:
    result = run_cli("inspect", str(SAMPLE), "--json")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["format"] == "onnx"
    assert data["size_bytes"] == SAMPLE.stat().st_size
    assert data["files"] == [{"path": str(SAMPLE), "size_bytes": SAMPLE.stat().st_size, "role": "model"}]
    assert data["inputs"] == [{"name": "image", "shape": ["batch", 1, 8, 8], "dtype": "float32"}]
    assert data["outputs"] == [{"name": "logits", "shape": ["batch", 10], "dtype": "float32"}]
    assert data["operators"]["Conv"] == 2
    assert data["has_graph"] is True
    assert data["parameters"] == sum(_numel(t["shape"]) for t in data["tensors"])


def test_sparsity_flag(corpus: Path) -> None:
    result = run_cli("inspect", str(corpus / "sparse.onnx"), "--sparsity", "--json")
    data = json.loads(result.stdout)
    assert data["sparsity"] == 0.75 and data["tensors"][0]["sparsity"] == 0.75
    text = run_cli("inspect", str(corpus / "sparse.onnx"), "--sparsity").stdout
    assert "75.0% of stored values are zero" in text


def test_all_tensors_listing(corpus: Path) -> None:
    short = run_cli("inspect", str(SAMPLE)).stdout
    full = run_cli("inspect", str(SAMPLE), "--all-tensors").stdout
    assert "features.0.bias" in full
    assert full.count("float32") >= short.count("float32")


def test_bad_usage_is_one_clear_message() -> None:
    result = run_cli("inspect", "--no-such-flag")
    assert result.returncode == 2
    assert "unrecognized arguments" in result.stderr
    assert "Traceback" not in result.stderr


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and "Model Workbench" in result.stdout


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def test_closed_pipe_is_not_an_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    # 4,000 tensors: the listing is far larger than a pipe's buffer, so writing must hit the closed pipe
    inits = [numpy_helper.from_array(np.zeros(1, np.float32), f"tensor_with_a_long_name_{i:05d}") for i in range(4000)]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], inits)
    path = tmp_path / "many.onnx"
    onnx.save(helper.make_model(graph), path)
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "inspect", str(path), "--all-tensors"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.read(10)
    proc.stdout.close()  # like `| head -c 10`
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and b"Unexpected" not in err and b"Traceback" not in err
