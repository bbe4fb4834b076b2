"""Accuracy-aware quantization: quantize, measure the loss, and keep sensitive nodes in float until it fits.

Each round quantizes with the nodes excluded so far, runs the original and the variant with onnxruntime on
the given data, and measures the drop (accuracy with labels, otherwise top-1 agreement with the original).
Above the limit, the quantized nodes are ranked by how much error each adds (noise-to-signal ratio of its
output minus that of its input before quantization, against the float model), and the worst is excluded.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import WorkbenchError
from ..evaluate.datasets import EvalData
from ..fsutil import work_folder
from ..jobs import Job, SubJob
from ..ortutil import cpu_session
from .calibration import InputSpec, batches, feeds_for, model_inputs
from .quantize import (
    Prepared,
    QuantizeResult,
    check_paths,
    describe,
    prepare,
    publish,
    resolve_exclusions,
    run_quantizer,
)

if TYPE_CHECKING:
    import numpy as np

RANKING_SAMPLES = 64
BATCH = 64


@dataclass
class Attempt:
    """One round: what was kept in float, and what was measured."""

    round: int
    excluded: list[str]  # every node kept in float in this round
    newly_excluded: list[str]
    score: float  # the variant's accuracy or agreement (0..1)
    drop: float  # baseline - score, in fractions (0.01 = one point)
    quantized: int
    within_limit: bool

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.round, "excluded": self.excluded, "newly_excluded": self.newly_excluded,
                "score": self.score, "drop": self.drop, "drop_points": round(self.drop * 100, 4),
                "quantized": self.quantized, "within_limit": self.within_limit}


@dataclass
class AccuracyAwareResult:
    """The search: every round measured, whether the limit was met, and the variant written (if any)."""

    metric: str  # "accuracy" or "top-1 agreement with the original"
    data_source: str
    samples: int
    baseline: float  # the original's score on the data (1.0 for agreement)
    max_drop: float
    attempts: list[Attempt]
    met: bool
    kept_round: int | None  # the round whose variant was written, None when nothing was written
    result: QuantizeResult | None
    message: str  # one plain line
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def final_drop(self) -> float | None:
        kept = next((a for a in self.attempts if a.round == self.kept_round), None)
        return kept.drop if kept else None

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "data_source": self.data_source, "samples": self.samples,
                "baseline": self.baseline, "max_drop": self.max_drop, "met": self.met,
                "kept_round": self.kept_round, "final_drop": self.final_drop,
                "attempts": [a.to_dict() for a in self.attempts],
                "result": self.result.to_dict() if self.result else None,
                "message": self.message, "warnings": self.warnings, "notes": self.notes}


def quantize_within(model_path: Path, out_path: Path, *, max_drop: float, data: EvalData,
                    method: str = "static-int8", calibration: EvalData | None = None, max_rounds: int = 6,
                    nodes_per_round: int = 1, exclude_nodes: Sequence[str] = (), keep_best: bool = True,
                    job: Job | None = None) -> AccuracyAwareResult:
    """Quantize so that the score on ``data`` falls by at most ``max_drop`` (0.01 = one point), if possible.

    Calibrates on ``calibration`` (default: ``data`` itself). When the limit is not met within ``max_rounds``,
    the attempt with the smallest measured drop is written if ``keep_best``, and the result says so.
    """
    job = job or Job()
    model_path, out_path = Path(model_path), Path(out_path)
    if not (math.isfinite(max_drop) and 0 <= max_drop < 1):
        raise WorkbenchError(f"The allowed accuracy drop {max_drop!r} is not between 0 and 1 (0.01 = one point).")
    if max_rounds < 1 or nodes_per_round < 1:
        raise WorkbenchError("The search needs at least one round and one node per round.")
    size_before = check_paths(model_path, out_path, job)
    with work_folder(out_path) as work:
        prep = prepare(model_path, work, method=method, calibration=calibration or data, per_channel=True,
                       allow_random_calibration=False, size_before=size_before, job=SubJob(job, 0.0, 0.1))
        excluded = resolve_exclusions(prep, exclude_nodes)
        inputs = _inputs(prep.path)
        feeds = feeds_for(inputs, data, model_path.name)
        reference = _predict(model_path, inputs, feeds)
        metric, baseline = _baseline(reference, data, model_path)
        warnings: list[str] = []
        attempts: list[Attempt] = []
        results: dict[int, QuantizeResult] = {}
        newly: list[str] = []
        stop_reason = ""
        for number in range(1, max_rounds + 1):
            span = SubJob(job, 0.1 + 0.9 * (number - 1) / max_rounds, 0.1 + 0.9 * number / max_rounds)
            variant = work / f"round{number}" / out_path.name
            messages = run_quantizer(prep, variant, excluded, job=span)
            result = describe(prep, variant, excluded, size_before, messages, job=span)
            if result.quantized == 0:
                stop_reason = "nothing was left to quantize" if attempts else "nothing could be quantized"
                warnings += result.warnings if not attempts else []
                break
            score = _score(_predict(variant, inputs, feeds), reference, data)
            drop = baseline - score
            attempts.append(Attempt(number, list(excluded), newly, score, drop, result.quantized,
                                    drop <= max_drop + 1e-12))
            results[number] = result
            best = min(attempts, key=lambda a: (a.drop, a.round)).round
            if attempts[-1].within_limit:
                break
            if number == max_rounds:
                stop_reason = f"the budget of {max_rounds} round(s) ran out"
                break
            span.progress(95, 100, "Ranking nodes by quantization error")
            ranked = [n for n, _ in rank_nodes(prep, variant, [c for c in prep.candidates if c not in excluded],
                                               inputs, {k: v[:RANKING_SAMPLES] for k, v in feeds.items()})]
            if not ranked:
                stop_reason = "no quantized node was left to exclude"
                break
            newly = ranked[:nodes_per_round]
            excluded = excluded + newly
            for old in (n for n in results if n != best and (work / f"round{n}").exists()):
                shutil.rmtree(work / f"round{old}")  # only the best attempt so far is worth its disk space
        met = bool(attempts) and attempts[-1].within_limit
        kept = attempts[-1] if met else (min(attempts, key=lambda a: (a.drop, a.round)) if attempts and keep_best
                                         else None)
        if kept is not None:
            publish(results[kept.round], out_path)
    final = results[kept.round] if kept is not None else None
    notes = [] if calibration is not None or prep.method != "static-int8" else [
        f"Calibrated and measured on the same data ({data.source}); a separate calibration set gives a fairer figure."]
    message = _message(met, kept, max_drop, metric, stop_reason, out_path)
    if not met:
        warnings.append(message)
        if final is not None:
            final.warnings.append(message)
    job.progress(100, 100, "Done")
    return AccuracyAwareResult(metric, data.source, len(data), baseline, max_drop, attempts, met,
                               kept.round if kept else None, final, message, warnings, notes)


def rank_nodes(prep: Prepared, variant: Path, names: Sequence[str], inputs: Sequence[InputSpec],
               feeds: dict[str, np.ndarray]) -> list[tuple[str, float]]:
    """Nodes worst first, by the error each adds: the noise-to-signal ratio of its (dequantized) output minus that
    of its input before quantization, both against the float model."""
    import numpy as np
    import onnx

    reference = onnx.load(str(prep.path), load_external_data=False)
    quantized = onnx.load(str(variant), load_external_data=False)
    known = {o for n in reference.graph.node for o in n.output} | {i.name for i in reference.graph.input}
    pairs = {name: pair for name in names if (pair := _tensor_pairs(name, reference, quantized, known))}
    if not pairs:
        return []
    float_values = _collect(prep.path, sorted({p[0] for q in pairs.values() for p in q}), inputs, feeds, prep, "float")
    variant_values = _collect(variant, sorted({p[1] for q in pairs.values() for p in q}), inputs, feeds, prep,
                              "variant")

    def nsr(pair: tuple[str, str]) -> float:
        ref = float_values[pair[0]].astype(np.float64)
        got = variant_values[pair[1]].astype(np.float64)
        if ref.shape != got.shape:
            return 0.0
        return float(np.sum((ref - got) ** 2) / max(float(np.sum(ref ** 2)), 1e-30))

    scores = {name: nsr(out_pair) - nsr(in_pair) for name, (in_pair, out_pair) in pairs.items()}
    return sorted(((n, s) for n, s in scores.items() if s > 0), key=lambda item: -item[1])


# --- private helpers --------------------------------------------------------------------------------


def _inputs(path: Path) -> list[InputSpec]:
    import onnx

    return model_inputs(onnx.load(str(path), load_external_data=False))


def _predict(path: Path, inputs: Sequence[InputSpec], feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Top-1 class per sample (argmax over the last axis of the first output)."""
    import numpy as np

    session = cpu_session(path)
    first = session.get_outputs()[0].name
    outputs = [session.run([first], batch)[0] for batch in batches(inputs, feeds, BATCH)]
    scores = np.concatenate([o if o.ndim else o.reshape(1) for o in outputs])
    if scores.ndim < 2 or scores.shape[-1] < 2:
        raise WorkbenchError(f"The first output of {path.name} has shape {list(scores.shape)}, not class scores, so "
                             f"accuracy cannot be measured.", hint="Use a classifier, or quantize without a limit.")
    return scores.argmax(-1)


def _baseline(reference: np.ndarray, data: EvalData, path: Path) -> tuple[str, float]:
    if data.labels is None:
        return "top-1 agreement with the original", 1.0
    labels = data.labels[:len(reference)]  # a model with a fixed batch size leaves out a last, partial batch
    if reference.shape != labels.shape:
        raise WorkbenchError(f"The data has {len(data.labels)} labels of shape {list(data.labels.shape[1:])}, but "
                             f"{path.name} predicts {list(reference.shape)}.", hint="Check the labels (y).")
    return "accuracy", float((reference == labels).mean())


def _score(predictions: np.ndarray, reference: np.ndarray, data: EvalData) -> float:
    target = reference if data.labels is None else data.labels[:len(reference)]
    return float((predictions == target).mean())


def _tensor_pairs(name: str, reference: Any, quantized: Any,
                  known: set[str]) -> tuple[tuple[str, str], tuple[str, str]] | None:
    """(float, variant) tensor names for node ``name``'s activation input and output, or None if not found.

    In a QDQ variant the node keeps its name and reads dequantized tensors; elsewhere it was replaced by
    integer nodes that still read and write the original tensor names.
    """
    producers = {o: n for n in quantized.graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in quantized.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    node = next((n for n in quantized.graph.node if n.name == name), None)
    if node is None:
        original = next((n for n in reference.graph.node if n.name == name), None)
        variant_tensors = set(producers) | {i.name for i in quantized.graph.input}
        if original is None or not {original.input[0], original.output[0]} <= variant_tensors:
            return None
        return (original.input[0], original.input[0]), (original.output[0], original.output[0])
    tensor_in = node.input[0]  # compared before its own quantization, so the node owns its input's QDQ error
    while tensor_in in producers and producers[tensor_in].op_type in ("QuantizeLinear", "DequantizeLinear"):
        tensor_in = producers[tensor_in].input[0]
    var_out = node.output[0]
    while len(consumers.get(var_out, [])) == 1 and consumers[var_out][0].op_type in ("QuantizeLinear",
                                                                                     "DequantizeLinear"):
        var_out = consumers[var_out][0].output[0]
    float_out = node.output[0] if node.output[0] in known else var_out
    if tensor_in not in known or float_out not in known:
        return None
    return (tensor_in, tensor_in), (float_out, var_out)


def _collect(path: Path, names: Sequence[str], inputs: Sequence[InputSpec], feeds: dict[str, np.ndarray],
             prep: Prepared, tag: str) -> dict[str, np.ndarray]:
    """The values of the named tensors when ``path`` runs on ``feeds`` (graph inputs come from the feeds)."""
    import numpy as np
    import onnx

    model = onnx.load(str(path))
    graph_inputs = {i.name for i in model.graph.input}
    present = {o.name for o in model.graph.output}
    wanted = [n for n in names if n not in graph_inputs]
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in wanted if n not in present)
    if prep.large:
        augmented = prep.work_dir / f"ranking-{tag}" / path.name
        augmented.parent.mkdir(exist_ok=True)
        onnx.save(model, str(augmented), save_as_external_data=True, location=f"{augmented.name}.data")
        session = cpu_session(augmented)
    else:
        session = cpu_session(model.SerializeToString())
    values: dict[str, list[np.ndarray]] = {n: [] for n in wanted}
    for batch in batches(inputs, feeds, BATCH):
        for n, v in zip(wanted, session.run(wanted, batch) if wanted else []):
            values[n].append(np.asarray(v))
    collected = {n: np.concatenate([v.reshape(1, -1) if v.ndim == 0 else v for v in parts])
                 for n, parts in values.items()}
    collected.update({n: feeds[n] for n in names if n in graph_inputs})
    return collected


def _message(met: bool, kept: Attempt | None, max_drop: float, metric: str, stop_reason: str, out_path: Path) -> str:
    limit = f"{_points(max_drop)} of {metric}"
    if met and kept is not None:
        left = f", with {len(kept.excluded)} node(s) kept in float" if kept.excluded else ""
        return f"Within the limit: the measured drop is {_points(kept.drop)} (limit {limit}) in round {kept.round}{left}."
    if kept is not None:
        return (f"The limit of {limit} was not met ({stop_reason}); the best attempt, round {kept.round} with a "
                f"measured drop of {_points(kept.drop)}, was written to {out_path.name}.")
    return f"The limit of {limit} was not met ({stop_reason}); nothing was written."


def _points(fraction: float) -> str:
    points = round(fraction * 100, 2)
    return f"{points:g} point" + ("" if points == 1 else "s")
