"""Benchmark building and uploading a model's wheel against `zip` and a bare `twine upload`, in one run.

One run:

1. builds ONNX models with external data (float32 weights from a normal distribution, which deflate about as
   well as trained weights do) of ``--size-mb`` (default 300) and a quarter of that, in ``--workdir``
   (reused by later runs when complete);
2. for each size, times in fresh subprocesses (alternating, ``--rounds`` times, medians shown):
   - *ours build*: ``package_pypi(model, ...)`` (opening and checking the model, the generated code and
     metadata, the model streamed into the wheel with its RECORD hashes, written atomically);
   - *zip*: ``zip -q -6 out.zip model.onnx model.onnx.data`` (the same files, the same deflate level);
   - *ours upload*: ``publish_wheel(wheel, ...)`` to a local pypiserver (twine as a library, with progress,
     Cancel and a reset-on-close connection);
   - *twine upload*: ``python -m twine upload`` of the same wheel to the same server;
3. prints seconds and peak memory per task and the ratios ours/zip and ours/twine.

Peak memory is VmHWM, the high-water mark of the task's own process, read from ``/proc/self/status`` at the end
of the Python tasks, and sampled every 5 ms from ``/proc/PID/status`` for `zip` (VmHWM only grows, so the last
sample is the peak). ``ru_maxrss`` would be wrong: Linux copies the parent's peak into a child at exec. The
upload server is pypiserver (``--overwrite``, so both uploads of the same wheel are accepted); its own time to
receive and store the file is in both upload columns alike. Needs ``pypi-server``, ``zip`` and about
4 x ``--size-mb`` MB of disk.

    .venv/bin/python benchmarks/bench_publish.py [--size-mb 300] [--rounds 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper
from shared import ROOT, measured

WIDTH = 2048  # each weight matrix is WIDTH x WIDTH float32 = 16.8 MB
DATA_FILE = "model.onnx.data"

BUILD = measured(setup="from workbench.core.package.wheel import package_pypi",
                        work="package_pypi(sys.argv[1], sys.argv[2], name='bench-model', version='1.0.0')")
IMPORTS = measured(setup="import onnx\nfrom workbench.core.package.wheel import package_pypi\n"
                                "from workbench.core.publish.pypi import publish_wheel\nimport twine.repository",
                          work="pass")
UPLOAD = measured(
    setup="import contextlib\nfrom workbench.core.publish.pypi import publish_wheel",
    work=("with contextlib.redirect_stdout(sys.stderr):\n"
          "    publish_wheel(sys.argv[1], repository_url=sys.argv[2], password=os.environ['TWINE_PASSWORD'])"))
TWINE = measured(
    setup="import contextlib, runpy",
    work=("sys.argv = ['twine', 'upload', '--non-interactive', '--disable-progress-bar', '--repository-url',\n"
          "            sys.argv[2], sys.argv[1]]\n"
          "try:\n"
          "    with contextlib.redirect_stdout(sys.stderr):\n"
          "        runpy.run_module('twine', run_name='__main__')\n"
          "except SystemExit as exit:\n"
          "    if exit.code:\n"
          "        raise"))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_model(folder: Path, size_mb: float) -> Path:
    """A MatMul chain whose weights (about ``size_mb`` MB) are written straight to the external data file."""
    layers = max(1, round(size_mb * 1e6 / (WIDTH * WIDTH * 4)))
    path, data = folder / "model.onnx", folder / DATA_FILE
    expected = layers * WIDTH * WIDTH * 4
    if path.exists() and data.exists() and data.stat().st_size == expected:
        return path
    folder.mkdir(parents=True, exist_ok=True)
    log(f"Building a {expected / 1e6:.0f} MB model in {folder} ...")
    rng = np.random.default_rng(0)
    nodes, initializers = [], []
    with open(data, "wb") as fh:
        for i in range(layers):
            offset = fh.tell()
            fh.write(rng.standard_normal((WIDTH, WIDTH), dtype=np.float32).tobytes())
            tensor = TensorProto(name=f"w{i}", data_type=TensorProto.FLOAT, dims=(WIDTH, WIDTH))
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (("location", DATA_FILE), ("offset", str(offset)), ("length", str(WIDTH * WIDTH * 4))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            initializers.append(tensor)
            nodes.append(helper.make_node("MatMul", ["x" if i == 0 else f"h{i - 1}", f"w{i}"],
                                          ["y" if i == layers - 1 else f"h{i}"]))
    graph = helper.make_graph(nodes, "bench", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", WIDTH])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", WIDTH])], initializers)
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


def run_python(snippet: str, *args: str, env: dict[str, str] | None = None) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", snippet, *args], capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})}, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"a measured task failed:\n{proc.stderr.strip()[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_zip(folder: Path, out: Path) -> dict[str, float]:
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    proc = subprocess.Popen(["zip", "-q", "-6", str(out), "model.onnx", DATA_FILE], cwd=folder)
    peak_kb = 0
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as status:
                peak_kb = max(peak_kb, next((int(line.split()[1]) for line in status if line.startswith("VmHWM:")),
                                            0))
        except OSError:
            pass
        time.sleep(0.005)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"zip failed with status {proc.returncode}")
    return {"seconds": seconds, "peak_kb": peak_kb}


def median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def measure(model: Path, work: Path, url: str, token: str, rounds: int) -> dict[str, dict[str, float]]:
    dist = work / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    results: dict[str, list[dict[str, float]]] = {k: [] for k in ("ours build", "zip", "ours upload", "twine upload")}
    secret = {"TWINE_USERNAME": "__token__", "TWINE_PASSWORD": token}
    for _ in range(rounds):
        results["ours build"].append(run_python(BUILD, str(model), str(dist)))
        results["zip"].append(run_zip(model.parent, work / "same-files.zip"))
        wheel = next(dist.glob("*.whl"))
        results["ours upload"].append(run_python(UPLOAD, str(wheel), url, env=secret))
        results["twine upload"].append(run_python(TWINE, str(wheel), url, env=secret))
    sizes = {"wheel_mb": next(dist.glob("*.whl")).stat().st_size / 1e6,
             "zip_mb": (work / "same-files.zip").stat().st_size / 1e6}
    (work / "same-files.zip").unlink()
    return {**{k: median(v) for k, v in results.items()}, "sizes": sizes}


def main(argv: list[str] | None = None) -> int:
    from servers import PyPIServer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=300.0, help="the larger model's weights (default 300)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each task per size (median shown)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/workbench-bench-publish"))
    args = parser.parse_args(argv)
    if shutil.which("zip") is None:
        raise SystemExit("zip is not installed (apt-get install zip)")
    token = "pypi-" + secrets.token_urlsafe(24)
    server = PyPIServer(args.workdir / "server", {"__token__": token}, overwrite=True)
    sizes = [args.size_mb / 4, args.size_mb]
    models = [build_model(args.workdir / f"model-{s:g}mb", s) for s in sizes]
    floor = run_python(IMPORTS)
    rows = []
    server.start()
    try:
        for size, model in zip(sizes, models):
            log(f"Measuring the {size:g} MB model ({args.rounds} rounds) ...")
            rows.append((size, model, measure(model, args.workdir / f"run-{size:g}mb", server.url, token,
                                              args.rounds)))
    finally:
        server.stop()
        shutil.rmtree(server.packages, ignore_errors=True)
    print(f"Publishing benchmark: wheel build and upload vs zip and twine (medians of {args.rounds} runs; "
          f"peak = VmHWM of the task's process)")
    print(f"Python with the workbench, onnx and twine modules imported and nothing done: "
          f"{floor['peak_kb'] / 1024:.0f} MB peak")
    for size, model, r in rows:
        weights = sum(p.stat().st_size for p in model.parent.iterdir() if p.name in ("model.onnx", DATA_FILE))
        print(f"\nModel: {weights / 1e6:.0f} MB (wheel {r['sizes']['wheel_mb']:.0f} MB, zip of the same files "
              f"{r['sizes']['zip_mb']:.0f} MB)")
        print(f"  {'task':<14} {'seconds':>8} {'peak MB':>8}")
        for task in ("ours build", "zip", "ours upload", "twine upload"):
            print(f"  {task:<14} {r[task]['seconds']:8.2f} {r[task]['peak_kb'] / 1024:8.0f}")
        print(f"  ratios: build/zip {r['ours build']['seconds'] / r['zip']['seconds']:.2f}x time, "
              f"upload/twine {r['ours upload']['seconds'] / r['twine upload']['seconds']:.2f}x time, "
              f"{r['ours upload']['peak_kb'] / r['twine upload']['peak_kb']:.2f}x memory")
    small, large = rows[0][2], rows[-1][2]
    for task in ("ours build", "ours upload"):
        growth = (large[task]["peak_kb"] - small[task]["peak_kb"]) / 1024
        print(f"Peak memory of {task}: {small[task]['peak_kb'] / 1024:.0f} MB at {sizes[0]:g} MB, "
              f"{large[task]['peak_kb'] / 1024:.0f} MB at {sizes[-1]:g} MB ({growth:+.0f} MB for "
              f"{sizes[-1] - sizes[0]:g} MB more model)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
