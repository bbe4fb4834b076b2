"""Train and export Model Workbench's bundled sample model (DigitsCNN on scikit-learn digits).

Usage:
    python resources/sample/train_sample.py [--out DIR]

DIR defaults to the folder this script lives in. The script writes:

    digits_cnn.onnx           self-contained ONNX model (opset 18, input "image", output "logits",
                              dynamic batch axis)
    digits_cnn.pt             state_dict for digits_cnn.DigitsCNN (torch.save)
    digits_cnn_scripted.pt    TorchScript module (torch.jit.script + torch.jit.save)
    digits_test.npz           held-out test split: x (float32, N x 1 x 8 x 8, scaled), y (int64)
    sample.json               manifest (input spec, preprocessing, labels, measured accuracy, ...)

All seeds (and PYTHONHASHSEED) are fixed, deterministic algorithms are enforced and a single thread
is used, so a rerun on the same machine (same library versions) gives the same weights and the same
files byte for byte. After writing, every file is
reloaded and checked; the script exits non-zero if any check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import logging
import os
import random
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # keep __pycache__ out of the sample folder
sys.path.insert(0, str(HERE))
from digits_cnn import DigitsCNN  # noqa: E402

# Training settings (recorded in sample.json).
SEED = 0
EPOCHS = 30
LR = 1e-3
BATCH_SIZE = 32
TEST_SIZE = 0.25

# Acceptance thresholds.
MIN_ACCURACY = 0.97
MAX_LOGIT_DIFF = 1e-4
MAX_FOLDER_BYTES = 1_000_000

ONNX_NAME = "digits_cnn.onnx"
STATE_DICT_NAME = "digits_cnn.pt"
SCRIPTED_NAME = "digits_cnn_scripted.pt"
TEST_DATA_NAME = "digits_test.npz"
MANIFEST_NAME = "sample.json"
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
OPSET = 18
CLASS_LABELS = [str(i) for i in range(10)]


def set_determinism(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def load_data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()  # bundled with scikit-learn, no download
    x = (digits.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_SIZE, random_state=SEED, stratify=y
    )
    return (
        np.ascontiguousarray(x_train, dtype=np.float32),
        np.ascontiguousarray(x_test, dtype=np.float32),
        y_train.astype(np.int64),
        y_test.astype(np.int64),
    )


def train(x_train: np.ndarray, y_train: np.ndarray) -> DigitsCNN:
    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    xt = torch.from_numpy(x_train)
    yt = torch.from_numpy(y_train)
    gen = torch.Generator().manual_seed(SEED)
    n = len(xt)
    model.train()
    for epoch in range(1, EPOCHS + 1):
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, BATCH_SIZE):
            idx = perm[start:start + BATCH_SIZE]
            optimizer.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        if epoch == 1 or epoch % 5 == 0 or epoch == EPOCHS:
            print(f"epoch {epoch:3d}/{EPOCHS}  train loss {total / n:.4f}")
    model.eval()
    return model


def weights_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@contextlib.contextmanager
def quiet_exporter():
    """Hide the dynamo exporter's progress prints, log lines and warnings."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    old_levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    sink = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, old_levels):
            lg.setLevel(level)


def strip_onnx_debug_metadata(path: Path) -> None:
    """Drop the exporter's per-node debug metadata (stack traces with absolute source paths,
    FX node dumps, ...) so the file does not depend on where the repo is checked out."""
    import onnx

    model = onnx.load(str(path))

    def clear(graph):
        for node in graph.node:
            del node.metadata_props[:]
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    clear(attr.g)
                for g in attr.graphs:
                    clear(g)
        for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
            del vi.metadata_props[:]
        for init in graph.initializer:
            del init.metadata_props[:]

    clear(model.graph)
    del model.metadata_props[:]
    model.doc_string = "DigitsCNN: scikit-learn 8x8 digits classifier (Model Workbench sample model)"
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))  # < 2 GB, so weights stay inside the single file


def export_onnx(model: DigitsCNN, path: Path) -> None:
    # Example batch of 2 (not 1) so torch.export never treats the batch dim as a size-1 special case.
    # external_data=False is essential: the torch 2.13 default (True) writes digits_cnn.onnx.data
    # next to the model even for tiny weights.
    example = torch.zeros(2, 1, 8, 8, dtype=torch.float32)
    batch = torch.export.Dim("batch")
    with quiet_exporter():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            dynamic_shapes={"x": {0: batch}},
        )
    strip_onnx_debug_metadata(path)
    side_file = path.with_name(path.name + ".data")
    if side_file.exists():  # never expected with external_data=False, but never ship one
        side_file.unlink()


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((np.asarray(logits).argmax(axis=1) == y).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: this script's folder)")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    set_determinism(SEED)
    x_train, x_test, y_train, y_test = load_data()
    print(f"data: {len(x_train)} train / {len(x_test)} test samples")

    model = train(x_train, y_train)
    print(f"weights sha256: {weights_digest(model)}")

    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x_test)).numpy()
    torch_acc = accuracy(torch_logits, y_test)
    print(f"torch (in-memory) test accuracy: {torch_acc:.4f}")

    # ---- write artifacts -------------------------------------------------------------------
    onnx_path = out / ONNX_NAME
    sd_path = out / STATE_DICT_NAME
    ts_path = out / SCRIPTED_NAME
    npz_path = out / TEST_DATA_NAME
    manifest_path = out / MANIFEST_NAME

    export_onnx(model, onnx_path)
    torch.save(model.state_dict(), sd_path)
    torch.jit.save(torch.jit.script(model), str(ts_path))
    np.savez_compressed(npz_path, x=x_test, y=y_test)

    # ---- verify -----------------------------------------------------------------------------
    import onnx
    import onnxruntime as ort

    failures: list[str] = []

    def check(ok: bool, msg: str) -> None:
        print(f"  [{'ok' if ok else 'FAIL'}] {msg}")
        if not ok:
            failures.append(msg)

    print("verification:")
    data = np.load(npz_path)
    xv, yv = data["x"], data["y"]
    check(xv.dtype == np.float32 and xv.shape == (len(y_test), 1, 8, 8) and yv.dtype == np.int64,
          f"{TEST_DATA_NAME}: x {xv.dtype} {xv.shape}, y {yv.dtype} {yv.shape}")
    check(np.array_equal(xv, x_test) and np.array_equal(yv, y_test), f"{TEST_DATA_NAME} round-trips")

    check(not onnx_path.with_name(ONNX_NAME + ".data").exists(), "no external .data file next to the ONNX model")
    onnx_model = onnx.load(str(onnx_path))
    check(all(init.data_location != onnx.TensorProto.EXTERNAL for init in onnx_model.graph.initializer),
          "all ONNX initializers are embedded")
    check([i.name for i in onnx_model.graph.input] == [INPUT_NAME]
          and [o.name for o in onnx_model.graph.output] == [OUTPUT_NAME],
          f"ONNX input/output names are {INPUT_NAME!r}/{OUTPUT_NAME!r}")

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for n in (1, 7, len(xv)):
        shape = sess.run(None, {INPUT_NAME: xv[:n]})[0].shape
        check(shape == (n, 10), f"onnxruntime batch size {n} -> output shape {shape}")
    ort_logits = sess.run(None, {INPUT_NAME: xv})[0]
    onnx_acc = accuracy(ort_logits, yv)
    max_diff = float(np.abs(ort_logits - torch_logits).max())

    scripted = torch.jit.load(str(ts_path))
    scripted.eval()
    with torch.no_grad():
        ts_logits = scripted(torch.from_numpy(xv)).numpy()
    ts_acc = accuracy(ts_logits, yv)

    reloaded = DigitsCNN()
    reloaded.load_state_dict(torch.load(sd_path, map_location="cpu", weights_only=True))
    reloaded.eval()
    with torch.no_grad():
        sd_logits = reloaded(torch.from_numpy(xv)).numpy()
    sd_acc = accuracy(sd_logits, yv)

    check(onnx_acc >= MIN_ACCURACY, f"ONNX (onnxruntime) accuracy {onnx_acc:.4f} >= {MIN_ACCURACY}")
    check(ts_acc >= MIN_ACCURACY, f"TorchScript accuracy {ts_acc:.4f} >= {MIN_ACCURACY}")
    check(sd_acc >= MIN_ACCURACY, f"state_dict-loaded accuracy {sd_acc:.4f} >= {MIN_ACCURACY}")
    check(max_diff < MAX_LOGIT_DIFF, f"max |torch - onnxruntime| logits = {max_diff:.3e} < {MAX_LOGIT_DIFF:g}")
    ts_diff = float(np.abs(ts_logits - torch_logits).max())
    check(ts_diff < MAX_LOGIT_DIFF, f"max |torch - TorchScript| logits = {ts_diff:.3e} < {MAX_LOGIT_DIFF:g}")
    check(np.array_equal(sd_logits, torch_logits), "state_dict-loaded logits match torch exactly")

    # ---- manifest (written after the ONNX accuracy is measured) -----------------------------
    manifest = {
        "name": "digits_cnn",
        "description": (
            "A small convolutional neural network that recognises handwritten digits (0 to 9) "
            "in 8x8 grey-scale images from scikit-learn's digits data set."
        ),
        "model_file": ONNX_NAME,
        "input": {"name": INPUT_NAME, "shape": ["batch", 1, 8, 8], "dtype": "float32"},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", 10], "dtype": "float32",
                   "meaning": "raw scores (logits) per class; argmax is the predicted digit"},
        "preprocessing": "pixel values 0..16 divided by 16",
        "class_labels": CLASS_LABELS,
        "test_data": {"file": TEST_DATA_NAME, "num_samples": int(len(yv)),
                      "split": f"sklearn train_test_split(test_size={TEST_SIZE}, random_state={SEED}, stratify=y)"},
        "num_test_samples": int(len(yv)),
        "test_accuracy": onnx_acc,
        "test_accuracy_measured_with": f"onnxruntime {ort.__version__} on {ONNX_NAME}",
        "training": {"epochs": EPOCHS, "lr": LR, "seed": SEED, "batch_size": BATCH_SIZE,
                     "optimizer": "Adam", "loss": "cross-entropy"},
        "files": {"onnx": ONNX_NAME, "state_dict": STATE_DICT_NAME,
                  "torchscript": SCRIPTED_NAME, "test_data": TEST_DATA_NAME},
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "opset": OPSET},
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    check(json.loads(manifest_path.read_text(encoding="utf-8"))["test_accuracy"] == onnx_acc,
          f"{MANIFEST_NAME} written")

    written = [onnx_path, sd_path, ts_path, npz_path, manifest_path]
    total_bytes = sum(p.stat().st_size for p in written)
    check(total_bytes < MAX_FOLDER_BYTES, f"generated files total {total_bytes} bytes < {MAX_FOLDER_BYTES}")

    print("files:")
    for p in written:
        print(f"  {p.name:24s} {p.stat().st_size:8d} bytes")
    print(f"ONNX (onnxruntime) test accuracy: {onnx_acc:.4f} ({int(round(onnx_acc * len(yv)))}/{len(yv)})")
    print(f"TorchScript test accuracy:        {ts_acc:.4f}")
    print(f"state_dict-loaded test accuracy:  {sd_acc:.4f}")
    print(f"max abs logit diff torch vs ORT:  {max_diff:.3e}")

    if failures:
        print(f"FAILED: {len(failures)} check(s) failed", file=sys.stderr)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    # TorchScript serialises module constants in Python set order, which depends on string-hash
    # randomisation; pin the hash seed (re-exec once) so digits_cnn_scripted.pt is byte-identical
    # across reruns as well.
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})
    sys.exit(main())
