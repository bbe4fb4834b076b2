"""PyTorch -> ONNX export, checked numerically against PyTorch before the file is kept.

Sources: TorchScript archives, torch.export programs (``.pt2``), pickled whole modules (only when trusted),
and state_dicts or training checkpoints together with the model's Python class (``file.py:ClassName``).
``nn.Module`` and ``.pt2`` sources go through torch's dynamo exporter; TorchScript modules through torch's
TorchScript-based exporter, because the dynamo exporter refuses ScriptModules ("Exporting a ScriptModule is
not supported", torch 2.13).

Validation runs PyTorch and onnxruntime on the same random inputs (fixed seed; batch 2, and batch 5 too
when the batch axis is dynamic). An output passes when its largest absolute difference is at most
``tolerance * max(1, largest absolute value of PyTorch's output)``: absolute for outputs up to 1 in size,
relative to the output's magnitude beyond. Anything else, and the file is not kept.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
import logging
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .document import ValueInfo
from .errors import AccessDenied, FileProblem, MissingDependency, ModelNotFound, UnsupportedFormat, WorkbenchError
from .jobs import Job

SINGLE_FILE_LIMIT = 2_000_000_000  # protobuf cannot write a file over 2 GiB; bigger weights go to a .data file
SEED = 0
PHASES = 3  # loading, exporting, validating


@dataclass(frozen=True)
class InputSpec:
    """One model input: its name, a concrete example shape (batch first) and torch dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # "float32", "int64", ...


@dataclass
class LoadedModel:
    """A PyTorch model in memory, ready to export."""

    module: Any  # nn.Module, ScriptModule, or a torch.export GraphModule
    kind: str  # "torchscript", "torch-export", "pytorch-module", "pytorch-state-dict", "pytorch-checkpoint"
    label: str  # plain words, e.g. "PyTorch state_dict loaded into DigitsCNN"
    inputs: list[InputSpec]
    source: Path | None = None
    program: Any | None = None  # a .pt2's ExportedProgram
    dynamic_program: bool = False  # the program's batch axis is already dynamic
    notes: list[str] = field(default_factory=list)


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
    _check_out_path(source, out_path)
    job.progress(0, PHASES, f"Loading {source.name}")
    model = load_pytorch_model(source, model_class=model_class, input_shape=input_shape, trust=trust, job=job)
    return export_model(model, out_path, opset=opset, dynamic_batch=dynamic_batch, tolerance=tolerance, job=job)


# -- loading ------------------------------------------------------------------------------------


def load_pytorch_model(source: Path, *, model_class: str | None = None, input_shape: tuple[int, ...] | None = None,
                       trust: bool = False, job: Job | None = None) -> LoadedModel:
    """Load any exportable PyTorch source into memory (see :func:`export_to_onnx` for the arguments)."""
    from .formats.base import probe
    from .formats.torch_reader import (
        import_torch,
        load_exported_program,
        load_saved_object,
        load_torchscript,
        torch_file_kind,
        weights_in,
    )

    job = job or Job()
    torch = import_torch()
    pr = probe(source)
    if pr.is_dir:
        raise UnsupportedFormat(f"{pr.path} is a folder; choose the PyTorch model file inside it.", path=pr.path)
    kind = torch_file_kind(pr)
    notes: list[str] = []
    if kind == "other":
        raise UnsupportedFormat(f"{pr.path.name} is not a PyTorch file, so there is nothing to export to ONNX.",
                                hint="Choose a TorchScript, torch.export (.pt2), state_dict or checkpoint file.",
                                path=pr.path)
    if model_class and kind in ("torchscript", "pt2"):
        notes.append(f"--model-class was not needed and not used: {pr.path.name} holds the model's own code.")
    if kind == "pt2":
        ep, _ = load_exported_program(pr, trust=trust, job=job)
        return _from_program(pr.path, ep, input_shape, notes)
    if kind == "torchscript":
        module = load_torchscript(pr.path, job)
        names = [v.debugName().split(".")[0] for v in list(module.graph.inputs())[1:]]
        return LoadedModel(module, "torchscript", "TorchScript model", _specs(pr.path, names, input_shape, module),
                           pr.path, notes=notes)
    obj, _ = load_saved_object(pr, trust=trust, job=job)
    if isinstance(obj, torch.nn.Module):
        module = obj.eval()
        if model_class:
            notes.append(f"--model-class was not used: {pr.path.name} holds a whole model, code included.")
        return LoadedModel(module, "pytorch-module", f"pickled {type(obj).__name__} model",
                           _specs(pr.path, _forward_names(module), input_shape, module), pr.path, notes=notes)
    found = weights_in(obj)
    if found is None:
        raise UnsupportedFormat(f"{pr.path.name} holds no model weights, so there is nothing to export.",
                                hint="Choose a state_dict, checkpoint, TorchScript or .pt2 file.", path=pr.path)
    key, weights = found
    what = "state_dict" if key is None else "training checkpoint"
    if not model_class:
        raise WorkbenchError(
            f"{pr.path.name} is a PyTorch {what}: it holds only weights, not the model's code, so it cannot be "
            f"exported on its own.",
            hint="Name the Python class the weights belong to with --model-class path/to/model.py:ClassName "
                 "(it must be creatable with no arguments), and give the input shape with --input-shape, "
                 "e.g. 1,3,224,224.", path=pr.path)
    module = instantiate_class(model_class)
    _fill_weights(module, weights, pr.path, model_class)
    if key is not None:
        notes.append(f"Used the weights stored under '{key}' in the checkpoint.")
    cls = type(module).__name__
    return LoadedModel(module.eval(), "pytorch-checkpoint" if key else "pytorch-state-dict",
                       f"PyTorch {what} loaded into {cls}",
                       _specs(pr.path, _forward_names(module), input_shape, module), pr.path, notes=notes)


def instantiate_class(spec: str) -> Any:
    """An instance of the nn.Module class named by "path/to/file.py:ClassName", built with no arguments.

    Runs the file's code: the user pointed at it as their own model definition.
    """
    import torch

    file_part, sep, cls_name = spec.rpartition(":")
    if not sep or not file_part or not cls_name.isidentifier():
        raise WorkbenchError(f"'{spec}' does not name a model class.",
                             hint="Write it as path/to/model.py:ClassName.")
    path = Path(file_part).expanduser()
    if not path.is_file():
        raise ModelNotFound(f"There is no Python file at {path} (from --model-class {spec}).",
                            hint="Check the path to the .py file that defines the model.", path=path)
    name = "workbench_user_" + re.sub(r"\W", "_", path.stem)  # no folder names: they would end up in the ONNX
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise UnsupportedFormat(f"{path.name} cannot be loaded as Python code.", path=path)
    code = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = code
    sys.path.insert(0, str(path.parent))  # so the file can import its neighbours
    try:
        module_spec.loader.exec_module(code)
    except Exception as exc:  # noqa: BLE001 - the user's own code can fail in any way
        sys.modules.pop(name, None)
        raise WorkbenchError(f"Running {path.name} to find {cls_name} failed: {first_line(exc)}.",
                             hint="Fix the error in that file, or point at the file that defines the model.",
                             path=path) from None
    finally:
        sys.path.remove(str(path.parent))
    cls = getattr(code, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        found = sorted(n for n, v in vars(code).items() if isinstance(v, type) and issubclass(v, torch.nn.Module)
                       and v.__module__ == name)
        raise WorkbenchError(f"{path.name} has no PyTorch model class named {cls_name}.",
                             hint=f"Model classes in it: {', '.join(found)}." if found else
                             "It defines no torch.nn.Module class.", path=path)
    try:
        return cls()
    except Exception as exc:  # noqa: BLE001 - the user's constructor can fail in any way
        raise WorkbenchError(f"{cls_name} from {path.name} could not be created with no arguments: "
                             f"{first_line(exc)}.",
                             hint="Give the class default values for its arguments, or add a small subclass "
                                  "that has them.", path=path) from None


def _fill_weights(module: Any, weights: dict[str, Any], path: Path, spec: str) -> None:
    if all(k.startswith("module.") for k in weights):  # saved from DataParallel / DistributedDataParallel
        weights = {k.removeprefix("module."): v for k, v in weights.items()}
    try:
        module.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()]
        detail = (lines[0] if lines else first_line(exc))[:300].rstrip(".")
        raise WorkbenchError(f"The weights in {path.name} do not fit {type(module).__name__}: {detail}.",
                             hint=f"Check that {spec} is the class these weights were trained with, with the "
                                  f"same settings.", path=path) from None


def _forward_names(module: Any) -> list[str]:
    params = inspect.signature(module.forward).parameters.values()
    return [p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _specs(path: Path, names: list[str], input_shape: tuple[int, ...] | None, module: Any) -> list[InputSpec]:
    if not input_shape:
        raise WorkbenchError(f"{path.name} does not record the shape of its input, which the export needs.",
                             hint="Give it with --input-shape, batch first, e.g. 1,3,224,224.", path=path)
    if len(names) != 1:
        raise WorkbenchError(f"{path.name} takes {len(names)} inputs ({', '.join(names)}); --input-shape describes "
                             f"only one.",
                             hint="Save the model with torch.export (.pt2), which records every input, and export "
                                  "that file.", path=path)
    if any(d < 1 for d in input_shape):
        raise WorkbenchError(f"The input shape {','.join(map(str, input_shape))} has a size below 1.",
                             hint="Give positive sizes, batch first, e.g. 1,3,224,224.")
    floats = [p.dtype for p in module.parameters() if p.dtype.is_floating_point]
    dtype = str(floats[0]).replace("torch.", "") if floats else "float32"
    return [InputSpec(names[0], tuple(input_shape), dtype)]


def _from_program(path: Path, ep: Any, input_shape: tuple[int, ...] | None, notes: list[str]) -> LoadedModel:
    import torch

    args, kwargs = ep.example_inputs or ((), {})
    names = list(ep.graph_signature.user_inputs)
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
    if not tensors or len(tensors) != len(names):
        raise UnsupportedFormat(f"{path.name} does not include example inputs for all of its inputs, so their shapes "
                                f"are unknown.", hint="Save it again with torch.export.save from torch 2.5 or later.",
                                path=path)
    if input_shape:
        notes.append("--input-shape was not used: the program records its own input shapes.")
    placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    dynamic = all(_is_symbolic(placeholders[n].meta.get("val"), 0) for n in names if n in placeholders)
    specs = [InputSpec(n, tuple(t.shape), str(t.dtype).replace("torch.", "")) for n, t in zip(names, tensors)]
    return LoadedModel(ep.module(check_guards=False), "torch-export", "torch.export program", specs, path,
                       program=ep, dynamic_program=dynamic, notes=notes)


def _is_symbolic(val: Any, dim: int) -> bool:
    shape = getattr(val, "shape", None)
    return shape is not None and len(shape) > dim and not str(shape[dim]).isdigit()


# -- exporting ----------------------------------------------------------------------------------


def export_model(model: LoadedModel, out_path: Path, *, opset: int = 18, dynamic_batch: bool = True,
                 tolerance: float = 1e-4, job: Job | None = None) -> ExportResult:
    """Export an in-memory model to ONNX at ``out_path`` (atomically), validated against PyTorch."""
    job = job or Job()
    out_path = Path(out_path)
    if tolerance < 0:
        raise WorkbenchError(f"The tolerance {tolerance} is negative.", hint="Give 0 or a positive number.")
    _require("onnxscript", "Exporting to ONNX")
    _require("onnxruntime", "Checking the exported model")
    import torch

    notes = list(model.notes)
    fixed = model.inputs[0].shape[0]
    batches = (2, 5) if dynamic_batch else (fixed,)
    reference = _reference(model, dynamic_batch)
    try:
        expected = {b: _run_torch(reference, sample_inputs(model.inputs, b), model) for b in batches}
    except WorkbenchError:
        if not dynamic_batch:
            raise
        batches, dynamic_batch = (fixed,), False
        expected = {fixed: _run_torch(reference, sample_inputs(model.inputs, fixed), model)}
        notes.append(f"{_name(model)} runs in PyTorch only with a batch of {fixed}, so the ONNX model takes that "
                     f"fixed batch.")
    output_names = [name for name, _ in expected[batches[0]]]
    job.progress(1, PHASES, "Exporting to ONNX")
    output = StagedOutput(out_path)
    with output as staged:
        exporter, dynamic = _export(model, staged, opset=opset, dynamic_batch=dynamic_batch,
                                    output_names=output_names, notes=notes)
        if dynamic_batch and not dynamic:
            batches = (fixed,)
            expected = {b: _run_torch(reference, sample_inputs(model.inputs, b), model) for b in batches}
        job.progress(2, PHASES, "Checking the ONNX model against PyTorch")
        diffs, limits, doc = _validate(staged, model, expected, tolerance)
        opset_found = int(doc.metadata.get("opset", {}).get("ai.onnx", opset))
        if opset_found != opset:
            notes.append(f"Opset {opset} was requested, but the exporter could only produce opset {opset_found}.")
    files = output.files
    job.progress(PHASES, PHASES, "Exported")
    import onnx
    import onnxruntime

    return ExportResult(
        path=files[0], files=files, size_bytes=sum(p.stat().st_size for p in files), source=model.source,
        source_kind=model.kind, source_label=model.label, exporter=exporter, opset=opset_found,
        dynamic_batch=dynamic, inputs=doc.inputs, outputs=doc.outputs, max_abs_diff=diffs, limits=limits,
        tolerance=tolerance, checked_batches=batches,
        versions={"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        notes=notes)


def _reference(model: LoadedModel, dynamic_batch: bool) -> Callable[..., Any]:
    """What PyTorch runs to produce the expected outputs."""
    if model.program is not None and not model.dynamic_program and dynamic_batch:
        # The program was traced at one batch size; its graph is run directly at others (skipping the
        # shape guard) so that a batch size it cannot handle shows up as a failure, not a silent pass.
        return model.module.forward
    return model.module


def sample_inputs(specs: list[InputSpec], batch: int) -> list[Any]:
    """Random tensors for ``specs`` with ``batch`` rows; the same every time (fixed seed)."""
    import torch

    gen = torch.Generator().manual_seed(SEED)
    tensors = []
    for spec in specs:
        shape = (batch, *spec.shape[1:])
        dtype = getattr(torch, spec.dtype)
        if dtype.is_floating_point:
            tensors.append(torch.randn(shape, generator=gen, dtype=torch.float32).to(dtype))
        elif dtype == torch.bool:
            tensors.append(torch.randint(0, 2, shape, generator=gen).bool())
        else:
            tensors.append(torch.randint(0, 10, shape, generator=gen, dtype=dtype))
    return tensors


def _run_torch(fn: Callable[..., Any], inputs: list[Any], model: LoadedModel) -> list[tuple[str, Any]]:
    import torch

    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fn(*inputs)
    except Exception as exc:  # noqa: BLE001 - the model's own code can fail in any way
        shape = "x".join(map(str, inputs[0].shape)) if inputs else "()"
        raise WorkbenchError(f"{_name(model)} fails when run in PyTorch on an input of shape {shape}: "
                             f"{first_line(exc)}.",
                             hint="Check --input-shape (batch first) against what the model expects.",
                             path=model.source) from None
    flat = _flatten(out, "")
    if not flat:
        raise WorkbenchError(f"{_name(model)} returns no tensors, so there is nothing to export.",
                             path=model.source)
    return [(name or "output", t.detach().cpu().numpy()) for name, t in flat]


def _flatten(obj: Any, prefix: str) -> list[tuple[str, Any]]:
    import torch

    if isinstance(obj, torch.Tensor):
        return [(prefix, obj)]
    if isinstance(obj, dict):
        return [x for k, v in obj.items() for x in _flatten(v, f"{prefix}_{k}" if prefix else str(k))]
    if isinstance(obj, (list, tuple)):
        return [x for i, v in enumerate(obj) for x in _flatten(v, f"{prefix or 'output'}_{i}")]
    return []


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
    return WorkbenchError(f"PyTorch could not export {_name(model)} to ONNX: {first_line(exc)}.",
                          hint="The model probably uses an operation ONNX cannot express; try another --opset, "
                               "or change that part of the model.", path=model.source)


# -- validating ---------------------------------------------------------------------------------


def _validate(path: Path, model: LoadedModel, expected: dict[int, list[tuple[str, Any]]],
              tolerance: float) -> tuple[dict[str, float], dict[str, float], Any]:
    import numpy as np
    import onnxruntime as ort

    from .formats import open_model

    doc = open_model(path)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise WorkbenchError(f"The exported model for {_name(model)} does not load in onnxruntime: "
                             f"{first_line(exc)}.", hint="Try another --opset.", path=model.source) from None
    feeds = [i.name for i in session.get_inputs()]
    names = [o.name for o in session.get_outputs()]
    diffs: dict[str, float] = {}
    limits: dict[str, float] = {}
    for batch, outputs in expected.items():
        inputs = [t.numpy() for t in sample_inputs(model.inputs, batch)]
        if len(feeds) != len(inputs) or len(names) != len(outputs):
            raise WorkbenchError(f"The exported model has {len(feeds)} inputs and {len(names)} outputs, but "
                                 f"{_name(model)} has {len(inputs)} and {len(outputs)}; it was not kept.",
                                 path=model.source)
        try:
            got = session.run(None, dict(zip(feeds, inputs)))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise WorkbenchError(f"The exported model fails in onnxruntime at batch size {batch} "
                                 f"({first_line(exc)}), so it was not kept.",
                                 hint="If the model only works with one batch size, export with a fixed batch "
                                      "(--no-dynamic-batch).", path=model.source) from None
        for name, (_, want), have in zip(names, outputs, got):
            if want.shape != have.shape:
                raise WorkbenchError(f"The exported model's output '{name}' has shape {list(have.shape)} at batch "
                                     f"size {batch}, but PyTorch's has {list(want.shape)}; it was not kept.",
                                     path=model.source)
            a, b = want.astype(np.float64), have.astype(np.float64)
            diff = np.abs(a - b)
            diff[(a == b) | (np.isnan(a) & np.isnan(b))] = 0.0
            worst = float(np.nan_to_num(diff, nan=np.inf).max(initial=0.0))
            finite = np.abs(a[np.isfinite(a)])
            limit = tolerance * max(1.0, float(finite.max(initial=0.0)))
            diffs[name] = max(diffs.get(name, 0.0), worst)
            limits[name] = min(limits.get(name, limit), limit)
            if worst > limit:
                raise WorkbenchError(
                    f"The exported model's outputs differ from PyTorch's by {worst:.3g} (limit {limit:.3g}) on "
                    f"output '{name}' at batch size {batch}, so the file was not kept.",
                    hint="The export is not faithful for this model; try another --opset, or allow a larger "
                         "difference with --tolerance.", path=model.source)
    return diffs, limits, doc


# -- shared helpers -----------------------------------------------------------------------------


class StagedOutput:
    """Write a model (and its external data) into a hidden folder beside ``out_path``, then move it in place.

    ``with StagedOutput(out) as staged:`` gives the path to write the model to, inside a temporary folder
    in the destination folder, so side files get their final names. Only when the block ends without an
    error are the files moved next to ``out_path`` (side files first, the model last); the folder is
    removed either way. ``files`` then lists the final paths, the model first.
    """

    def __init__(self, out_path: Path) -> None:
        self.out_path = Path(out_path)
        self.files: list[Path] = []
        self._dir: Path | None = None

    def __enter__(self) -> Path:
        folder = self.out_path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._dir = Path(tempfile.mkdtemp(prefix=".workbench-", dir=folder))
        except PermissionError:
            raise AccessDenied(f"Cannot write in {folder}: permission denied.",
                               hint="Choose a folder you can write to.", path=folder) from None
        except OSError as exc:
            raise FileProblem(f"Cannot write in {folder}: {exc.strerror or exc}.", path=folder) from None
        return self._dir / self.out_path.name

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        assert self._dir is not None
        try:
            if exc_type is None:
                model = self._dir / self.out_path.name
                side = sorted(p for p in self._dir.iterdir() if p != model)
                for p in [*side, model]:
                    os.replace(p, self.out_path.parent / p.name)
                self.files = [self.out_path, *(self.out_path.parent / p.name for p in side)]
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)


@contextlib.contextmanager
def quiet_torch() -> Iterator[None]:
    """Silence the exporters' progress lines, log messages and warnings."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def first_line(exc: BaseException) -> str:
    """The first meaningful line of the innermost cause of ``exc``, without colour codes."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if lines and "TorchScript interpreter" in lines[0]:  # the cause is on the last line, after a code trace
        lines = [re.sub(r"^\w+Error: ", "", lines[-1])]
    line = lines[0] if lines else type(exc).__name__
    return line[:300].rstrip(".")


def _check_out_path(source: Path, out_path: Path) -> None:
    if out_path.exists() and source.exists() and out_path.resolve() == source.resolve():
        raise WorkbenchError(f"The output {out_path.name} is the input file itself; input files are never changed.",
                             hint="Choose another output name.", path=out_path)
    if out_path.is_dir():
        raise FileProblem(f"The output {out_path} is a folder.", hint="Give a file name ending in .onnx.",
                          path=out_path)


def _require(module: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise MissingDependency(f"{what} needs the {module} package, which is not installed.",
                                hint=f"Install it with: pip install {module}")


def _name(model: LoadedModel) -> str:
    return model.source.name if model.source is not None else f"the {model.label}"


def with_module(model: LoadedModel, module: Any, label: str, note: str | None = None) -> LoadedModel:
    """``model`` with its module replaced (e.g. pruned), exported from memory from then on."""
    return replace(model, module=module, label=label, program=None, dynamic_program=False,
                   notes=[*model.notes, *([note] if note else [])])
