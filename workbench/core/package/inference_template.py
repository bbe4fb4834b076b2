"""The inference code put into every wheel Model Workbench builds, as its package's ``__init__.py``.

This file is copied as text, with this docstring replaced by one naming the package; it is never imported
by Model Workbench. It must run on its own with only ``numpy`` and ``onnxruntime`` installed (Python 3.9+).
"""

from __future__ import annotations

import argparse
import sys
import threading
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

MODEL_PATH = Path(__file__).resolve().parent / "model" / "model.onnx"

# onnxruntime's element types -> numpy dtypes (types without a numpy equivalent are not checked)
_DTYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int8)": np.int8, "tensor(int16)": np.int16, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16, "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_, "tensor(string)": np.object_,
}

_lock = threading.Lock()
_session: Any = None


class InputError(ValueError):
    """The inputs do not match what the model takes."""


def load(providers: list[str] | None = None) -> Any:
    """A new ``onnxruntime.InferenceSession`` on the packaged model (CPU unless ``providers`` says otherwise)."""
    import onnxruntime

    try:
        return onnxruntime.InferenceSession(str(MODEL_PATH), providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise RuntimeError(
            f"onnxruntime {onnxruntime.__version__} could not load {MODEL_PATH.name}: {exc}. If the message "
            f"mentions an opset or IR version, upgrade it: pip install --upgrade onnxruntime") from exc


def signature(session: Any = None) -> dict[str, list[dict[str, Any]]]:
    """The model's inputs and outputs: name, element type and shape (names or None for free dimensions)."""
    session = session or _default_session()

    def describe(args: Any) -> list[dict[str, Any]]:
        return [{"name": a.name, "dtype": _dtype_name(a.type), "shape": list(a.shape) if a.shape is not None
                 else None} for a in args]
    return {"inputs": describe(session.get_inputs()), "outputs": describe(session.get_outputs())}


def predict(inputs: Any, session: Any = None) -> dict[str, np.ndarray]:
    """Run the model. ``inputs``: a dict of input name -> array, or one array when the model has one input.

    Inputs are checked against the model's signature (names, element types, number of dimensions and fixed
    sizes) and :class:`InputError` says what does not match. Returns a dict of output name -> array.
    """
    session = session or _default_session()
    feeds = _check_inputs(inputs, session.get_inputs())
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def main(argv: list[str] | None = None) -> int:
    """Command line: run the model on the arrays in a .npy or .npz file and print or save the outputs."""
    parser = argparse.ArgumentParser(
        prog=Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "predict",
        description="Run the packaged model on the arrays in FILE and print the outputs (or save them with -o).")
    parser.add_argument("file", type=Path, help=".npy (for a model with one input) or .npz with one array per "
                                                "input name")
    parser.add_argument("-o", "--output", type=Path, help="save the outputs: .npy (one output) or .npz")
    args = parser.parse_args(argv)
    try:
        outputs = predict(_read_inputs(args.file))
        if args.output is None:
            _print_outputs(outputs)
        else:
            _save_outputs(outputs, args.output)
    except (InputError, OSError, ValueError, RuntimeError) as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    return 0


# -- checking inputs -------------------------------------------------------------------------------------


def _check_inputs(inputs: Any, expected: list[Any]) -> dict[str, Any]:
    if not isinstance(inputs, Mapping):
        if len(expected) != 1:
            raise InputError(f"This model takes {len(expected)} inputs, so pass a dict of name -> array: "
                             f"{_describe_all(expected)}.")
        inputs = {expected[0].name: inputs}
    by_name = {e.name: e for e in expected}
    unknown = [name for name in inputs if name not in by_name]
    if unknown:
        raise InputError(f"Unknown input {', '.join(repr(n) for n in unknown)}; this model takes "
                         f"{_describe_all(expected)}.")
    missing = [name for name in by_name if name not in inputs]
    if missing:
        raise InputError(f"Missing input {', '.join(repr(n) for n in missing)}; this model takes "
                         f"{_describe_all(expected)}.")
    return {name: _check_one(inputs[name], by_name[name]) for name in by_name}


def _check_one(value: Any, spec: Any) -> Any:
    dtype = _DTYPES.get(spec.type)
    if not isinstance(value, np.ndarray):
        try:
            value = np.asarray(value, dtype=dtype)
        except (TypeError, ValueError) as exc:
            raise InputError(f"Input '{spec.name}' cannot be read as an array of {_dtype_name(spec.type)}: "
                             f"{exc}.") from None
    if dtype is np.object_ and value.dtype.kind in "UO":
        pass  # onnxruntime takes Python strings as str or object arrays
    elif dtype is not None and value.dtype != np.dtype(dtype):
        raise InputError(f"Input '{spec.name}' must hold {_dtype_name(spec.type)} values, not {value.dtype}; "
                         f"convert it with .astype('{np.dtype(dtype).name}').")
    shape = spec.shape
    if shape is None:
        return value
    if value.ndim != len(shape):
        hint = " (add a batch dimension with x[None])" if value.ndim == len(shape) - 1 else ""
        raise InputError(f"Input '{spec.name}' must have {len(shape)} dimensions {_shape(shape)}, not "
                         f"{value.ndim} {list(value.shape)}{hint}.")
    for axis, (want, got) in enumerate(zip(shape, value.shape)):
        if isinstance(want, int) and want >= 0 and want != got:
            raise InputError(f"Dimension {axis} of input '{spec.name}' must be {want}, not {got} "
                             f"(expected {_shape(shape)}, got {list(value.shape)}).")
    return value


def _describe_all(specs: list[Any]) -> str:
    return ", ".join(f"'{s.name}' ({_dtype_name(s.type)} {_shape(s.shape)})" for s in specs)


def _dtype_name(onnx_type: str) -> str:
    dtype = _DTYPES.get(onnx_type)
    if dtype is None:
        return onnx_type
    return "string" if dtype is np.object_ else np.dtype(dtype).name


def _shape(shape: Any) -> str:
    if shape is None:
        return "[any shape]"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _default_session() -> Any:
    global _session
    with _lock:
        if _session is None:
            _session = load()
        return _session


# -- files -----------------------------------------------------------------------------------------------


def _read_inputs(path: Path) -> Any:
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix.lower() != ".npz":
        raise InputError(f"{path.name} is not a .npy or .npz file.")
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    names = [i.name for i in _default_session().get_inputs()]
    if all(name in arrays for name in names):
        return {name: arrays[name] for name in names}
    if len(names) == 1 and len(arrays) == 1:
        return next(iter(arrays.values()))
    raise InputError(f"{path.name} holds {', '.join(arrays) or 'no arrays'}; name the arrays after the model's "
                     f"inputs: {', '.join(names)}.")


def _print_outputs(outputs: dict[str, np.ndarray]) -> None:
    for name, value in outputs.items():
        print(f"{name}: {value.dtype} {list(value.shape)}")
        print(np.array2string(value, threshold=200, edgeitems=3))


def _save_outputs(outputs: dict[str, np.ndarray], path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with zipfile.ZipFile(path, "w") as archive:  # like np.savez, but any output name works
            for name, value in outputs.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, value, allow_pickle=False)
    elif suffix != ".npy":
        raise InputError(f"Cannot save to {path.name}: give a file name ending in .npy or .npz.")
    elif len(outputs) == 1:
        np.save(path, next(iter(outputs.values())), allow_pickle=False)
    else:
        raise InputError(f"The model has {len(outputs)} outputs ({', '.join(outputs)}); save them to a .npz file.")
