"""Format readers report what the real libraries report, and never read weights for a summary."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from workbench.core import errors
from workbench.core.formats import open_model
from workbench.core.jobs import Job


def test_onnx_matches_onnx_library(corpus: Path) -> None:
    import onnx

    for name in ("embedded.onnx", "external/model.onnx", "multi_external/model.onnx"):
        path = corpus / name
        doc = open_model(path)
        ref = onnx.load(path)  # loads external data too
        ref_tensors = {t.name: onnx.numpy_helper.to_array(t, base_dir=str(path.parent)) for t in
                       ref.graph.initializer}
        assert {t.name: t.shape for t in doc.tensors} == {k: v.shape for k, v in ref_tensors.items()}
        assert {t.name: t.nbytes for t in doc.tensors} == {k: v.nbytes for k, v in ref_tensors.items()}
        assert doc.parameters == sum(v.size for v in ref_tensors.values())
        assert [i.name for i in doc.inputs] == ["x"]
        assert doc.inputs[0].shape == (2, 1, 8, 8) and doc.inputs[0].dtype == "float32"
        assert doc.outputs[0].shape == (2, 10)
        assert sum(doc.operators.values()) == len(ref.graph.node)
        assert doc.metadata["opset"]["ai.onnx"] == ref.opset_import[0].version
        assert doc.metadata["producer"].startswith("pytorch")


def test_external_data_counts_in_size(corpus: Path) -> None:
    doc = open_model(corpus / "external" / "model.onnx")
    roles = {f.path.name: f.role for f in doc.files}
    assert roles == {"model.onnx": "model", "model.onnx.data": "external data"}
    assert doc.size_bytes == sum(p.stat().st_size for p in (corpus / "external").iterdir())


def test_subgraph_operators_counted(corpus: Path) -> None:
    doc = open_model(corpus / "if_subgraph.onnx")
    assert doc.operators == {"If": 1, "Constant": 2}
    assert doc.metadata["subgraphs"] == 2


def test_sparsity_on_demand(corpus: Path) -> None:
    doc = open_model(corpus / "sparse.onnx")
    assert doc.sparsity is None  # not computed unless asked
    assert doc.compute_sparsity()["w"] == pytest.approx(0.75)
    assert doc.overall_sparsity == pytest.approx(0.75)
    assert open_model(corpus / "bf16.safetensors").compute_sparsity()["w"] == 1.0


@pytest.mark.parametrize("name", ["embedded.onnx", "external/model.onnx", "state_dict.pt", "scripted.pt",
                                  "exported.pt2", "model.safetensors", "hf_sharded"])
def test_sparsity_matches_torch(corpus: Path, name: str) -> None:
    import torch

    ref = torch.load(corpus / "state_dict.pt", weights_only=True)
    got = open_model(corpus / name).compute_sparsity()
    for key, tensor in ref.items():
        onnx_key = key
        assert got[onnx_key] == pytest.approx(float((tensor == 0).float().mean()))


def test_pytorch_checkpoint_details(corpus: Path) -> None:
    doc = open_model(corpus / "checkpoint.pth")
    assert doc.metadata["weights_key"] == "model"
    assert doc.metadata["epoch"] == 7
    assert "optimizer" in doc.metadata["other_keys"]
    nested = open_model(corpus / "nested_checkpoint.pt")
    assert nested.metadata["weights_key"] == "run/model_state_dict"


def test_state_dict_has_no_graph_and_says_what_would(corpus: Path) -> None:
    doc = open_model(corpus / "state_dict.pt")
    assert not doc.has_graph
    assert "ONNX" in doc.graph_note and "TorchScript" in doc.graph_note


def test_torch_export_signature(corpus: Path) -> None:
    doc = open_model(corpus / "exported.pt2")
    assert [(i.name, i.shape, i.dtype) for i in doc.inputs] == [("x", (2, 1, 8, 8), "float32")]
    assert doc.outputs[0].shape == (2, 10)
    assert "aten.conv2d" in " ".join(doc.operators)


def test_torchscript_operators(corpus: Path) -> None:
    doc = open_model(corpus / "scripted.pt")
    assert any("conv" in op for op in doc.operators)
    assert doc.inputs[0].name == "x"


def test_safetensors_metadata_round_trips_unicode(corpus: Path) -> None:
    doc = open_model(corpus / "model.safetensors")
    assert doc.metadata["properties"]["author"] == "测试"
    assert json.loads(json.dumps(doc.to_dict(), ensure_ascii=False))["metadata"]["properties"]["author"] == "测试"


def test_hf_folder_details(corpus: Path) -> None:
    doc = open_model(corpus / "hf_folder")
    assert doc.metadata["model_type"] == "tiny"
    assert {f.role for f in doc.files} == {"weights", "config"}


def test_trusted_module_is_marked(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "tests" / "corpus"))
    doc = open_model(corpus / "whole_module.pt", trust=True)
    assert doc.trusted and doc.metadata["class"] == "corpus_models.TinyNet"
    assert any("may have run" in n for n in doc.notes)


def test_untrusted_error_lists_imports(corpus: Path) -> None:
    with pytest.raises(errors.UntrustedPickle) as info:
        open_model(corpus / "whole_module.pt")
    assert "corpus_models.TinyNet" in info.value.imports
    assert not any(i.startswith("collections") or "_rebuild" in i for i in info.value.imports)


def test_original_files_are_not_modified(corpus: Path) -> None:
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in corpus.rglob("*") if p.is_file()
              and not p.name.startswith("PWNED")}
    for name in ("embedded.onnx", "external/model.onnx", "state_dict.pt", "scripted.pt", "exported.pt2",
                 "model.safetensors", "hf_folder"):
        open_model(corpus / name).compute_sparsity()
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in before}
    assert before == after


def test_cancel_stops_sparsity(corpus: Path) -> None:
    doc = open_model(corpus / "embedded.onnx")
    job = Job()
    job.cancel()
    with pytest.raises(errors.Cancelled):
        doc.compute_sparsity(job)
    assert doc.sparsity is None


def _big_onnx(path: Path, mb: int, external: bool) -> int:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = 4
    side = int(math.sqrt(mb * 1024 * 1024 / 4 / n))
    inits = [numpy_helper.from_array(np.full((side, side), i + 1, np.float32), f"w{i}") for i in range(n)]
    nodes = [helper.make_node("MatMul", ["x" if i == 0 else f"h{i}", f"w{i}"], [f"h{i + 1}"]) for i in range(n)]
    g = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", side])],
                          [helper.make_tensor_value_info(f"h{n}", TensorProto.FLOAT, ["b", side])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    if external:
        onnx.save_model(model, path, save_as_external_data=True, location=path.name + ".data")
    else:
        onnx.save_model(model, path)
    return n * side * side


@pytest.mark.parametrize("external", [False, True], ids=["embedded", "external"])
def test_summary_does_not_read_weights(tmp_path: Path, external: bool) -> None:
    """Opening a 400 MB model must not bring its weights into memory (peak RSS stays far below)."""
    path = tmp_path / "big.onnx"
    params = _big_onnx(path, 400, external)
    # VmHWM is this process's own peak (ru_maxrss would include the parent's peak from before the fork).
    code = ("import json, sys; from workbench.core.formats import open_model; d = open_model(sys.argv[1]); "
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]; "
            "print(json.dumps([d.parameters, int(hwm)]))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    got_params, peak_kb = json.loads(out.stdout)
    assert got_params == params
    assert peak_kb < 250 * 1024, f"peak memory {peak_kb / 1024:.0f} MB while opening a 400 MB model"


def test_huge_sparse_garbage_is_rejected_quickly(tmp_path: Path) -> None:
    """A 20 GB file (sparse on disk) of zeros fails on its first bytes instead of being read."""
    for name in ("huge.onnx", "huge.safetensors", "huge.pt"):
        path = tmp_path / name
        with open(path, "wb") as fh:
            fh.truncate(20 * 1024**3)
        with pytest.raises(errors.CorruptFile):
            open_model(path)
    path = tmp_path / "huge_header.safetensors"
    with open(path, "wb") as fh:
        fh.write((50 * 1024**2).to_bytes(8, "little") + b"{")
        fh.truncate(60 * 1024**2)
    with pytest.raises(errors.CorruptFile):
        open_model(path)
    assert os.path.getsize(path) == 60 * 1024**2
