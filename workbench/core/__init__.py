"""The headless core: no Qt, no heavy imports at module level (torch and onnxruntime load lazily)."""

from .document import FileEntry, ModelDocument, TensorInfo, ValueInfo
from .errors import Cancelled, WorkbenchError
from .jobs import Job, Progress

__all__ = ["Cancelled", "FileEntry", "Job", "ModelDocument", "Progress", "TensorInfo", "ValueInfo",
           "WorkbenchError"]
