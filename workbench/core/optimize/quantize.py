"""Quantize ONNX models with onnxruntime: static int8, dynamic int8, fp16 and weight-only int4.

Every run reads back the graph it wrote and counts what was actually quantized, so a model whose work
hides inside If/Loop subgraphs comes back with a warning instead of a silent "success". The input file
is only ever read; the variant is written to a private folder next to the output and moved into place.
The steps of :func:`quantize` are public: the accuracy-aware search repeats some of them.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..deps import require
from ..errors import FileProblem, UnsupportedFormat, WorkbenchError
from ..evaluate.datasets import EvalData
from ..fsutil import check_output, move_into_place, total_size, work_folder
from ..jobs import Job
from ..ortutil import cpu_session, nbits_quantizer, ort_logs
from ..text import one_line
from .calibration import CALIBRATION_SAMPLES, CalibrationReader, calibration_data
from .graph_ops import (
    CONV_OPS,
    FLOAT,
    MATMUL_OPS,
    WEIGHT_OPS,
    count_quantized,
    ensure_opset,
    gemm_to_matmul,
    model_files,
    name_unnamed_nodes,
    preprocess,
    save_model,
    subgraph_ops,
    weight_tensors,
)

METHODS = ("auto", "static-int8", "dynamic-int8", "fp16", "int4")
METHOD_LABELS = {
    "static-int8": "static int8 (QDQ, calibrated)",
    "dynamic-int8": "dynamic int8 (MatMul/Gemm only)",
    "fp16": "float16",
    "int4": "weight-only int4 (MatMulNBits)",
}
CANDIDATE_OPS = {"static-int8": CONV_OPS + MATMUL_OPS, "dynamic-int8": MATMUL_OPS, "int4": ("MatMul",)}
LARGE_MODEL_BYTES = 1_800_000_000  # protobuf cannot hold 2 GB: above this, weights go to a side file
INT4_BLOCK_SIZE = 32


@dataclass
class QuantizeResult:
    """What one quantization run did, measured from the files it wrote."""

    input_path: Path
    output_path: Path
    output_files: list[Path]  # the model file, then any external data files
    method: str
    method_reason: str  # one plain line: why this method
    settings: dict[str, Any]
    counts: dict[str, int]  # quantization-related nodes in the output, by type (all graphs)
    quantized: int  # candidates that came out quantized (operators, or weight tensors for fp16)
    quantizable: int  # candidates in the model, subgraphs included
    quantizable_in_subgraphs: int
    quantizable_by_type: dict[str, int]
    unit: str  # "operators" or "weight tensors"
    size_before: int  # on disk, external data included
    size_after: int
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    excluded_nodes: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def size_ratio(self) -> float:
        """How many times smaller the variant is on disk."""
        return self.size_before / self.size_after if self.size_after else float("inf")

    @property
    def nothing_quantized(self) -> bool:
        return self.quantized == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_path": str(self.input_path), "output_path": str(self.output_path),
            "output_files": [str(p) for p in self.output_files], "method": self.method,
            "method_label": METHOD_LABELS[self.method], "method_reason": self.method_reason,
            "settings": self.settings, "counts": self.counts, "quantized": self.quantized,
            "quantizable": self.quantizable, "quantizable_in_subgraphs": self.quantizable_in_subgraphs,
            "quantizable_by_type": self.quantizable_by_type, "unit": self.unit,
            "size_before": self.size_before, "size_after": self.size_after,
            "size_ratio": round(self.size_ratio, 3), "warnings": self.warnings, "notes": self.notes,
            "excluded_nodes": self.excluded_nodes, "versions": self.versions,
        }


@dataclass
class Prepared:
    """A model made ready for one method in a private work folder; the quantizer reads ``path``."""

    source: Path
    path: Path
    work_dir: Path
    method: str
    reason: str
    per_channel: bool
    calibration: EvalData | None
    settings: dict[str, Any]
    candidates: dict[str, str]  # node name -> op type, main graph of ``path``
    node_names: set[str]
    in_subgraphs: Counter[str]  # candidate op types inside If/Loop/Scan bodies
    subgraph_work: Counter[str]  # all weight-bearing op types inside those bodies
    float_weights: int  # float32 weight tensors, initializers and Constant nodes (the unit fp16 converts)
    large: bool
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def quantize(model_path: Path, out_path: Path, *, method: str = "auto", calibration: EvalData | None = None,
             per_channel: bool = True, exclude_nodes: Sequence[str] = (), allow_random_calibration: bool = False,
             job: Job | None = None) -> QuantizeResult:
    """Write a quantized copy of the ONNX model at ``model_path`` to ``out_path`` and report what it holds."""
    job = job or Job()
    model_path, out_path = Path(model_path), Path(out_path)
    size_before = check_paths(model_path, out_path, job)
    with work_folder(out_path) as work:
        prep = prepare(model_path, work, method=method, calibration=calibration, per_channel=per_channel,
                       allow_random_calibration=allow_random_calibration, size_before=size_before, job=job)
        excluded = resolve_exclusions(prep, exclude_nodes)
        variant = work / "variant" / out_path.name
        messages = run_quantizer(prep, variant, excluded, job=job)
        result = describe(prep, variant, excluded, size_before, messages, job=job)
        publish(result, out_path)
    return result


# --- steps, shared with the accuracy-aware search ------------------------------------------------------


def check_paths(model_path: Path, out_path: Path, job: Job) -> int:
    """Open the input as an ONNX model (clear errors for bad files) and refuse to overwrite it; its size."""

    from ..formats import open_model

    require("onnxruntime", needed_for="Quantization", label="onnxruntime", pip="onnxruntime")

    doc = open_model(model_path, job=job)
    if doc.format != "onnx":
        raise UnsupportedFormat(f"{model_path.name} is a {doc.format_label}; quantization works on ONNX models.",
                                hint="Export it to ONNX first (workbench export).", path=model_path)
    out = out_path.resolve()
    if any(out == f.path.resolve() for f in doc.files):
        raise FileProblem(f"The output {out_path} would overwrite the model's own files.",
                          hint="Choose another output name; the input is never modified.", path=out_path)
    check_output(model_path, out_path)
    return doc.size_bytes


def prepare(model_path: Path, work: Path, *, method: str, calibration: EvalData | None, per_channel: bool,
            allow_random_calibration: bool, size_before: int, job: Job) -> Prepared:
    """Choose the method, find calibration data, and make the copy the quantizer will read."""
    import onnx

    if method not in METHODS:
        raise WorkbenchError(f"'{method}' is not a quantization method.", hint=f"Choose one of: {', '.join(METHODS)}.")
    job.progress(2, 100, "Reading the model")
    large = size_before > LARGE_MODEL_BYTES
    model = onnx.load(str(model_path))
    main_ops = Counter(n.op_type for n in model.graph.node)
    sub_ops = subgraph_ops(model.graph)
    chosen, reason = choose_method(main_ops, sub_ops) if method == "auto" else (method, "you chose it")
    notes: list[str] = []
    warnings: list[str] = []
    settings: dict[str, Any] = {}
    data = None
    if chosen == "static-int8":
        data, data_notes, data_warnings = calibration_data(model, model_path, calibration, allow_random_calibration,
                                                           reason if method == "auto" else None)
        notes += data_notes
        warnings += data_warnings
    path = model_path
    per_channel = per_channel and chosen in ("static-int8", "dynamic-int8")
    if chosen in ("static-int8", "dynamic-int8"):
        per_channel, upgraded = ensure_opset(model, per_channel, model_path, notes, warnings)
        if upgraded:
            path = save_model(model, work / "upgraded.onnx", large)
        del model
        job.progress(8, 100, "Pre-processing (shape inference and graph clean-up)")
        path = preprocess(path, work, large, notes)
        model = onnx.load(str(path))
    changed = False
    if chosen in ("dynamic-int8", "int4"):
        rewritten = gemm_to_matmul(model.graph)
        if rewritten:
            notes.append(f"{rewritten} Gemm node(s) were rewritten as MatMul + Add in the copy, because "
                         f"onnxruntime's {METHOD_LABELS[chosen]} quantizer skips Gemm.")
            changed = True
    changed |= name_unnamed_nodes(model.graph)
    if changed:
        path = save_model(model, work / "prepared.onnx", large)
    ops = CANDIDATE_OPS.get(chosen, ())
    candidates = {n.name: n.op_type for n in model.graph.node if n.op_type in ops}
    settings.update(_settings(chosen, per_channel, data))
    if chosen == "fp16":
        notes.append("float16 halves the weights but usually runs slower than float32 on a CPU; it suits GPUs.")
    job.progress(25, 100, "Model prepared")
    return Prepared(model_path, path, work, chosen, reason, per_channel, data, settings, candidates,
                    {n.name for n in model.graph.node}, Counter({k: v for k, v in sub_ops.items() if k in ops}),
                    Counter({k: v for k, v in sub_ops.items() if k in WEIGHT_OPS}),
                    weight_tensors(model.graph, FLOAT), large, notes, warnings)


def choose_method(main_ops: Counter[str], sub_ops: Counter[str]) -> tuple[str, str]:
    """The sensible default for a graph with these operator counts (main graph, subgraphs), and why, in one line."""
    conv = sum(main_ops[o] for o in CONV_OPS)
    mm = sum(main_ops[o] for o in MATMUL_OPS)
    if conv and conv >= mm:
        return "static-int8", (f"convolution-heavy graph ({conv} Conv vs {mm} MatMul/Gemm): static int8 with "
                               f"per-channel weights keeps accuracy and runs fastest on CPUs")
    if mm:
        return "dynamic-int8", (f"graph dominated by MatMul/Gemm ({mm} vs {conv} Conv), like transformers: dynamic "
                                f"int8 on MatMul/Gemm needs no calibration data")
    hidden = sum(sub_ops[o] for o in CONV_OPS + MATMUL_OPS)
    where = f" outside If/Loop subgraphs (they hold {hidden})" if hidden else ""
    return "dynamic-int8", f"no Conv, MatMul or Gemm found{where}: trying dynamic int8, which needs no calibration data"


def resolve_exclusions(prep: Prepared, names: Sequence[str]) -> list[str]:
    """Map the user's node names onto the prepared graph (pre-processing may rename fused nodes)."""
    resolved: list[str] = []
    for name in names:
        if name in prep.node_names:
            resolved.append(name)
            continue
        fused = sorted(n for n in prep.node_names if n.startswith(f"{name}/"))
        if not fused:
            shown = ", ".join(list(prep.candidates)[:8]) or "none"
            raise WorkbenchError(f"{prep.source.name} has no node named '{name}' to exclude.",
                                 hint=f"Quantizable nodes are: {shown}.")
        resolved += fused
    return list(dict.fromkeys(resolved))


def run_quantizer(prep: Prepared, out_file: Path, exclude: Sequence[str], *, job: Job) -> list[str]:
    """Run onnxruntime's quantizer for ``prep.method``, writing ``out_file``; returns what onnxruntime logged."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    job.progress(30, 100, f"Quantizing: {METHOD_LABELS[prep.method]}")
    with ort_logs() as messages:
        try:
            _run_method(prep, out_file, exclude, job)
        except WorkbenchError:
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises many kinds; all are reported the same way
            raise WorkbenchError(f"onnxruntime could not make the {METHOD_LABELS[prep.method]} copy of "
                                 f"{prep.source.name} ({type(exc).__name__}: {one_line(exc)}).",
                                 hint="Try another method, or exclude the node named in the message.") from None
    return messages


def _run_method(prep: Prepared, out_file: Path, exclude: Sequence[str], job: Job) -> None:
    import onnx

    if prep.method == "static-int8":
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        assert prep.calibration is not None
        reader = CalibrationReader(prep.path, prep.calibration, prep.source.name, job)
        options: dict[str, Any] = {}
        if "calibration_cache_path" in inspect.signature(quantize_static).parameters:
            options["calibration_cache_path"] = prep.work_dir / "calibration.json"  # reused by later rounds
        quantize_static(str(prep.path), str(out_file), reader, quant_format=QuantFormat.QDQ,
                        per_channel=prep.per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=list(exclude), use_external_data_format=prep.large,
                        calibrate_method=CalibrationMethod.MinMax, **options)
    elif prep.method == "dynamic-int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(prep.path), str(out_file), op_types_to_quantize=list(MATMUL_OPS),
                         per_channel=prep.per_channel, weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude),
                         use_external_data_format=prep.large)
    elif prep.method == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(str(prep.path)), keep_io_types=True,
                                         node_block_list=list(exclude) or None, disable_shape_infer=prep.large)
        save_model(model, out_file, prep.large)
    else:
        quantizer = nbits_quantizer()(onnx.load(str(prep.path)), bits=4, block_size=INT4_BLOCK_SIZE,
                                       is_symmetric=False, accuracy_level=4, nodes_to_exclude=list(exclude))
        quantizer.process()
        quantizer.model.save_model_to_file(str(out_file), use_external_data_format=prep.large)


def describe(prep: Prepared, variant: Path, excluded: Sequence[str], size_before: int, messages: Sequence[str],
             *, job: Job) -> QuantizeResult:
    """Read the written variant back: check onnxruntime loads it, count what is quantized, measure its size."""
    job.progress(90, 100, "Checking the result")
    try:
        cpu_session(variant)
    except Exception as exc:  # noqa: BLE001 - any load failure means the variant is unusable
        raise WorkbenchError(f"onnxruntime could not load the {METHOD_LABELS[prep.method]} copy of "
                             f"{prep.source.name} ({one_line(exc)}); nothing was written.",
                             hint="Try another method, or exclude the nodes named in the message.") from None
    counts, quantized = count_quantized(variant, prep.method)
    files = model_files(variant)
    if prep.method == "fp16":
        by_type, unit = {"float32 weights": prep.float_weights}, "weight tensors"
    else:
        by_type = dict(Counter(prep.candidates.values()) + prep.in_subgraphs)
        unit = "operators"
    quantizable = sum(by_type.values())
    in_subgraphs = sum(prep.in_subgraphs.values())
    warnings, notes = list(prep.warnings), list(prep.notes)
    if quantized == 0:
        warnings.append("nothing was quantized: " + _why_nothing(prep, excluded, quantizable, in_subgraphs, unit))
    elif quantized < quantizable - len(excluded):
        notes.append(f"{quantized} of {quantizable} {unit} were quantized; the others stayed in float"
                     + (f" ({in_subgraphs} are inside If/Loop subgraphs, which the quantizer does not reach)"
                        if in_subgraphs else " (for example, weights computed at run time)") + ".")
    notes += [f"onnxruntime said: {m}" for m in dict.fromkeys(messages)][:3]
    job.progress(100, 100, "Done")
    return QuantizeResult(prep.source, variant, files, prep.method, prep.reason, dict(prep.settings), counts,
                          quantized, quantizable, in_subgraphs, by_type, unit, size_before, total_size(files),
                          warnings, notes, list(excluded), _versions())


def publish(result: QuantizeResult, out_path: Path) -> None:
    """Move the variant's files (external data first, the model file last) to ``out_path``; update ``result``."""
    result.output_files = move_into_place(result.output_files, out_path)
    result.output_path = out_path


# --- private helpers --------------------------------------------------------------------------------


def _why_nothing(prep: Prepared, excluded: Sequence[str], quantizable: int, in_subgraphs: int, unit: str) -> str:
    if quantizable == 0:
        kinds = "float32 weights" if prep.method == "fp16" else "/".join(CANDIDATE_OPS[prep.method]) + " nodes"
        hidden = ", ".join(f"{n} {op}" for op, n in prep.subgraph_work.most_common())
        return f"the model has no {kinds} for {METHOD_LABELS[prep.method]}" + (
            f"; its work ({hidden}) is inside If/Loop subgraphs, which onnxruntime's quantizer does not reach."
            if hidden else "; the copy computes exactly what the original does.")
    if in_subgraphs == quantizable:
        return (f"all {quantizable} candidate {unit} are inside If/Loop subgraphs, which onnxruntime's quantizer "
                f"does not reach; the copy computes exactly what the original does.")
    if excluded and len(excluded) >= quantizable - in_subgraphs:
        return "every candidate node was excluded."
    return (f"onnxruntime left all {quantizable} candidate {unit} in float (their weights may be computed at run "
            f"time, or their shapes unknown).")


def _settings(method: str, per_channel: bool, data: EvalData | None) -> dict[str, Any]:
    if method == "static-int8":
        assert data is not None
        return {"format": "QDQ", "per_channel": per_channel, "activations": "uint8", "weights": "int8",
                "calibration": data.source, "calibration_samples": min(len(data), CALIBRATION_SAMPLES),
                "calibration_method": "MinMax"}
    if method == "dynamic-int8":
        return {"op_types": list(MATMUL_OPS), "per_channel": per_channel, "weights": "int8"}
    if method == "fp16":
        return {"keep_io_types": True}
    return {"bits": 4, "block_size": INT4_BLOCK_SIZE, "symmetric": False, "accuracy_level": 4}


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__}
