"""ONNX models, including weights kept in external data files.

The summary never reads the weights: the file is memory-mapped, the protobuf is walked field by field,
and each initializer's data is skipped (its byte span is remembered for on-demand statistics). Only the
remaining structure (nodes, inputs, outputs, tensor names and shapes) is parsed by ``onnx``.
"""

from __future__ import annotations

import math
import mmap
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..document import FileEntry, ModelDocument, TensorInfo, ValueInfo
from ..errors import CorruptFile, MissingExternalData, TruncatedFile, UnsupportedFormat
from ..jobs import Job
from . import protowire as pw
from .base import Probe, Reader

# ModelProto / GraphProto / TensorProto field numbers (onnx.proto)
MODEL_IR_VERSION, MODEL_GRAPH = 1, 7
GRAPH_INITIALIZER = 5
TENSOR_DIMS, TENSOR_DATA_TYPE, TENSOR_NAME, TENSOR_RAW_DATA = 1, 2, 8, 9
TENSOR_TYPED_DATA = {4, 5, 6, 7, 10, 11}  # float_data, int32_data, string_data, int64_data, double, uint64
DATA_FIELDS = TENSOR_TYPED_DATA | {TENSOR_RAW_DATA}

# bits per element for each TensorProto.DataType
_BITS = {1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 8: 0, 9: 8, 10: 16, 11: 64, 12: 32, 13: 64, 14: 64,
         15: 128, 16: 16, 17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4, 23: 4, 24: 8, 25: 2, 26: 2, 27: 8, 28: 8}


@dataclass(frozen=True)
class _DataSpan:
    """Where an initializer's values live."""

    kind: str  # "raw", "typed", "external", "none"
    file: Path
    offset: int
    length: int
    proto_start: int = 0  # the whole TensorProto, for the "typed" fallback
    proto_end: int = 0


def dtype_name(data_type: int) -> str:
    import onnx

    try:
        name = onnx.TensorProto.DataType.Name(data_type).lower()
    except ValueError:
        return f"type {data_type}"
    return {"float": "float32", "double": "float64"}.get(name, name)


def tensor_nbytes(dims: Any, data_type: int) -> int:
    return (math.prod(int(d) for d in dims) * _BITS.get(data_type, 0) + 7) // 8


class OnnxReader(Reader):
    format = "onnx"
    label = "ONNX model"
    extensions = (".onnx", ".ort_onnx")

    def match(self, probe: Probe) -> bool:
        h = probe.head
        # ModelProto writers put ir_version (field 1, varint) first: 0x08 then a small version number.
        return len(h) >= 3 and h[0] == 0x08 and 1 <= h[1] <= 30 and h[2] in (0x12, 0x1A, 0x22, 0x28, 0x32,
                                                                               0x3A, 0x42, 0x72)

    def open(self, probe: Probe, *, trust: bool = False, job: Job) -> ModelDocument:
        import onnx
        from google.protobuf.message import DecodeError

        path = probe.path
        job.progress(0, None, f"Reading the structure of {path.name}")
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            try:
                slim, spans = _slim_model(buf, probe.size, path, job)
            except pw.WireError as exc:
                if exc.truncated:
                    raise TruncatedFile(
                        f"{path.name} ends too early: it is {probe.size:,} bytes but its content goes "
                        f"on past the end (near byte {exc.offset:,}).",
                        hint="The file is probably truncated; copy or export it again.", path=path) from None
                raise CorruptFile(f"{path.name} is not a readable ONNX model: {exc} (at byte {exc.offset:,}).",
                                  hint="The file may be damaged, or not an ONNX model.", path=path) from None
        try:
            model = onnx.ModelProto.FromString(slim)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise CorruptFile(f"{path.name} is not a readable ONNX model ({exc}).",
                              hint="The file may be damaged, or not an ONNX model.", path=path) from None
        if not model.HasField("graph") or model.ir_version <= 0:
            raise UnsupportedFormat(f"{path.name} is not an ONNX model: it has no graph or no IR version.",
                                    hint="Choose an .onnx file exported by a framework.", path=path)
        job.check()
        return _document(path, probe.size, model, spans)


def _slim_model(buf: Any, size: int, path: Path, job: Job) -> tuple[bytes, dict[str, _DataSpan]]:
    """The model's bytes with every top-level initializer's data left out, and where that data is."""
    parts: list[bytes] = []
    spans: dict[str, _DataSpan] = {}
    saw_graph = False
    for f in pw.iter_fields(buf, 0, size):
        if f.number == MODEL_GRAPH and f.wire_type == pw.LENGTH and not saw_graph:
            saw_graph = True
            graph = _slim_graph(buf, f.payload_start, f.payload_end, path, spans, job)
            parts.append(pw.encode_length_field(MODEL_GRAPH, graph))
        else:
            parts.append(buf[f.start:f.end])
    return b"".join(parts), spans


def _slim_graph(buf: Any, start: int, end: int, path: Path, spans: dict[str, _DataSpan], job: Job) -> bytes:
    parts: list[bytes] = []
    for i, f in enumerate(pw.iter_fields(buf, start, end)):
        if i % 4096 == 0:
            job.check()
        if f.number == GRAPH_INITIALIZER and f.wire_type == pw.LENGTH:
            parts.append(pw.encode_length_field(GRAPH_INITIALIZER, _slim_tensor(buf, f, path, spans)))
        else:
            parts.append(buf[f.start:f.end])
    return b"".join(parts)


def _slim_tensor(buf: Any, tensor: pw.Field, path: Path, spans: dict[str, _DataSpan]) -> bytes:
    kept: list[bytes] = []
    name = ""
    data: _DataSpan | None = None
    for f in pw.iter_fields(buf, tensor.payload_start, tensor.payload_end):
        if f.number == TENSOR_RAW_DATA and f.wire_type == pw.LENGTH:
            data = _DataSpan("raw", path, f.payload_start, f.payload_end - f.payload_start)
            continue
        if f.number in TENSOR_TYPED_DATA:
            data = _DataSpan("typed", path, 0, 0, tensor.payload_start, tensor.payload_end)
            continue
        if f.number == TENSOR_NAME and f.wire_type == pw.LENGTH:
            name = bytes(buf[f.payload_start:f.payload_end]).decode("utf-8", "replace")
        kept.append(buf[f.start:f.end])
    if data is not None:
        spans[name] = data
    return b"".join(kept)


def _document(path: Path, size: int, model: Any, spans: dict[str, _DataSpan]) -> ModelDocument:
    import onnx

    graph = model.graph
    files = [FileEntry(path, size, "model")]
    external_sizes: dict[Path, int] = {}
    tensors: list[TensorInfo] = []
    for init in graph.initializer:
        nbytes = tensor_nbytes(init.dims, init.data_type)
        if init.data_location == onnx.TensorProto.EXTERNAL:
            span = _external_span(path, init, nbytes, external_sizes)
            spans[init.name] = span
            nbytes = span.length
        elif init.name in spans and spans[init.name].kind == "raw":
            nbytes = spans[init.name].length
        tensors.append(TensorInfo(init.name, tuple(int(d) for d in init.dims), dtype_name(init.data_type),
                                  nbytes))
    for sp in graph.sparse_initializer:
        tensors.append(TensorInfo(sp.values.name, tuple(int(d) for d in sp.dims),
                                  dtype_name(sp.values.data_type),
                                  tensor_nbytes(sp.values.dims, sp.values.data_type)))
    files += [FileEntry(p, s, "external data") for p, s in external_sizes.items()]

    initializer_names = {t.name for t in graph.initializer}
    inputs = [_value_info(v) for v in graph.input if v.name not in initializer_names]
    outputs = [_value_info(v) for v in graph.output]

    operators: Counter[str] = Counter()
    subgraphs = _count_ops(graph, operators)
    opsets = {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import}
    metadata: dict[str, Any] = {
        "ir_version": int(model.ir_version),
        "opset": opsets,
        "producer": " ".join(x for x in (model.producer_name, model.producer_version) if x),
        "graph_name": graph.name,
    }
    if model.domain:
        metadata["domain"] = model.domain
    if model.model_version:
        metadata["model_version"] = int(model.model_version)
    if model.doc_string:
        metadata["description"] = model.doc_string
    if model.metadata_props:
        metadata["properties"] = {p.key: p.value for p in model.metadata_props}
    if subgraphs:
        metadata["subgraphs"] = subgraphs

    doc = ModelDocument(
        path=path, format="onnx", format_label="ONNX model", files=files, tensors=tensors,
        inputs=inputs, outputs=outputs, operators=dict(operators.most_common()), metadata=metadata,
        has_graph=True,
    )
    doc.read_tensor = _TensorValues(spans, {t.name: t for t in graph.initializer})
    return doc


def _external_span(model_path: Path, init: Any, expected: int, sizes: dict[Path, int]) -> _DataSpan:
    info = {e.key: e.value for e in init.external_data}
    location = info.get("location", "")
    base = model_path.parent
    target = (base / location).resolve() if location else None
    if not location or Path(location).is_absolute() or (target is not None and base.resolve() not in
                                                         target.parents):
        raise CorruptFile(
            f"{model_path.name} says the weights of '{init.name}' are in '{location}', which is not a file "
            f"next to the model.", hint="For safety only files in the model's own folder are read.",
            path=model_path)
    assert target is not None
    try:
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else expected
    except ValueError:
        raise CorruptFile(f"{model_path.name} has a damaged external-data entry for '{init.name}'.",
                          path=model_path) from None
    if target not in sizes:
        try:
            sizes[target] = os.stat(target).st_size
        except FileNotFoundError:
            raise MissingExternalData(
                f"{model_path.name} keeps its weights in a separate file, {location}, which is missing "
                f"from {base}.",
                hint=f"Put {location} next to {model_path.name}: both files are needed.",
                path=model_path) from None
        except OSError as exc:
            raise MissingExternalData(f"Cannot read {location}, the weights file of {model_path.name}: "
                                      f"{exc.strerror or exc}.", path=model_path) from None
    if offset + length > sizes[target]:
        raise MissingExternalData(
            f"{location} is shorter than {model_path.name} expects: '{init.name}' needs bytes up to "
            f"{offset + length:,} but the file has {sizes[target]:,}.",
            hint="The weights file is probably truncated; copy or export it again.", path=model_path)
    return _DataSpan("external", target, offset, length)


def _value_info(v: Any) -> ValueInfo:
    t = v.type
    kind = t.WhichOneof("value")
    if kind != "tensor_type":
        return ValueInfo(v.name, None, kind.replace("_type", "") if kind else None)
    tt = t.tensor_type
    shape: tuple[int | str | None, ...] | None = None
    if tt.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim)
    return ValueInfo(v.name, shape, dtype_name(tt.elem_type))


def _count_ops(graph: Any, counter: Counter[str]) -> int:
    """Add the operators of a graph and its subgraphs to ``counter``; return the number of subgraphs."""
    subgraphs = 0
    for node in graph.node:
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        counter[op] += 1
        for attr in node.attribute:
            if attr.HasField("g"):
                subgraphs += 1 + _count_ops(attr.g, counter)
            for g in attr.graphs:
                subgraphs += 1 + _count_ops(g, counter)
    return subgraphs


class _TensorValues:
    """Reads one initializer's values on demand (memory-mapped, not copied)."""

    def __init__(self, spans: dict[str, _DataSpan], protos: dict[str, Any]) -> None:
        self._spans = spans
        self._types = {name: int(p.data_type) for name, p in protos.items()}

    def __call__(self, info: TensorInfo) -> Any:
        import numpy as np

        span = self._spans.get(info.name)
        data_type = self._types.get(info.name, 0)
        if span is None or info.numel == 0:
            return np.zeros(0, dtype=np.uint8)
        if span.kind == "typed":
            import onnx
            from onnx import numpy_helper

            with open(span.file, "rb") as fh:
                fh.seek(span.proto_start)
                proto = onnx.TensorProto.FromString(fh.read(span.proto_end - span.proto_start))
            return numpy_helper.to_array(proto).reshape(-1)
        raw = np.memmap(span.file, dtype=np.uint8, mode="r", offset=span.offset, shape=(span.length,))
        return _zero_comparable(raw, data_type)


def _zero_comparable(raw: Any, data_type: int) -> Any:
    """View raw little-endian bytes so that ``== 0`` means the stored value is zero."""
    import numpy as np

    plain = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
             9: np.uint8, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64, 14: np.complex64,
             15: np.complex128}
    if data_type in plain:
        usable = raw.size - raw.size % np.dtype(plain[data_type]).itemsize
        return raw[:usable].view(plain[data_type])
    if data_type == 16:  # bfloat16: zero when all bits but the sign are zero
        return raw[: raw.size - raw.size % 2].view(np.uint16) & 0x7FFF
    if _BITS.get(data_type) == 8:  # 8-bit floats
        return raw & 0x7F
    if _BITS.get(data_type) == 4:  # two 4-bit values per byte
        return np.stack([raw & 0x0F, raw >> 4], axis=1).reshape(-1)
    return raw
