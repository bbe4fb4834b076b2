"""PyTorch -> ONNX export, checked numerically against PyTorch before the file is kept.

Sources: TorchScript archives, torch.export programs (``.pt2``), pickled whole modules (only when trusted),
and state_dicts or training checkpoints together with the model's Python class (``file.py:ClassName``);
:mod:`.export_load` reads them. ``nn.Module`` and ``.pt2`` sources go through torch's dynamo exporter;
TorchScript modules through torch's TorchScript-based exporter, because the dynamo exporter refuses
ScriptModules ("Exporting a ScriptModule is not supported", torch 2.13).

Validation (:mod:`.export_check`) runs PyTorch and onnxruntime on the same random inputs (fixed seed; batch
2, and batch 5 too when the batch axis is dynamic). An output passes when its largest absolute difference
is at most ``tolerance * max(1, largest absolute value of PyTorch's output)``: absolute for outputs up to 1
in size, relative to the output's magnitude beyond. Anything else, and the file is not kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .deps import require
from .document import ValueInfo
from .errors import WorkbenchError
from .export_check import first_line, quiet_torch, reference, run_torch, sample_inputs, validate
from .export_load import InputSpec, LoadedModel, instantiate_class, load_pytorch_model, with_module
from .fsutil import StagedOutput, check_output, total_size
from .jobs import Job

__all__ = ["ExportResult", "InputSpec", "LoadedModel", "StagedOutput", "export_model", "export_to_onnx",
           "first_line", "instantiate_class", "load_pytorch_model", "quiet_torch", "sample_inputs", "with_module"]

SINGLE_FILE_LIMIT = 2_000_000_000  # protobuf cannot write a file over 2 GiB; bigger weights go to a .data file
PHASES = 3  # loading, exporting, validating


@dataclass
class ExportResult:
    """What an export wrote and how closely it matches PyTorch."""

    path: Path
    files: list[Path]  # the model file first, then its external data file if any
    size_bytes: int
    source: Path | None
    source_kind: str
    source_label: str  # plain words, e.g. "PyTorch state_dict loaded into DigitsCNN"
    exporter: str  # "dynamo" or "torchscript"
    opset: int
    dynamic_batch: bool
    inputs: list[ValueInfo]
    outputs: list[ValueInfo]
    max_abs_diff: dict[str, float]  # output name -> largest |torch - onnxruntime| over the checked batches
    limits: dict[str, float]  # output name -> the difference that was allowed
    tolerance: float
    checked_batches: tuple[int, ...]
    versions: dict[str, str]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def value(v: ValueInfo) -> dict[str, Any]:
            return {"name": v.name, "shape": None if v.shape is None else list(v.shape), "dtype": v.dtype}

        return {
            "path": str(self.path), "files": [str(p) for p in self.files], "size_bytes": self.size_bytes,
            "source": None if self.source is None else str(self.source), "source_kind": self.source_kind,
            "source_label": self.source_label, "exporter": self.exporter, "opset": self.opset,
            "dynamic_batch": self.dynamic_batch,
            "inputs": [value(v) for v in self.inputs], "outputs": [value(v) for v in self.outputs],
            "max_abs_diff": dict(self.max_abs_diff), "limits": dict(self.limits), "tolerance": self.tolerance,
            "checked_batches": list(self.checked_batches), "versions": dict(self.versions),
            "notes": list(self.notes),
        }


def export_to_onnx(source: Path, out_path: Path, *, opset: int = 18, dynamic_batch: bool = True,
                   model_class: str | None = None, input_shape: tuple[int, ...] | None = None,
                   trust: bool = False, tolerance: float = 1e-4, job: Job | None = None) -> ExportResult:
    """Export a PyTorch file to ONNX at ``out_path``, kept only if it matches PyTorch numerically.

    ``model_class`` ("path/to/file.py:ClassName", built with no arguments) is needed for state_dicts and
    checkpoints; ``input_shape`` (batch first) for every source except ``.pt2`` programs, which record it.
    ``trust`` allows a pickled whole module to run its own code while loading.
    """
    job = job or Job()
    source, out_path = Path(source), Path(out_path)
    check_output(source, out_path)
    job.progress(0, PHASES, f"Loading {source.name}")
    model = load_pytorch_model(source, model_class=model_class, input_shape=input_shape, trust=trust, job=job)
    return export_model(model, out_path, opset=opset, dynamic_batch=dynamic_batch, tolerance=tolerance, job=job)


def export_model(model: LoadedModel, out_path: Path, *, opset: int = 18, dynamic_batch: bool = True,
                 tolerance: float = 1e-4, job: Job | None = None) -> ExportResult:
    """Export an in-memory model to ONNX at ``out_path`` (atomically), validated against PyTorch."""
    job = job or Job()
    out_path = Path(out_path)
    if tolerance < 0:
        raise WorkbenchError(f"The tolerance {tolerance} is negative.", hint="Give 0 or a positive number.")
    require("onnxscript", needed_for="Exporting to ONNX", label="the onnxscript package", pip="onnxscript")
    require("onnxruntime", needed_for="Checking the exported model", label="the onnxruntime package",
            pip="onnxruntime")
    import torch

    notes = list(model.notes)
    fixed = model.inputs[0].shape[0]
    batches = (2, 5) if dynamic_batch else (fixed,)
    torch_fn = reference(model, dynamic_batch)
    try:
        expected = {b: run_torch(torch_fn, sample_inputs(model.inputs, b), model) for b in batches}
    except WorkbenchError:
        if not dynamic_batch:
            raise
        batches, dynamic_batch = (fixed,), False
        expected = {fixed: run_torch(torch_fn, sample_inputs(model.inputs, fixed), model)}
        notes.append(f"{model.name} runs in PyTorch only with a batch of {fixed}, so the ONNX model takes that "
                     f"fixed batch.")
    output_names = [name for name, _ in expected[batches[0]]]
    job.progress(1, PHASES, "Exporting to ONNX")
    output = StagedOutput(out_path)
    with output as staged:
        exporter, dynamic = _export(model, staged, opset=opset, dynamic_batch=dynamic_batch,
                                    output_names=output_names, notes=notes)
        if dynamic_batch and not dynamic:
            batches = (fixed,)
            expected = {b: run_torch(torch_fn, sample_inputs(model.inputs, b), model) for b in batches}
        job.progress(2, PHASES, "Checking the ONNX model against PyTorch")
        diffs, limits, doc = validate(staged, model, expected, tolerance)
        opset_found = int(doc.metadata.get("opset", {}).get("ai.onnx", opset))
        if opset_found != opset:
            notes.append(f"Opset {opset} was requested, but the exporter could only produce opset {opset_found}.")
    files = output.files
    job.progress(PHASES, PHASES, "Exported")
    import onnx
    import onnxruntime

    return ExportResult(
        path=files[0], files=files, size_bytes=total_size(files), source=model.source,
        source_kind=model.kind, source_label=model.label, exporter=exporter, opset=opset_found,
        dynamic_batch=dynamic, inputs=doc.inputs, outputs=doc.outputs, max_abs_diff=diffs, limits=limits,
        tolerance=tolerance, checked_batches=batches,
        versions={"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        notes=notes)


def _export(model: LoadedModel, path: Path, *, opset: int, dynamic_batch: bool, output_names: list[str],
            notes: list[str]) -> tuple[str, bool]:
    """Write the ONNX file at ``path``; returns the exporter used and whether the batch axis is dynamic."""
    import torch

    names = [s.name for s in model.inputs]
    example = tuple(sample_inputs(model.inputs, 2 if dynamic_batch else model.inputs[0].shape[0]))
    if model.kind == "torchscript":
        axes = {n: {0: "batch"} for n in (*names, *output_names)} if dynamic_batch else None
        with quiet_torch():
            _guard(model, lambda: torch.onnx.export(
                model.module, example, str(path), dynamo=False, opset_version=opset, input_names=names,
                output_names=output_names, dynamic_axes=axes))
        _settle_external_data(path)
        notes.append("Exported with torch's TorchScript-based exporter: the newer dynamo exporter does not accept "
                     "TorchScript modules.")
        return "torchscript", dynamic_batch

    def run(dynamic: bool) -> Any:
        if model.program is not None and model.dynamic_program == dynamic:
            target, args, shapes = model.program, (), None  # the program as saved
        elif dynamic:
            batch = torch.export.Dim("batch")
            target, args, shapes = model.module, example, tuple({0: batch} for _ in names)
        else:
            target, args, shapes = model.module, tuple(sample_inputs(model.inputs, model.inputs[0].shape[0])), None
        with quiet_torch():
            return torch.onnx.export(target, args, None, dynamo=True, verbose=False, opset_version=opset,
                                     input_names=names, output_names=output_names, dynamic_shapes=shapes)

    dynamic = dynamic_batch
    try:
        program = run(dynamic)
    except Exception as exc:  # noqa: BLE001 - torch's exporter raises many types
        if not dynamic:
            raise _export_error(model, exc) from None
        try:
            program = run(False)
        except Exception:  # noqa: BLE001
            raise _export_error(model, exc) from None
        dynamic = False
        notes.append(f"The batch size could not be made variable ({first_line(exc)}); the ONNX model takes a fixed "
                     f"batch of {model.inputs[0].shape[0]}.")
    if model.program is not None and not model.dynamic_program and dynamic:
        notes.append("The program was saved with a fixed batch size; it was re-exported with a variable one.")
    _drop_stack_traces(program.model)
    weights = sum(v.const_value.nbytes for v in program.model.graph.initializers.values()
                  if v.const_value is not None)
    with quiet_torch():
        program.save(str(path), external_data=weights > SINGLE_FILE_LIMIT)
    return "dynamo", dynamic


def _drop_stack_traces(model: Any) -> None:
    """Remove the Python stack traces the dynamo exporter records per node: they name folders on this computer."""
    from onnx_ir.traversal import RecursiveGraphIterator

    for node in RecursiveGraphIterator(model.graph):
        node.metadata_props.pop("pkg.torch.onnx.stack_trace", None)


def _settle_external_data(path: Path) -> None:
    """Gather weights that an exporter spread over many side files into one ``NAME.data`` file."""
    others = [p for p in path.parent.iterdir() if p != path]
    if not others:
        return
    import onnx

    proto = onnx.load(str(path))
    for p in others:
        p.unlink()
    onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=path.name + ".data")


def _guard(model: LoadedModel, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - torch's exporter raises many types
        raise _export_error(model, exc) from None


def _export_error(model: LoadedModel, exc: BaseException) -> WorkbenchError:
    return WorkbenchError(f"PyTorch could not export {model.name} to ONNX: {first_line(exc)}.",
                          hint="The model probably uses an operation ONNX cannot express; try another --opset, "
                               "or change that part of the model.", path=model.source)

