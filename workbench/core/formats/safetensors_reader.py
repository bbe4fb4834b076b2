"""safetensors files (header only for the summary) and Hugging Face-style model folders."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from ..document import FileEntry, ModelDocument, TensorInfo
from ..errors import CorruptFile, TruncatedFile, UnsupportedFormat
from ..jobs import Job
from .base import Probe, Reader
from .base import probe as probe_path

MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit

# safetensors dtype -> (bits per element, numpy dtype usable for "== 0", or a special reader)
_DTYPES: dict[str, tuple[int, str]] = {
    "F64": (64, "float64"), "F32": (32, "float32"), "F16": (16, "float16"), "BF16": (16, "bf16"),
    "I64": (64, "int64"), "I32": (32, "int32"), "I16": (16, "int16"), "I8": (8, "int8"), "U8": (8, "uint8"),
    "U16": (16, "uint16"), "U32": (32, "uint32"), "U64": (64, "uint64"), "BOOL": (8, "uint8"),
    "F8_E4M3": (8, "f8"), "F8_E5M2": (8, "f8"), "F8_E8M0": (8, "uint8"), "C64": (64, "complex64"),
    "F4": (4, "nibbles"), "F6_E2M3": (6, "raw"), "F6_E3M2": (6, "raw"),
}

HF_NO_GRAPH = ("A Hugging Face folder and a safetensors file hold weights and settings, not the computation, so "
               "there is no graph to show. Export the model to ONNX (for example with Hugging Face Optimum) "
               "to see its graph.")


def read_header(path: Path, size: int) -> tuple[dict[str, Any], int]:
    """The parsed JSON header and the offset where tensor data starts. Validates every entry."""
    name = path.name
    if size < 10:
        raise TruncatedFile(f"{name} is too short ({size} bytes) to be a safetensors file.",
                            hint="The file is probably truncated; get it again.", path=path)
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > MAX_HEADER:
            raise CorruptFile(f"{name} is not a valid safetensors file: its header claims {n:,} bytes.",
                              hint="The file may be damaged, or not a safetensors file.", path=path)
        if 8 + n > size:
            raise TruncatedFile(f"{name} ends inside its own header ({size:,} bytes; the header alone needs "
                                f"{8 + n:,}).", hint="The file is probably truncated; get it again.", path=path)
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptFile(f"{name} is not a valid safetensors file: its header is not readable JSON ({exc}).",
                          hint="The file may be damaged.", path=path) from None
    data_start = 8 + n
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            bits = _DTYPES[dtype][0]
            if not all(isinstance(d, int) and d >= 0 for d in shape) or not 0 <= begin <= end:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise CorruptFile(f"{name} has a damaged entry for tensor '{key}' in its header.",
                              hint="The file may be damaged.", path=path) from None
        if end - begin != (math.prod(shape) * bits + 7) // 8:
            raise CorruptFile(f"{name}: tensor '{key}' has shape {shape} ({dtype}) but {end - begin:,} bytes.",
                              hint="The file may be damaged.", path=path)
        if data_start + end > size:
            raise TruncatedFile(f"{name} ends too early: tensor '{key}' needs bytes up to "
                                f"{data_start + end:,} but the file has {size:,}.",
                                hint="The file is probably truncated; get it again.", path=path)
    return header, data_start


class _Values:
    """Reads a tensor's values on demand, memory-mapped."""

    def __init__(self) -> None:
        self.where: dict[str, tuple[Path, int, int, str]] = {}

    def add(self, path: Path, header: dict[str, Any], data_start: int) -> list[TensorInfo]:
        infos = []
        for key, entry in header.items():
            if key == "__metadata__":
                continue
            begin, end = entry["data_offsets"]
            self.where[key] = (path, data_start + begin, end - begin, entry["dtype"])
            infos.append(TensorInfo(key, tuple(entry["shape"]), entry["dtype"].lower(), end - begin))
        return infos

    def __call__(self, info: TensorInfo) -> Any:
        import numpy as np

        path, offset, length, dtype = self.where[info.name]
        if length == 0:
            return np.zeros(0, dtype=np.uint8)
        raw = np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=(length,))
        kind = _DTYPES[dtype][1]
        if kind == "bf16":
            return raw.view(np.uint16) & 0x7FFF
        if kind == "f8":
            return raw & 0x7F
        if kind == "nibbles":
            return np.stack([raw & 0x0F, raw >> 4], axis=1).reshape(-1)
        if kind == "raw":
            return raw
        return raw.view(np.dtype(kind))


class SafetensorsReader(Reader):
    format = "safetensors"
    label = "safetensors weights"
    extensions = (".safetensors",)

    def match(self, probe: Probe) -> bool:
        if probe.is_dir or len(probe.head) < 10:
            return False
        (n,) = struct.unpack("<Q", probe.head[:8])
        return 2 <= n <= MAX_HEADER and probe.head[8:9] == b"{"

    def open(self, probe: Probe, *, trust: bool = False, job: Job) -> ModelDocument:
        header, data_start = read_header(probe.path, probe.size)
        values = _Values()
        tensors = values.add(probe.path, header, data_start)
        meta = header.get("__metadata__") or {}
        doc = ModelDocument(
            path=probe.path, format="safetensors", format_label="safetensors weights",
            files=[FileEntry(probe.path, probe.size, "weights")], tensors=tensors,
            metadata={"properties": meta} if meta else {}, has_graph=False, graph_note=HF_NO_GRAPH,
        )
        doc.read_tensor = values
        return doc


class HuggingFaceFolderReader(Reader):
    """A folder with ``config.json`` and safetensors (or PyTorch .bin) weights, possibly sharded."""

    format = "hf-folder"
    label = "Hugging Face model folder"

    def match(self, probe: Probe) -> bool:
        return probe.is_dir and (probe.path / "config.json").is_file() and bool(_weight_files(probe.path))

    def open(self, probe: Probe, *, trust: bool = False, job: Job) -> ModelDocument:
        folder = probe.path
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            if not isinstance(config, dict):
                raise ValueError("not a JSON object")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise CorruptFile(f"config.json in {folder.name} is not readable JSON ({exc}).",
                              hint="Fix or replace config.json.", path=folder / "config.json") from None
        weights = _weight_files(folder)
        files: list[FileEntry] = []
        tensors: list[TensorInfo] = []
        values = _Values()
        bins: list[ModelDocument] = []
        for i, w in enumerate(weights):
            job.progress(i, len(weights), f"Reading {w.name}")
            p = probe_path(w)
            if w.suffix == ".safetensors":
                header, start = read_header(w, p.size)
                tensors += values.add(w, header, start)
                files.append(FileEntry(w, p.size, "weights"))
            else:
                from .torch_reader import TorchReader

                sub = TorchReader().open(p, trust=trust, job=job)
                bins.append(sub)
                tensors += sub.tensors
                files += sub.files
        for extra in sorted(folder.iterdir()):
            if extra.is_file() and extra.suffix in (".json", ".txt", ".model", ".md") and extra not in weights:
                files.append(FileEntry(extra, extra.stat().st_size, "config" if extra.name == "config.json"
                                       else "support file"))
        metadata = {k: config[k] for k in ("model_type", "architectures", "torch_dtype", "dtype",
                                           "transformers_version", "hidden_size", "num_hidden_layers",
                                           "vocab_size") if k in config}
        doc = ModelDocument(path=folder, format="hf-folder", format_label="Hugging Face model folder",
                            files=files, tensors=tensors, metadata=metadata, has_graph=False,
                            graph_note=HF_NO_GRAPH, trusted=any(b.trusted for b in bins))
        readers = [values] + [b.read_tensor for b in bins if b.read_tensor]
        names = [set(values.where)] + [{t.name for t in b.tensors} for b in bins]

        def read(info: TensorInfo) -> Any:
            for reader, known in zip(readers, names):
                if info.name in known:
                    return reader(info)
            raise KeyError(info.name)

        doc.read_tensor = read
        return doc


def _weight_files(folder: Path) -> list[Path]:
    found = sorted(folder.glob("*.safetensors"))
    if not found:
        found = sorted(p for p in folder.glob("pytorch_model*.bin"))
    return found


def describe_folder(folder: Path, models: list[Path]) -> UnsupportedFormat:
    """The error for a folder that is not a model folder we can open (``models``: model files inside)."""
    if (folder / "saved_model.pb").exists():
        return UnsupportedFormat(f"{folder.name} is a TensorFlow SavedModel folder, which cannot be opened yet.",
                                 hint="Convert it to ONNX (for example with tf2onnx) and open the .onnx file.",
                                 path=folder)
    if (folder / "config.json").exists():
        return UnsupportedFormat(f"{folder.name} has a config.json but no weights (.safetensors or "
                                 f"pytorch_model.bin).", hint="Download the weight files into the folder too.",
                                 path=folder)
    if models:
        listed = ", ".join(p.name for p in models[:5])
        return UnsupportedFormat(f"{folder.name} is a folder with several model files ({listed}).",
                                 hint="Choose one of them.", path=folder)
    return UnsupportedFormat(f"{folder} is a folder, not a model file.",
                             hint="Choose a model file inside it, or a Hugging Face model folder (with "
                                  "config.json and .safetensors files).", path=folder)
