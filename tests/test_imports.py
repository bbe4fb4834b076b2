"""The core never imports Qt, and stays light: heavy libraries load only when a file needs them."""

from __future__ import annotations

import json
import subprocess
import sys


def _loaded_after(code: str) -> list[str]:
    probe = (f"{code}; import sys, json; "
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & "
             "{'PySide6', 'torch', 'onnxruntime', 'onnx', 'numpy', 'safetensors'})))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_core_and_cli_import_no_qt_and_nothing_heavy() -> None:
    assert _loaded_after("import workbench.core, workbench.core.formats, workbench.cli") == []


def test_opening_onnx_does_not_import_torch() -> None:
    code = ("from workbench.resources import sample_model; from workbench.core.formats import open_model; "
            "open_model(sample_model())")
    loaded = _loaded_after(code)
    assert "torch" not in loaded and "PySide6" not in loaded and "onnxruntime" not in loaded


def test_a_missing_library_is_one_clear_message() -> None:
    import pytest

    from workbench.core.deps import require
    from workbench.core.errors import MissingDependency

    with pytest.raises(MissingDependency) as info:
        require("no_such_library_here", needed_for="Drawing charts", label="NoSuch", pip="no-such")
    assert str(info.value) == ("Drawing charts needs NoSuch, which is not installed. "
                               "Install it with `pip install no-such`.")
    assert isinstance(info.value, ImportError)
