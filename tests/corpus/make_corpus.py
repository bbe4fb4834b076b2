"""Build the regression corpus: real model files made by the real libraries, and bad files.

Run as ``python tests/corpus/make_corpus.py OUTDIR``; the tests run it into a temporary folder.
What each file should give is listed in ``corpus.json`` next to this script. Malicious pickles here
only ever try to create a marker file next to themselves (``PWNED-<name>``), which tests check for.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import pickle
import shutil
import struct
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _quiet_export(model, args, path: Path, **kwargs) -> None:
    import torch

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), dynamo=True, **kwargs)


class _Marker:
    """Unpickling this runs os.system (what a real attack would do); here it only touches a file."""

    def __init__(self, marker: Path) -> None:
        self.cmd = f"touch {marker}"

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _EvalMarker:
    def __init__(self, marker: Path) -> None:
        self.code = f"open({str(marker)!r}, 'w').close()"

    def __reduce__(self):
        import builtins

        return (builtins.eval, (self.code,))


def _replace_member(src: Path, dst: Path, member_suffix: str, data: bytes) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            payload = data if item.filename.endswith(member_suffix) else zin.read(item.filename)
            zout.writestr(item, payload)


def build(out: Path) -> None:
    import onnx
    import torch
    from corpus_models import TinyNet
    from onnx import TensorProto, helper, numpy_helper
    from safetensors.numpy import save_file

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = TinyNet().eval()
    x = torch.randn(2, 1, 8, 8)

    # --- ONNX --------------------------------------------------------------------------------
    _quiet_export(net, (x,), out / "embedded.onnx", external_data=False)
    (out / "external").mkdir(exist_ok=True)
    _quiet_export(net, (x,), out / "external" / "model.onnx")  # torch writes model.onnx.data
    m = onnx.load(out / "embedded.onnx")
    (out / "multi_external").mkdir(exist_ok=True)
    onnx.save_model(m, out / "multi_external" / "model.onnx", save_as_external_data=True,
                    all_tensors_to_one_file=False, size_threshold=0)
    # an If node with two subgraphs
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    then_g = helper.make_graph([helper.make_node("Constant", [], ["a"], value=numpy_helper.from_array(
        np.array([1, 2], np.float32)))], "then", [], [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2])])
    else_g = helper.make_graph([helper.make_node("Constant", [], ["b"], value=numpy_helper.from_array(
        np.array([3, 4], np.float32)))], "else", [], [helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])])
    g = helper.make_graph([helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g)],
                          "if_graph", [cond], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), out / "if_subgraph.onnx")
    # sparse weights: 3 of 4 values zero in 'w'
    w = np.zeros((64, 64), np.float32)
    w[::2, ::2] = 1.0
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])
    outp = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 64])
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "sparse", [inp], [outp],
                          initializer=[numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), out / "sparse.onnx")

    # --- PyTorch -----------------------------------------------------------------------------
    sd = net.state_dict()
    torch.save(sd, out / "state_dict.pt")
    torch.save({"model": sd, "optimizer": torch.optim.SGD(net.parameters(), lr=0.1).state_dict(), "epoch": 7},
               out / "checkpoint.pth")
    torch.save({"state_dict": sd, "global_step": 100}, out / "lightning_style.ckpt")
    torch.save({"run": {"model_state_dict": sd}, "notes": "nested"}, out / "nested_checkpoint.pt")
    torch.save(sd, out / "legacy_state_dict.pt", _use_new_zipfile_serialization=False)
    torch.save(net, out / "whole_module.pt")
    torch.jit.save(torch.jit.script(net), out / "scripted.pt")
    torch.jit.save(torch.jit.trace(net, x), out / "traced.pt")
    torch.export.save(torch.export.export(net, (x,)), out / "exported.pt2")
    torch.save({"step": 3, "lr": 0.1}, out / "no_weights.pt")

    # --- safetensors and Hugging Face folders -----------------------------------------------
    arrays = {k: v.numpy() for k, v in sd.items()}
    save_file(arrays, str(out / "model.safetensors"), metadata={"format": "pt", "author": "测试"})
    from safetensors.torch import save_file as save_torch

    save_torch({"w": torch.zeros(8, 8, dtype=torch.bfloat16)}, str(out / "bf16.safetensors"))
    hf = out / "hf_folder"
    hf.mkdir(exist_ok=True)
    (hf / "config.json").write_text(json.dumps({"model_type": "tiny", "architectures": ["TinyNet"]}))
    save_file(arrays, str(hf / "model.safetensors"))
    shard = out / "hf_sharded"
    shard.mkdir(exist_ok=True)
    (shard / "config.json").write_text(json.dumps({"model_type": "tiny"}))
    names = list(arrays)
    save_file({k: arrays[k] for k in names[:2]}, str(shard / "model-00001-of-00002.safetensors"))
    save_file({k: arrays[k] for k in names[2:]}, str(shard / "model-00002-of-00002.safetensors"))
    (shard / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {k: f"model-0000{1 if i < 2 else 2}-of-00002.safetensors" for i, k in enumerate(names)}}))

    # --- wrong extensions ------------------------------------------------------------------
    shutil.copy(out / "embedded.onnx", out / "onnx_named.pt")
    shutil.copy(out / "state_dict.pt", out / "state_dict_named.onnx")

    # --- bad files ---------------------------------------------------------------------------
    (out / "empty.onnx").write_bytes(b"")
    good = (out / "embedded.onnx").read_bytes()
    (out / "truncated.onnx").write_bytes(good[: len(good) // 2])
    (out / "corrupted.onnx").write_bytes(good[:20] + b"\xff" * 64 + good[84:])
    (out / "garbage.onnx").write_bytes(bytes(range(256)) * 8)
    pt = (out / "state_dict.pt").read_bytes()
    (out / "truncated.pt").write_bytes(pt[: len(pt) // 2])
    st = (out / "model.safetensors").read_bytes()
    (out / "truncated.safetensors").write_bytes(st[: len(st) - 100])
    (out / "bad_header.safetensors").write_bytes(struct.pack("<Q", 10**12) + b"{" + b"\0" * 100)
    (out / "not_json.safetensors").write_bytes(struct.pack("<Q", 8) + b"{notjson" + b"\0" * 16)
    for folder, action in (("missing_external", "delete"), ("short_external", "truncate")):
        shutil.copytree(out / "external", out / folder, dirs_exist_ok=True)
        data = out / folder / "model.onnx.data"
        if action == "delete":
            data.unlink()
        else:
            data.write_bytes(data.read_bytes()[:100])
    traversal = onnx.load(out / "embedded.onnx")
    for t in traversal.graph.initializer[:1]:
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        t.external_data.add(key="location", value="../../etc/passwd")
    (out / "traversal").mkdir(exist_ok=True)
    (out / "traversal" / "model.onnx").write_bytes(traversal.SerializeToString())
    (out / "plain_folder").mkdir(exist_ok=True)
    (out / "plain_folder" / "notes.txt").write_text("not a model")
    (out / "fake.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\0" * 64)
    (out / "error_page.onnx").write_bytes(b"<!DOCTYPE html><html><body>404 Not Found</body></html>")
    (out / "lfs_pointer.safetensors").write_bytes(
        b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 12345\n")

    # --- malicious pickles: each would create PWNED-<name> if it ever ran ---------------------
    def marker(name: str) -> Path:
        return out / f"PWNED-{name}"

    (out / "malicious.pkl").write_bytes(pickle.dumps(_Marker(marker("malicious.pkl")), protocol=2))
    (out / "malicious_p4.pkl").write_bytes(pickle.dumps({"w": _Marker(marker("malicious_p4.pkl"))}, protocol=4))
    (out / "malicious_eval.pt").write_bytes(pickle.dumps(_EvalMarker(marker("malicious_eval.pt")), protocol=4))
    _replace_member(out / "state_dict.pt", out / "malicious_torch.pt", "data.pkl",
                    pickle.dumps(_Marker(marker("malicious_torch.pt")), protocol=2))
    evil_inputs = io.BytesIO()
    torch.save(_Marker(marker("malicious_export.pt2")), evil_inputs, pickle_protocol=2)
    _replace_member(out / "exported.pt2", out / "malicious_export.pt2", "sample_inputs/model.pt",
                    evil_inputs.getvalue())


if __name__ == "__main__":
    build(Path(sys.argv[1]))
