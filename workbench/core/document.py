"""ModelDocument: everything the app knows about one opened model, as plain data."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .jobs import Job

Dim = int | str | None  # a fixed size, a named dynamic size ("batch"), or unknown


@dataclass(frozen=True)
class FileEntry:
    """One file on disk that belongs to the model."""

    path: Path
    size: int
    role: str  # "model", "external data", "weights", "config", ...


@dataclass(frozen=True)
class TensorInfo:
    """A stored tensor (weight, buffer, constant)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class ValueInfo:
    """A graph input or output."""

    name: str
    shape: tuple[Dim, ...] | None  # None when the format does not record shapes
    dtype: str | None


# Reads each tensor's values as a flat numpy array, for statistics such as sparsity.
TensorDataReader = Callable[[TensorInfo], Any]


@dataclass
class ModelDocument:
    """What the app knows about an opened model. Built by a format reader; never modifies the files."""

    path: Path
    format: str  # stable id, e.g. "onnx", "torchscript", "pytorch-state-dict"
    format_label: str  # plain words, e.g. "ONNX model"
    files: list[FileEntry]
    tensors: list[TensorInfo] = field(default_factory=list)
    inputs: list[ValueInfo] = field(default_factory=list)
    outputs: list[ValueInfo] = field(default_factory=list)
    operators: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    has_graph: bool = False
    graph_note: str = ""  # when has_graph is False: why, and what would give one
    notes: list[str] = field(default_factory=list)  # things the user should know (plain sentences)
    trusted: bool = False  # opened with explicit trust (the file's own code may have run)
    read_tensor: TensorDataReader | None = field(default=None, repr=False, compare=False)
    sparsity: dict[str, float] | None = None  # filled by compute_sparsity()

    @property
    def size_bytes(self) -> int:
        """Total size on disk, external data included."""
        return sum(f.size for f in self.files)

    @property
    def parameters(self) -> int:
        """Number of stored values across all tensors."""
        return sum(t.numel for t in self.tensors)

    @property
    def node_count(self) -> int:
        return sum(self.operators.values())

    def compute_sparsity(self, job: Job | None = None) -> dict[str, float]:
        """Fraction of exactly-zero values per tensor. Reads the weights, in chunks, with progress."""
        if self.read_tensor is None:
            raise ValueError(f"{self.format_label} files do not give access to tensor values.")
        job = job or Job()
        total = sum(t.nbytes for t in self.tensors) or 1
        done = 0
        result: dict[str, float] = {}
        for t in self.tensors:
            job.progress(done, total, f"Reading {t.name}")
            result[t.name] = _zero_fraction(self.read_tensor(t), t.numel)
            done += t.nbytes
        job.progress(total, total, "Done")
        self.sparsity = result
        return result

    @property
    def overall_sparsity(self) -> float | None:
        if self.sparsity is None:
            return None
        total = self.parameters
        if not total:
            return 0.0
        zeros = sum(self.sparsity.get(t.name, 0.0) * t.numel for t in self.tensors)
        return zeros / total

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the ``inspect --json`` schema)."""
        return {
            "path": str(self.path),
            "format": self.format,
            "format_label": self.format_label,
            "files": [{"path": str(f.path), "size_bytes": f.size, "role": f.role} for f in self.files],
            "size_bytes": self.size_bytes,
            "parameters": self.parameters,
            "tensors": [
                {
                    "name": t.name,
                    "shape": list(t.shape),
                    "dtype": t.dtype,
                    "size_bytes": t.nbytes,
                    **({"sparsity": self.sparsity[t.name]} if self.sparsity and t.name in self.sparsity else {}),
                }
                for t in self.tensors
            ],
            "inputs": [_value_dict(v) for v in self.inputs],
            "outputs": [_value_dict(v) for v in self.outputs],
            "operators": dict(self.operators),
            "node_count": self.node_count,
            "metadata": self.metadata,
            "has_graph": self.has_graph,
            "graph_note": self.graph_note,
            "notes": list(self.notes),
            "trusted": self.trusted,
            **({"sparsity": self.overall_sparsity} if self.sparsity is not None else {}),
        }


def _value_dict(v: ValueInfo) -> dict[str, Any]:
    return {"name": v.name, "shape": None if v.shape is None else list(v.shape), "dtype": v.dtype}


def _zero_fraction(values: Any, numel: int) -> float:
    """Count zeros in a flat array-like, in chunks so huge tensors do not double memory."""
    import numpy as np

    if numel == 0:
        return 0.0
    arr = np.asarray(values).reshape(-1)
    zeros = 0
    step = 1 << 24
    for start in range(0, arr.size, step):
        zeros += int(np.count_nonzero(arr[start:start + step] == 0))
    return zeros / numel

