"""The wheel builder: names and versions, PEP 639 metadata, RECORD, reproducibility, the generated API."""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import run_cli
from onnx import TensorProto, helper, numpy_helper

from workbench.core.errors import Cancelled, UnsupportedFormat
from workbench.core.jobs import Job
from workbench.core.package import wheel as wh
from workbench.resources import sample_dir, sample_model

MIT = "MIT License\n\nCopyright (c) the authors\n"


def test_names_are_checked_and_normalised() -> None:
    assert wh.check_name(" Digits_CNN.v2 ") == "Digits_CNN.v2"
    assert wh.normalize_name("Digits_CNN.v2") == "digits-cnn-v2"
    assert wh.import_name_for("Digits_CNN.v2") == "digits_cnn_v2"
    for bad, hint in (("my model!", "'my-model'"), ("-x", "'x'"), ("", "'my-model'")):
        with pytest.raises(wh.PackageSettingsError, match="not a valid package name") as err:
            wh.check_name(bad)
        assert hint in str(err.value)
    with pytest.raises(wh.PackageSettingsError, match="cannot be imported"):
        wh.check_name("3d-unet")
    for taken in ("json", "numpy", "onnxruntime"):
        with pytest.raises(wh.PackageSettingsError, match="would hide the Python module"):
            wh.check_name(taken)


def test_versions_and_licenses_are_checked() -> None:
    assert wh.check_version("1.0") == "1.0"
    assert wh.check_version("v1.0.0-RC1") == "1.0.0rc1"
    with pytest.raises(wh.PackageSettingsError, match="'1.0 beta' is not a valid version"):
        wh.check_version("1.0 beta")
    assert wh.check_license_expression("mit or apache-2.0") == "MIT OR Apache-2.0"
    with pytest.raises(wh.PackageSettingsError, match="not an SPDX license expression"):
        wh.check_license_expression("my own license")
    for name in ("../LICENSE", "/etc/passwd", "a\\b"):
        with pytest.raises(wh.PackageSettingsError, match="plain relative path"):
            wh.plan_wheel(sample_model(), name="digits", version="1", license_files={name: "x"})


def _build(tmp_path: Path, model: Path | None = None, **kwargs: object) -> wh.WheelResult:
    settings: dict = {"name": "digits-cnn", "version": "1.0.0", "license_expression": "MIT",
                      "license_files": {"LICENSE": MIT},
                      "readme_markdown": "---\nlicense: mit\ntags: [onnx]\n---\n\n# Digits CNN\n\nA *card*.\n"}
    settings.update(kwargs)
    return wh.package_pypi(model or sample_model(), tmp_path, **settings)


def test_wheel_layout_metadata_and_record(tmp_path: Path) -> None:
    digest = hashlib.sha256(sample_model().read_bytes()).hexdigest()
    result = _build(tmp_path / "dist")
    assert result.path == tmp_path / "dist" / "digits_cnn-1.0.0-py3-none-any.whl"
    assert sorted(p.name for p in (tmp_path / "dist").iterdir()) == [result.path.name]  # no temporary left
    info = "digits_cnn-1.0.0.dist-info"
    with zipfile.ZipFile(result.path) as z:
        names = z.namelist()
        assert names == ["digits_cnn/__init__.py", "digits_cnn/__main__.py", "digits_cnn/model/model.onnx",
                         f"{info}/METADATA", f"{info}/WHEEL", f"{info}/entry_points.txt", f"{info}/licenses/LICENSE",
                         f"{info}/RECORD"]
        for item in z.infolist():
            assert item.date_time == (1980, 1, 1, 0, 0, 0) and item.external_attr >> 16 == 0o100644
        assert z.read("digits_cnn/model/model.onnx") == sample_model().read_bytes()
        meta = Parser().parsestr(z.read(f"{info}/METADATA").decode())
        assert meta["Metadata-Version"] == "2.4" and meta["Name"] == "digits-cnn" and meta["Version"] == "1.0.0"
        assert meta["License-Expression"] == "MIT" and meta.get_all("License-File") == ["LICENSE"]
        assert meta.get_all("Requires-Dist") == ["numpy", "onnxruntime"]
        assert meta["Description-Content-Type"].startswith("text/markdown")
        assert meta.get_payload() == "# Digits CNN\n\nA *card*.\n"
        assert z.read(f"{info}/licenses/LICENSE").decode() == MIT
        assert "digits-cnn-predict = digits_cnn:main" in z.read(f"{info}/entry_points.txt").decode()
        rows = list(csv.reader(io.StringIO(z.read(f"{info}/RECORD").decode())))
        assert [r[0] for r in rows] == names and rows[-1] == [f"{info}/RECORD", "", ""]
        for name, hashed, size in rows[:-1]:
            data = z.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert hashed == f"sha256={expected}" and int(size) == len(data)
    assert result.sha256 == hashlib.sha256(result.path.read_bytes()).hexdigest()
    assert not result.warnings and not result.over_pypi_limit
    assert hashlib.sha256(sample_model().read_bytes()).hexdigest() == digest  # the input is never changed


def test_same_inputs_give_the_same_bytes(tmp_path: Path) -> None:
    first = _build(tmp_path / "a")
    copy = tmp_path / "elsewhere" / "digits_cnn.onnx"
    copy.parent.mkdir()
    shutil.copyfile(sample_model(), copy)
    os.utime(copy, (1_000_000_000, 1_000_000_000))
    copy.chmod(0o600)
    license_file = tmp_path / "LICENSE"
    license_file.write_text(MIT)
    second = _build(tmp_path / "b", model=copy, license_files={"LICENSE": license_file})
    assert first.path.read_bytes() == second.path.read_bytes()
    assert _build(tmp_path / "c", version="1.0.1").sha256 != first.sha256


def test_twine_check_passes(tmp_path: Path) -> None:
    result = _build(tmp_path, readme_markdown=None)  # the generated usage page
    check = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(result.path)],
                           check=False, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "PASSED" in check.stdout


def _external_model(folder: Path) -> tuple[Path, np.ndarray]:
    """A two-input ONNX model whose weights live in a side file: y = x @ w + bias, z = x * scale."""
    folder.mkdir(parents=True, exist_ok=True)
    w = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "bias"], ["y"]),
         helper.make_node("Mul", ["x", "scale"], ["z"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16]),
         helper.make_tensor_value_info("bias", TensorProto.FLOAT, [4]),
         helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 16])],
        [numpy_helper.from_array(w, "w")])
    path = folder / "linear.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path,
              save_as_external_data=True, location="linear.weights", size_threshold=0)
    return path, w


def _import_from(wheel: Path, folder: Path, module: str):  # type: ignore[no-untyped-def]
    with zipfile.ZipFile(wheel) as z:
        z.extractall(folder)
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(module, None)


def test_generated_api_with_external_data(tmp_path: Path) -> None:
    import onnxruntime as ort

    model, w = _external_model(tmp_path / "model")
    result = _build(tmp_path / "dist", model=model, name="linear-demo", readme_markdown=None)
    assert "linear_demo/model/linear.weights" in result.files and result.model_bytes > w.nbytes
    pkg = _import_from(result.path, tmp_path / "site", "linear_demo")
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    feeds = {"x": x, "bias": np.arange(4, dtype=np.float32), "scale": np.array([2.0], dtype=np.float32)}
    out = pkg.predict(feeds)
    expected = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert list(out) == ["y", "z"]
    assert np.array_equal(out["y"], expected[0]) and np.array_equal(out["z"], expected[1])
    assert pkg.signature()["inputs"][0] == {"name": "x", "dtype": "float32", "shape": ["batch", 16]}
    assert pkg.predict({**feeds, "bias": [0, 1, 2, 3]})["y"].shape == (3, 4)  # lists take the model's type

    def fails(inputs: object, *words: str) -> None:
        with pytest.raises(pkg.InputError) as err:
            pkg.predict(inputs)
        for word in words:
            assert word in str(err.value)

    fails(x, "takes 3 inputs", "'x' (float32 [batch, 16])")
    fails({**feeds, "extra": x}, "Unknown input 'extra'")
    fails({"x": x}, "Missing input 'bias', 'scale'")
    fails({**feeds, "x": x.astype(np.float64)}, "must hold float32 values, not float64", ".astype('float32')")
    fails({**feeds, "x": x[0]}, "must have 2 dimensions [batch, 16], not 1", "x[None]")
    fails({**feeds, "x": x[:, :8]}, "Dimension 1 of input 'x' must be 16, not 8")


def test_console_command_on_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import onnxruntime as ort

    result = _build(tmp_path / "dist", name="digits-cli")
    pkg = _import_from(result.path, tmp_path / "site", "digits_cli")
    images = np.load(sample_dir() / "digits_test.npz")["x"][:5]
    expected = ort.InferenceSession(str(sample_model()), providers=["CPUExecutionProvider"]).run(None,
                                                                                               {"image": images})[0]
    np.save(tmp_path / "in.npy", images)
    assert pkg.main([str(tmp_path / "in.npy"), "-o", str(tmp_path / "out.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "out.npy"), expected)
    np.savez(tmp_path / "in.npz", image=images)
    assert pkg.main([str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npz")]) == 0
    assert np.array_equal(np.load(tmp_path / "out.npz")["logits"], expected)
    assert pkg.main([str(tmp_path / "in.npz")]) == 0
    assert "logits: float32 [5, 10]" in capsys.readouterr().out
    np.savez(tmp_path / "two.npz", a=images, b=images)
    assert pkg.main([str(tmp_path / "two.npz")]) == 2
    assert "name the arrays after the model's inputs: image" in capsys.readouterr().err
    np.save(tmp_path / "bad.npy", images.astype(np.float64))
    assert pkg.main([str(tmp_path / "bad.npy")]) == 2
    assert "must hold float32 values" in capsys.readouterr().err


def test_large_models_are_warned_about_before_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wh, "PYPI_FILE_LIMIT", 50_000)
    plan = wh.plan_wheel(sample_model(), name="digits-cnn", version="1")
    assert plan.may_exceed_pypi_limit
    assert any("over PyPI's default limit" in w and "Hugging Face Hub" in w for w in plan.warnings)
    assert any("No license was given" in w for w in plan.warnings)
    result = wh.build_wheel(plan, tmp_path)
    assert result.over_pypi_limit and any("The wheel is" in w for w in result.warnings)


def test_only_onnx_models_and_cancel_leaves_nothing(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"w": np.zeros((2, 2), dtype=np.float32)}, str(tmp_path / "weights.safetensors"))
    with pytest.raises(UnsupportedFormat, match="only ONNX models can be packaged"):
        wh.plan_wheel(tmp_path / "weights.safetensors", name="digits", version="1")
    plan = wh.plan_wheel(sample_model(), name="digits", version="1")
    job = Job()
    job.cancel()
    with pytest.raises(Cancelled):
        wh.build_wheel(plan, tmp_path / "dist", job=job)
    assert list((tmp_path / "dist").iterdir()) == []


def test_cli_package(tmp_path: Path) -> None:
    (tmp_path / "LICENSE").write_text(MIT)
    (tmp_path / "README.md").write_text("# Card\n")
    out = run_cli("package", "pypi", str(sample_model()), "--name", "digits-cnn", "--version", "2.0", "--license",
                  "mit", "--license-file", str(tmp_path / "LICENSE"), "--readme", str(tmp_path / "README.md"),
                  "-o", str(tmp_path / "dist"), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["path"] == str(tmp_path / "dist" / "digits_cnn-2.0-py3-none-any.whl")
    assert "digits_cnn-2.0.dist-info/licenses/LICENSE" in data["files"]
    text = run_cli("package", "pypi", str(sample_model()), "--name", "digits-cnn", "--version", "2.0",
                   "-o", str(tmp_path / "dist2"))
    assert text.returncode == 0 and "Built" in text.stdout and "digits-cnn-predict" in text.stdout
    assert "No license was given" in text.stderr
    bad = run_cli("package", "pypi", str(sample_model()), "--name", "my model", "--version", "1", "-o",
                  str(tmp_path))
    assert bad.returncode == 1 and "not a valid package name" in bad.stderr and "Traceback" not in bad.stderr
