"""Benchmark ``workbench.core.evaluate.compare.predict`` against a bare ``InferenceSession.run`` loop.

One run measures, on the same data, batch size and intra-op thread count, the throughput (samples/s) of:

- ``predict`` end to end (opening the model, checking and converting the data, creating the session,
  running every batch with progress) against a bare loop that creates a session and calls ``run`` on each
  slice of the data; and
- the batch loop alone (``run_batches`` on a ready session) against the bare ``run`` loop on a ready session;

for two models: the bundled sample CNN on the bundled digits (450 images), and a generated MLP
(``--width`` wide, ``--layers`` MatMul+Relu layers, float32) on random inputs. Rounds alternate ours/bare and
the median of ``--rounds`` is printed, with the ratio ours/bare (1.00 = no overhead). It also checks that
both give the same outputs, and exits 1 if they do not.

    .venv/bin/python benchmarks/bench_evaluate.py [--rounds N] [--batch N] [--threads N] [--width N] [--layers N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from shared import build_mlp

from workbench.core.evaluate.compare import open_session, predict, run_batches, session_options
from workbench.core.evaluate.datasets import EvalData, onnx_document, sample_data
from workbench.core.jobs import Job
from workbench.resources import sample_model


def bare_loop(session: ort.InferenceSession, x: np.ndarray, batch: int) -> np.ndarray:
    """What a user would write: run each slice, concatenate the first outputs."""
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)])


def alternate(ours: Callable[[], object], bare: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Median seconds of each, timed in alternating rounds after one untimed warm-up each."""
    ours(), bare()
    times: tuple[list[float], list[float]] = ([], [])
    for r in range(rounds):
        pair = [(0, ours), (1, bare)] if r % 2 == 0 else [(1, bare), (0, ours)]
        for slot, call in pair:
            start = time.perf_counter()
            call()
            times[slot].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def bench(label: str, model: Path, data: EvalData, *, batch: int, threads: int, rounds: int) -> bool:
    x = next(iter(data.inputs.values()))
    options = session_options(threads)

    def fresh_bare() -> np.ndarray:
        return bare_loop(ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"]),
                         x, batch)

    doc = onnx_document(model)
    session = open_session(doc, options)
    arrays = {doc.inputs[0].name: x}
    same = np.allclose(predict(model, data, batch_size=batch, threads=threads), fresh_bare(), rtol=1e-5, atol=1e-5)

    n = len(data)
    print(f"\n{label}: {n} samples, batch {batch}, {threads} intra-op thread(s), median of {rounds} rounds")
    print(f"  {'':<34}{'ours (samples/s)':>18}{'bare (samples/s)':>18}{'ours/bare':>11}")
    for what, ours, bare in (
        ("predict, end to end", lambda: predict(model, data, batch_size=batch, threads=threads), fresh_bare),
        ("batch loop on a ready session", lambda: run_batches(session, doc, arrays, batch_size=batch, job=Job()),
         lambda: bare_loop(session, x, batch)),
    ):
        t_ours, t_bare = alternate(ours, bare, rounds)
        print(f"  {what:<34}{n / t_ours:>18,.0f}{n / t_bare:>18,.0f}{t_bare / t_ours:>11.2f}")
    print(f"  outputs identical to the bare loop: {'yes' if same else 'NO'}")
    return same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--samples", type=int, default=4096, help="random inputs for the generated model")
    args = parser.parse_args()

    ok = bench("Sample CNN on the bundled digits", sample_model(), sample_data(), batch=args.batch,
               threads=args.threads, rounds=args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        mlp = build_mlp(Path(tmp) / "mlp.onnx", args.width, args.layers)
        size_mb = mlp.stat().st_size / 1e6
        x = np.random.default_rng(1).standard_normal((args.samples, args.width)).astype(np.float32)
        ok &= bench(f"Generated MLP ({args.layers}x{args.width} + head, {size_mb:.0f} MB)", mlp,
                    EvalData({"x": x}, None, "random"), batch=args.batch, threads=args.threads, rounds=args.rounds)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
