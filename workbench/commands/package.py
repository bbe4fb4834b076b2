"""`workbench package TARGET ...`: build what would be published, into a folder, without sending anything.

Targets: ``pypi`` (a pip-installable wheel with the model, its inference code and a console command).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.text import format_bytes
from .common import report, terminal_job

if TYPE_CHECKING:
    from ..core.jobs import Job
    from ..core.package.wheel import WheelPlan, WheelResult


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("package", help="build a package of a model into a folder (nothing is uploaded)",
                       description="Build exactly what `workbench publish` would upload, into a folder.")
    targets = p.add_subparsers(dest="target", required=True, metavar="TARGET")
    pypi = targets.add_parser(
        "pypi", help="a wheel: pip install it, then import it or run NAME-predict FILE.npz",
        description="Build a wheel holding the ONNX model (with its external data), a Python API (load(), "
                    "predict()) and a console command NAME-predict. The same inputs give a byte-identical wheel.")
    pypi.add_argument("model", type=Path, help="the ONNX model (never modified)")
    add_wheel_arguments(pypi)
    pypi.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", help="folder to write the wheel to")
    pypi.add_argument("--json", action="store_true", help="print JSON instead of text")
    pypi.set_defaults(func=run_pypi)


def add_wheel_arguments(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The wheel's settings, shared with `workbench publish pypi MODEL`."""
    p.add_argument("--name", required=required, help="the package name, e.g. digits-cnn (PyPI: must be free)")
    p.add_argument("--version", required=required, help="the package version, e.g. 1.0.0 (PEP 440)")
    p.add_argument("--license", metavar="SPDX", help="the license as an SPDX expression, e.g. MIT or Apache-2.0")
    p.add_argument("--license-file", type=Path, action="append", default=[], metavar="FILE",
                   help="a license text to include (repeat for several)")
    p.add_argument("--readme", type=Path, metavar="README.md", help="the model card, in Markdown, shown on PyPI "
                                                                     "(default: a short usage page)")
    p.add_argument("--summary", help="one line describing the package")


def wheel_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for ``plan_wheel`` from the parsed arguments."""
    from ..core.errors import FileProblem

    files: dict[str, str | Path] = {}
    for f in args.license_file:
        if f.name in files:
            raise FileProblem(f"Two license files are named {f.name}; give them different names.", path=f)
        files[f.name] = f
    readme = None
    if args.readme is not None:
        try:
            readme = args.readme.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise FileProblem(f"Cannot read the model card {args.readme}: {exc}.", path=args.readme) from None
    return {"name": args.name, "version": args.version, "license_expression": args.license,
            "license_files": files, "readme_markdown": readme, "summary": args.summary}


def plan_from_args(model: Path, args: argparse.Namespace, job: Job) -> WheelPlan:
    """Plan the wheel and print its warnings (before the long part: building and uploading)."""
    from ..core.package.wheel import plan_wheel

    planned = plan_wheel(model, job=job, **wheel_settings(args))
    for warning in planned.warnings:
        print(f"workbench: warning: {warning}", file=sys.stderr)
    return planned


def run_pypi(args: argparse.Namespace) -> int:
    from ..core.package.wheel import build_wheel

    job = terminal_job()
    result = build_wheel(plan_from_args(args.model, args, job), args.output, job=job)
    return report(args, result.to_dict(), render_wheel(result))


def render_wheel(r: WheelResult) -> str:
    lines = [f"Built {r.path} ({format_bytes(r.size_bytes)}).", ""]

    def row(label: str, value: str) -> None:
        lines.append(f"  {label:<10} {value}")

    row("Package", f"{r.name} {r.version} (import {r.import_name}; command {r.command})")
    row("Model", f"{format_bytes(r.model_bytes)} in {sum(1 for f in r.files if '/model/' in f)} file(s)")
    row("sha256", r.sha256)
    row("Try it", f"pip install {r.path}  then  {r.command} inputs.npz")
    lines += [f"  WARNING: {w}" for w in r.warnings]
    return "\n".join(lines)
