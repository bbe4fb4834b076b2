"""Every file of the regression corpus opens as its expected format, or fails with its expected error,
both through the core API and through the command line (one line, right exit status, no traceback)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

from workbench.core import errors
from workbench.core.formats import open_model

ENTRIES = json.loads((ROOT / "tests" / "corpus" / "corpus.json").read_text())["entries"]


def _id(e: dict) -> str:
    return e["file"] + (" --trust" if e.get("trust") else "")


@pytest.fixture(autouse=True)
def _importable_corpus_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "tests" / "corpus"))


@pytest.mark.parametrize("entry", ENTRIES, ids=_id)
def test_core_open(corpus: Path, entry: dict) -> None:
    path = corpus / entry["file"]
    if "error" in entry:
        with pytest.raises(errors.WorkbenchError) as info:
            open_model(path, trust=entry.get("trust", False))
        assert type(info.value).__name__ == entry["error"]
        assert entry["message"] in str(info.value)
        assert "\n" not in str(info.value)
        return
    doc = open_model(path, trust=entry.get("trust", False))
    assert doc.format == entry["format"]
    assert doc.parameters == entry["parameters"]
    assert len(doc.files) == entry["files"]
    assert doc.size_bytes == sum(f.path.stat().st_size for f in doc.files)
    if "has_graph" in entry:
        assert doc.has_graph is entry["has_graph"]
        assert doc.has_graph or doc.graph_note  # no graph: say why
    if "note" in entry:
        assert any(entry["note"] in n for n in doc.notes)


@pytest.mark.parametrize("entry", [e for e in ENTRIES if "error" in e], ids=_id)
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_cli_errors(corpus: Path, entry: dict, as_json: bool) -> None:
    args = ["inspect", str(corpus / entry["file"])]
    args += ["--trust"] if entry.get("trust") else []
    args += ["--json"] if as_json else []
    result = run_cli(*args)
    assert result.returncode == entry["exit"], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("workbench: ")
    assert Path(entry["file"]).name in lines[0] or Path(entry["file"]).parent.name in lines[0] \
        or "model.onnx" in lines[0]
    if as_json:
        error = json.loads(result.stdout)["error"]
        assert error["type"] == entry["error"]
        assert entry["message"] in error["message"]


def test_malicious_pickles_never_run(corpus: Path) -> None:
    """After every test above (and a few more tries here), no malicious payload has created its marker."""
    for f in sorted(corpus.glob("malicious*")):
        for flags in ([], ["--trust"], ["--json"], ["--trust", "--json"]):
            assert run_cli("inspect", str(f), *flags).returncode == 4
    assert not list(corpus.glob("PWNED-*"))


def test_cli_opens_valid_files_as_json(corpus: Path) -> None:
    for name in ("embedded.onnx", "external/model.onnx", "state_dict.pt", "scripted.pt", "exported.pt2",
                 "model.safetensors", "hf_folder"):
        result = run_cli("inspect", str(corpus / name), "--json")
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        for key in ("format", "files", "size_bytes", "parameters", "tensors", "inputs", "outputs", "operators",
                    "has_graph"):
            assert key in data, key
        assert data["parameters"] == sum(
            __import__("math").prod(t["shape"]) for t in data["tensors"])


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_permission_denied(tmp_path: Path) -> None:
    import os
    import shutil

    target = tmp_path / "locked.onnx"
    shutil.copy(ROOT / "resources" / "sample" / "digits_cnn.onnx", target)
    os.chmod(target, 0)
    prefix: list[str] = []
    if os.geteuid() == 0:
        # root reads anything; drop the capabilities that bypass file permissions, as a normal user has none
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to test permissions as root"
        caps = "-dac_override,-dac_read_search"
        prefix = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]
    import subprocess

    env = dict(os.environ)
    result = subprocess.run([*prefix, sys.executable, "-m", "workbench", "inspect", str(target)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "permission denied" in result.stderr and "locked.onnx" in result.stderr
    assert "Traceback" not in result.stderr
