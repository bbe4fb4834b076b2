"""Feeding data to an ONNX model: its real inputs, arrays checked and cast to fit them, batches it accepts,
and the calibration data static int8 needs (given, the bundled sample data, or random numbers if allowed).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import WorkbenchError
from ..evaluate.datasets import EvalData
from ..jobs import Job
from .graph_ops import FLOAT

if TYPE_CHECKING:
    import numpy as np
    import onnx

CALIBRATION_SAMPLES = 128
RANDOM_CALIBRATION_WARNING = ("calibrating on random data usually destroys accuracy: the int8 ranges were "
                              "measured on noise, not on inputs like the real ones")

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


class CalibrationReader:
    """Feeds calibration batches of ``data`` for the model at ``path`` to onnxruntime, reporting progress and
    honouring cancellation."""

    def __init__(self, path: Path, data: EvalData, model_name: str, job: Job) -> None:
        import onnx

        inputs = model_inputs(onnx.load(str(path), load_external_data=False))
        data = data.subset(CALIBRATION_SAMPLES)
        self.batches = list(batches(inputs, feeds_for(inputs, data, model_name), 16))
        self.done = 0
        self.job = job

    def get_next(self) -> dict[str, Any] | None:
        self.job.progress(30 + 50 * self.done / max(1, len(self.batches)), 100, "Calibrating")
        if self.done >= len(self.batches):
            return None
        self.done += 1
        return self.batches[self.done - 1]


def calibration_data(model: onnx.ModelProto, path: Path, given: EvalData | None, allow_random: bool,
                     auto_reason: str | None) -> tuple[EvalData, list[str], list[str]]:
    """The data to calibrate ``model`` (read from ``path``) on, with notes and warnings about it."""
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
    return inputs[0][1] == FLOAT and dims is not None and len(dims) == 4 and dims[1:] == [1, 8, 8]


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
