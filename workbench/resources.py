"""Where the bundled resources (sample model, its data, later icons and license texts) live.

Works from a source checkout, an installed wheel (resources are packed into ``workbench/resources``) and
a PyInstaller build (``sys._MEIPASS``). ``WORKBENCH_RESOURCES`` overrides all three.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def resources_dir() -> Path:
    candidates = []
    if os.environ.get("WORKBENCH_RESOURCES"):
        candidates.append(Path(os.environ["WORKBENCH_RESOURCES"]))
    if hasattr(sys, "_MEIPASS"):
        candidates.append(Path(sys._MEIPASS) / "resources")
    here = Path(__file__).resolve().parent
    candidates += [here / "resources", here.parent / "resources"]
    for c in candidates:
        if (c / "sample").is_dir():
            return c
    raise FileNotFoundError("The bundled resources folder is missing; reinstall Model Workbench.")


def sample_dir() -> Path:
    return resources_dir() / "sample"


def sample_model() -> Path:
    """The bundled sample: a small CNN for handwritten digits, as ONNX."""
    return sample_dir() / "digits_cnn.onnx"
