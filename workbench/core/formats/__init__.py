"""One reader per model format, picked by content (magic bytes) first and file extension second.

``open_model(path)`` is the single entry point: it returns a :class:`ModelDocument` or raises a
:class:`FileProblem` whose message names the file and the problem.
"""

from __future__ import annotations

import os

from ..document import ModelDocument
from ..errors import CorruptFile, UnsupportedFormat, WorkbenchError
from ..jobs import Job
from .base import Probe, Reader, probe
from .onnx_reader import OnnxReader
from .safetensors_reader import HuggingFaceFolderReader, SafetensorsReader, describe_folder
from .torch_reader import TorchReader

READERS: tuple[Reader, ...] = (TorchReader(), SafetensorsReader(), OnnxReader())
FOLDER_READERS: tuple[Reader, ...] = (HuggingFaceFolderReader(),)

MODEL_SUFFIXES = (".onnx", ".pt", ".pth", ".pt2", ".ckpt", ".safetensors", ".bin")

SUPPORTED = ("ONNX (.onnx, with external data), PyTorch (.pt/.pth/.bin/.ckpt state_dicts and checkpoints), "
             "TorchScript, torch.export (.pt2), safetensors, and Hugging Face model folders")


def open_model(path: str | os.PathLike[str], *, trust: bool = False, job: Job | None = None) -> ModelDocument:
    """Open any supported model file or folder. ``trust=True`` allows pickles that import Python code."""
    job = job or Job()
    pr = probe(path)
    if pr.is_dir:
        return _open_folder(pr, trust, job)
    by_content = next((r for r in READERS if r.match(pr)), None)
    by_name = next((r for r in READERS if pr.suffix in r.extensions), None)
    if by_content is not None:
        doc = by_content.open(pr, trust=trust, job=job)
        if by_name is not None and by_name is not by_content:
            doc.notes.append(f"The file is named like {article(by_name.label)} ({pr.suffix}) but its content is "
                             f"{article(doc.format_label)}; it was opened as such.")
        return doc
    known = recognise_other(pr)
    if known is not None:
        raise known
    if by_name is not None:
        # The start does not look right; let the format's own reader say precisely what is wrong.
        try:
            return by_name.open(pr, trust=trust, job=job)
        except WorkbenchError:
            raise
        except Exception:  # noqa: BLE001 - any library failure on a bad file becomes one message
            raise CorruptFile(f"{pr.path.name} is named like {article(by_name.label)} ({pr.suffix}) but its "
                              f"content is not one (it starts with {pr.head[:8]!r}).",
                              hint="The file is probably damaged or was saved incorrectly; get it again.",
                              path=pr.path) from None
    raise UnsupportedFormat(f"{pr.path.name} is not a model format Model Workbench can open.",
                            hint=f"Supported: {SUPPORTED}.", path=pr.path)


def _open_folder(pr: Probe, trust: bool, job: Job) -> ModelDocument:
    for reader in FOLDER_READERS:
        if reader.match(pr):
            return reader.open(pr, trust=trust, job=job)
    models = [p for p in sorted(pr.path.iterdir()) if p.is_file() and p.suffix.lower() in MODEL_SUFFIXES]
    if len(models) == 1:
        doc = open_model(models[0], trust=trust, job=job)
        doc.notes.append(f"Opened {models[0].name}, the only model file in the folder {pr.path.name}.")
        return doc
    raise describe_folder(pr.path, models)


def article(label: str) -> str:
    """'ONNX model' -> 'an ONNX model'."""
    return ("an " if label[:1].upper() in "AEIOU" else "a ") + label


def recognise_other(pr: Probe) -> UnsupportedFormat | None:
    """A specific message for common files that are not (yet) supported or not models at all."""
    h, name = pr.head, pr.path.name
    convert = "Convert it to ONNX and open the .onnx file."
    known = {
        "TensorFlow Lite model": h[4:8] == b"TFL3",
        "Keras/HDF5 model": h[:8] == b"\x89HDF\r\n\x1a\n",
        "GGUF (llama.cpp) model": h[:4] == b"GGUF",
        "NumPy array file": h[:6] == b"\x93NUMPY",
    }
    for what, hit in known.items():
        if hit:
            return UnsupportedFormat(f"{name} is {article(what)}, which Model Workbench cannot open yet.", hint=convert,
                                     path=pr.path)
    if h.startswith(b"version https://git-lfs"):
        return UnsupportedFormat(f"{name} is a Git LFS pointer, not the model itself.",
                                 hint="Fetch the real file (git lfs pull) and open it again.", path=pr.path)
    text = h.lstrip().lower()
    if text.startswith((b"<!doctype", b"<html", b"<?xml")):
        return UnsupportedFormat(f"{name} is a web page or XML document, not a model.",
                                 hint="The download probably saved an error page; download the model again.",
                                 path=pr.path)
    if pr.is_zip:
        return UnsupportedFormat(f"{name} is a ZIP archive that holds no PyTorch model.",
                                 hint=f"Supported: {SUPPORTED}.", path=pr.path)
    return None


__all__ = ["open_model", "probe", "Probe", "Reader", "READERS", "SUPPORTED"]
