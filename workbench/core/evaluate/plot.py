"""A picture of a comparison: quality against size on disk and against latency, one labelled point per model.

Drawn with Matplotlib's Agg canvas directly (no pyplot, no global backend switch), so it is safe in the GUI's
background tasks; Matplotlib is imported only when a plot is made.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from ..deps import require
from ..errors import FileProblem
from .compare import Comparison, ModelResult

ORIGINAL_COLOUR = "#d62728"
VARIANT_COLOUR = "#1f77b4"


def plot_comparison(comparison: Comparison, out_png: Path) -> Path:
    """Write the two-panel chart to ``out_png`` (atomically) and return its path."""
    require("matplotlib", needed_for="Drawing the comparison chart", label="Matplotlib", pip="matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_png = Path(out_png)
    if not out_png.parent.is_dir():
        raise FileProblem(f"The folder {out_png.parent} does not exist, so the chart cannot be saved there.",
                          path=out_png.parent)
    label, values = quality(comparison)
    errors = [r.accuracy_ci if comparison.labelled else None for r in comparison.results]
    fig = Figure(figsize=(11, 4.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    size_ax, latency_ax = fig.subplots(1, 2, sharey=True)
    unit, scale = ("MB", 1e6) if max(r.size_bytes for r in comparison.results) >= 1e6 else ("KB", 1e3)
    _scatter(size_ax, [r.size_bytes / scale for r in comparison.results], values, errors, comparison.results)
    size_ax.set_xlabel(f"Size on disk ({unit})")
    size_ax.set_ylabel(label + (" with 95% interval" if comparison.labelled else ""))
    size_ax.set_title("Quality against size")
    timed = [r.latency.median_ms if r.latency is not None else None for r in comparison.results]
    if all(t is not None for t in timed):
        _scatter(latency_ax, timed, values, errors, comparison.results)
        latency_ax.set_xlabel(f"Latency, median of {comparison.latency_runs} runs (ms, batch {comparison.latency_batch})")
    else:
        latency_ax.text(0.5, 0.5, "Latency was not measured", ha="center", va="center", transform=latency_ax.transAxes)
    latency_ax.set_title("Quality against latency")
    what = "random inputs" if comparison.synthetic else comparison.data_source
    fig.suptitle(f"{comparison.original.name} and {len(comparison.variants)} variant(s), on {what}")
    tmp = out_png.parent / f".{out_png.name}.{secrets.token_hex(4)}.tmp"  # made like any new file (umask applies)
    try:
        with tmp.open("xb") as fh:
            fig.savefig(fh, format="png")
        os.replace(tmp, out_png)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise FileProblem(f"The chart cannot be saved as {out_png} ({exc.strerror or exc}).",
                          hint="Choose a folder you can write to.", path=out_png) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out_png


def quality(comparison: Comparison) -> tuple[str, list[float | None]]:
    """The quality axis: accuracy with labels, else top-1 agreement, else mean cosine similarity (in %)."""
    results = comparison.results
    if comparison.labelled:
        return "Accuracy (%)", [_percent(r.accuracy) for r in results]
    if comparison.task == "classification":
        return "Agreement with the original (%)", [100.0] + [_percent(r.agreement) for r in results[1:]]
    return "Cosine similarity to the original (%)", [100.0] + [_percent(r.cosine_mean) for r in results[1:]]


def _percent(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def _scatter(ax: Any, xs: list[float | None], ys: list[float | None], errors: list[tuple[float, float] | None],
             results: tuple[ModelResult, ...]) -> None:
    """One labelled point per model; the original drawn last (on top) as a red star. The x axis starts at 0,
    so distances show true ratios; labels of points that nearly coincide are stacked so none hides another."""
    shown = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]
    if not shown:
        return
    x_max = max(x for x, _ in shown) or 1.0
    y_span = (max(y for _, y in shown) - min(y for _, y in shown)) or 1.0
    placed: list[tuple[float, float]] = []
    for i in sorted(range(len(results)), key=lambda i: results[i].is_original):
        x, y, r = xs[i], ys[i], results[i]
        if x is None or y is None:
            continue
        colour = ORIGINAL_COLOUR if r.is_original else VARIANT_COLOUR
        interval = errors[i]
        if interval is not None:
            ax.errorbar([x], [y], yerr=[[y - 100 * interval[0]], [100 * interval[1] - y]], color=colour, alpha=0.5,
                        capsize=3, zorder=2)
        ax.scatter([x], [y], s=140 if r.is_original else 60, marker="*" if r.is_original else "o", color=colour,
                   zorder=4 if r.is_original else 3)
        near = sum(abs(x - px) <= 0.04 * x_max and abs(y - py) <= 0.04 * y_span for px, py in placed)
        placed.append((x, y))
        ax.annotate(r.name + (" (original)" if r.is_original else ""), (x, y), textcoords="offset points",
                    xytext=(7, 5 + 11 * near), fontsize=8, color=colour)
    ax.grid(True, alpha=0.3)
    ax.margins(y=0.15)
    ax.set_xlim(0, x_max * 1.4)  # room on the right for the labels
