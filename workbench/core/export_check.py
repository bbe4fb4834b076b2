"""Checking an exported model against PyTorch, and keeping torch's exporters quiet.

PyTorch and onnxruntime run on the same random inputs (fixed seed). An output passes when its largest
absolute difference is at most ``tolerance * max(1, largest absolute value of PyTorch's output)``:
absolute for outputs up to 1 in size, relative to the output's magnitude beyond.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import WorkbenchError
from .ortutil import cpu_session

if TYPE_CHECKING:
    from .export_load import InputSpec, LoadedModel

SEED = 0


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


def reference(model: LoadedModel, dynamic_batch: bool) -> Callable[..., Any]:
    """What PyTorch runs to produce the expected outputs."""
    if model.program is not None and not model.dynamic_program and dynamic_batch:
        # The program was traced at one batch size; its graph is run directly at others (skipping the
        # shape guard) so that a batch size it cannot handle shows up as a failure, not a silent pass.
        return model.module.forward
    return model.module


def run_torch(fn: Callable[..., Any], inputs: list[Any], model: LoadedModel) -> list[tuple[str, Any]]:
    """``fn`` run on ``inputs`` without gradients: its output tensors as (name, numpy array), flattened."""
    import torch

    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fn(*inputs)
    except Exception as exc:  # noqa: BLE001 - the model's own code can fail in any way
        shape = "x".join(map(str, inputs[0].shape)) if inputs else "()"
        raise WorkbenchError(f"{model.name} fails when run in PyTorch on an input of shape {shape}: "
                             f"{first_line(exc)}.",
                             hint="Check --input-shape (batch first) against what the model expects.",
                             path=model.source) from None
    flat = _flatten(out, "")
    if not flat:
        raise WorkbenchError(f"{model.name} returns no tensors, so there is nothing to export.",
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


def validate(path: Path, model: LoadedModel, expected: dict[int, list[tuple[str, Any]]],
             tolerance: float) -> tuple[dict[str, float], dict[str, float], Any]:
    """Run the ONNX file at ``path`` on the inputs ``expected`` was computed from and compare: the largest
    difference and the allowed one per output, and the file opened as a document; raises when any is over."""
    import numpy as np

    from .formats import open_model

    doc = open_model(path)
    try:
        session = cpu_session(path)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise WorkbenchError(f"The exported model for {model.name} does not load in onnxruntime: "
                             f"{first_line(exc)}.", hint="Try another --opset.", path=model.source) from None
    feeds = [i.name for i in session.get_inputs()]
    names = [o.name for o in session.get_outputs()]
    diffs: dict[str, float] = {}
    limits: dict[str, float] = {}
    for batch, outputs in expected.items():
        inputs = [t.numpy() for t in sample_inputs(model.inputs, batch)]
        if len(feeds) != len(inputs) or len(names) != len(outputs):
            raise WorkbenchError(f"The exported model has {len(feeds)} inputs and {len(names)} outputs, but "
                                 f"{model.name} has {len(inputs)} and {len(outputs)}; it was not kept.",
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
