"""`workbench prune FILE -o OUT.onnx (--sparsity F | --channels F)`: make a model sparse or narrower."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.optimize.prune import PruneResult
from ..core.text import format_bytes
from .common import report, terminal_job
from .export import add_model_arguments


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "prune", help="zero the smallest weights of an ONNX model, or remove channels from a PyTorch model",
        description="--sparsity F zeroes that fraction of an ONNX model's weights (the file only compresses "
                    "better); --channels F removes that fraction of a PyTorch model's channels (really smaller, "
                    "but accuracy drops without fine-tuning) and writes ONNX.")
    p.add_argument("file", type=Path, help="ONNX model (--sparsity) or PyTorch model (--channels)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.onnx", help="where to write the result")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--sparsity", type=_fraction, metavar="F", help="fraction of weights to set to zero, e.g. 0.5")
    how.add_argument("--channels", type=_fraction, metavar="F", help="fraction of channels to remove, e.g. 0.5")
    add_model_arguments(p)
    p.add_argument("--opset", type=int, default=18, metavar="N", help="ONNX opset for --channels (default 18)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (e.g. 0.5), not {text}")
    return value


def run(args: argparse.Namespace) -> int:
    from ..core.errors import WorkbenchError
    from ..core.formats.base import probe
    from ..core.formats.onnx_reader import OnnxReader
    from ..core.optimize.prune import prune_onnx_magnitude, prune_structured

    job = terminal_job()
    is_onnx = OnnxReader().match(probe(args.file))
    if args.sparsity is not None:
        if not is_onnx:
            raise WorkbenchError(f"--sparsity works on ONNX files, and {args.file.name} is not one.",
                                 hint="Export it first (workbench export), or remove channels with --channels.",
                                 path=args.file)
        result = prune_onnx_magnitude(args.file, args.output, sparsity=args.sparsity, job=job)
    else:
        if is_onnx:
            raise WorkbenchError(f"--channels needs the PyTorch model, and {args.file.name} is ONNX.",
                                 hint="Give the PyTorch file with --model-class, or zero weights with --sparsity.",
                                 path=args.file)
        result = prune_structured(args.file, args.output, ratio=args.channels, model_class=args.model_class,
                                  input_shape=args.input_shape, trust=args.trust, opset=args.opset, job=job)
    return report(args, result.to_dict(), render_prune(result))


def render_prune(r: PruneResult) -> str:
    """What `workbench prune` prints for people."""
    if r.method == "magnitude":
        head = f"{r.achieved:.1%} of the weights set to zero (asked for {r.requested:.0%})"
        params = (f"{r.parameters_after:,} stored, {r.nonzero_after:,} of them non-zero "
                  f"(before: {r.nonzero_before:,} non-zero)")
    else:
        head = f"removed {r.achieved:.1%} of the channels (asked for {r.requested:.0%})"
        params = (f"{r.parameters_before:,} -> {r.parameters_after:,} "
                  f"({r.parameters_after / r.parameters_before:.0%} remain)")
    lines = [f"Pruned {r.source.name} into {r.path}: {head}.", ""]

    def row(label: str, value: str) -> None:
        lines.append(f"  {label:<18} {value}")

    row("Parameters", params)
    row("Size on disk", f"{format_bytes(r.size_before)} -> {format_bytes(r.size_after)}")
    row("Compressed (gzip)", f"{format_bytes(r.gzip_before)} -> {format_bytes(r.gzip_after)} "
                             f"({r.gzip_after / r.gzip_before:.0%})")
    if r.export is not None:
        worst = max(r.export.max_abs_diff.values())
        row("Checked", f"the ONNX file matches the pruned PyTorch model (largest difference {worst:.2g})")
    lines += [""] * bool(r.notes) + [f"  Note: {n}" for n in r.notes]
    return "\n".join(lines)
