"""The side-by-side comparison of an original model and its variants ("the accuracy preview").

Every model gets one ONNX Runtime session on the CPU, all created up front with the same options, and is run
on the same data. With labels, each variant's accuracy is compared with the original's on the same samples
(paired: confidence interval of the drop, McNemar's exact test); without labels, by how often it gives the
same top-1 answer and how close its outputs are. Latency is timed on one fixed batch with the runs
alternating between models. The result is a :class:`Comparison` record that front ends render.

What counts as a classifier (``task="auto"``): a first output shaped [samples, classes] with 2 to
:data:`MAX_AUTO_CLASSES` columns whose name does not look like an embedding (see :data:`EMBEDDING_NAME_HINTS`),
any [samples, columns] output when the data has labels, or a 1-D integer output (one predicted class per
sample). Everything else is compared as an embedding, by cosine similarity (and SQNR) only, since an arg-max
over it means nothing. ``task="classification"`` or ``"embedding"`` overrides the guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..deps import require
from ..document import ModelDocument
from ..errors import FileProblem, WorkbenchError
from ..fsutil import gzip_size
from ..jobs import Job, SubJob
from ..text import format_bytes, one_line
from . import metrics
from .datasets import EvalData, fit_inputs, onnx_document
from .latency import LatencyStats, measure_alternating, within_noise

TASKS = ("auto", "classification", "embedding")
MAX_AUTO_CLASSES = 1001
EMBEDDING_NAME_HINTS = ("embed", "hidden", "feature", "pool", "encod", "vector")
DEFAULT_LATENCY_RUNS = 50
WARMUP_RUNS = 5


@dataclass(frozen=True)
class ModelResult:
    """What was measured for one model. Fractions are 0..1; ``accuracy_drop`` is the original's accuracy
    minus this model's (positive = worse)."""

    name: str
    path: Path
    files: tuple[Path, ...]
    size_bytes: int  # on disk, external data included
    gzip_size_bytes: int  # all its files through one gzip stream (level 6)
    is_original: bool
    accuracy: float | None = None
    accuracy_ci: tuple[float, float] | None = None  # Wilson 95 %
    correct: int | None = None
    accuracy_drop: float | None = None
    drop_ci: tuple[float, float] | None = None  # 95 %, paired (Newcombe)
    mcnemar_b: int | None = None  # samples the original gets right and this model wrong
    mcnemar_c: int | None = None  # samples the original gets wrong and this model right
    mcnemar_p: float | None = None  # exact two-sided
    agreement: float | None = None  # same top-1 class as the original
    agreement_ci: tuple[float, float] | None = None  # Wilson 95 %
    flips: int | None = None  # samples whose top-1 class differs from the original's
    sqnr_db: float | None = None  # of this model's outputs against the original's; inf when identical
    cosine_mean: float | None = None
    cosine_min: float | None = None
    latency: LatencyStats | None = None
    verdicts: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        finite = self.sqnr_db is not None and math.isfinite(self.sqnr_db)
        return {
            "name": self.name, "path": str(self.path), "original": self.is_original,
            "files": [str(f) for f in self.files], "size_bytes": self.size_bytes,
            "gzip_size_bytes": self.gzip_size_bytes,
            "accuracy": self.accuracy, "accuracy_ci": _pair(self.accuracy_ci), "correct": self.correct,
            "accuracy_drop": self.accuracy_drop, "accuracy_drop_ci": _pair(self.drop_ci),
            "mcnemar": None if self.mcnemar_b is None else {"b": self.mcnemar_b, "c": self.mcnemar_c,
                                                            "p": self.mcnemar_p},
            "agreement": self.agreement, "agreement_ci": _pair(self.agreement_ci), "flips": self.flips,
            "sqnr_db": self.sqnr_db if finite else None,
            "outputs_identical": None if self.sqnr_db is None else self.sqnr_db == math.inf,
            "cosine_mean": self.cosine_mean, "cosine_min": self.cosine_min,
            "latency": None if self.latency is None else self.latency.to_dict(),
            "verdicts": list(self.verdicts),
        }


@dataclass(frozen=True)
class Comparison:
    """The original and its variants measured on the same data, with plain-language verdicts."""

    results: tuple[ModelResult, ...]  # the original first
    task: str  # "classification" or "embedding"
    data_source: str
    samples: int
    labelled: bool
    synthetic: bool
    latency_batch: int
    latency_runs: int
    threads: int
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def original(self) -> ModelResult:
        return self.results[0]

    @property
    def variants(self) -> tuple[ModelResult, ...]:
        return self.results[1:]

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "data": {"source": self.data_source, "samples": self.samples, "labelled": self.labelled,
                     "synthetic": self.synthetic},
            "latency_settings": {"batch": self.latency_batch, "runs": self.latency_runs, "warmup": WARMUP_RUNS,
                                 "intra_op_threads": self.threads},
            "models": [r.to_dict() for r in self.results],
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }


def default_threads() -> int:
    """The intra-op thread count every session gets unless told otherwise: 1.

    One thread gives the most repeatable timings: with more, each session's worker threads land on cores
    that other sessions (and other programs) also use, and two copies of the same model measured here could
    differ by 2x. Pass ``threads=`` to time multi-threaded inference.
    """
    return 1


def predict(model_path: Path, data: EvalData, *, job: Job | None = None, batch_size: int = 256,
            threads: int | None = None) -> Any:
    """The model's first output for every sample of ``data`` (first axis = samples), via ONNX Runtime."""
    job = job or Job()
    doc = onnx_document(Path(model_path), job=job)
    arrays, _ = fit_inputs(data, doc)
    session = open_session(doc, session_options(threads or default_threads()))
    return run_batches(session, doc, arrays, batch_size=batch_size, job=job)


def compare(original: Path, variants: list[Path], data: EvalData, *, job: Job | None = None,
            latency_runs: int = DEFAULT_LATENCY_RUNS, latency_batch: int = 1, task: str = "auto",
            batch_size: int = 256, threads: int | None = None) -> Comparison:
    """Run the original and each variant on ``data`` and measure accuracy (or agreement), size and latency."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    job = job or Job()
    threads = threads or default_threads()
    latency_share = 0.3 if latency_runs > 0 else 0.0
    paths = [Path(original), *(Path(v) for v in variants)]
    n = len(paths)  # overall progress: opening each model, compressing, running each model, timing
    opened = [0.02 * i / n for i in range(n + 1)]
    ran = [0.1 + (0.9 - latency_share) * i / n for i in range(n + 1)]
    docs = [onnx_document(p, job=SubJob(job, opened[i], opened[i + 1])) for i, p in enumerate(paths)]
    fitted = [fit_inputs(data, doc) for doc in docs]  # fails early, naming the model, if the data does not fit
    notes = list(data.notes) + [n for _, model_notes in fitted for n in model_notes]
    gzip_sizes = gzip_sizes_of(docs, SubJob(job, 0.02, 0.1))
    options = session_options(threads)
    sessions = [open_session(doc, options) for doc in docs]
    outputs = []
    for i, (doc, session, (arrays, _)) in enumerate(zip(docs, sessions, fitted)):
        stage = SubJob(job, ran[i], ran[i + 1])
        outputs.append(run_batches(session, doc, arrays, batch_size=batch_size, job=stage))
    kind = decide_task(task, docs[0], outputs[0], labelled=data.labels is not None)
    if data.labels is not None and kind == "embedding":
        notes.append("The data has labels, but the models' output is not one score per class, so the labels were "
                     "not used.")
    for doc, out in zip(docs[1:], outputs[1:]):
        if out.shape != outputs[0].shape:
            raise FileProblem(f"{doc.path.name}'s output is shaped {list(out.shape)}, but the original's is "
                              f"{list(outputs[0].shape)}, so the two cannot be compared.", path=doc.path)
    latencies: list[LatencyStats | None] = [None] * len(docs)
    batch = 0
    if latency_runs > 0:
        feeds = [_latency_feed(doc, arrays, latency_batch) for doc, (arrays, _) in zip(docs, fitted)]
        batch = len(next(iter(feeds[0].values())))
        calls = [_caller(s, f) for s, f in zip(sessions, feeds)]
        latencies = list(measure_alternating(calls, runs=latency_runs, warmup=WARMUP_RUNS,
                                             job=SubJob(job, ran[-1], 1.0)))
    labels = data.labels if kind == "classification" else None
    names = _unique_names(paths)
    results = []
    for i, doc in enumerate(docs):
        measured = _measure(kind, outputs[0], outputs[i], labels, is_original=i == 0)
        results.append(ModelResult(name=names[i], path=doc.path, files=tuple(f.path for f in doc.files),
                                   size_bytes=doc.size_bytes, gzip_size_bytes=gzip_sizes[i], is_original=i == 0,
                                   latency=latencies[i], **measured))
    results = [results[0]] + [replace(r, verdicts=tuple(describe(r, results[0]))) for r in results[1:]]
    job.progress(1.0, 1.0, "Comparison done")
    return Comparison(tuple(results), kind, data.source, len(data), labels is not None, data.synthetic, batch,
                      latency_runs, threads, tuple(overall_warnings(results, len(data), labels is not None,
                                                                      data.synthetic)), tuple(notes))


# --- plain-language verdicts -----------------------------------------------------------------------------------

FEW_SAMPLES = 200
NOISY_TIMING = 0.5  # interquartile range above this fraction of the median: the machine was probably busy


def describe(result: ModelResult, original: ModelResult) -> list[str]:
    """Sentences saying how a variant compares with the original, and whether each difference is beyond noise."""
    lines = []
    if result.accuracy is not None and original.accuracy is not None and result.drop_ci is not None:
        b, c, p = result.mcnemar_b or 0, result.mcnemar_c or 0, result.mcnemar_p
        if b == c == 0:
            lines.append(f"Accuracy {result.accuracy:.2%}, the same as the original: it gets exactly the same samples "
                         f"right.")
        else:
            drop = result.accuracy_drop or 0.0
            change = "a drop" if drop > 0 else "a gain" if drop < 0 else "no net change"
            lo, hi = result.drop_ci
            lines.append(f"Accuracy {result.accuracy:.2%} against {original.accuracy:.2%} for the original: {change} "
                         f"of {abs(drop) * 100:.2f} points (95% interval for the drop: {lo * 100:+.2f} to "
                         f"{hi * 100:+.2f} points). It gets {b} sample(s) wrong that the original gets right, and "
                         f"{c} right that the original gets wrong.")
            if lo <= 0 <= hi or (p is not None and p > 0.05):
                lines.append(f"That difference is within noise: on this data it cannot be told apart from no change "
                             f"(McNemar p = {p:.2g}).")
            else:
                lines.append(f"That {'drop' if drop > 0 else 'gain'} is larger than noise (McNemar p = {p:.2g}).")
    elif result.agreement is not None and result.flips is not None:
        if result.flips == 0:
            lines.append("It gives the same top-1 answer as the original on every sample.")
        else:
            lo, hi = result.agreement_ci or (0.0, 1.0)
            lines.append(f"It gives the same top-1 answer as the original on {result.agreement:.2%} of samples (95% "
                         f"interval {lo:.2%} to {hi:.2%}); {result.flips} answer(s) changed.")
    if result.sqnr_db == math.inf:
        lines.append("Its outputs are identical to the original's.")
    elif result.cosine_mean is not None:
        sqnr = f"output SQNR {result.sqnr_db:.1f} dB (higher is closer); " if result.sqnr_db is not None else ""
        lines.append(f"Compared with the original's outputs: {sqnr}mean cosine similarity {result.cosine_mean:.4f}, "
                     f"lowest {result.cosine_min:.4f} (1 means the same direction).")
    lines.append(_size_sentence(result, original))
    if result.latency is not None and original.latency is not None:
        mine, theirs = result.latency.median_ms, original.latency.median_ms
        text = f"Latency {mine:.3g} ms (median) against {theirs:.3g} ms for the original"
        if within_noise(result.latency, original.latency):
            lines.append(f"{text}: within noise, the difference is smaller than the run-to-run spread.")
        elif mine < theirs:
            lines.append(f"{text}: {theirs / mine:.2f}x faster.")
        else:
            lines.append(f"{text}: {mine / theirs:.2f}x slower.")
    return lines


def _size_sentence(result: ModelResult, original: ModelResult) -> str:
    def ratio(mine: int, theirs: int) -> str:
        if mine <= 0 or theirs <= 0 or abs(mine - theirs) <= 0.005 * theirs:
            return f"about the same as the original's {format_bytes(theirs)}"
        how = f"{theirs / mine:.2f}x smaller" if mine < theirs else f"{mine / theirs:.2f}x larger"
        return f"{how} than the original's {format_bytes(theirs)}"

    return (f"Size on disk {format_bytes(result.size_bytes)}, {ratio(result.size_bytes, original.size_bytes)}; "
            f"compressed with gzip {format_bytes(result.gzip_size_bytes)}, "
            f"{ratio(result.gzip_size_bytes, original.gzip_size_bytes)}.")


def overall_warnings(results: list[ModelResult], samples: int, labelled: bool, synthetic: bool) -> list[str]:
    """Warnings that hold for the whole comparison."""
    warnings = []
    if synthetic:
        warnings.append("The models were run on random inputs, not real data: agreement and similarity show how "
                        "closely the variants follow the original on noise, not how accurate they are. Give real data "
                        "with --data.")
    if samples < FEW_SAMPLES:
        what = "accuracy" if labelled else "agreement"
        lo, hi = metrics.wilson_interval(samples // 2, samples)
        warnings.append(f"Only {samples} samples: {what} figures are rough, and differences of up to about "
                        f"{(hi - lo) / 2 * 100:.0f} points can be noise. Use {FEW_SAMPLES} or more samples for a firmer "
                        f"answer.")
    timed = [r.latency for r in results if r.latency is not None]
    if any(t.spread_ms > NOISY_TIMING * t.median_ms for t in timed):
        warnings.append("Timings varied a lot from run to run (the computer may be busy): treat latency differences "
                        "with care, or measure again with more runs.")
    return warnings


# --- running models ------------------------------------------------------------------------------------------


def session_options(threads: int) -> Any:
    """The one set of ONNX Runtime options every compared model gets."""
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # idle worker threads must not spin and steal the CPU from the next model in an alternating timing round
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def open_session(doc: ModelDocument, options: Any) -> Any:
    """An ONNX Runtime CPU session for ``doc``, or a FileProblem naming the model."""
    ort = _onnxruntime()
    try:
        return ort.InferenceSession(str(doc.path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - any runtime refusal becomes one message naming the model
        raise FileProblem(f"ONNX Runtime cannot load {doc.path.name} ({one_line(exc)}).",
                          hint="Check that the model opens in `workbench inspect` and uses standard operators.",
                          path=doc.path) from None


def run_batches(session: Any, doc: ModelDocument, arrays: dict[str, Any], *, batch_size: int,
                job: Job) -> Any:
    """The session's first output for all samples, in batches (of the model's fixed batch size, if it has one)."""
    import numpy as np

    n = len(next(iter(arrays.values())))
    fixed = _fixed_batch(doc)
    step = fixed or max(1, batch_size)
    output_name = session.get_outputs()[0].name
    result = None
    for start in range(0, n, step):
        job.progress(start, n, f"Running {doc.path.name}")
        feed = {k: _pad(v[start:start + step], fixed) for k, v in arrays.items()}
        count = min(step, n - start)
        try:
            y = session.run([output_name], feed)[0]
        except Exception as exc:  # noqa: BLE001 - any runtime failure becomes one message naming the model
            raise WorkbenchError(f"ONNX Runtime failed running {doc.path.name} on samples {start + 1} to "
                                 f"{start + count} ({one_line(exc)}).") from None
        y = np.asarray(y)
        if y.dtype == object or y.ndim == 0 or len(y) != len(next(iter(feed.values()))):
            raise WorkbenchError(f"{doc.path.name}'s first output ({output_name}) does not give one result per "
                                 f"sample, so it cannot be compared sample by sample.")
        if result is None:
            result = np.empty((n, *y.shape[1:]), dtype=y.dtype)
        elif y.shape[1:] != result.shape[1:]:
            raise WorkbenchError(f"{doc.path.name}'s output changes shape between batches; run the comparison with "
                                 f"a batch size of 1.")
        result[start:start + count] = y[:count]
    job.progress(n, n, f"Ran {doc.path.name}")
    return result


def gzip_sizes_of(docs: list[ModelDocument], job: Job) -> list[int]:
    """Each model's files compressed as one gzip stream (level 6), in bytes."""
    total = sum(doc.size_bytes for doc in docs) or 1
    sizes, done = [], 0
    for doc in docs:
        stage = SubJob(job, done / total, (done + doc.size_bytes) / total)
        sizes.append(gzip_size([entry.path for entry in doc.files], stage))
        done += doc.size_bytes
    return sizes


def decide_task(task: str, doc: ModelDocument, output: Any, *, labelled: bool) -> str:
    """'classification' or 'embedding' for this output (see the module docstring for the rule)."""
    per_class = output.ndim == 2 and output.shape[1] >= 2 and output.dtype.kind == "f"
    labels_out = output.ndim == 1 and output.dtype.kind in "iu"
    if task == "classification":
        if not (per_class or labels_out):
            raise WorkbenchError(f"{doc.path.name}'s first output is shaped {list(output.shape)} ({output.dtype}), not "
                                 f"one score per class or one class per sample, so it cannot be compared as a "
                                 f"classifier.", hint="Compare it as an embedding instead.")
        return task
    if task == "embedding":
        return task
    if labels_out:
        return "classification"
    output_name = (doc.outputs[0].name if doc.outputs else "").lower()
    looks_embedding = any(h in output_name for h in EMBEDDING_NAME_HINTS)
    if per_class and (labelled or (output.shape[1] <= MAX_AUTO_CLASSES and not looks_embedding)):
        return "classification"
    return "embedding"


# --- measuring ------------------------------------------------------------------------------------------------


def _measure(kind: str, reference: Any, output: Any, labels: Any | None, *, is_original: bool) -> dict[str, Any]:
    import numpy as np

    found: dict[str, Any] = {}
    if kind == "classification":
        predicted = _top1(output)
        if labels is not None:
            correct = predicted == labels
            found.update(accuracy=float(correct.mean()), correct=int(correct.sum()),
                         accuracy_ci=metrics.wilson_interval(int(correct.sum()), len(labels)))
            if not is_original:
                counts = metrics.paired_counts(_top1(reference) == labels, correct)
                found.update(accuracy_drop=(counts.b - counts.c) / counts.n,
                             drop_ci=metrics.paired_difference_ci(counts), mcnemar_b=counts.b, mcnemar_c=counts.c,
                             mcnemar_p=metrics.mcnemar_exact_p(counts.b, counts.c))
        if not is_original:
            same = int(np.sum(predicted == _top1(reference)))
            found.update(agreement=same / len(output), agreement_ci=metrics.wilson_interval(same, len(output)),
                         flips=len(output) - same)
    if not is_original and output.dtype.kind == "f":
        found["sqnr_db"] = metrics.sqnr_db(reference, output)
        per_sample = output.reshape(len(output), -1).shape[1] >= 2
        cos = (metrics.cosine_similarities(reference, output) if per_sample
               else metrics.cosine_similarities(reference.reshape(1, -1), output.reshape(1, -1)))
        found.update(cosine_mean=float(cos.mean()), cosine_min=float(cos.min()))
    return found


def _top1(output: Any) -> Any:
    """The predicted class per sample: the arg-max of [samples, classes] scores, or the output itself."""
    return output.argmax(axis=1) if output.ndim == 2 else output


def _latency_feed(doc: ModelDocument, arrays: dict[str, Any], batch: int) -> dict[str, Any]:
    fixed = _fixed_batch(doc)
    size = fixed or max(1, batch)
    return {k: _pad(v[:size], fixed) for k, v in arrays.items()}


def _caller(session: Any, feed: dict[str, Any]) -> Any:
    output_name = session.get_outputs()[0].name
    return lambda: session.run([output_name], feed)


def _fixed_batch(doc: ModelDocument) -> int | None:
    """The batch size the model insists on (a fixed first dimension), if any."""
    for spec in doc.inputs:
        if spec.shape and isinstance(spec.shape[0], int) and spec.shape[0] > 0:
            return spec.shape[0]
    return None


def _pad(array: Any, size: int | None) -> Any:
    """``array`` with its last sample repeated up to ``size`` samples (for models with a fixed batch size)."""
    import numpy as np

    if size is None or len(array) >= size:
        return array
    return np.concatenate([array, np.repeat(array[-1:], size - len(array), axis=0)])


def _unique_names(paths: list[Path]) -> list[str]:
    """File names, with the folder added where two differ only by folder, and #2, #3... for repeats."""
    names = [f"{p.parent.name}/{p.name}" if sum(q.name == p.name and q != p for q in paths) else p.name
             for p in paths]
    return [n if names[:i].count(n) == 0 else f"{n} #{names[:i].count(n) + 1}" for i, n in enumerate(names)]


def _pair(value: tuple[float, float] | None) -> list[float] | None:
    return None if value is None else [value[0], value[1]]


def _onnxruntime() -> Any:
    return require("onnxruntime", needed_for="Comparing models", label="ONNX Runtime", pip="onnxruntime")
