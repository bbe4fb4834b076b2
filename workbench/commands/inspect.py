"""`workbench inspect FILE`: summarise a model file."""

from __future__ import annotations

import argparse

from ..core.document import ModelDocument
from ..core.text import format_bytes, format_count, format_shape
from .common import report, terminal_job


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("inspect", help="summarise a model file: format, size, tensors, inputs and outputs")
    p.add_argument("file", nargs="?", help="model file or folder (default: the bundled sample model)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--trust", action="store_true",
                   help="allow pickled Python objects to load (runs code from the file; only for files you trust)")
    p.add_argument("--sparsity", action="store_true", help="also read the weights and report zero fractions")
    p.add_argument("--all-tensors", action="store_true", help="list every tensor, not just the largest")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.formats import open_model

    path = args.file
    if path is None:
        from ..resources import sample_model

        path = sample_model()
    job = terminal_job()
    doc = open_model(path, trust=args.trust, job=job)
    if args.sparsity:
        doc.compute_sparsity(job)
    return report(args, doc.to_dict(), render_summary(doc, all_tensors=args.all_tensors))


def render_summary(doc: ModelDocument, *, all_tensors: bool = False) -> str:
    """The human-readable summary printed by ``workbench inspect``."""
    lines = [f"{doc.path.name} - {doc.format_label}", ""]

    def row(label: str, value: str) -> None:
        lines.append(f"  {label:<12} {value}")

    row("Size", f"{format_bytes(doc.size_bytes)} on disk in {len(doc.files)} file(s)")
    for f in doc.files:
        lines.append(f"  {'':<12}   {f.path.name} ({format_bytes(f.size)}, {f.role})")
    row("Parameters", f"{format_count(doc.parameters)} in {len(doc.tensors)} tensors")
    if doc.sparsity is not None and doc.overall_sparsity is not None:
        row("Sparsity", f"{doc.overall_sparsity:.1%} of stored values are zero")
    for label, values in (("Inputs", doc.inputs), ("Outputs", doc.outputs)):
        for i, v in enumerate(values):
            row(label if i == 0 else "", f"{v.name}  {v.dtype or ''}  {format_shape(v.shape)}")
    if doc.has_graph:
        ops = ", ".join(f"{op} x{n}" for op, n in list(doc.operators.items())[:12])
        more = len(doc.operators) - 12
        row("Operators", f"{doc.node_count:,} nodes: {ops}" + (f", and {more} more kinds" if more > 0 else ""))
        row("Graph", "available")
    else:
        row("Graph", "none. " + doc.graph_note)
    for key, value in doc.metadata.items():
        if value not in ("", None, {}, []):
            text = ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else str(value)
            row(key.replace("_", " ").capitalize(), text)
    if doc.tensors:
        lines += ["", "  Tensors" + ("" if all_tensors else " (largest first)") + ":"]
        shown = sorted(doc.tensors, key=lambda t: -t.nbytes)
        limit = len(shown) if all_tensors else 10
        width = min(48, max(len(t.name) for t in shown[:limit]))
        for t in shown[:limit]:
            sparsity = f"  {doc.sparsity[t.name]:.1%} zero" if doc.sparsity and t.name in doc.sparsity else ""
            lines.append(f"    {t.name:<{width}}  {t.dtype:<9} {format_shape(t.shape):<20} "
                         f"{format_bytes(t.nbytes):>10}{sparsity}")
        if len(shown) > limit:
            lines.append(f"    ... and {len(shown) - limit} more (use --all-tensors or --json)")
    for note in doc.notes:
        lines += ["", f"  Note: {note}"]
    return "\n".join(lines)
