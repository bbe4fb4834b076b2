"""`workbench compare ORIGINAL VARIANT...`: accuracy (or agreement), size and latency side by side."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from ..core.evaluate.compare import Comparison, ModelResult
from ..core.text import format_bytes
from .common import print_json, terminal_job


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("compare", help="compare an original ONNX model with its variants: accuracy, size, latency",
                       description="Run the original and each variant on the same data and compare accuracy (with "
                                   "labels) or agreement with the original (without), size on disk and latency.")
    p.add_argument("original", type=Path, help="the original ONNX model")
    p.add_argument("variants", type=Path, nargs="+", metavar="variant", help="variant ONNX models to compare with it")
    p.add_argument("--data", metavar="PATH",
                   help=".npz (x, y), .csv (features + label/y/target column) or a folder of images with one "
                        "sub-folder per class (default: the bundled digits for models shaped like the sample, "
                        "otherwise random inputs)")
    p.add_argument("--runs", type=_at_least(0), default=None, metavar="N",
                   help="timed runs per model for latency (default 50; 0 skips timing)")
    p.add_argument("--threads", type=_at_least(1), default=None, metavar="N",
                   help="intra-op threads per model (default 1, the most repeatable timings)")
    p.add_argument("--task", choices=("auto", "classification", "embedding"), default="auto",
                   help="how to read the models' first output (default: guessed from its shape and name)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--plot", type=Path, metavar="OUT.png", help="also save a chart of quality against size and latency")
    p.set_defaults(func=run)


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, not {value}")
        return value
    return parse


def run(args: argparse.Namespace) -> int:
    from ..core.evaluate.compare import DEFAULT_LATENCY_RUNS, compare
    from ..core.evaluate.datasets import load_data

    job = terminal_job()
    data = load_data(args.data, args.original, job=job)
    comparison = compare(args.original, list(args.variants), data, job=job, task=args.task, threads=args.threads,
                         latency_runs=DEFAULT_LATENCY_RUNS if args.runs is None else args.runs)
    if args.plot is not None:
        from ..core.evaluate.plot import plot_comparison

        plot_comparison(comparison, args.plot)
    if args.json:
        print_json(comparison.to_dict())
    else:
        print(render_comparison(comparison))
        if args.plot is not None:
            print(f"\nChart saved to {args.plot}")
    return 0


def render_comparison(c: Comparison) -> str:
    """The human-readable table and verdicts printed by ``workbench compare``."""
    what = "accuracy" if c.labelled else "agreement with the original" if c.task == "classification" else \
        "similarity to the original"
    lines = [f"Compared on {c.data_source}: {c.samples} samples, {what}.", ""]
    headers, rows = _table(c)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines.append("  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    lines.append("  " + "  ".join("-" * w for w in widths))
    lines += [("  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths))).rstrip() for r in rows]
    if c.latency_runs:
        lines.append(f"\n  Latency: batch of {c.latency_batch}, median and 90th percentile of {c.latency_runs} runs "
                     f"per model, alternating between models, {c.threads} thread(s) each.")
    for r in c.variants:
        lines += ["", f"{r.name}:"] + [f"  - {v}" for v in r.verdicts]
    if c.warnings:
        lines += ["", "Warnings:"] + [f"  ! {w}" for w in c.warnings]
    if c.notes:
        lines += ["", "Notes:"] + [f"  {n}" for n in c.notes]
    return "\n".join(lines)


def _table(c: Comparison) -> tuple[list[str], list[list[str]]]:
    headers = ["Model"]
    if c.labelled:
        headers += ["Accuracy", "Drop (95% CI)", "McNemar p"]
    elif c.task == "classification":
        headers += ["Agreement (95% CI)", "Flips", "SQNR"]
    else:
        headers += ["Cosine (mean / min)", "SQNR"]
    headers += ["Size", "gzip", "Latency median / p90"]
    return headers, [[_name(r)] + _quality_cells(c, r) + _cost_cells(r) for r in c.results]


def _name(r: ModelResult) -> str:
    return f"{r.name} (original)" if r.is_original else r.name


def _quality_cells(c: Comparison, r: ModelResult) -> list[str]:
    if c.labelled:
        acc = f"{r.accuracy:.2%}" if r.accuracy is not None else "-"
        if r.is_original or r.accuracy_drop is None or r.drop_ci is None:
            return [acc, "-", "-"]
        lo, hi = r.drop_ci
        return [acc, f"{r.accuracy_drop * 100:+.2f} pts ({lo * 100:+.2f} to {hi * 100:+.2f})",
                f"{r.mcnemar_p:.2g}" if r.mcnemar_p is not None else "-"]
    if r.is_original:
        return ["(reference)", "-", "-"] if c.task == "classification" else ["(reference)", "-"]
    sqnr = "-" if r.sqnr_db is None else "identical" if r.sqnr_db == float("inf") else f"{r.sqnr_db:.1f} dB"
    if c.task == "classification":
        lo, hi = r.agreement_ci or (0.0, 1.0)
        agreement = f"{r.agreement:.2%} ({lo:.1%} to {hi:.1%})" if r.agreement is not None else "-"
        return [agreement, str(r.flips if r.flips is not None else "-"), sqnr]
    cosine = f"{r.cosine_mean:.4f} / {r.cosine_min:.4f}" if r.cosine_mean is not None and r.cosine_min is not None \
        else "-"
    return [cosine, sqnr]


def _cost_cells(r: ModelResult) -> list[str]:
    latency = "-" if r.latency is None else f"{r.latency.median_ms:.3g} / {r.latency.p90_ms:.3g} ms"
    return [format_bytes(r.size_bytes), format_bytes(r.gzip_size_bytes), latency]
