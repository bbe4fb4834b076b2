"""Benchmark ``workbench inspect`` on large ONNX models against the ``onnx`` library doing the same work.

One run:

1. builds (or reuses, from ``--workdir``) two synthetic ONNX models made of MatMul+Add layers with
   float32 weights: one of ``--size-mb`` MB with its weights in an external data file, and one of half
   that size with its weights embedded in the ``.onnx`` file;
2. times each task in fresh subprocesses (so peak RSS is per task), three runs alternating ours/raw,
   and prints the medians: ``workbench inspect --json`` versus ``onnx.load`` (and, for the external-data
   model, ``onnx.load(load_external_data=False)``);
3. measures start-up: ``import workbench.core`` versus an empty interpreter, and checks that no heavy
   module (torch, onnxruntime, onnx, PySide6, numpy) is imported by ``import workbench.core, workbench.cli``;
4. checks that the parameter count reported by ``workbench inspect`` matches the model built.

Exits 1 if a check fails, 2 if a task fails. Run with the project's interpreter:
``.venv/bin/python benchmarks/bench_inspect.py [--size-mb N] [--workdir DIR] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper
from shared import measured

RUNS = 3  # per task, alternating ours/raw; the median is reported
STARTUP_RUNS = 10
MAX_LAYER_MB = 64
EMBEDDED_MAX_MB = 1536  # a single .onnx file must stay under protobuf's 2 GB limit
HEAVY_MODULES = ("torch", "onnxruntime", "onnx", "PySide6", "numpy")
DATA_FILE = "model.onnx.data"

# Each task runs as `python -c SNIPPET MODEL_PATH` and prints its own timing and peak memory (shared.measured).
OURS = measured(
    setup="import contextlib, os\nfrom workbench.cli import main",
    work=('with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):\n'
          '    status = main(["inspect", sys.argv[1], "--json"])\n'
          'if status:\n'
          '    sys.exit(status)'),
)
RAW_FULL = measured(setup="import onnx", work="model = onnx.load(sys.argv[1])")
RAW_STRUCTURE = measured(setup="import onnx", work="model = onnx.load(sys.argv[1], load_external_data=False)")
IMPORT_ONNX = measured(setup="", work="import onnx")  # the floor under both columns
HEAVY_CHECK = (f"import json, sys, workbench.core, workbench.cli; "
               f"print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))")


class TaskFailed(Exception):
    """A measured subprocess exited with an error."""


@dataclass(frozen=True)
class ModelSpec:
    """A chain of ``layers`` MatMul+Add layers, each with a ``width`` x ``width`` float32 weight."""

    kind: str  # "external" or "embedded"
    layers: int
    width: int

    @classmethod
    def for_size(cls, kind: str, size_mb: float) -> ModelSpec:
        layer_mb = min(MAX_LAYER_MB, size_mb)
        width = math.isqrt(int(layer_mb * 2**20) // 4)
        return cls(kind, max(1, round(size_mb / layer_mb)), width)

    @property
    def parameters(self) -> int:
        return self.layers * (self.width * self.width + self.width)

    @property
    def weight_bytes(self) -> int:
        return self.parameters * 4

    @property
    def folder_name(self) -> str:
        return f"{self.kind}-{self.layers}x{self.width}"

    @property
    def label(self) -> str:
        return f"{self.kind} {self.weight_bytes / 2**20:,.0f} MB"


@dataclass(frozen=True)
class BuiltModel:
    spec: ModelSpec
    path: Path
    files: dict[str, int]  # file name -> size in bytes
    build_seconds: float | None  # None when reused


@dataclass(frozen=True)
class Measurement:
    seconds: float  # the work, timed inside the process
    peak_rss_mb: float
    process_seconds: float  # the whole process, timed from outside


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- Building the models -----------------------------------------------------------------------------------


def build_model(spec: ModelSpec, workdir: Path) -> BuiltModel:
    """Build the model in ``workdir``, or reuse it if a previous run left it complete and the right size."""
    folder = workdir / spec.folder_name
    path = folder / "model.onnx"
    manifest_path = folder / "manifest.json"
    names = ["model.onnx", DATA_FILE] if spec.kind == "external" else ["model.onnx"]
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("spec") == asdict(spec) and all(
                (folder / n).exists() and (folder / n).stat().st_size == manifest["files"].get(n) for n in names):
            return BuiltModel(spec, path, manifest["files"], None)
    folder.mkdir(parents=True, exist_ok=True)
    for name in [*names, "manifest.json"]:
        (folder / name).unlink(missing_ok=True)  # onnx appends to an existing data file
    _log(f"Building the {spec.label} model ({spec.layers} layers of {spec.width}x{spec.width}) in {folder} ...")
    start = time.perf_counter()
    model = _model_proto(spec)
    if spec.kind == "external":
        onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location=DATA_FILE)
    else:
        onnx.save_model(model, path)
    del model
    seconds = time.perf_counter() - start
    files = {n: (folder / n).stat().st_size for n in names}
    manifest_path.write_text(json.dumps({"spec": asdict(spec), "files": files}, indent=2))
    return BuiltModel(spec, path, files, seconds)


def _model_proto(spec: ModelSpec) -> onnx.ModelProto:
    """The model, with each initializer written straight into the graph (no second copy of the weights)."""
    nodes = []
    for i in range(spec.layers):
        x = "input" if i == 0 else f"h{i - 1}"
        nodes += [helper.make_node("MatMul", [x, f"w{i}"], [f"mm{i}"]),
                  helper.make_node("Add", [f"mm{i}", f"b{i}"], ["output" if i == spec.layers - 1 else f"h{i}"])]
    graph = helper.make_graph(
        nodes, f"bench_{spec.folder_name}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", spec.width])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", spec.width])])
    model = helper.make_model(graph, producer_name="workbench-bench", opset_imports=[helper.make_opsetid("", 17)])
    rng = np.random.default_rng(0)
    for i in range(spec.layers):
        for name, shape in ((f"w{i}", (spec.width, spec.width)), (f"b{i}", (spec.width,))):
            tensor = model.graph.initializer.add()
            tensor.name = name
            tensor.data_type = TensorProto.FLOAT
            tensor.dims.extend(shape)
            tensor.raw_data = rng.standard_normal(shape, dtype=np.float32).tobytes()
    return model


def warm_page_cache(model: BuiltModel) -> None:
    """Read every file once so all measurements start from the same (cached) state."""
    for name in model.files:
        with open(model.path.parent / name, "rb") as fh:
            while fh.read(16 * 2**20):
                pass


# --- Measuring ---------------------------------------------------------------------------------------------


def run_python(*args: str) -> tuple[str, float]:
    """Run the project's interpreter with ``args``; return its stdout and the process wall time."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        command = " ".join("<snippet>" if "\n" in a else a for a in args)
        raise TaskFailed(f"`python {command}` exited with status {proc.returncode}:\n{proc.stderr.strip()}")
    return proc.stdout, seconds


def measure(snippet: str, *args: str) -> Measurement:
    stdout, process_seconds = run_python("-c", snippet, *args)
    result = json.loads(stdout.strip().splitlines()[-1])
    return Measurement(result["seconds"], result["peak_kb"] / 1024, process_seconds)


def median(runs: list[Measurement]) -> Measurement:
    return Measurement(statistics.median(r.seconds for r in runs), statistics.median(r.peak_rss_mb for r in runs),
                       statistics.median(r.process_seconds for r in runs))


def measure_model(model: BuiltModel) -> dict[str, list[Measurement]]:
    """All tasks for one model, RUNS times each, alternating ours and raw."""
    tasks = {"ours": OURS, "onnx.load": RAW_FULL}
    if model.spec.kind == "external":
        tasks["onnx.load(load_external_data=False)"] = RAW_STRUCTURE
    runs: dict[str, list[Measurement]] = {name: [] for name in tasks}
    for i in range(RUNS):
        for name, snippet in tasks.items():
            _log(f"  {model.spec.label}: run {i + 1}/{RUNS} of {name}")
            runs[name].append(measure(snippet, str(model.path)))
    return runs


def inspected_parameters(model: BuiltModel) -> int:
    """The parameter count printed by ``workbench inspect --json`` (an unmeasured run)."""
    stdout, _ = run_python("-m", "workbench", "inspect", str(model.path), "--json")
    return int(json.loads(stdout)["parameters"])


def measure_startup() -> dict[str, Any]:
    bare: list[float] = []
    core: list[float] = []
    for _ in range(STARTUP_RUNS):
        bare.append(run_python("-c", "pass")[1])
        core.append(run_python("-c", "import workbench.core")[1])
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import workbench.core"],
                          capture_output=True, text=True, check=True)
    imported: dict[str, int] = {}  # module -> cumulative microseconds
    for line in proc.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            imported[parts[2].strip()] = int(parts[1])
    return {
        "bare_seconds": statistics.median(bare),
        "import_core_seconds": statistics.median(core),
        "core_cumulative_import_ms": imported.get("workbench.core", 0) / 1000,
        "heavy_in_importtime_log": sorted({m.split(".")[0] for m in imported} & set(HEAVY_MODULES)),
        "heavy_in_sys_modules": json.loads(run_python("-c", HEAVY_CHECK)[0]),
        "import_onnx": asdict(median([measure(IMPORT_ONNX) for _ in range(RUNS)])),
    }


# --- Reporting ---------------------------------------------------------------------------------------------


def format_table(rows: list[tuple[str, Measurement, Measurement]]) -> list[str]:
    head = (f"{'Task':<56} {'ours s':>7} {'raw s':>7} {'raw/ours':>10}   {'ours MB':>7} {'raw MB':>7} "
            f"{'raw/ours':>8}   {'ours proc s':>11} {'raw proc s':>10}")
    lines = [head, "-" * len(head)]
    for task, ours, raw in rows:
        lines.append(f"{task:<56} {ours.seconds:>7.4f} {raw.seconds:>7.4f} {raw.seconds / ours.seconds:>9.3g}x   "
                     f"{ours.peak_rss_mb:>7.0f} {raw.peak_rss_mb:>7.0f} {raw.peak_rss_mb / ours.peak_rss_mb:>7.3g}x   "
                     f"{ours.process_seconds:>11.3f} {raw.process_seconds:>10.3f}")
    return lines


def format_report(workdir: Path, models: list[BuiltModel], rows: list[tuple[str, Measurement, Measurement]],
                  parameters: dict[str, int], startup: dict[str, Any], failed: list[str]) -> str:
    out = [f"Python {platform.python_version()}, onnx {onnx.__version__}; workdir {workdir}", "", "Models:"]
    for model in models:
        files = ", ".join(f"{n} {s / 2**20:,.1f} MB" for n, s in model.files.items())
        built = "reused" if model.build_seconds is None else f"built in {model.build_seconds:.1f} s"
        out.append(f"  {model.spec.label}: {model.spec.layers} x MatMul+Add {model.spec.width}x{model.spec.width}, "
                   f"{model.spec.parameters:,} parameters; {files} ({built})")
    floor = Measurement(**startup["import_onnx"])
    out += ["", f"Inspect vs raw onnx (median of {RUNS} runs, alternating ours/raw, a fresh process per run; "
                "files in the page cache, i.e. warm):",
            *format_table(rows),
            "  ours: workbench.cli.main(['inspect', PATH, '--json']) with stdout to /dev/null; its time includes the "
            "lazy `import onnx`.",
            "  raw: onnx.load(PATH, ...), timed after `import onnx`.",
            "  s: wall time of the work, inside the process.  MB: peak RSS of the process (VmHWM).  proc s: wall "
            "time of the",
            "  whole process, from outside.  raw/ours > 1: ours is faster / uses less memory.",
            f"  For reference, a process that only runs `import onnx`: {floor.seconds:.3f} s to import, "
            f"{floor.peak_rss_mb:.0f} MB peak, {floor.process_seconds:.3f} s in all."]
    out += ["", f"Start-up (wall time of a whole process, median of {STARTUP_RUNS}):",
            f"  python -c 'pass'                   {startup['bare_seconds']:.3f} s",
            f"  python -c 'import workbench.core'  {startup['import_core_seconds']:.3f} s "
            f"(+{startup['import_core_seconds'] - startup['bare_seconds']:.3f} s)",
            f"  -X importtime: workbench.core {startup['core_cumulative_import_ms']:.1f} ms cumulative; heavy "
            f"modules in the import log: {', '.join(startup['heavy_in_importtime_log']) or 'none'}",
            f"  heavy modules in sys.modules after `import workbench.core, workbench.cli`: "
            f"{', '.join(startup['heavy_in_sys_modules']) or 'none'} (checked {', '.join(HEAVY_MODULES)})"]
    out += ["", "Checks:"]
    out += [f"  parameters, {m.spec.label}: workbench inspect {parameters[m.spec.kind]:,}, built "
            f"{m.spec.parameters:,}" for m in models]
    out += [f"  FAILED: {f}" for f in failed] or ["  all passed"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=1024,
                        help="weight size of the external-data model, in MB (default 1024); the embedded model "
                             f"is half that, at most {EMBEDDED_MAX_MB} MB")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "workbench-bench",
                        help="where the models are built and reused from (default: %(default)s)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write all figures to this JSON file")
    args = parser.parse_args(argv)

    specs = [ModelSpec.for_size("external", args.size_mb),
             ModelSpec.for_size("embedded", min(args.size_mb / 2, EMBEDDED_MAX_MB))]
    models = [build_model(spec, args.workdir) for spec in specs]
    runs: dict[str, dict[str, list[Measurement]]] = {}
    parameters: dict[str, int] = {}
    try:
        for model in models:
            warm_page_cache(model)
            runs[model.spec.kind] = measure_model(model)
            parameters[model.spec.kind] = inspected_parameters(model)
        _log("  start-up")
        startup = measure_startup()
    except TaskFailed as exc:
        print(f"bench_inspect: {exc}", file=sys.stderr)
        return 2

    rows = [(f"{m.spec.label}: {task}", median(runs[m.spec.kind]["ours"]), median(task_runs))
            for m in models for task, task_runs in runs[m.spec.kind].items() if task != "ours"]
    failed = [f"{m.spec.label}: workbench inspect reports {parameters[m.spec.kind]:,} parameters, the model has "
              f"{m.spec.parameters:,}" for m in models if parameters[m.spec.kind] != m.spec.parameters]
    heavy = sorted(set(startup["heavy_in_importtime_log"]) | set(startup["heavy_in_sys_modules"]))
    if heavy:
        failed.append(f"`import workbench.core, workbench.cli` imports {', '.join(heavy)}")
    print(format_report(args.workdir, models, rows, parameters, startup, failed))

    if args.json:
        report = {
            "python": platform.python_version(), "onnx": onnx.__version__, "runs_per_task": RUNS, "warm_cache": True,
            "models": [{"spec": asdict(m.spec), "parameters": m.spec.parameters, "path": str(m.path),
                        "files": m.files, "build_seconds": m.build_seconds,
                        "inspect_parameters": parameters[m.spec.kind],
                        "runs": {task: [asdict(r) for r in task_runs] for task, task_runs in runs[m.spec.kind].items()}}
                       for m in models],
            "table": [{"task": task, "ours": asdict(ours), "raw": asdict(raw),
                       "time_ratio_raw_over_ours": raw.seconds / ours.seconds,
                       "memory_ratio_raw_over_ours": raw.peak_rss_mb / ours.peak_rss_mb} for task, ours, raw in rows],
            "startup": startup,
            "failed": failed,
        }
        args.json.write_text(json.dumps(report, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
