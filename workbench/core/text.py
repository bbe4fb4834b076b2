"""Small formatting helpers shared by the CLI and the GUI."""

from __future__ import annotations

from collections.abc import Sequence

from .document import Dim


def format_bytes(n: int) -> str:
    """1536 -> '1.5 KB' (decimal units, as file managers show them)."""
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def format_shape(shape: Sequence[Dim] | None) -> str:
    if shape is None:
        return "shape not recorded"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def format_count(n: int) -> str:
    if n >= 1_000_000_000:
        return f"{n / 1e9:.2f} billion"
    if n >= 1_000_000:
        return f"{n / 1e6:.2f} million"
    return f"{n:,}"


def one_line(obj: object) -> str:
    """The first line of ``obj``'s text (its type name when that is empty), at most 300 characters."""
    text = str(obj).strip() or type(obj).__name__
    return text.splitlines()[0][:300]
