"""The summary panel: what the model is, in words a non-engineer can follow."""

from __future__ import annotations

import html

from ..core.document import ModelDocument
from ..core.text import format_bytes, format_count, format_shape
from .qt import QtWidgets


def summary_html(doc: ModelDocument) -> str:
    e = html.escape
    rows: list[tuple[str, str]] = [
        ("Format", e(doc.format_label)),
        ("Size on disk", f"{format_bytes(doc.size_bytes)} in {len(doc.files)} file(s)"),
        ("Parameters", f"{format_count(doc.parameters)} in {len(doc.tensors):,} tensors"),
    ]
    for label, values in (("Inputs", doc.inputs), ("Outputs", doc.outputs)):
        if values:
            rows.append((label, "<br>".join(f"<b>{e(v.name)}</b> {e(v.dtype or '')} {e(format_shape(v.shape))}"
                                            for v in values)))
    if doc.has_graph:
        ops = ", ".join(f"{e(op)}&nbsp;×{n}" for op, n in list(doc.operators.items())[:15])
        more = len(doc.operators) - 15
        rows.append(("Operators", f"{doc.node_count:,} nodes: {ops}" + (f", and {more} more kinds" if more > 0
                                                                         else "")))
    for key, value in doc.metadata.items():
        if value in ("", None, {}, []):
            continue
        text = ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else str(value)
        rows.append((e(key.replace("_", " ").capitalize()), e(text)))
    files = "".join(f"<li>{e(f.path.name)} — {format_bytes(f.size)} ({e(f.role)})</li>" for f in doc.files)
    parts = [f"<h2>{e(doc.path.name)}</h2>", "<table cellspacing='4'>"]
    parts += [f"<tr><td valign='top'><b>{k}</b></td><td>{v}</td></tr>" for k, v in rows]
    parts += ["</table>", f"<p><b>Files</b></p><ul>{files}</ul>"]
    if not doc.has_graph and doc.graph_note:
        parts.append(f"<p><b>No graph.</b> {e(doc.graph_note)}</p>")
    parts += [f"<p>⚠ {e(n)}</p>" for n in doc.notes]
    return "".join(parts)


class SummaryPanel(QtWidgets.QTextBrowser):
    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.show_placeholder()

    def show_placeholder(self) -> None:
        self.setHtml("<p>Open a model to see what is inside it.</p>")

    def set_document(self, doc: ModelDocument | None) -> None:
        if doc is None:
            self.show_placeholder()
        else:
            self.setHtml(summary_html(doc))

    def show_view_only(self, path_name: str, size: int, reason: str) -> None:
        e = html.escape
        self.setHtml(f"<h2>{e(path_name)}</h2><p>{format_bytes(size)} on disk.</p>"
                     f"<p><b>View only.</b> {e(reason)} Its graph and properties are shown; compression and "
                     f"publishing need an ONNX or PyTorch model.</p>")
