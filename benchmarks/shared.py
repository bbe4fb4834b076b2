"""Pieces the benchmark scripts share: a generated MLP, and a subprocess that measures its own work."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # model factories and the local servers the tests use

from factories import chain_model  # noqa: E402 - after the path is set

__all__ = ["ROOT", "build_mlp", "chain_model", "measured"]

# A task runs as `python -c SNIPPET ARGS...` and prints its own timing and peak memory as JSON. Peak memory is
# VmHWM, the high-water mark of the process's own memory map. ru_maxrss is not usable: Linux carries the
# spawning process's peak over into the child's ru_maxrss at exec, so every task would report at least the
# benchmark script's own peak.
_SNIPPET = """\
import json, os, sys, time
{setup}
start = time.perf_counter()
{work}
seconds = time.perf_counter() - start
with open("/proc/self/status") as status:
    peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({{"seconds": seconds, "peak_kb": peak_kb}}))
"""


def measured(setup: str, work: str) -> str:
    """A ``python -c`` snippet that runs ``setup``, times ``work``, and prints ``{"seconds", "peak_kb"}``."""
    return _SNIPPET.format(setup=setup, work=work)


def build_mlp(path: Path, width: int, layers: int, classes: int = 1000) -> Path:
    """[batch, width] -> ``layers`` x (MatMul + Relu) -> MatMul -> [batch, classes], random float32 weights."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, current = [], [], "x"
    for i in range(layers):
        inits.append(numpy_helper.from_array((rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32),
                                             f"w{i}"))
        nodes += [helper.make_node("MatMul", [current, f"w{i}"], [f"m{i}"], name=f"mm{i}"),
                  helper.make_node("Relu", [f"m{i}"], [f"r{i}"], name=f"relu{i}")]
        current = f"r{i}"
    inits.append(numpy_helper.from_array(rng.standard_normal((width, classes)).astype(np.float32), "head"))
    nodes.append(helper.make_node("MatMul", [current, "head"], ["logits"], name="head"))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path
