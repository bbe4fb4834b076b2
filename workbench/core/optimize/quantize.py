"""Quantize ONNX models with onnxruntime: static int8, dynamic int8, fp16 and weight-only int4.

Every run reads back the graph it wrote and counts what was actually quantized, so a model whose work
hides inside If/Loop subgraphs comes back with a warning instead of a silent "success". The input file
is only ever read; the variant is written to a private folder next to the output and moved into place.
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FileProblem, MissingDependency, UnsupportedFormat, WorkbenchError
from ..evaluate.datasets import EvalData
from ..jobs import Job

if TYPE_CHECKING:
    import numpy as np
    import onnx

METHODS = ("auto", "static-int8", "dynamic-int8", "fp16", "int4")
METHOD_LABELS = {
    "static-int8": "static int8 (QDQ, calibrated)",
    "dynamic-int8": "dynamic int8 (MatMul/Gemm only)",
    "fp16": "float16",
    "int4": "weight-only int4 (MatMulNBits)",
}
CONV_OPS = ("Conv", "ConvTranspose")
MATMUL_OPS = ("MatMul", "Gemm")
WEIGHT_OPS = CONV_OPS + MATMUL_OPS + ("LSTM", "GRU", "RNN", "Attention")
CANDIDATE_OPS = {"static-int8": CONV_OPS + MATMUL_OPS, "dynamic-int8": MATMUL_OPS, "int4": ("MatMul",)}
# compute nodes that run on integers; DynamicQuantizeLinear is a helper and counted but not as work
INTEGER_OPS = ("ConvInteger", "MatMulInteger", "MatMulNBits", "QGemm", "DynamicQuantizeMatMul", "QAttention",
               "DynamicQuantizeLSTM")
COUNTED_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear") + INTEGER_OPS
LARGE_MODEL_BYTES = 1_800_000_000  # protobuf cannot hold 2 GB: above this, weights go to a side file
CALIBRATION_SAMPLES = 128
INT4_BLOCK_SIZE = 32
RANDOM_CALIBRATION_WARNING = ("calibrating on random data usually destroys accuracy: the int8 ranges were "
                              "measured on noise, not on inputs like the real ones")
_FLOAT, _FLOAT16 = 1, 10  # onnx.TensorProto data types


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
    from importlib.util import find_spec

    from ..formats import open_model

    if find_spec("onnxruntime") is None:
        raise MissingDependency("Quantization needs onnxruntime, which is not installed.",
                                hint="Install it with `pip install onnxruntime`.")

    doc = open_model(model_path, job=job)
    if doc.format != "onnx":
        raise UnsupportedFormat(f"{model_path.name} is a {doc.format_label}; quantization works on ONNX models.",
                                hint="Export it to ONNX first (workbench export).", path=model_path)
    out = out_path.resolve()
    if any(out == f.path.resolve() for f in doc.files):
        raise FileProblem(f"The output {out_path} would overwrite the model's own files.",
                          hint="Choose another output name; the input is never modified.", path=out_path)
    if out_path.is_dir():
        raise FileProblem(f"The output {out_path} is a folder.", hint="Give a file name ending in .onnx.",
                          path=out_path)
    return doc.size_bytes


@contextmanager
def work_folder(out_path: Path) -> Iterator[Path]:
    """A private folder beside the output (same disk, so the final move is atomic), removed afterwards."""
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent))
    except OSError as exc:
        raise FileProblem(f"Cannot write to the folder {out_path.parent} ({exc.strerror or exc}).",
                          hint="Choose an output folder you can write to.", path=out_path.parent) from None
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


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
    sub_ops = _subgraph_ops(model.graph)
    chosen, reason = choose_method(main_ops, sub_ops) if method == "auto" else (method, "you chose it")
    notes: list[str] = []
    warnings: list[str] = []
    settings: dict[str, Any] = {}
    data = None
    if chosen == "static-int8":
        data, data_notes, data_warnings = _calibration_data(model, model_path, calibration, allow_random_calibration,
                                                            reason if method == "auto" else None)
        notes += data_notes
        warnings += data_warnings
    path = model_path
    per_channel = per_channel and chosen in ("static-int8", "dynamic-int8")
    if chosen in ("static-int8", "dynamic-int8"):
        per_channel, upgraded = _ensure_opset(model, per_channel, model_path, notes, warnings)
        if upgraded:
            path = _save(model, work / "upgraded.onnx", large)
        del model
        job.progress(8, 100, "Pre-processing (shape inference and graph clean-up)")
        path = _preprocess(path, work, large, notes)
        model = onnx.load(str(path))
    changed = False
    if chosen in ("dynamic-int8", "int4"):
        rewritten = _gemm_to_matmul(model.graph)
        if rewritten:
            notes.append(f"{rewritten} Gemm node(s) were rewritten as MatMul + Add in the copy, because "
                         f"onnxruntime's {METHOD_LABELS[chosen]} quantizer skips Gemm.")
            changed = True
    changed |= _name_unnamed_nodes(model.graph)
    if changed:
        path = _save(model, work / "prepared.onnx", large)
    ops = CANDIDATE_OPS.get(chosen, ())
    candidates = {n.name: n.op_type for n in model.graph.node if n.op_type in ops}
    settings.update(_settings(chosen, per_channel, data))
    if chosen == "fp16":
        notes.append("float16 halves the weights but usually runs slower than float32 on a CPU; it suits GPUs.")
    job.progress(25, 100, "Model prepared")
    return Prepared(model_path, path, work, chosen, reason, per_channel, data, settings, candidates,
                    {n.name for n in model.graph.node}, Counter({k: v for k, v in sub_ops.items() if k in ops}),
                    Counter({k: v for k, v in sub_ops.items() if k in WEIGHT_OPS}),
                    _weight_tensors(model.graph, _FLOAT), large, notes, warnings)


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
                                 f"{prep.source.name} ({type(exc).__name__}: {_first_line(exc)}).",
                                 hint="Try another method, or exclude the node named in the message.") from None
    return messages


def _run_method(prep: Prepared, out_file: Path, exclude: Sequence[str], job: Job) -> None:
    import onnx

    if prep.method == "static-int8":
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        options: dict[str, Any] = {}
        if "calibration_cache_path" in inspect.signature(quantize_static).parameters:
            options["calibration_cache_path"] = prep.work_dir / "calibration.json"  # reused by later rounds
        quantize_static(str(prep.path), str(out_file), _Reader(prep, job), quant_format=QuantFormat.QDQ,
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
        _save(model, out_file, prep.large)
    else:
        quantizer = _nbits_quantizer()(onnx.load(str(prep.path)), bits=4, block_size=INT4_BLOCK_SIZE,
                                       is_symmetric=False, accuracy_level=4, nodes_to_exclude=list(exclude))
        quantizer.process()
        quantizer.model.save_model_to_file(str(out_file), use_external_data_format=prep.large)


def describe(prep: Prepared, variant: Path, excluded: Sequence[str], size_before: int, messages: Sequence[str],
             *, job: Job) -> QuantizeResult:
    """Read the written variant back: check onnxruntime loads it, count what is quantized, measure its size."""
    import onnxruntime as ort

    job.progress(90, 100, "Checking the result")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        ort.InferenceSession(str(variant), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - any load failure means the variant is unusable
        raise WorkbenchError(f"onnxruntime could not load the {METHOD_LABELS[prep.method]} copy of "
                             f"{prep.source.name} ({_first_line(exc)}); nothing was written.",
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
                          quantized, quantizable, in_subgraphs, by_type, unit, size_before,
                          sum(f.stat().st_size for f in files), warnings, notes, list(excluded), _versions())


def publish(result: QuantizeResult, out_path: Path) -> None:
    """Move the variant's files (external data first, the model file last) to ``out_path``; update ``result``."""
    files = result.output_files
    final = [out_path, *(out_path.parent / f.name for f in files[1:])]
    mode = files[0].stat().st_mode & 0o777
    for src, dst in list(zip(files, final))[1:] + [(files[0], out_path)]:
        os.chmod(src, mode)  # onnx writes external data owner-only; give it the model file's permissions
        os.replace(src, dst)
    result.output_path, result.output_files = out_path, final


def count_quantized(path: Path, method: str) -> tuple[dict[str, int], int]:
    """Quantization nodes by type (all graphs), and how many candidates the file holds quantized."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts: Counter[str] = Counter()
    fed_by_dq = 0
    fp16 = _weight_tensors(model.graph, _FLOAT16)
    for graph in _graphs(model.graph):
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
    locations = dict.fromkeys(e.value for g in _graphs(model.graph) for t in g.initializer
                              for e in t.external_data if e.key == "location")
    return [path, *(path.parent / loc for loc in locations)]


InputSpec = tuple[str, int, "list[int | str | None] | None"]  # name, onnx element type, dims (None: unknown)


def model_inputs(model: onnx.ModelProto) -> list[InputSpec]:
    """The real inputs (not initializers): name, element type, dims (int, symbolic name or None; [] = scalar)."""
    inits = {t.name for t in model.graph.initializer}
    specs: list[InputSpec] = []
    for v in model.graph.input:
        if v.name in inits:
            continue
        tensor = v.type.tensor_type
        dims = ([d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]
                if tensor.HasField("shape") else None)
        specs.append((v.name, tensor.elem_type, dims))
    return specs


def feeds_for(inputs: Sequence[InputSpec], data: EvalData, model_name: str) -> dict[str, np.ndarray]:
    """``data``'s arrays checked against the model's inputs (names, ranks, fixed sizes) and cast to their types.

    The first axis of every array counts samples; a scalar model input takes one value per sample.
    """
    import numpy as np
    from onnx import helper

    arrays = dict(data.inputs)
    if len(inputs) == 1 and len(arrays) == 1 and inputs[0][0] not in arrays:
        arrays = {inputs[0][0]: next(iter(arrays.values()))}
    feeds = {}
    for name, elem, dims in inputs:
        if name not in arrays:
            raise WorkbenchError(f"The data ({data.source}) has no input named '{name}' for {model_name} "
                                 f"(it has: {', '.join(arrays) or 'nothing'}).",
                                 hint="Save one array per model input, named like the input.")
        array = np.asarray(arrays[name])
        if dims is None:
            feeds[name] = array.astype(helper.tensor_dtype_to_np_dtype(elem), copy=False)
            continue
        expected = dims if dims else ["samples"]
        fixed = [(i, d) for i, d in enumerate(dims) if isinstance(d, int) and d > 0 and i > 0]
        if array.ndim != len(expected) or any(array.shape[i] != d for i, d in fixed):
            shape = "[" + ", ".join("?" if not isinstance(d, int) or d <= 0 else str(d) for d in dims) + "]"
            raise WorkbenchError(f"The data's '{name}' has shape {list(array.shape)}, but {model_name} expects "
                                 f"{shape} (first axis = samples).", hint="Reshape the data to match the model input.")
        feeds[name] = array.astype(helper.tensor_dtype_to_np_dtype(elem), copy=False)
    return feeds


def batches(inputs: Sequence[InputSpec], feeds: dict[str, np.ndarray], size: int) -> Iterator[dict[str, np.ndarray]]:
    """``feeds`` cut into batches the model accepts: one sample when an input is a scalar, else the model's
    fixed batch size if it has one (a last, smaller batch is left out), else ``size``."""
    scalars = {name for name, _, dims in inputs if dims == []}
    first = [dims[0] for _, _, dims in inputs if dims]
    count = len(next(iter(feeds.values()))) if feeds else 0
    if scalars:
        size = 1
    elif first and isinstance(first[0], int) and first[0] > 0:
        size = first[0]
        count -= count % size
    for start in range(0, count, size):
        yield {k: v[start:start + 1].reshape(v.shape[1:]) if k in scalars else v[start:start + size]
               for k, v in feeds.items()}


@contextmanager
def ort_logs() -> Iterator[list[str]]:
    """Collect onnxruntime's warnings (it logs on the root logger too) instead of letting them reach stderr."""
    import onnxruntime

    sink: list[str] = []
    collect = _Collect(sink)
    divert = _FromOnnxruntime(sink)
    ort_logger = logging.getLogger("onnxruntime")
    saved = ort_logger.propagate, ort_logger.level
    placeholder = logging.NullHandler() if not logging.root.handlers else None  # stops logging.basicConfig()
    if placeholder:
        logging.root.addHandler(placeholder)
    ort_logger.addHandler(collect)
    ort_logger.propagate = False
    ort_logger.setLevel(logging.WARNING)
    logging.root.addFilter(divert)
    onnxruntime.set_default_logger_severity(4)  # its C++ warnings and errors become our messages instead
    try:
        yield sink
    finally:
        onnxruntime.set_default_logger_severity(2)  # onnxruntime's default
        logging.root.removeFilter(divert)
        ort_logger.removeHandler(collect)
        ort_logger.propagate, _ = saved
        ort_logger.setLevel(saved[1])
        if placeholder:
            logging.root.removeHandler(placeholder)


# --- private helpers --------------------------------------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(_first_line(record.getMessage()))


class _FromOnnxruntime(logging.Filter):
    def __init__(self, sink: list[str]) -> None:
        super().__init__()
        self.sink = sink

    def filter(self, record: logging.LogRecord) -> bool:
        if "onnxruntime" not in record.pathname:
            return True
        if record.levelno >= logging.WARNING:
            self.sink.append(_first_line(record.getMessage()))
        return False


class _Reader:
    """Feeds calibration batches to onnxruntime, reporting progress and honouring cancellation."""

    def __init__(self, prep: Prepared, job: Job) -> None:
        import onnx

        assert prep.calibration is not None
        inputs = model_inputs(onnx.load(str(prep.path), load_external_data=False))
        data = prep.calibration.subset(CALIBRATION_SAMPLES)
        self.batches = list(batches(inputs, feeds_for(inputs, data, prep.source.name), 16))
        self.done = 0
        self.job = job

    def get_next(self) -> dict[str, Any] | None:
        self.job.progress(30 + 50 * self.done / max(1, len(self.batches)), 100, "Calibrating")
        if self.done >= len(self.batches):
            return None
        self.done += 1
        return self.batches[self.done - 1]


def _calibration_data(model: onnx.ModelProto, path: Path, given: EvalData | None, allow_random: bool,
                      auto_reason: str | None) -> tuple[EvalData, list[str], list[str]]:
    inputs = model_inputs(model)
    if given is not None:
        feeds_for(inputs, given, path.name)  # fail now, with a clear message, rather than inside onnxruntime
        return given, [], (["the calibration data is synthetic, so the int8 ranges may not fit real inputs"]
                              if given.synthetic else [])
    if _matches_sample(inputs):
        from ..evaluate.datasets import sample_data

        data = sample_data()
        return data, [f"Calibrated on {data.source}, since the model takes the same 1x8x8 images."], []
    if allow_random:
        return _random_data(inputs, path), [], [RANDOM_CALIBRATION_WARNING]
    why = f"Auto chose static int8 ({auto_reason}), which" if auto_reason else "Static int8"
    raise WorkbenchError(f"{why} needs calibration data for {path.name}: a few hundred typical inputs, and none "
                         f"was given.", hint="Pass --data FILE.npz with an array x shaped like the model input, "
                                             "or choose --method dynamic-int8, which needs no data.", path=path)


def _matches_sample(inputs: Sequence[InputSpec]) -> bool:
    dims = inputs[0][2] if len(inputs) == 1 else None
    return inputs[0][1] == _FLOAT and dims is not None and len(dims) == 4 and dims[1:] == [1, 8, 8]


def _random_data(inputs: Sequence[InputSpec], path: Path) -> EvalData:
    import numpy as np
    from onnx import helper

    rng = np.random.default_rng(0)
    arrays = {}
    for name, elem, dims in inputs:
        if dims is None:
            raise WorkbenchError(f"Cannot make random calibration data for {path.name}: input '{name}' has no "
                                 f"recorded shape.", hint="Pass real calibration data.")
        shape = [32] if not dims else [d if isinstance(d, int) and d > 0 else (32 if i == 0 else None)
                                       for i, d in enumerate(dims)]
        if None in shape:
            raise WorkbenchError(f"Cannot make random calibration data for {path.name}: input '{name}' has no fixed "
                                 f"size in dimension {shape.index(None)}.", hint="Pass real calibration data.")
        dtype = helper.tensor_dtype_to_np_dtype(elem)
        arrays[name] = (rng.standard_normal(shape).astype(dtype) if np.issubdtype(dtype, np.floating)
                        else np.zeros(shape, dtype))
    return EvalData(arrays, None, "random numbers", synthetic=True)


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _ensure_opset(model: onnx.ModelProto, per_channel: bool, path: Path, notes: list[str],
                  warnings: list[str]) -> tuple[bool, bool]:
    """Upgrade ``model`` in place to the opset int8 needs (13 for per-channel): (per-channel to use, upgraded)."""
    from onnx import version_converter

    opset = _opset(model)
    need = 13 if per_channel else 11
    if opset >= need:
        return per_channel, False
    try:
        upgraded = version_converter.convert_version(model, need)
    except Exception as exc:  # noqa: BLE001 - the converter raises many kinds; all mean "cannot upgrade"
        if per_channel and opset >= 11:
            warnings.append(f"the model's opset {opset} could not be upgraded to 13 ({_first_line(exc)}), so weights "
                            f"were quantized per tensor instead of per channel, which may cost accuracy")
            return False, False
        raise WorkbenchError(f"{path.name} uses ONNX opset {opset}, and it could not be upgraded to {need} for int8 "
                             f"quantization ({_first_line(exc)}).", hint="Re-export the model with a newer opset.",
                             path=path) from None
    model.CopyFrom(upgraded)
    notes.append(f"The model used ONNX opset {opset}; the copy was upgraded to {need}, because "
                 + ("per-channel int8 needs opset 13 or newer." if per_channel else "int8 needs opset 11 or newer."))
    return per_channel, True


def _preprocess(path: Path, work: Path, large: bool, notes: list[str]) -> Path:
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
        notes.append(f"onnxruntime's pre-processing failed ({type(exc).__name__}: {_first_line(exc)}); the model "
                     f"was quantized without it.")
        return path


def _gemm_to_matmul(graph: onnx.GraphProto) -> int:
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


def _scalar(value: float) -> np.ndarray:
    import numpy as np

    return np.array(value, dtype=np.float32)


def _name_unnamed_nodes(graph: onnx.GraphProto) -> bool:
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


def _save(model: onnx.ModelProto, path: Path, large: bool) -> Path:
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    if large:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=f"{path.name}.data")
    else:
        onnx.save(model, str(path))
    return path


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """A graph and, recursively, every subgraph (If branches, Loop and Scan bodies)."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def _weight_tensors(graph: onnx.GraphProto, data_type: int) -> int:
    """Stored tensors of ``data_type`` (initializers and Constant nodes, subgraphs included)."""
    count = 0
    for g in _graphs(graph):
        count += sum(1 for t in g.initializer if t.data_type == data_type)
        count += sum(1 for n in g.node if n.op_type == "Constant" for a in n.attribute
                     if a.name == "value" and a.t.data_type == data_type and len(a.t.dims) > 0)
    return count


def _subgraph_ops(graph: onnx.GraphProto) -> Counter[str]:
    counts: Counter[str] = Counter()
    for sub in list(_graphs(graph))[1:]:
        counts.update(n.op_type for n in sub.node)
    return counts


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


def _nbits_quantizer() -> Any:
    """onnxruntime's MatMulNBitsQuantizer; its module calls logging.basicConfig on import, which is undone."""
    root = logging.root
    handlers, level = list(root.handlers), root.level
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
    return MatMulNBitsQuantizer


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__}


def _first_line(exc: object) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
