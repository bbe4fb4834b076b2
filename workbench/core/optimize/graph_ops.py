"""ONNX graph work for quantization: walking subgraphs, counting what is quantized, and preparing the copy the
quantizer reads (opset upgrade, onnxruntime's pre-processing, Gemm rewritten as MatMul + Add, node names).

Functions that change a graph do so in place, on the caller's copy; onnx loads only when a function runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import WorkbenchError
from ..text import one_line

if TYPE_CHECKING:
    import numpy as np
    import onnx

CONV_OPS = ("Conv", "ConvTranspose")
MATMUL_OPS = ("MatMul", "Gemm")
WEIGHT_OPS = CONV_OPS + MATMUL_OPS + ("LSTM", "GRU", "RNN", "Attention")
# compute nodes that run on integers; DynamicQuantizeLinear is a helper and counted but not as work
INTEGER_OPS = ("ConvInteger", "MatMulInteger", "MatMulNBits", "QGemm", "DynamicQuantizeMatMul", "QAttention",
               "DynamicQuantizeLSTM")
COUNTED_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear") + INTEGER_OPS
FLOAT, FLOAT16 = 1, 10  # onnx.TensorProto data types


def count_quantized(path: Path, method: str) -> tuple[dict[str, int], int]:
    """Quantization nodes by type (all graphs), and how many candidates the file holds quantized."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts: Counter[str] = Counter()
    fed_by_dq = 0
    fp16 = weight_tensors(model.graph, FLOAT16)
    for graph in graphs(model.graph):
        producers = {o: n.op_type for n in graph.node for o in n.output}
        for n in graph.node:
            if n.op_type in COUNTED_OPS or n.op_type.startswith("QLinear"):
                counts[n.op_type] += 1
            if n.op_type in CONV_OPS + MATMUL_OPS and any(producers.get(i) == "DequantizeLinear" for i in n.input[1:2]):
                fed_by_dq += 1
    if fp16:
        counts["float16 weights"] = fp16
    if method == "fp16":
        return dict(counts), fp16
    integer = sum(v for k, v in counts.items() if k in INTEGER_OPS or k.startswith("QLinear"))
    return dict(counts), fed_by_dq + integer


def model_files(path: Path) -> list[Path]:
    """An ONNX file followed by the external data files it refers to."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    locations = dict.fromkeys(e.value for g in graphs(model.graph) for t in g.initializer
                              for e in t.external_data if e.key == "location")
    return [path, *(path.parent / loc for loc in locations)]


def graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """A graph and, recursively, every subgraph (If branches, Loop and Scan bodies)."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from graphs(attr.g)
            for sub in attr.graphs:
                yield from graphs(sub)


def subgraph_ops(graph: onnx.GraphProto) -> Counter[str]:
    """Operator types inside the subgraphs of ``graph`` (not in the graph itself), with counts."""
    counts: Counter[str] = Counter()
    for sub in list(graphs(graph))[1:]:
        counts.update(n.op_type for n in sub.node)
    return counts


def weight_tensors(graph: onnx.GraphProto, data_type: int) -> int:
    """Stored tensors of ``data_type`` (initializers and Constant nodes, subgraphs included)."""
    count = 0
    for g in graphs(graph):
        count += sum(1 for t in g.initializer if t.data_type == data_type)
        count += sum(1 for n in g.node if n.op_type == "Constant" for a in n.attribute
                     if a.name == "value" and a.t.data_type == data_type and len(a.t.dims) > 0)
    return count


def ensure_opset(model: onnx.ModelProto, per_channel: bool, path: Path, notes: list[str],
                 warnings: list[str]) -> tuple[bool, bool]:
    """Upgrade ``model`` in place to the opset int8 needs (13 for per-channel): (per-channel to use, upgraded)."""
    from onnx import version_converter

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    need = 13 if per_channel else 11
    if opset >= need:
        return per_channel, False
    try:
        upgraded = version_converter.convert_version(model, need)
    except Exception as exc:  # noqa: BLE001 - the converter raises many kinds; all mean "cannot upgrade"
        if per_channel and opset >= 11:
            warnings.append(f"the model's opset {opset} could not be upgraded to 13 ({one_line(exc)}), so weights "
                            f"were quantized per tensor instead of per channel, which may cost accuracy")
            return False, False
        raise WorkbenchError(f"{path.name} uses ONNX opset {opset}, and it could not be upgraded to {need} for int8 "
                             f"quantization ({one_line(exc)}).", hint="Re-export the model with a newer opset.",
                             path=path) from None
    model.CopyFrom(upgraded)
    notes.append(f"The model used ONNX opset {opset}; the copy was upgraded to {need}, because "
                 + ("per-channel int8 needs opset 13 or newer." if per_channel else "int8 needs opset 11 or newer."))
    return per_channel, True


def preprocess(path: Path, work: Path, large: bool, notes: list[str]) -> Path:
    """onnxruntime's recommended shape inference and clean-up; falls back step by step when it fails."""
    from onnxruntime.quantization import quant_pre_process

    out = work / "preprocessed.onnx"
    options = {"save_as_external_data": large, "all_tensors_to_one_file": True,
               "external_data_location": f"{out.name}.data"}
    try:
        quant_pre_process(str(path), str(out), **options)
        return out
    except Exception as exc:  # noqa: BLE001 - symbolic shape inference fails with AssertionError and others
        first = exc
    try:
        quant_pre_process(str(path), str(out), skip_symbolic_shape=True, **options)
        notes.append(f"Symbolic shape inference failed ({type(first).__name__}); pre-processing ran without it.")
        return out
    except Exception as exc:  # noqa: BLE001
        notes.append(f"onnxruntime's pre-processing failed ({type(exc).__name__}: {one_line(exc)}); the model "
                     f"was quantized without it.")
        return path


def gemm_to_matmul(graph: onnx.GraphProto) -> int:
    """Rewrite each Gemm with a constant weight as MatMul (+ Add for the bias), in place; how many."""
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in graph.initializer}
    taken = {t.name for t in graph.initializer} | {o for n in graph.node for o in n.output}
    nodes: list[onnx.NodeProto] = []
    rewritten = 0

    def fresh(base: str) -> str:
        name, i = base, 1
        while name in taken:
            name, i = f"{base}_{i}", i + 1
        taken.add(name)
        return name

    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "Gemm" or node.input[1] not in inits or attrs.get("transA", 0):
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        scaled_weight = ((weight.T if attrs.get("transB", 0) else weight) * attrs.get("alpha", 1.0)).astype(weight.dtype)
        w_name = fresh(f"{node.input[1]}_matmul")
        graph.initializer.append(numpy_helper.from_array(scaled_weight, w_name))
        has_bias = len(node.input) > 2 and node.input[2] != ""
        mm_out = fresh(f"{node.output[0]}_matmul") if has_bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], w_name], [mm_out], name=node.name))
        if has_bias:
            bias = node.input[2]
            beta = attrs.get("beta", 1.0)
            if beta != 1.0 and bias in inits:
                scaled = numpy_helper.to_array(inits[bias])
                bias = fresh(f"{bias}_scaled")
                graph.initializer.append(numpy_helper.from_array((scaled * beta).astype(scaled.dtype), bias))
            elif beta != 1.0:
                factor = fresh(f"{node.name}_beta")
                graph.initializer.append(numpy_helper.from_array(_scalar(beta), factor))
                scaled_out = fresh(f"{bias}_scaled")
                nodes.append(helper.make_node("Mul", [bias, factor], [scaled_out], name=f"{node.name}/beta"))
                bias = scaled_out
            nodes.append(helper.make_node("Add", [mm_out, bias], [node.output[0]], name=f"{node.name}/bias"))
        rewritten += 1
    if rewritten:
        del graph.node[:]
        graph.node.extend(nodes)
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        keep = [t for t in graph.initializer if t.name in used]
        del graph.initializer[:]
        graph.initializer.extend(keep)
    return rewritten


def name_unnamed_nodes(graph: onnx.GraphProto) -> bool:
    """Give every unnamed node a unique name (exclusions work by name); whether any was renamed."""
    taken = {n.name for n in graph.node if n.name}
    changed = False
    for i, node in enumerate(graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
            changed = True
    return changed


def save_model(model: onnx.ModelProto, path: Path, large: bool) -> Path:
    """Write ``model`` to ``path`` (weights in ``NAME.data`` beside it when ``large``); the path."""
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    if large:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=f"{path.name}.data")
    else:
        onnx.save(model, str(path))
    return path


def _scalar(value: float) -> np.ndarray:
    import numpy as np

    return np.array(value, dtype=np.float32)
