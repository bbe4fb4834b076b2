"""Benchmark ``workbench.core.optimize.quantize`` against bare onnxruntime calls on the same model and data.

For each model, one run times (median of ``--rounds``, rounds alternate, imports warmed up first):

- *ours*: ``quantize(...)`` end to end (opening and checking the file, pre-processing with its fallbacks,
  quantizing, loading the result in onnxruntime once, counting what was quantized, moving it into place);
- *bare*: a single ``quantize_static`` / ``quantize_dynamic`` call with the same settings (no pre-processing);
- *bare+pre*: ``quant_pre_process`` then that call, as onnxruntime's documentation recommends;

and prints the ratios ours/bare and ours/bare+pre (1.00 = no overhead). Models: the bundled sample CNN with
the bundled digits (static int8); a generated conv net (``--channels`` wide, ``--convs`` 3x3 Conv+Relu layers
on 32x32 inputs, static int8, random calibration inputs); a generated MLP (``--width`` wide, ``--layers``
MatMul+Relu layers, dynamic int8). It also checks that ours and bare produce the same number of quantized
nodes, and exits 1 if they do not.

    .venv/bin/python benchmarks/bench_quantize.py [--rounds N] [--channels N] [--convs N] [--width N] [--layers N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_dynamic,
    quantize_static,
)
from shared import build_mlp

from workbench.core.evaluate.datasets import EvalData, sample_data
from workbench.core.optimize.calibration import CALIBRATION_SAMPLES
from workbench.core.optimize.graph_ops import count_quantized
from workbench.core.optimize.quantize import quantize
from workbench.core.ortutil import ort_logs
from workbench.resources import sample_model


def build_convnet(path: Path, channels: int, convs: int, classes: int = 100) -> Path:
    """[batch, 3, 32, 32] -> ``convs`` x (3x3 Conv + Relu) -> global average pool -> Gemm -> [batch, classes]."""
    rng = np.random.default_rng(0)
    nodes, inits, current, cin = [], [], "image", 3
    for i in range(convs):
        inits += [numpy_helper.from_array((rng.standard_normal((channels, cin, 3, 3)) / np.sqrt(cin * 9))
                                          .astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(np.zeros(channels, np.float32), f"b{i}")]
        nodes += [helper.make_node("Conv", [current, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}", pads=[1] * 4),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        current, cin = f"r{i}", channels
    inits += [numpy_helper.from_array(rng.standard_normal((classes, channels)).astype(np.float32), "fc"),
              numpy_helper.from_array(np.zeros(classes, np.float32), "fc_b"),
              numpy_helper.from_array(np.array([0, -1], np.int64), "flat")]
    nodes += [helper.make_node("GlobalAveragePool", [current], ["pooled"], name="pool"),
              helper.make_node("Reshape", ["pooled", "flat"], ["flat_out"], name="reshape"),
              helper.make_node("Gemm", ["flat_out", "fc", "fc_b"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "convnet", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                               ["batch", 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


class Reader:
    """The plain calibration reader a user of onnxruntime would write: batches of 16."""

    def __init__(self, data: EvalData) -> None:
        arrays = data.subset(CALIBRATION_SAMPLES).inputs
        n = len(next(iter(arrays.values())))
        self.batches = iter([{k: v[i:i + 16] for k, v in arrays.items()} for i in range(0, n, 16)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


def bare_static(src: Path, out: Path, data: EvalData) -> None:
    quantize_static(str(src), str(out), Reader(data), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)


def bare_dynamic(src: Path, out: Path, data: EvalData) -> None:
    quantize_dynamic(str(src), str(out), op_types_to_quantize=["MatMul", "Gemm"], per_channel=True,
                     weight_type=QuantType.QInt8)


def with_pre(bare: Callable[[Path, Path, EvalData], None]) -> Callable[[Path, Path, EvalData], None]:
    def run(src: Path, out: Path, data: EvalData) -> None:
        pre = out.with_name(out.stem + "_pre.onnx")
        quant_pre_process(str(src), str(pre))
        bare(pre, out, data)
    return run


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(name: str, src: Path, data: EvalData, method: str, work: Path, rounds: int) -> bool:
    bare = bare_static if method == "static-int8" else bare_dynamic
    steps: dict[str, Callable[[Path], object]] = {
        "ours": lambda out: quantize(src, out, method=method, calibration=data),
        "bare": lambda out: bare(src, out, data),
        "bare+pre": lambda out: with_pre(bare)(src, out, data),
    }
    runs: dict[str, list[float]] = {label: [] for label in steps}
    for r in range(rounds + 1):  # round 0 warms caches and is discarded
        for label, step in steps.items():
            out = work / f"{name}_{label}_{r}.onnx"
            with ort_logs():  # keep onnxruntime's chatter off the table, for both sides
                seconds = timed(lambda step=step, out=out: step(out))
            if r:
                runs[label].append(seconds)
    ours, plain, pre = (statistics.median(runs[k]) for k in ("ours", "bare", "bare+pre"))
    ours_count = count_quantized(work / f"{name}_ours_1.onnx", method)[1]
    bare_count = count_quantized(work / f"{name}_bare_1.onnx", method)[1]
    size = src.stat().st_size / 1e6
    print(f"{name:<22} {size:7.1f} MB  {method:<13} ours {ours * 1000:8.1f} ms  bare {plain * 1000:8.1f} ms  "
          f"bare+pre {pre * 1000:8.1f} ms  ours/bare {ours / plain:5.2f}  ours/bare+pre {ours / pre:5.2f}  "
          f"quantized ours {ours_count} bare {bare_count}")
    return ours_count == bare_count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--convs", type=int, default=8)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        conv = build_convnet(work / "convnet.onnx", args.channels, args.convs)
        mlp = build_mlp(work / "mlp.onnx", args.width, args.layers)
        cases = [
            ("sample CNN", sample_model(), sample_data(), "static-int8"),
            (f"convnet {args.convs}x{args.channels}ch", conv,
             EvalData({"image": rng.standard_normal((64, 3, 32, 32)).astype(np.float32)}, None, "random", True),
             "static-int8"),
            (f"MLP {args.layers}x{args.width}", mlp,
             EvalData({"x": rng.standard_normal((64, args.width)).astype(np.float32)}, None, "random", True),
             "dynamic-int8"),
        ]
        print(f"median of {args.rounds} rounds; ratio 1.00 = no overhead")
        same = [bench(name, src, data, method, work, args.rounds) for name, src, data, method in cases]
    if not all(same):
        print("ours and bare quantized a different number of nodes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
