"""The command line: a thin front end that parses arguments, calls the core and prints.

``workbench`` with no arguments opens the window on the bundled sample; ``workbench FILE`` opens FILE;
``workbench --screenshot OUT.png [FILE]`` renders the window offscreen to a PNG and exits.
Subcommands run headless; ``--json`` prints machine-readable output. Failures print one line (no
traceback) and exit non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from . import __version__
from .core.document import ModelDocument
from .core.errors import (Cancelled, DangerousPickle, FileProblem, MissingDependency, UntrustedPickle,
                          WorkbenchError)
from .core.jobs import Job, Progress
from .core.text import format_bytes, format_count, format_shape

# Exit status per error type, most specific first. 0 is success.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (Cancelled, 130),
    (DangerousPickle, 4),
    (UntrustedPickle, 3),
    (FileProblem, 2),
    (MissingDependency, 5),
    (WorkbenchError, 1),
)
EXIT_UNEXPECTED = 70

SUBCOMMANDS = ("inspect",)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or args_list[0] == "--screenshot" or (args_list[0] not in SUBCOMMANDS
                                                            and not args_list[0].startswith("-")):
        return gui_main(args_list)
    parser = _parser()
    args = parser.parse_args(args_list)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("Cancelled.", file=sys.stderr)
        return 130
    except BaseException as exc:  # noqa: BLE001 - the one place errors become messages
        if isinstance(exc, SystemExit):
            raise
        return _report(exc, json_mode=getattr(args, "json", False))


def gui_main(argv: list[str]) -> int:
    """`workbench [--screenshot OUT.png] [FILE]`: the desktop window, or a one-line reason it cannot open."""
    parser = argparse.ArgumentParser(prog="workbench", description="Open the Model Workbench window.",
                                     epilog="Headless commands: workbench inspect --help")
    parser.add_argument("file", nargs="?", help="model file or folder (default: the bundled sample model)")
    parser.add_argument("--screenshot", metavar="OUT.png", type=Path,
                        help="render the window offscreen once the model and its graph are shown, save it, exit")
    args = parser.parse_args(argv)
    if args.screenshot is None and not display_available():
        print("workbench: no display was found, so the window cannot open. Showing the summary here instead; use "
              "`workbench --screenshot OUT.png [FILE]` to render the window to an image, or `workbench inspect "
              "FILE` and the other headless commands.", file=sys.stderr)
        return _run(_parser().parse_args(["inspect", *([args.file] if args.file else [])]))
    try:
        from .gui.app import run
    except ImportError as exc:
        print(f"workbench: the desktop window needs PySide6, which could not be loaded ({exc}). Install it with "
              f"`pip install PySide6`, or use `workbench inspect FILE`.", file=sys.stderr)
        return 5
    try:
        return run(args.file, screenshot=args.screenshot)
    except KeyboardInterrupt:
        return 130


def display_available() -> bool:
    """Whether a window can be shown: a display server, or an explicit Qt platform such as offscreen."""
    if os.environ.get("QT_QPA_PLATFORM"):
        return True
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def _report(exc: BaseException, *, json_mode: bool) -> int:
    if isinstance(exc, WorkbenchError):
        message = exc.user_message()
        code = next(c for t, c in EXIT_CODES if isinstance(exc, t))
    else:
        message = (f"Unexpected problem ({type(exc).__name__}: {exc}). Please report it; set WORKBENCH_DEBUG=1 "
                   f"to see the details.")
        code = EXIT_UNEXPECTED
        if os.environ.get("WORKBENCH_DEBUG"):
            import traceback

            traceback.print_exception(exc)
    message = " ".join(message.split())  # one line, always
    if json_mode:
        error: dict[str, Any] = {"type": type(exc).__name__, "message": message}
        if isinstance(exc, WorkbenchError) and exc.path is not None:
            error["path"] = str(exc.path)
        if isinstance(exc, UntrustedPickle):
            error["imports"] = exc.imports
        print(json.dumps({"error": error}, ensure_ascii=False))
    print(f"workbench: {message}", file=sys.stderr)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench", description="Open, inspect, compress and publish trained neural networks.",
        epilog="With no command, `workbench [FILE]` opens the window on FILE (the bundled sample if omitted), "
               "and `workbench --screenshot OUT.png [FILE]` saves an image of it.")
    parser.add_argument("--version", action="version", version=f"Model Workbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="summarise a model file: format, size, tensors, inputs and outputs")
    p.add_argument("file", nargs="?", help="model file or folder (default: the bundled sample model)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--trust", action="store_true",
                   help="allow pickled Python objects to load (runs code from the file; only for files you trust)")
    p.add_argument("--sparsity", action="store_true", help="also read the weights and report zero fractions")
    p.add_argument("--all-tensors", action="store_true", help="list every tensor, not just the largest")
    p.set_defaults(func=cmd_inspect)
    return parser


def _progress_printer(stream: TextIO) -> Callable[[Progress], None] | None:
    if not stream.isatty():
        return None

    def show(p: Progress) -> None:
        pct = f"{p.fraction * 100:5.1f}% " if p.fraction is not None else ""
        stream.write(f"\r{pct}{p.message[:70]:<70}")
        if p.fraction is not None and p.fraction >= 1:
            stream.write("\r" + " " * 78 + "\r")
        stream.flush()
    return show


def cmd_inspect(args: argparse.Namespace) -> int:
    from .core.formats import open_model

    path = args.file
    if path is None:
        from .resources import sample_model

        path = sample_model()
    job = Job(_progress_printer(sys.stderr))
    doc = open_model(path, trust=args.trust, job=job)
    if args.sparsity:
        doc.compute_sparsity(job)
    if args.json:
        print(json.dumps(doc.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(render_summary(doc, all_tensors=args.all_tensors))
    return 0


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


if __name__ == "__main__":
    raise SystemExit(main())
