"""`workbench publish TARGET ...`: upload a package (building it first from a model if needed).

Targets: ``pypi`` (PyPI, TestPyPI or any index that takes uploads like PyPI, with twine). The token or
password comes from the keychain (`workbench credentials set pypi`), never from the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.text import format_bytes
from .common import print_json, report, terminal_job
from .package import add_wheel_arguments, plan_from_args

if TYPE_CHECKING:
    from ..core.publish.pypi import PublishResult


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("publish", help="upload a package of a model (PyPI)",
                       description="Upload a package; credentials come from the keychain "
                                   "(see `workbench credentials`).")
    targets = p.add_subparsers(dest="target", required=True, metavar="TARGET")
    pypi = targets.add_parser(
        "pypi", help="upload a wheel (or build one from an ONNX model, then upload it) to a package index",
        description="Upload a wheel to PyPI, TestPyPI or another index with twine. Given an ONNX model instead, "
                    "build its wheel first (with the same options as `workbench package pypi`).")
    pypi.add_argument("file", type=Path, nargs="?", help="the .whl to upload, or an ONNX model to package first")
    pypi.add_argument("--repository-url", default="pypi", metavar="URL",
                      help="pypi (default), testpypi, or the upload address of another index")
    pypi.add_argument("--username", help="for a private index (default: __token__, as PyPI tokens use)")
    pypi.add_argument("--test-connection", action="store_true",
                      help="only check that the index answers and accepts the saved credentials; upload nothing")
    add_wheel_arguments(pypi, required=False)
    pypi.add_argument("-o", "--output", type=Path, metavar="DIR",
                      help="where to build the wheel from a model (default: the model's project folder, dist/)")
    pypi.add_argument("--json", action="store_true", help="print JSON instead of text")
    pypi.set_defaults(func=run_pypi)


def run_pypi(args: argparse.Namespace) -> int:
    from ..core.errors import WorkbenchError
    from ..core.publish.pypi import build_and_publish, check_connection, publish_wheel

    if args.test_connection:
        check = check_connection(args.repository_url, username=args.username)
        if args.json:
            print_json(check.to_dict())
        else:
            print(check.message)
        return 0
    if args.file is None:
        raise WorkbenchError("Give the wheel to upload, or an ONNX model to package and upload.")
    job = terminal_job()
    with contextlib.redirect_stdout(sys.stderr):  # twine says what it uploads on stdout; keep stdout for results
        if args.file.suffix.lower() == ".whl":
            result = publish_wheel(args.file, repository_url=args.repository_url, username=args.username, job=job)
        else:
            if not args.name or not args.version:
                raise WorkbenchError(f"To publish the model {args.file.name}, give the package's --name and "
                                     f"--version.", hint="Or build the wheel first with `workbench package pypi`.")
            from ..core.project import default_output_dir

            plan = plan_from_args(args.file, args, job)
            result = build_and_publish(plan, args.output or default_output_dir(args.file) / "dist",
                                       repository_url=args.repository_url, username=args.username, job=job)[1]
    return report(args, result.to_dict(), render_published(result))


def render_published(r: PublishResult) -> str:
    lines = [r.message, ""]

    def row(label: str, value: str) -> None:
        lines.append(f"  {label:<8} {value}")

    row("Wheel", f"{r.wheel} ({format_bytes(r.size_bytes)})")
    row("sha256", r.sha256)
    row("Install", r.install_command)
    row("Took", f"{r.seconds:.1f} s")
    lines += [f"  WARNING: {w}" for w in r.warnings]
    return "\n".join(lines)
