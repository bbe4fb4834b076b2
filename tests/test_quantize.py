"""Quantization with onnxruntime: what each method writes, measured from the files, and the accuracy-aware search."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import ROOT, run_cli
from onnx import TensorProto, helper, numpy_helper

import workbench.core.optimize.quantize as qmod
from workbench.core.errors import Cancelled, FileProblem, WorkbenchError
from workbench.core.evaluate.datasets import EvalData, sample_data
from workbench.core.jobs import Job
from workbench.core.optimize.accuracy_aware import quantize_within
from workbench.core.optimize.calibration import RANDOM_CALIBRATION_WARNING
from workbench.core.optimize.graph_ops import gemm_to_matmul
from workbench.core.optimize.quantize import quantize

SAMPLE = ROOT / "resources" / "sample" / "digits_cnn.onnx"
RNG = np.random.default_rng(0)


# --- helpers and small models made with onnx.helper -------------------------------------------------


def digest(*paths: Path) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def accuracy(path: Path, data: EvalData) -> float:
    return float((run(path, dict(data.inputs)).argmax(1) == data.labels).mean())


def ops(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in onnx.load(str(path), load_external_data=False).graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return counts


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def save(graph: onnx.GraphProto, path: Path, opset: int = 17) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def mlp(path: Path) -> Path:
    """MatMul -> Relu -> Gemm(transB=1, alpha=0.5, beta=2): a transformer-like block in miniature."""
    w1 = numpy_helper.from_array(RNG.standard_normal((64, 128)).astype(np.float32) / 8, "W1")
    w2 = numpy_helper.from_array(RNG.standard_normal((10, 128)).astype(np.float32) / 8, "W2")
    b2 = numpy_helper.from_array(RNG.standard_normal(10).astype(np.float32), "b2")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W1"], ["h"], name="mm"), helper.make_node("Relu", ["h"], ["r"], name="relu"),
         helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], name="gemm", transB=1, alpha=0.5, beta=2.0)],
        "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], [w1, w2, b2])
    return save(graph, path)


def conv_opset11(path: Path) -> Path:
    w = numpy_helper.from_array(RNG.standard_normal((8, 3, 3, 3)).astype(np.float32), "W")
    b = numpy_helper.from_array(RNG.standard_normal(8).astype(np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"], name="relu")],
        "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 16, 16])], [w, b])
    return save(graph, path, opset=11)


def if_model(path: Path) -> Path:
    """All the work (two MatMuls with weights) sits inside the branches of an If."""
    def branch(name: str) -> onnx.GraphProto:
        w = numpy_helper.from_array(RNG.standard_normal((16, 8)).astype(np.float32), f"W_{name}")
        return helper.make_graph([helper.make_node("MatMul", ["x", f"W_{name}"], [f"y_{name}"], name=f"mm_{name}")],
                                 name, [], [helper.make_tensor_value_info(f"y_{name}", TensorProto.FLOAT, ["N", 8])],
                                 [w])

    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], name="if", then_branch=branch("then"), else_branch=branch("else"))],
        "if_model", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16]),
                     helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])])
    return save(graph, path)


@pytest.fixture(scope="module")
def digits() -> EvalData:
    return sample_data()


# --- the methods ----------------------------------------------------------------------------------


def test_static_int8_sample_is_3x_smaller_and_keeps_accuracy(tmp_path: Path, digits: EvalData) -> None:
    before = digest(SAMPLE)
    out = tmp_path / "digits_int8.onnx"
    result = quantize(SAMPLE, out, method="static-int8")
    assert digest(SAMPLE) == before
    assert result.output_files == [out] and leftovers(tmp_path) == []
    assert SAMPLE.stat().st_size / out.stat().st_size >= 3
    assert result.size_after == out.stat().st_size and result.size_before == SAMPLE.stat().st_size
    assert abs(accuracy(out, digits) - accuracy(SAMPLE, digits)) <= 0.01
    assert result.quantized == result.quantizable == 4 and result.quantizable_by_type == {"Conv": 2, "Gemm": 2}
    assert result.counts["QuantizeLinear"] > 0 and result.counts["DequantizeLinear"] > 0
    assert result.settings["per_channel"] is True and "digits" in result.settings["calibration"]
    assert result.warnings == []
    assert json.loads(json.dumps(result.to_dict()))["method"] == "static-int8"


def test_auto_explains_its_choice_in_one_line(tmp_path: Path) -> None:
    conv = quantize(SAMPLE, tmp_path / "a.onnx")
    assert conv.method == "static-int8" and "convolution-heavy" in conv.method_reason
    dense = quantize(mlp(tmp_path / "mlp.onnx"), tmp_path / "b.onnx")
    assert dense.method == "dynamic-int8" and "MatMul/Gemm" in dense.method_reason
    assert "\n" not in conv.method_reason + dense.method_reason


def test_dynamic_int8_quantizes_matmul_and_gemm_never_convs(tmp_path: Path) -> None:
    src = mlp(tmp_path / "mlp.onnx")
    before = digest(src)
    result = quantize(src, tmp_path / "dyn.onnx", method="dynamic-int8")
    assert digest(src) == before
    assert result.counts["MatMulInteger"] == 2 and result.counts["DynamicQuantizeLinear"] >= 1
    assert "ConvInteger" not in ops(result.output_path) and "Gemm" not in ops(result.output_path)
    assert any("Gemm" in n and "MatMul + Add" in n for n in result.notes)
    x = RNG.standard_normal((8, 64)).astype(np.float32)
    ref = run(src, {"x": x})
    assert np.abs(run(result.output_path, {"x": x}) - ref).max() < 0.05 * np.abs(ref).max()
    on_cnn = quantize(SAMPLE, tmp_path / "cnn_dyn.onnx", method="dynamic-int8")
    assert "ConvInteger" not in on_cnn.counts and on_cnn.counts["MatMulInteger"] == 2


def test_fp16_halves_the_weights_and_keeps_float32_io(tmp_path: Path, digits: EvalData) -> None:
    result = quantize(SAMPLE, tmp_path / "fp16.onnx", method="fp16")
    assert result.quantized == result.quantizable == 8 and result.unit == "weight tensors"
    assert 1.8 < result.size_ratio < 2.1
    model = onnx.load(str(result.output_path))
    floats = {t.data_type for t in model.graph.initializer} - {TensorProto.INT64}
    assert floats == {TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    x = digits.inputs["image"][:32]
    assert np.abs(run(result.output_path, {"image": x}) - run(SAMPLE, {"image": x})).max() < 0.05
    assert any("slower" in n for n in result.notes)


def test_int4_rewrites_gemm_and_stays_close(tmp_path: Path) -> None:
    src = mlp(tmp_path / "mlp.onnx")
    result = quantize(src, tmp_path / "int4.onnx", method="int4")
    assert result.counts == {"MatMulNBits": 2} and result.quantized == 2
    assert "Gemm" not in ops(result.output_path)
    assert result.settings["accuracy_level"] == 4
    x = RNG.standard_normal((16, 64)).astype(np.float32)
    ref = run(src, {"x": x})
    assert np.abs(run(result.output_path, {"x": x}) - ref).max() < 0.15 * np.abs(ref).max()


def test_gemm_rewrite_is_exact(tmp_path: Path) -> None:
    src = mlp(tmp_path / "mlp.onnx")
    model = onnx.load(str(src))
    assert gemm_to_matmul(model.graph) == 1
    onnx.save(model, str(tmp_path / "rewritten.onnx"))
    assert ops(tmp_path / "rewritten.onnx") == {"MatMul": 2, "Relu": 1, "Add": 1}
    x = RNG.standard_normal((4, 64)).astype(np.float32)
    np.testing.assert_allclose(run(tmp_path / "rewritten.onnx", {"x": x}), run(src, {"x": x}), rtol=1e-5, atol=1e-5)


def test_opset_11_is_upgraded_for_per_channel(tmp_path: Path) -> None:
    src = conv_opset11(tmp_path / "old.onnx")
    data = EvalData({"x": RNG.standard_normal((32, 3, 16, 16)).astype(np.float32)}, None, "test inputs")
    result = quantize(src, tmp_path / "q.onnx", method="static-int8", calibration=data)
    assert any("opset 11" in n and "upgraded to 13" in n for n in result.notes)
    model = onnx.load(str(result.output_path))
    assert next(o.version for o in model.opset_import if o.domain == "") >= 13
    inits = {t.name: t for t in model.graph.initializer}
    weight_dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0].startswith("W"))
    assert list(inits[weight_dq.input[1]].dims) == [8]  # one scale per output channel
    assert result.quantized == 1 and onnx.load(str(src)).opset_import[0].version == 11


def test_external_data_input_and_output(tmp_path: Path, digits: EvalData, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "ext"
    folder.mkdir()
    onnx.save(onnx.load(str(SAMPLE)), str(folder / "model.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)
    inputs = [folder / "model.onnx", folder / "model.onnx.data"]
    before = digest(*inputs)
    result = quantize(inputs[0], tmp_path / "single.onnx", method="static-int8")
    assert result.size_before == sum(p.stat().st_size for p in inputs)
    assert result.output_files == [tmp_path / "single.onnx"] and result.quantized == 4
    monkeypatch.setattr(qmod, "LARGE_MODEL_BYTES", 0)  # as if it were over 2 GB: the output keeps a side file
    for method in ("static-int8", "int4"):
        out = tmp_path / "big" / f"{method}.onnx"
        big = quantize(inputs[0], out, method=method)
        assert big.output_files == [out, out.parent / f"{out.name}.data"]
        assert big.size_after == sum(p.stat().st_size for p in big.output_files)
        assert accuracy(out, digits) > 0.95 and leftovers(out.parent) == []
    assert digest(*inputs) == before and sorted(folder.iterdir()) == sorted(inputs)


def test_nothing_quantized_inside_if_subgraphs_is_a_warning(tmp_path: Path) -> None:
    silero = Path(str(resources.files("silero_vad") / "data" / "silero_vad.onnx"))
    before = digest(silero)
    result = quantize(silero, tmp_path / "vad.onnx")  # auto: the main graph is one If node
    assert result.method == "dynamic-int8" and "If/Loop subgraphs" in result.method_reason
    assert result.quantized == 0 and result.nothing_quantized
    assert result.warnings and result.warnings[0].startswith("nothing was quantized")
    assert "If/Loop subgraphs" in result.warnings[0] and "Conv" in result.warnings[0]
    assert digest(silero) == before
    src = if_model(tmp_path / "if.onnx")
    data = EvalData({"x": RNG.standard_normal((8, 16)).astype(np.float32), "c": np.ones(8, bool)}, None, "test")
    for method in ("static-int8", "dynamic-int8"):
        r = quantize(src, tmp_path / f"if_{method}.onnx", method=method, calibration=data)
        assert r.quantized == 0 and r.quantizable == r.quantizable_in_subgraphs == 2
        assert r.warnings[0].startswith("nothing was quantized") and "If/Loop subgraphs" in r.warnings[0]


def test_static_without_calibration_data_asks_for_it(tmp_path: Path) -> None:
    src = conv_opset11(tmp_path / "conv.onnx")
    with pytest.raises(WorkbenchError, match="needs calibration data") as info:
        quantize(src, tmp_path / "q.onnx", method="static-int8")
    assert "--data" in str(info.value) and not (tmp_path / "q.onnx").exists() and leftovers(tmp_path) == []
    noisy = quantize(src, tmp_path / "q.onnx", method="static-int8", allow_random_calibration=True)
    assert RANDOM_CALIBRATION_WARNING in noisy.warnings and noisy.settings["calibration"] == "random numbers"


def test_exclusions_and_bad_names(tmp_path: Path) -> None:
    result = quantize(SAMPLE, tmp_path / "q.onnx", method="static-int8", exclude_nodes=["node_linear_1"])
    assert result.excluded_nodes == ["node_linear_1"] and result.quantized == 3
    model = onnx.load(str(result.output_path))
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    last = next(n for n in model.graph.node if n.name == "node_linear_1")
    assert producers.get(last.input[1]) != "DequantizeLinear"
    with pytest.raises(WorkbenchError, match="no node named 'nope'"):
        quantize(SAMPLE, tmp_path / "r.onnx", exclude_nodes=["nope"])


def test_refuses_to_overwrite_input_and_cleans_up_when_cancelled(tmp_path: Path) -> None:
    copy = tmp_path / "model.onnx"
    copy.write_bytes(SAMPLE.read_bytes())
    with pytest.raises(FileProblem, match="overwrite"):
        quantize(copy, copy)
    job = Job()
    job.cancel()
    with pytest.raises(Cancelled):
        quantize(copy, tmp_path / "out.onnx", job=job)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


# --- accuracy-aware -------------------------------------------------------------------------------


def _squashed_calibration(digits: EvalData) -> EvalData:
    """Inputs scaled down to 30%: ranges measured on them clip real inputs, so int8 loses accuracy."""
    return EvalData({"image": digits.inputs["image"][:64] * 0.3}, None, "squashed inputs")


def test_accuracy_aware_excludes_nodes_until_the_limit_holds(tmp_path: Path, digits: EvalData) -> None:
    out = tmp_path / "aware.onnx"
    search = quantize_within(SAMPLE, out, max_drop=0.02, data=digits, calibration=_squashed_calibration(digits))
    assert search.metric == "accuracy" and search.met and search.result is not None
    first, last = search.attempts[0], search.attempts[-1]
    assert first.drop > 0.02 and not first.within_limit and first.excluded == []
    assert last.excluded and last.within_limit and last.drop <= 0.02
    assert search.final_drop == last.drop and search.result.excluded_nodes == last.excluded
    measured = accuracy(out, digits)  # the figure reported is the figure of the file written
    assert measured == pytest.approx(last.score) and search.baseline - measured <= 0.02
    assert "Within the limit" in search.message


def test_accuracy_aware_says_when_the_budget_runs_out(tmp_path: Path, digits: EvalData) -> None:
    unlabelled = EvalData(digits.inputs, None, "digits without labels")
    out = tmp_path / "aware.onnx"
    search = quantize_within(SAMPLE, out, max_drop=0.0, data=unlabelled, calibration=_squashed_calibration(digits),
                             max_rounds=1)
    assert search.metric.startswith("top-1 agreement") and search.baseline == 1.0
    assert not search.met and len(search.attempts) == 1 and search.attempts[0].drop > 0
    assert "not met" in search.message and "round(s) ran out" in search.message
    assert search.result is not None and search.message in search.result.warnings and out.exists()
    nothing = quantize_within(SAMPLE, tmp_path / "none.onnx", max_drop=0.0, data=unlabelled,
                              calibration=_squashed_calibration(digits), max_rounds=1, keep_best=False)
    assert nothing.result is None and "nothing was written" in nothing.message
    assert not (tmp_path / "none.onnx").exists()


# --- the command line -----------------------------------------------------------------------------


def test_cli_text_json_and_errors(tmp_path: Path) -> None:
    text = run_cli("quantize", str(SAMPLE), "-o", str(tmp_path / "q.onnx"), "--method", "static-int8")
    assert text.returncode == 0, text.stderr
    assert "static int8" in text.stdout and "4 of 4 operators" in text.stdout and "x smaller" in text.stdout
    assert text.stderr == ""
    js = run_cli("quantize", str(SAMPLE), "-o", str(tmp_path / "d.onnx"), "--method", "dynamic-int8", "--json")
    assert js.returncode == 0, js.stderr
    data = json.loads(js.stdout)
    assert data["method"] == "dynamic-int8" and data["counts"]["MatMulInteger"] == 2 and data["size_ratio"] > 2
    npz = tmp_path / "data.npz"
    np.savez(npz, x=RNG.standard_normal((16, 3, 16, 16)).astype(np.float32))
    src = conv_opset11(tmp_path / "conv.onnx")
    aware = run_cli("quantize", str(src), "-o", str(tmp_path / "c.onnx"), "--data", str(npz), "--max-drop", "5",
                    "--json")
    report = json.loads(aware.stdout)
    assert aware.returncode == (0 if report["met"] else 1), aware.stderr
    assert report["metric"].startswith("top-1 agreement") and report["attempts"][0]["round"] == 1
    assert report["result"]["settings"]["calibration"] == "data.npz (16 samples)"
    missing = run_cli("quantize", str(src), "-o", str(tmp_path / "e.onnx"), "--method", "static-int8")
    assert missing.returncode == 1 and "needs calibration data" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and "Traceback" not in missing.stderr
