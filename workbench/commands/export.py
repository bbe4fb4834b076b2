"""`workbench export FILE -o OUT.onnx`: convert a PyTorch model to ONNX, checked against PyTorch."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.export import ExportResult
from ..core.text import format_bytes, format_shape
from .common import report, terminal_job


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "export", help="convert a PyTorch model (TorchScript, .pt2, state_dict + class) to ONNX",
        description="Convert a PyTorch model to ONNX, then run both on the same random inputs and keep the ONNX "
                    "file only if their outputs match.")
    p.add_argument("file", type=Path, help="TorchScript file, torch.export .pt2, state_dict, checkpoint or pickled "
                                           "whole model")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.onnx", help="where to write the ONNX model")
    p.add_argument("--opset", type=int, default=18, metavar="N", help="ONNX operator set version (default 18)")
    p.add_argument("--no-dynamic-batch", action="store_true",
                   help="fix the batch size to that of --input-shape instead of leaving it variable")
    add_model_arguments(p)
    p.add_argument("--tolerance", type=float, default=1e-4, metavar="T",
                   help="largest difference allowed between PyTorch's and the ONNX model's outputs, relative to "
                        "the output's size when that is above 1 (default 1e-4)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--model-class, --input-shape and --trust, shared with `workbench prune`."""
    p.add_argument("--model-class", metavar="FILE.py:Class",
                   help="the Python class the weights belong to (needed for state_dicts and checkpoints; it is run)")
    p.add_argument("--input-shape", type=parse_shape, metavar="1,3,224,224",
                   help="the input's shape, batch first (needed unless the file is a .pt2 program)")
    p.add_argument("--trust", action="store_true",
                   help="allow a pickled whole model to load (runs code from the file; only for files you trust)")


def parse_shape(text: str) -> tuple[int, ...]:
    """'1,3,224,224' or '1x3x224x224' -> (1, 3, 224, 224)."""
    parts = text.replace("x", ",").replace(" ", "").split(",")
    try:
        shape = tuple(int(p) for p in parts if p)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape; write sizes separated by commas, e.g. "
                                         f"1,3,224,224") from None
    if not shape or any(d < 1 for d in shape):
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape; sizes must be whole numbers of 1 or more")
    return shape


def run(args: argparse.Namespace) -> int:
    from ..core.export import export_to_onnx

    result = export_to_onnx(args.file, args.output, opset=args.opset, dynamic_batch=not args.no_dynamic_batch,
                            model_class=args.model_class, input_shape=args.input_shape, trust=args.trust,
                            tolerance=args.tolerance, job=terminal_job())
    return report(args, result.to_dict(), render_export(result))


def render_export(r: ExportResult) -> str:
    """What `workbench export` prints for people."""
    source = r.source.name if r.source is not None else "the model"
    lines = [f"Exported {source} ({r.source_label}) to {r.path}.", ""]

    def row(label: str, value: str) -> None:
        lines.append(f"  {label:<10} {value}")

    row("Files", ", ".join(f"{p.name} ({format_bytes(p.stat().st_size)})" for p in r.files))
    batch = "variable batch size" if r.dynamic_batch else "fixed batch size"
    exporter = "dynamo exporter" if r.exporter == "dynamo" else "TorchScript-based exporter"
    row("ONNX", f"opset {r.opset}, {batch}, {exporter}")
    for label, values in (("Inputs", r.inputs), ("Outputs", r.outputs)):
        for i, v in enumerate(values):
            row(label if i == 0 else "", f"{v.name}  {v.dtype or ''}  {format_shape(v.shape)}")
    worst = max(r.max_abs_diff, key=lambda k: r.max_abs_diff[k])
    batches = " and ".join(str(b) for b in r.checked_batches)
    row("Checked", f"PyTorch and onnxruntime agree on random inputs (batch {batches}): largest difference "
                   f"{r.max_abs_diff[worst]:.2g} on '{worst}' (allowed {r.limits[worst]:.2g})")
    row("Versions", ", ".join(f"{k} {v}" for k, v in r.versions.items()))
    lines += [""] * bool(r.notes) + [f"  Note: {n}" for n in r.notes]
    return "\n".join(lines)
