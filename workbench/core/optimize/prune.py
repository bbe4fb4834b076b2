"""Pruning: zeroing small weights in an ONNX model, or removing whole channels from a PyTorch model.

Unstructured magnitude pruning (:func:`prune_onnx_magnitude`) sets the smallest weights to zero across
the whole model. The file keeps its size on disk (a zero takes as many bytes as any other number) and
runs no faster; it only compresses better. Structured pruning (:func:`prune_structured`) physically
removes convolution channels and hidden units with Torch-Pruning, so the model really gets smaller,
but its accuracy drops until it is fine-tuned, which this does not do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..deps import require
from ..errors import UnsupportedFormat, WorkbenchError
from ..export import SINGLE_FILE_LIMIT, ExportResult, export_model
from ..export_check import first_line, sample_inputs
from ..export_load import load_pytorch_model, with_module
from ..fsutil import StagedOutput, check_output, gzip_size, total_size
from ..jobs import Job

# Operators whose initializer inputs (by position) are weights worth pruning; biases are never listed.
WEIGHT_INPUTS: dict[str, tuple[int, ...]] = {"Conv": (1,), "ConvTranspose": (1,), "Gemm": (0, 1), "MatMul": (0, 1)}
MIN_WEIGHT_ELEMENTS = 256  # smaller tensors (first layers, shape constants) are left alone


@dataclass
class PruneResult:
    """What a pruning run wrote, and the measured effect."""

    source: Path
    path: Path
    files: list[Path]  # the model file first, then its external data file if any
    method: str  # "magnitude" (unstructured, ONNX) or "channels" (structured, PyTorch)
    requested: float  # the requested sparsity (magnitude) or channel ratio (channels)
    achieved: float  # measured: zero fraction of the pruned weights, or fraction of channels removed
    parameters_before: int
    parameters_after: int
    nonzero_before: int
    nonzero_after: int
    size_before: int  # bytes on disk of the input, external data included
    size_after: int
    gzip_before: int  # the same files gzip-compressed (level 6), a proxy for download size
    gzip_after: int
    pruned_tensors: list[str]  # magnitude: the weight tensors pruned; channels: the layers that lost channels
    notes: list[str] = field(default_factory=list)
    export: ExportResult | None = None  # channels: how the pruned model was exported and checked

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": str(self.source), "path": str(self.path), "files": [str(p) for p in self.files],
            "method": self.method, "requested": self.requested, "achieved": self.achieved,
            "parameters_before": self.parameters_before, "parameters_after": self.parameters_after,
            "nonzero_before": self.nonzero_before, "nonzero_after": self.nonzero_after,
            "size_before": self.size_before, "size_after": self.size_after, "gzip_before": self.gzip_before,
            "gzip_after": self.gzip_after, "pruned_tensors": list(self.pruned_tensors), "notes": list(self.notes),
            "export": None if self.export is None else self.export.to_dict(),
        }


# -- unstructured magnitude pruning on ONNX -------------------------------------------------------


def prune_onnx_magnitude(model_path: Path, out_path: Path, *, sparsity: float, job: Job | None = None) -> PruneResult:
    """Zero the ``sparsity`` fraction of smallest-magnitude weights (Conv/Gemm/MatMul) across the model."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from ..formats import open_model

    job = job or Job()
    model_path, out_path = Path(model_path), Path(out_path)
    _check_fraction(sparsity, "sparsity")
    doc = open_model(model_path, job=job)
    if doc.format != "onnx":
        raise UnsupportedFormat(f"{model_path.name} is {doc.format_label}, not ONNX; magnitude pruning works on "
                                f"ONNX files.", hint="Export it to ONNX first (workbench export), or prune whole "
                                "channels of the PyTorch model with --channels.", path=model_path)
    check_output(model_path, out_path)
    job.progress(0, 4, f"Reading {model_path.name}")
    model = onnx.load(str(model_path))
    inits = {t.name: t for t in model.graph.initializer}
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}
    names: list[str] = []
    for node in model.graph.node:
        for pos in WEIGHT_INPUTS.get(node.op_type, ()) if node.domain in ("", "ai.onnx") else ():
            name = node.input[pos] if pos < len(node.input) else ""
            t = inits.get(name)
            if (t is not None and name not in names and t.data_type in floats and len(t.dims) >= 2
                    and int(np.prod(t.dims)) >= MIN_WEIGHT_ELEMENTS):
                names.append(name)
    if not names:
        raise WorkbenchError(f"{model_path.name} has no Conv, Gemm or MatMul weights large enough to prune.",
                             hint="Pruning suits models with large weight matrices; try quantization instead.",
                             path=model_path)
    arrays = {n: numpy_helper.to_array(inits[n]) for n in names}
    all_floats = [t for t in model.graph.initializer if t.data_type in floats]
    total = sum(int(np.prod(t.dims)) for t in all_floats)
    nonzero_before = _count_nonzero(all_floats)
    job.progress(1, 4, "Choosing the weights to zero")
    job.check()
    for name, pruned in _global_magnitude(arrays, sparsity).items():
        inits[name].CopyFrom(numpy_helper.from_array(pruned.astype(arrays[name].dtype), name))
    job.progress(2, 4, f"Writing {out_path.name}")
    external = len(doc.files) > 1 or _weight_bytes(model) > SINGLE_FILE_LIMIT
    output = StagedOutput(out_path)
    with output as staged:
        if external:
            onnx.save_model(model, str(staged), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=staged.name + ".data", size_threshold=1024)
        else:
            onnx.save_model(model, str(staged))
        job.check()
        written = onnx.load(str(staged))
        written_inits = {t.name: t for t in written.graph.initializer}
        zeros = sum(int((numpy_helper.to_array(written_inits[n]) == 0).sum()) for n in names)
        weight_count = sum(a.size for a in arrays.values())
        nonzero_after = _count_nonzero([t for t in written.graph.initializer if t.data_type in floats])
    job.progress(3, 4, "Measuring compressed sizes")
    before = [f.path for f in doc.files]
    gz_before, gz_after = gzip_size(before, job), gzip_size(output.files, job)
    job.progress(4, 4, "Pruned")
    notes = [
        ("Unstructured pruning keeps every weight in the file, so the size on disk is unchanged and the model runs "
         "no faster; only the compressed (download) size shrinks."),
        (f"{len(names)} weight tensors were pruned together (global magnitude); biases, normalisation values and "
         f"tensors under {MIN_WEIGHT_ELEMENTS} values were left alone."),
        (f"Zero values across all stored numbers: {1 - nonzero_after / total:.1%} (weights pruned: "
         f"{zeros / weight_count:.1%})."),
        "Accuracy can drop; compare the pruned model with the original before using it.",
    ]
    return PruneResult(
        source=model_path, path=output.files[0], files=output.files, method="magnitude", requested=sparsity,
        achieved=zeros / weight_count, parameters_before=total, parameters_after=total,
        nonzero_before=nonzero_before, nonzero_after=nonzero_after, size_before=total_size(before),
        size_after=total_size(output.files), gzip_before=gz_before, gzip_after=gz_after, pruned_tensors=names,
        notes=notes)


def _global_magnitude(arrays: dict[str, Any], sparsity: float) -> dict[str, Any]:
    """The arrays with exactly round(sparsity * total) of their smallest-magnitude values (overall) set to 0."""
    import numpy as np

    mags = {n: np.abs(a.astype(np.float32, copy=False)) for n, a in arrays.items()}
    flat = np.concatenate([m.ravel() for m in mags.values()])
    k = round(sparsity * flat.size)
    if k == 0:
        return dict(arrays)
    threshold = np.partition(flat, k - 1)[k - 1]
    ties_left = k - int((flat < threshold).sum())  # values equal to the threshold that must also go
    del flat
    out = {}
    for name, a in arrays.items():
        mag = mags[name]
        drop = mag < threshold
        if ties_left > 0:
            tie = np.flatnonzero(mag == threshold)[:ties_left]
            drop.flat[tie] = True
            ties_left -= len(tie)
        pruned = a.copy()
        pruned[drop] = 0
        out[name] = pruned
    return out


def _count_nonzero(tensors: list[Any]) -> int:
    import numpy as np
    from onnx import numpy_helper

    return sum(int(np.count_nonzero(numpy_helper.to_array(t))) for t in tensors)


def _weight_bytes(model: Any) -> int:
    return sum(len(t.raw_data) for t in model.graph.initializer)


# -- structured channel pruning on PyTorch --------------------------------------------------------


def prune_structured(source: Path, out_path: Path, *, ratio: float, model_class: str | None = None,
                     input_shape: tuple[int, ...] | None = None, trust: bool = False, opset: int = 18,
                     tolerance: float = 1e-4, job: Job | None = None) -> PruneResult:
    """Remove the ``ratio`` fraction of channels with the smallest weights from every prunable layer (except
    the final classifier), then export the smaller model to ONNX, checked against the pruned PyTorch model.

    The source and the other arguments are as for :func:`workbench.core.export.export_to_onnx`.
    """
    import torch

    job = job or Job()
    source, out_path = Path(source), Path(out_path)
    _check_fraction(ratio, "channel ratio")
    tp = require("torch_pruning", needed_for="Channel pruning", label="Torch-Pruning", pip="torch-pruning")
    check_output(source, out_path)
    job.progress(0, 3, f"Loading {source.name}")
    model = load_pytorch_model(source, model_class=model_class, input_shape=input_shape, trust=trust, job=job)
    module = model.module
    if model.kind in ("torchscript", "torch-export") or not isinstance(module, torch.nn.Module):
        raise UnsupportedFormat(f"{source.name} is a {model.label}; removing channels needs the model's Python "
                                f"class.", hint="Use the state_dict or checkpoint with --model-class "
                                "path/to/model.py:ClassName, or a pickled whole model (--trust).", path=source)
    layers = [m for m in module.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d,
                                                            torch.nn.Linear))]
    if len(layers) < 2:
        raise WorkbenchError(f"{source.name} has no layer whose channels can be removed (only the final one).",
                             path=source)
    final = layers[-1]  # the classifier: its outputs are the model's answers, so they all stay
    params_before = _parameters(module)
    nonzero_before = sum(int(torch.count_nonzero(p)) for p in module.parameters())
    width_before = {id(m): _width(m) for m in layers}
    example = sample_inputs(model.inputs, 1)
    job.progress(1, 3, "Removing channels")
    try:
        pruner = tp.pruner.MetaPruner(module, example[0] if len(example) == 1 else tuple(example),
                                      importance=tp.importance.MagnitudeImportance(p=2), pruning_ratio=ratio,
                                      ignored_layers=[final])
        pruner.step()
    except Exception as exc:  # noqa: BLE001 - Torch-Pruning raises many types on models it cannot handle
        raise WorkbenchError(f"Torch-Pruning could not remove channels from {source.name}: {first_line(exc)}.",
                             hint="Magnitude pruning of the exported ONNX model (--sparsity) works on any model.",
                             path=source) from None
    job.check()
    changed = [name for name, m in module.named_modules() if id(m) in width_before and _width(m) <
               width_before[id(m)]]
    removed = sum(width_before[id(m)] - _width(m) for m in layers if m is not final)
    prunable = sum(width_before[id(m)] for m in layers if m is not final)
    params_after = _parameters(module)
    nonzero_after = sum(int(torch.count_nonzero(p)) for p in module.parameters())
    pruned = with_module(model, module, f"{model.label}, channel-pruned")
    result = export_model(pruned, out_path, opset=opset, dynamic_batch=True, tolerance=tolerance, job=job)
    before = [source]
    notes = [
        (f"Removed {removed} of {prunable} channels/units ({removed / prunable:.1%}) from {len(changed)} layers; "
         f"parameters went from {params_before:,} to {params_after:,}."),
        ("The final layer keeps all its outputs. The model was not fine-tuned after pruning, so its accuracy has "
         "probably dropped: measure it on your data before using it."),
        f"Size before is that of {source.name} (the PyTorch file); size after is the pruned ONNX model.",
    ]
    return PruneResult(
        source=source, path=result.path, files=result.files, method="channels", requested=ratio,
        achieved=removed / prunable, parameters_before=params_before, parameters_after=params_after,
        nonzero_before=nonzero_before, nonzero_after=nonzero_after, size_before=total_size(before),
        size_after=result.size_bytes, gzip_before=gzip_size(before, job), gzip_after=gzip_size(result.files, job),
        pruned_tensors=changed, notes=notes + result.notes, export=result)


def _width(layer: Any) -> int:
    return int(getattr(layer, "out_channels", None) or layer.out_features)


def _parameters(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


# -- shared -------------------------------------------------------------------------------------


def _check_fraction(value: float, what: str) -> None:
    if not 0 < value < 1:
        raise WorkbenchError(f"The {what} {value} is not between 0 and 1.",
                             hint="Give a fraction such as 0.5 (half).")
