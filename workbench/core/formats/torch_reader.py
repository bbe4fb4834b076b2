"""PyTorch files: state_dicts, training checkpoints, pickled whole modules, TorchScript, torch.export.

Safety rule: a pickle never runs code unless the user explicitly trusts the file. Before anything is
loaded, the pickle's imports are listed without executing it (:mod:`.pickle_scan`); plain weights are
then loaded with ``torch.load(weights_only=True)``; anything else is refused with the list of imports,
unless ``trust=True``. Imports that run commands are refused even then.
"""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from ..deps import require
from ..document import FileEntry, ModelDocument, TensorInfo, ValueInfo
from ..errors import CorruptFile, DangerousPickle, UnsupportedFormat, UntrustedPickle
from ..jobs import Job
from ..text import one_line
from .base import Probe, Reader
from .pickle_scan import PickleParseError, PickleScan, scan_pickle_bytes

PYTORCH_EXTENSIONS = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".tar", ".model")

# Keys under which training scripts usually keep the model's weights in a checkpoint, best first.
CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "model_ema",
                   "ema", "ema_state_dict", "weights", "params")


def import_torch() -> Any:
    return require("torch", needed_for="Opening PyTorch files", label="PyTorch", pip="torch")


def _zip_kind(names: list[str]) -> str:
    base = {n.split("/", 1)[-1] for n in names}
    if "archive_format" in base or any(n.startswith("models/") and n.endswith(".json") for n in base):
        return "pt2"
    if "constants.pkl" in base and any(n.startswith("code/") for n in base):
        return "torchscript"
    if "data.pkl" in base:
        return "torch-save"
    return "zip"


def torch_file_kind(probe: Probe) -> str:
    """"torchscript", "pt2" (torch.export), "torch-save" (also for plain pickles), or "other"."""
    if probe.is_pickle:
        return "torch-save"
    if probe.is_zip:
        kind = _zip_kind(probe.zip_names())
        return "other" if kind == "zip" else kind
    return "other"


def _member(names: list[str], base: str) -> str | None:
    for n in names:
        if n == base or n.endswith("/" + base):
            return n
    return None


def check_pickle(path: Path, scan: PickleScan, *, trust: bool, what: str = "This file") -> None:
    """Refuse a pickle that would run code: always if dangerous, and unless trusted otherwise."""
    if scan.dangerous:
        raise DangerousPickle(
            f"{path.name} was refused: opening it would call {', '.join(scan.dangerous[:5])}, which can run "
            f"commands on this computer. {what} is not a plain model.",
            hint="Do not open it even if you trust the sender; ask for an ONNX or safetensors file.",
            imports=list(scan.imports), path=path)
    if scan.unsafe and not trust:
        shown = ", ".join(scan.unsafe[:8]) + (f" and {len(scan.unsafe) - 8} more" if len(scan.unsafe) > 8 else "")
        raise UntrustedPickle(
            f"{path.name} contains pickled Python objects; opening it would import and run {shown}.",
            hint="Open it only if you trust where it came from (the 'trust' option, --trust on the command "
                 "line), or ask for a state_dict, ONNX or safetensors file instead.",
            imports=list(scan.unsafe), path=path)


class TorchReader(Reader):
    """ZIP-based PyTorch files (torch.save, TorchScript, torch.export) and plain/legacy pickles."""

    format = "pytorch"
    label = "PyTorch file"
    extensions = PYTORCH_EXTENSIONS + (".pt2", ".ptl", ".jit", ".torchscript")

    def match(self, probe: Probe) -> bool:
        if probe.is_pickle:
            return True
        return probe.is_zip and _zip_kind(probe.zip_names()) != "zip"

    def open(self, probe: Probe, *, trust: bool = False, job: Job) -> ModelDocument:
        if probe.is_pickle:
            return self._open_torch_save(probe, trust, job)
        if not probe.is_zip:
            raise CorruptFile(f"{probe.path.name} is named like a PyTorch file but is neither a ZIP archive nor a "
                              f"pickle, the two ways PyTorch saves files.",
                              hint="The file is probably damaged or not a PyTorch file; get it again.",
                              path=probe.path)
        kind = _zip_kind(probe.zip_names())
        if kind == "torchscript":
            return _open_torchscript(probe, job)
        if kind == "pt2":
            return _open_export(probe, trust, job)
        return self._open_torch_save(probe, trust, job)

    # -- torch.save zip archives, and non-zip pickles (legacy torch.save and raw pickle files) ---
    def _open_torch_save(self, probe: Probe, trust: bool, job: Job) -> ModelDocument:
        obj, trusted = load_saved_object(probe, trust=trust, job=job)
        return _document_from_object(probe.path, probe.size, obj, trusted=trusted)


def load_saved_object(probe: Probe, *, trust: bool, job: Job) -> tuple[Any, bool]:
    """The object in a torch.save archive or plain pickle, loaded under the safety rule above.

    Also returns whether the file's own Python code was allowed to run (it holds more than plain weights).
    """
    path = probe.path
    if probe.is_pickle:
        try:
            scan = scan_pickle_bytes(path.read_bytes(), several=True)
        except PickleParseError as exc:
            raise CorruptFile(f"{path.name} looks like a Python pickle but cannot be read ({exc}).",
                              hint="The file is probably truncated or damaged; get it again.", path=path) from None
    else:
        data_pkl = _member(probe.zip_names(), "data.pkl")
        if data_pkl is None:
            raise UnsupportedFormat(f"{path.name} is a ZIP archive but not a torch.save file.", path=path)
        try:
            with zipfile.ZipFile(path) as zf:
                scan = scan_pickle_bytes(zf.read(data_pkl))
        except (zipfile.BadZipFile, OSError, EOFError, PickleParseError) as exc:
            raise CorruptFile(f"{path.name} is a damaged PyTorch file: its object list cannot be read ({exc}).",
                              hint="Save or download it again.", path=path) from None
    check_pickle(path, scan, trust=trust)
    job.progress(0, None, f"Loading {path.name}")
    obj = _torch_load(path, weights_only=not scan.unsafe, mmap=not probe.is_pickle)
    return obj, bool(scan.unsafe)


def weights_in(obj: Any) -> tuple[str | None, dict[str, Any]] | None:
    """The name -> tensor weights held by a loaded state_dict (key None) or training checkpoint (its key path)."""
    direct = _tensor_dict(obj)
    if direct is not None and isinstance(obj, dict) and len(direct) == len(obj):
        return None, direct
    if isinstance(obj, dict):
        return _find_state_dict(obj)
    return None


def _torch_load(path: Path, *, weights_only: bool, mmap: bool) -> Any:
    torch = import_torch()
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=mmap)
    except pickle.UnpicklingError as exc:
        first = one_line(exc)
        raise UntrustedPickle(f"{path.name} could not be opened as plain weights: {first}",
                              hint="Open it only if you trust where it came from (--trust).", imports=[],
                              path=path) from None
    except (AttributeError, ModuleNotFoundError, ImportError) as exc:
        raise UnsupportedFormat(
            f"{path.name} refers to Python code that is not available here ({exc}).",
            hint="A pickled whole model needs the code that defined it; ask for a state_dict or ONNX file.",
            path=path) from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as exc:
        first = one_line(exc)
        raise CorruptFile(f"{path.name} is a damaged PyTorch file ({first}).",
                          hint="The file is probably truncated or damaged; save or download it again.",
                          path=path) from None


def _tensor_info(name: str, t: Any) -> TensorInfo:
    return TensorInfo(name, tuple(int(d) for d in t.shape), str(t.dtype).replace("torch.", ""),
                      int(t.numel() * t.element_size()))


def _tensor_dict(obj: Any) -> dict[str, Any] | None:
    """``obj`` as a name -> tensor mapping if it is one (non-tensor entries such as _metadata ignored)."""
    torch = import_torch()
    if isinstance(obj, torch.nn.Module):
        return dict(obj.state_dict())
    if not isinstance(obj, dict) or not obj:
        return None
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors or len(tensors) < len([v for v in obj.values() if not isinstance(v, (int, float, str))]) / 2:
        return None
    return tensors


def _find_state_dict(obj: dict[str, Any], depth: int = 0) -> tuple[str, dict[str, Any]] | None:
    """The weights inside a training checkpoint: (key path, tensors)."""
    for key in CHECKPOINT_KEYS:
        if key in obj:
            found = _tensor_dict(obj[key])
            if found:
                return key, found
    best: tuple[str, dict[str, Any]] | None = None
    for key, value in obj.items():
        found = _tensor_dict(value)
        if found is None and isinstance(value, dict) and depth < 2:
            nested = _find_state_dict(value, depth + 1)
            if nested:
                found = nested[1]
                key = f"{key}/{nested[0]}"
        if found and (best is None or len(found) > len(best[1])):
            best = (str(key), found)
    return best


def _reader_for(tensors: dict[str, Any]) -> Any:
    def read(info: TensorInfo) -> Any:
        t = tensors[info.name].detach().reshape(-1)
        torch = import_torch()
        if t.dtype == torch.bfloat16:
            return (t.view(torch.int16) & 0x7FFF).numpy()
        if t.dtype.is_floating_point and t.element_size() == 1:
            return (t.view(torch.uint8) & 0x7F).numpy()
        return t.numpy()
    return read


def _document_from_object(path: Path, size: int, obj: Any, *, trusted: bool) -> ModelDocument:
    torch = import_torch()
    files = [FileEntry(path, size, "model")]
    metadata: dict[str, Any] = {}
    no_graph = ("A PyTorch {what} stores weights only, not the computation, so there is no graph to show. "
                "Export the model to ONNX (or save it with TorchScript or torch.export) to see its graph.")
    if isinstance(obj, torch.nn.Module):
        fmt, label = "pytorch-module", "Pickled PyTorch model (whole nn.Module)"
        tensors = dict(obj.state_dict())
        metadata["class"] = f"{type(obj).__module__}.{type(obj).__qualname__}"
        note = ("A pickled nn.Module holds Python objects, not a graph. Export it to ONNX (or TorchScript / "
                "torch.export) to see its graph.")
    elif (direct := _tensor_dict(obj)) is not None and len(direct) == len(obj):
        fmt, label, tensors = "pytorch-state-dict", "PyTorch state_dict (weights only)", direct
        note = no_graph.format(what="state_dict")
    elif isinstance(obj, dict) and (found := _find_state_dict(obj)) is not None:
        key, tensors = found
        fmt, label = "pytorch-checkpoint", "PyTorch training checkpoint"
        metadata["weights_key"] = key
        metadata["other_keys"] = [str(k) for k in obj if str(k) != key.split("/")[0]]
        for k in ("epoch", "step", "global_step", "iteration", "best_acc", "best_accuracy", "arch"):
            if isinstance(obj.get(k), (int, float, str)):
                metadata[k] = obj[k]
        note = no_graph.format(what="checkpoint")
    elif isinstance(obj, torch.Tensor):
        fmt, label, tensors = "pytorch-tensor", "PyTorch tensor file", {"tensor": obj}
        note = no_graph.format(what="tensor file")
    else:
        described = f"a {type(obj).__name__}"
        if isinstance(obj, dict):
            described += " with keys " + ", ".join(repr(k) for k in list(obj)[:6])
        raise UnsupportedFormat(f"{path.name} opened, but holds no model weights ({described}).",
                                hint="Choose a state_dict, checkpoint, TorchScript, ONNX or safetensors file.",
                                path=path)
    doc = ModelDocument(
        path=path, format=fmt, format_label=label, files=files,
        tensors=[_tensor_info(n, t) for n, t in tensors.items()], metadata=metadata, has_graph=False,
        graph_note=note, trusted=trusted,
    )
    if trusted:
        doc.notes.append("Opened with trust: the file's own Python code may have run while loading it.")
    doc.read_tensor = _reader_for(tensors)
    return doc


# -- TorchScript ----------------------------------------------------------------------------------

_BOOKKEEPING_NODES = {"prim::Constant", "prim::GetAttr", "prim::ListConstruct", "prim::TupleConstruct",
                      "prim::TupleUnpack", "prim::ListUnpack", "prim::NumToTensor"}


def load_torchscript(path: Path, job: Job) -> Any:
    """The ScriptModule in a TorchScript archive, on the CPU."""
    torch = import_torch()
    job.progress(0, None, f"Loading {path.name}")
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "torch.jit.load is deprecated": still the way to read these files
            module = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, OSError) as exc:
        first = one_line(exc)
        raise CorruptFile(f"{path.name} is a TorchScript archive that cannot be loaded ({first}).",
                          hint="It may be damaged or saved by a newer PyTorch; export it again.",
                          path=path) from None
    return module


def _open_torchscript(probe: Probe, job: Job) -> ModelDocument:
    """TorchScript archives hold TorchScript code (run by torch's own interpreter), not arbitrary Python."""
    path = probe.path
    module = load_torchscript(path, job)
    tensors = dict(module.state_dict())
    graph = module.inlined_graph
    inputs = []
    for i, value in enumerate(graph.inputs()):
        if i == 0:  # self
            continue
        inputs.append(ValueInfo(value.debugName().split(".")[0], _ts_shape(value), _ts_dtype(value)))
    outputs = [ValueInfo(v.debugName() if not v.debugName().isdigit() else f"output{i}", _ts_shape(v), _ts_dtype(v))
               for i, v in enumerate(graph.outputs())]
    ops = Counter(n.kind() for n in graph.nodes() if n.kind() not in _BOOKKEEPING_NODES)
    doc = ModelDocument(
        path=path, format="torchscript", format_label="TorchScript model", files=[FileEntry(path, probe.size,
                                                                                             "model")],
        tensors=[_tensor_info(n, t) for n, t in tensors.items()], inputs=inputs, outputs=outputs,
        operators=dict(ops.most_common()), metadata={"class": module.original_name}, has_graph=True,
    )
    doc.read_tensor = _reader_for(tensors)
    return doc


def _ts_shape(value: Any) -> tuple[int | str | None, ...] | None:
    try:
        sizes = value.type().sizes()
    except (RuntimeError, AttributeError):
        return None
    return tuple(sizes) if sizes is not None else None


def _ts_dtype(value: Any) -> str | None:
    t = value.type()
    try:
        st = t.scalarType()
        return str(st).lower() if st else "tensor"
    except (RuntimeError, AttributeError):
        return str(t)


# -- torch.export (.pt2) --------------------------------------------------------------------------

def _scan_export_archive(path: Path, names: list[str]) -> PickleScan:
    """List the imports of every pickle that torch.export.load would unpickle."""
    found: list[str] = []
    with zipfile.ZipFile(path) as zf:
        to_scan: list[str] = [n for n in names if "/sample_inputs/" in n or n.endswith(".pkl")]
        for n in names:
            if n.endswith("_config.json"):
                config = json.loads(zf.read(n)).get("config", {})
                folder = n.rsplit("/", 1)[0]
                for entry in config.values():
                    path_name = entry.get("path_name", "")
                    if entry.get("use_pickle") or path_name.startswith(("custom_obj", "opaque")):
                        to_scan.append(f"{folder}/{path_name}")
        for n in dict.fromkeys(to_scan):
            data = zf.read(n)
            if data[:4] == b"PK\x03\x04":
                import io

                with zipfile.ZipFile(io.BytesIO(data)) as inner:
                    pkl = _member(inner.namelist(), "data.pkl")
                    if pkl:
                        found.extend(scan_pickle_bytes(inner.read(pkl)).imports)
            elif "custom_obj" in n:
                found.append("<a custom TorchScript object>")
            else:
                found.extend(scan_pickle_bytes(data).imports)
    return PickleScan(tuple(dict.fromkeys(found)))


def _open_export(probe: Probe, trust: bool, job: Job) -> ModelDocument:
    ep, trusted = load_exported_program(probe, trust=trust, job=job)
    return _export_document(probe.path, probe.size, ep, trusted=trusted)


def load_exported_program(probe: Probe, *, trust: bool, job: Job) -> tuple[Any, bool]:
    """The ExportedProgram in a .pt2 archive, and whether its pickles' own code was allowed to run."""
    torch = import_torch()
    path = probe.path
    try:
        scan = _scan_export_archive(path, probe.zip_names())
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, ValueError, PickleParseError) as exc:
        raise CorruptFile(f"{path.name} is a damaged torch.export file ({exc}).",
                          hint="Export the model again with torch.export.save.", path=path) from None
    check_pickle(path, scan, trust=trust)
    job.progress(0, None, f"Loading {path.name}")
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ep = torch.export.load(str(path))
    except Exception as exc:  # torch raises many types here (AssertionError, KeyError, SerializeError...)
        first = one_line(exc)
        raise CorruptFile(f"{path.name} is a torch.export file that cannot be loaded ({first}).",
                          hint="It may be damaged or made by a different PyTorch version; export it again.",
                          path=path) from None
    return ep, bool(scan.unsafe)


def _export_document(path: Path, size: int, ep: Any, *, trusted: bool) -> ModelDocument:
    from torch.export.graph_signature import InputKind

    placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    inputs = []
    for spec in ep.graph_signature.input_specs:
        if spec.kind == InputKind.USER_INPUT and spec.arg.name in placeholders:
            inputs.append(_fx_value(spec.arg.name, placeholders[spec.arg.name]))
    outputs = []
    by_name = {n.name: n for n in ep.graph.nodes}
    for spec in ep.graph_signature.output_specs:
        name = getattr(spec.arg, "name", None)
        if name in by_name and spec.kind.name == "USER_OUTPUT":
            outputs.append(_fx_value(name, by_name[name]))
    ops = Counter(_fx_target(n.target) for n in ep.graph.nodes if n.op == "call_function")
    tensors = {**dict(ep.state_dict), **{k: v for k, v in ep.constants.items() if hasattr(v, "shape")}}
    doc = ModelDocument(
        path=path, format="torch-export", format_label="torch.export program (.pt2)",
        files=[FileEntry(path, size, "model")], tensors=[_tensor_info(n, t) for n, t in tensors.items()],
        inputs=inputs, outputs=outputs, operators=dict(ops.most_common()), has_graph=True, trusted=trusted,
    )
    doc.read_tensor = _reader_for(tensors)
    return doc


def _fx_target(target: Any) -> str:
    name = getattr(target, "name", None)
    text = name() if callable(name) else str(target)
    return text.replace("aten::", "aten.")


def _fx_value(name: str, node: Any) -> ValueInfo:
    val = node.meta.get("val")
    shape = getattr(val, "shape", None)
    if shape is None:
        return ValueInfo(name, None, None)
    dims = tuple(int(d) if str(d).lstrip("-").isdigit() else str(d) for d in shape)
    return ValueInfo(name, dims, str(val.dtype).replace("torch.", ""))
