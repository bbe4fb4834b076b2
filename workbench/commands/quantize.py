"""`workbench quantize MODEL -o OUT.onnx`: write a quantized copy of an ONNX model and say what changed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.jobs import Job
from ..core.text import format_bytes
from .common import print_json, terminal_job

if TYPE_CHECKING:
    from ..core.evaluate.datasets import EvalData
    from ..core.optimize.accuracy_aware import AccuracyAwareResult
    from ..core.optimize.quantize import QuantizeResult

METHOD_CHOICES = ("auto", "static-int8", "dynamic-int8", "fp16", "int4")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "quantize", help="write a smaller (quantized) copy of an ONNX model",
        description="Write a quantized copy of an ONNX model with onnxruntime and report what was quantized. "
                    "With --max-drop, nodes that cost too much accuracy are kept in float, round by round; the "
                    "exit status is 1 when the limit could not be met (the best attempt is still written).")
    p.add_argument("model", type=Path, help="the ONNX model (never modified)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.onnx", help="where to write the copy")
    p.add_argument("--method", choices=METHOD_CHOICES, default="auto",
                   help="auto (default) picks static int8 for convolution-heavy models and dynamic int8 for "
                        "MatMul-heavy ones; fp16 halves the size; int4 packs MatMul weights in 4 bits")
    p.add_argument("--data", type=Path, metavar="PATH.npz",
                   help="inputs (x) and optional labels (y) for calibration and for --max-drop; without it the "
                        "bundled digits data is used when the model takes the same images")
    p.add_argument("--max-drop", type=float, metavar="POINTS",
                   help="largest accuracy loss allowed, in percentage points (1 = one point); without labels, "
                        "the loss of top-1 agreement with the original")
    p.add_argument("--rounds", type=int, default=6, metavar="N", help="at most N attempts with --max-drop (6)")
    p.add_argument("--exclude", nargs="+", default=[], metavar="NODE", help="node names to keep in float")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.errors import WorkbenchError

    job = terminal_job()
    data = _load_data(args.model, args.data, job) if args.data else None
    if args.max_drop is None:
        from ..core.optimize.quantize import quantize

        result = quantize(args.model, args.output, method=args.method, calibration=data,
                          exclude_nodes=args.exclude, job=job)
        if args.json:
            print_json(result.to_dict())
        else:
            print(render_result(result))
        return 0
    from ..core.optimize.accuracy_aware import quantize_within

    if data is None:
        data = _sample_if_matching(args.model, job)
        if data is None:
            raise WorkbenchError(f"--max-drop needs data to measure accuracy on, and {args.model.name} does not take "
                                 f"the bundled sample's images.",
                                 hint="Pass --data FILE.npz with inputs x (and labels y if you have them).")
    search = quantize_within(args.model, args.output, max_drop=args.max_drop / 100, data=data,
                             method=args.method, max_rounds=args.rounds,
                             exclude_nodes=args.exclude, job=job)
    if args.json:
        print_json(search.to_dict())
    else:
        print(render_search(search))
    if not search.met:
        print(f"workbench: {search.message}", file=sys.stderr)
    return 0 if search.met else 1


def render_result(r: QuantizeResult) -> str:
    """The plain-words report of one quantization run."""
    from ..core.optimize.quantize import METHOD_LABELS

    lines = [f"Quantized {r.input_path.name} to {r.output_path}: {METHOD_LABELS[r.method]}.", ""]

    def row(label: str, value: str) -> None:
        lines.append(f"  {label:<12} {value}")

    row("Why", r.method_reason)
    kinds = ", ".join(f"{op} {n}" for op, n in r.quantizable_by_type.items())
    row("Quantized", f"{r.quantized} of {r.quantizable} {r.unit}" + (f" ({kinds})" if kinds else "")
        + (f", {r.quantizable_in_subgraphs} of them inside If/Loop subgraphs" if r.quantizable_in_subgraphs else ""))
    row("Graph now", ", ".join(f"{n} {op}" for op, n in r.counts.items()) or "no quantized nodes")
    row("Size", f"{format_bytes(r.size_before)} -> {format_bytes(r.size_after)} ({_ratio(r.size_ratio)})")
    row("Settings", ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in r.settings.items()))
    if r.excluded_nodes:
        row("Kept float", ", ".join(r.excluded_nodes))
    for i, f in enumerate(r.output_files):
        row("Files" if i == 0 else "", f"{f} ({format_bytes(f.stat().st_size)})")
    row("Tools", ", ".join(f"{k} {v}" for k, v in r.versions.items()))
    lines += [f"  WARNING: {w}" for w in r.warnings]
    lines += [f"  Note: {n}" for n in r.notes]
    return "\n".join(lines)


def render_search(s: AccuracyAwareResult) -> str:
    """The plain-words report of an accuracy-aware search, then of the variant it wrote."""
    lines = [f"Accuracy-aware quantization, measured as {s.metric} on {s.data_source}:",
             f"  {'Original':<12} {s.baseline:.2%}"]
    for a in s.attempts:
        kept = f"kept in float: {', '.join(a.excluded)}" if a.excluded else "nothing kept in float"
        verdict = "within the limit" if a.within_limit else "over the limit"
        lines.append(f"  {f'Round {a.round}':<12} {a.score:.2%} (drop {a.drop * 100:.2f} points; {verdict}), "
                     f"{a.quantized} quantized, {kept}")
    lines += ["", s.message]
    lines += [f"Note: {n}" for n in s.notes]
    if s.result is not None:
        lines += ["", render_result(s.result)]
    return "\n".join(lines)


def _ratio(ratio: float) -> str:
    return f"{ratio:.2f}x smaller" if ratio >= 1 else f"{1 / ratio:.2f}x larger"


def _load_data(model: Path, path: Path, job: Job) -> EvalData:
    from ..core.evaluate.datasets import load_npz
    from ..core.formats import open_model

    doc = open_model(model, job=job)
    return load_npz(path, doc.inputs[0].name if doc.inputs else "input")


def _sample_if_matching(model: Path, job: Job) -> EvalData | None:
    from ..core.evaluate.datasets import sample_data
    from ..core.formats import open_model

    doc = open_model(model, job=job)
    if len(doc.inputs) == 1 and doc.inputs[0].shape is not None and tuple(doc.inputs[0].shape[1:]) == (1, 8, 8):
        sample = sample_data()
        return type(sample)({doc.inputs[0].name: sample.inputs["image"]}, sample.labels, sample.source)
    return None
