"""A project: one source model, the variants made from it, and which one is chosen for publishing.

Variants are written to the project's output folder (never next to, or over, the user's own files).
The project is saved as ``project.json`` in that folder, written atomically.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .fsutil import atomic_write_text

PROJECT_FILE = "project.json"


def default_output_dir(source: Path) -> Path:
    """``~/Model Workbench/<model name>`` (``WORKBENCH_OUTPUT_DIR`` replaces ``~/Model Workbench``)."""
    base = Path(os.environ.get("WORKBENCH_OUTPUT_DIR") or Path.home() / "Model Workbench")
    stem = re.sub(r"[^\w.-]+", "-", source.stem if source.suffix else source.name).strip("-.") or "model"
    return base / stem


@dataclass
class Variant:
    """A model file made from the source (or the source itself, as the original)."""

    name: str
    path: Path
    kind: str  # "original", "exported", "quantized", "pruned"
    settings: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)  # the action's result record, as a dict


@dataclass
class Project:
    source: Path
    output_dir: Path
    variants: list[Variant] = field(default_factory=list)
    chosen: str | None = None  # name of the variant to publish

    @classmethod
    def for_source(cls, source: Path, output_dir: Path | None = None) -> Project:
        out = output_dir or default_output_dir(source)
        saved = out / PROJECT_FILE
        if saved.exists():
            try:
                project = cls.load(saved)
                if project.source == source.resolve():
                    return project
            except (OSError, ValueError, KeyError, TypeError):
                pass  # a damaged project file: start afresh, the variants on disk are untouched
        return cls(source.resolve(), out, [Variant("original", source.resolve(), "original")])

    def unique_name(self, base: str) -> str:
        names = {v.name for v in self.variants}
        if base not in names:
            return base
        i = 2
        while f"{base}-{i}" in names:
            i += 1
        return f"{base}-{i}"

    def variant_path(self, name: str, suffix: str = ".onnx") -> Path:
        return self.output_dir / f"{name}{suffix}"

    def add(self, variant: Variant) -> Variant:
        self.variants = [v for v in self.variants if v.name != variant.name] + [variant]
        self.save()
        return variant

    def remove(self, name: str) -> None:
        self.variants = [v for v in self.variants if v.name != name or v.kind == "original"]
        if self.chosen == name:
            self.chosen = None
        self.save()

    def choose(self, name: str) -> None:
        if name not in {v.name for v in self.variants}:
            raise KeyError(name)
        self.chosen = name
        self.save()

    def get(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)

    def save(self) -> Path:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        data = {"source": str(self.source), "chosen": self.chosen,
                "variants": [{**asdict(v), "path": str(v.path)} for v in self.variants]}
        target = self.output_dir / PROJECT_FILE
        atomic_write_text(target, json.dumps(data, indent=2, ensure_ascii=False, default=str))
        return target

    @classmethod
    def load(cls, path: Path) -> Project:
        data = json.loads(path.read_text(encoding="utf-8"))
        variants = [Variant(v["name"], Path(v["path"]), v["kind"], v.get("settings", {}), v.get("result", {}))
                    for v in data["variants"]]
        return cls(Path(data["source"]), path.parent, variants, data.get("chosen"))
