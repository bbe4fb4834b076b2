"""Helpers shared by the subcommands: progress on the terminal, JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

from ..core.jobs import Job, Progress


def progress_printer(stream: TextIO) -> Callable[[Progress], None] | None:
    if not stream.isatty():
        return None

    def show(p: Progress) -> None:
        pct = f"{p.fraction * 100:5.1f}% " if p.fraction is not None else ""
        stream.write(f"\r{pct}{p.message[:70]:<70}")
        if p.fraction is not None and p.fraction >= 1:
            stream.write("\r" + " " * 78 + "\r")
        stream.flush()
    return show


def terminal_job() -> Job:
    """A Job that shows progress on stderr when it is a terminal."""
    return Job(progress_printer(sys.stderr))


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def report(args: Any, data: Any, text: str) -> int:
    """Print a command's result: ``data`` as JSON with ``--json``, else ``text`` for people. Returns 0."""
    if getattr(args, "json", False):
        print_json(data)
    else:
        print(text)
    return 0
