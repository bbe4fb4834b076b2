"""Loading PyTorch models for export: TorchScript archives, torch.export programs (``.pt2``), pickled whole
modules (only when trusted), and state_dicts or training checkpoints with the model's Python class
(``file.py:ClassName``), each with the inputs it takes.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import ModelNotFound, UnsupportedFormat, WorkbenchError
from .export_check import first_line
from .jobs import Job


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

    @property
    def name(self) -> str:
        """The model's file name, or what it is when it was not read from a file."""
        return self.source.name if self.source is not None else f"the {self.label}"


def load_pytorch_model(source: Path, *, model_class: str | None = None, input_shape: tuple[int, ...] | None = None,
                       trust: bool = False, job: Job | None = None) -> LoadedModel:
    """Load any exportable PyTorch source into memory; the arguments are as for ``export.export_to_onnx``."""
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


def with_module(model: LoadedModel, module: Any, label: str, note: str | None = None) -> LoadedModel:
    """``model`` with its module replaced (e.g. pruned), exported from memory from then on."""
    return replace(model, module=module, label=label, program=None, dynamic_program=False,
                   notes=[*model.notes, *([note] if note else [])])
