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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .commands import COMMANDS, register_all
from .core.errors import Cancelled, DangerousPickle, FileProblem, MissingDependency, UntrustedPickle, WorkbenchError

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

SUBCOMMANDS = tuple(COMMANDS)


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
    except BrokenPipeError:  # e.g. `workbench license list | head`: the reader stopped; that is fine
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
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
    register_all(parser.add_subparsers(dest="command", required=True))
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
