"""onnxruntime, quietly: CPU sessions that log only errors, its warnings collected instead of printed, and its
int4 quantizer imported without the logging set-up that module does on import.

onnxruntime is imported only when a function here runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .text import one_line


def cpu_session(model: Path | bytes) -> Any:
    """An onnxruntime CPU session for a model file (or a serialized model) that logs only errors."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                providers=["CPUExecutionProvider"])


@contextmanager
def ort_logs() -> Iterator[list[str]]:
    """Collect onnxruntime's warnings (it logs on the root logger too) instead of letting them reach stderr."""
    import onnxruntime

    sink: list[str] = []
    collect = _Collect(sink)
    divert = _FromOnnxruntime(sink)
    ort_logger = logging.getLogger("onnxruntime")
    saved = ort_logger.propagate, ort_logger.level
    placeholder = logging.NullHandler() if not logging.root.handlers else None  # stops logging.basicConfig()
    if placeholder:
        logging.root.addHandler(placeholder)
    ort_logger.addHandler(collect)
    ort_logger.propagate = False
    ort_logger.setLevel(logging.WARNING)
    logging.root.addFilter(divert)
    onnxruntime.set_default_logger_severity(4)  # its C++ warnings and errors become our messages instead
    try:
        yield sink
    finally:
        onnxruntime.set_default_logger_severity(2)  # onnxruntime's default
        logging.root.removeFilter(divert)
        ort_logger.removeHandler(collect)
        ort_logger.propagate, _ = saved
        ort_logger.setLevel(saved[1])
        if placeholder:
            logging.root.removeHandler(placeholder)


def nbits_quantizer() -> Any:
    """onnxruntime's MatMulNBitsQuantizer; its module calls logging.basicConfig on import, which is undone."""
    root = logging.root
    handlers, level = list(root.handlers), root.level
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
    return MatMulNBitsQuantizer


class _Collect(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(one_line(record.getMessage()))


class _FromOnnxruntime(logging.Filter):
    def __init__(self, sink: list[str]) -> None:
        super().__init__()
        self.sink = sink

    def filter(self, record: logging.LogRecord) -> bool:
        if "onnxruntime" not in record.pathname:
            return True
        if record.levelno >= logging.WARNING:
            self.sink.append(one_line(record.getMessage()))
        return False
