"""The model card: Hugging Face's format (YAML front matter + Markdown), filled from the work actually done.

What only the author knows (name, description, intended use, limitations) is asked for, never invented: a part
left empty becomes a clearly marked TODO section, which :func:`validate_card` reports and :func:`check_publishable`
refuses. Everything else comes from records: inputs and outputs from the ModelDocument, the compression recipe,
settings and tool versions from the chosen Variant's result, and the evaluation figures from a comparison
(``Comparison.to_dict()``), copied as measured. The front matter is made and read back with ``huggingface_hub``'s
``ModelCard``/``ModelCardData``; evaluation figures go to ``model-index``.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from .deps import require
from .errors import WorkbenchError
from .license import LicenseDecision, card_metadata, hf_license_ids, spdx_expression
from .project import atomic_write_text
from .text import format_bytes, format_shape, one_line

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

    from .document import ModelDocument
    from .project import Variant

CARD_FILE = "README.md"
CARD_INFO_FILE = "card.json"
TODO = "TODO (author):"
_TODO_RE = re.compile(r"^> \*\*TODO \(author\):\*\* (.*)$", re.MULTILINE)
_SLUG_RE = re.compile(r"[^a-z0-9]+")


class CardProblem(WorkbenchError, ValueError):
    """A model card that cannot be built, saved or published as it is."""


@dataclass(frozen=True)
class CardInfo:
    """What the author says about the model. Empty parts stay TODO; nothing here is filled in by the app."""

    name: str
    description: str = ""
    intended_use: str = ""
    limitations: str = ""
    base_model: str = ""  # Hugging Face id of the model this one was made from, if any
    datasets: tuple[str, ...] = ()  # Hugging Face ids of the training data, if any
    pipeline_tag: str = ""  # Hugging Face task, e.g. "image-classification"
    package_name: str = ""  # PyPI name for the usage snippet (default: made from the name)
    repo_id: str = ""  # Hugging Face repo for the usage snippet (default: your-username/<name>)
    image: str = ""  # container image for the usage snippet (default: <name>:latest)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "datasets": list(self.datasets)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CardInfo:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["datasets"] = tuple(known.get("datasets") or ())
        return cls(**known)

    @property
    def slug(self) -> str:
        """A lowercase ASCII name for packages and repos ("model" when the name has no ASCII letters)."""
        return _SLUG_RE.sub("-", self.name.casefold()).strip("-") or "model"


def build_card(info: CardInfo, decision: LicenseDecision, *, model_path: Path | None = None,
               document: ModelDocument | None = None, variant: Variant | None = None,
               comparison: dict[str, Any] | Any | None = None) -> ModelCard:
    """The model card for the model at ``model_path`` (default: the variant's or the document's path).

    ``comparison`` is a Comparison or its ``to_dict()``; its figures for this model are copied into the card.
    Raises CardProblem when the card has no name or the comparison did not measure this model.
    """
    ModelCard, ModelCardData, EvalResult = _hub()
    name = " ".join(info.name.split())
    if not name:
        raise CardProblem("The model card needs a name.", hint="Give the model a short name, e.g. 'Digits CNN (int8)'.")
    if decision.entry.is_other and not decision.custom_name.strip():
        raise CardProblem("Your own license needs a name for the card.", hint="Give it a short name.")
    path = model_path or (variant.path if variant is not None else document.path if document is not None else None)
    figures = _figures(comparison, path) if comparison is not None else None
    metadata: dict[str, Any] = dict(card_metadata(decision))
    tags = ["onnx", "model-workbench"] + ([variant.kind] if variant is not None and variant.kind in
                                          ("quantized", "pruned") else [])
    eval_results = _eval_results(EvalResult, info, figures) if figures else None
    data = ModelCardData(
        library_name="onnx", tags=tags, base_model=info.base_model.strip() or None,
        datasets=[d for d in info.datasets if d.strip()] or None, pipeline_tag=info.pipeline_tag.strip() or None,
        model_name=name if eval_results else None, eval_results=eval_results, **metadata)
    body = "\n".join([
        f"# {name}", "",
        _text_or_todo(info.description, "Describe the model in a few sentences: what it does and how it was made."),
        "", "## Intended use", "",
        _text_or_todo(info.intended_use, "Say what the model is for, and who should use it."),
        "", "## Limitations", "",
        _text_or_todo(info.limitations, "Say where the model fails or should not be used (inputs it was not "
                                         "trained on, known biases, accuracy limits)."),
        "", *_io_section(document), *_compression_section(variant), *_evaluation_section(figures),
        *_license_section(info, decision), *_usage_section(info, document, path),
        f"*This card was made with Model Workbench {__version__}.*", ""])
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def render_card(info: CardInfo, decision: LicenseDecision, **sources: Any) -> str:
    """:func:`build_card` as text (front matter + Markdown)."""
    return str(build_card(info, decision, **sources))


@dataclass(frozen=True)
class CardReport:
    """What :func:`validate_card` found: ``problems`` the Hub would reject, ``todos`` still to be written."""

    metadata: dict[str, Any]
    problems: tuple[str, ...]
    todos: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_card(text: str) -> CardReport:
    """Check a card offline the way the Hub reads it: the YAML parses into valid ``ModelCardData``, the license is
    one the Hub accepts (or ``other`` with ``license_name`` and ``license_link``), model-index entries are complete."""
    ModelCard, _, _ = _hub()
    import yaml

    if not text.strip():
        return CardReport({}, ("The model card is empty.",), ())
    if not text.lstrip().startswith("---"):
        return CardReport({}, ("The model card has no metadata block (YAML between --- lines) at the top.",), ())
    try:
        card = ModelCard(text)
    except yaml.YAMLError as exc:
        return CardReport({}, (f"The card's metadata block is not valid YAML ({one_line(exc)}).",), ())
    except (ValueError, TypeError) as exc:
        return CardReport({}, (f"The card's metadata is not valid for the Hub ({one_line(exc)}).",), ())
    metadata = card.data.to_dict()
    problems = _license_problems(metadata) + _index_problems(metadata)
    if not re.search(r"^# \S", card.text, re.MULTILINE):
        problems.append("The card has no title (a line starting with '# ').")
    return CardReport(metadata, tuple(problems), tuple(_todo_sections(card.text)))


def check_publishable(text: str) -> CardReport:
    """Raise CardProblem unless the card is valid and has no TODO left; publishers call this first."""
    report = validate_card(text)
    if report.problems:
        raise CardProblem(f"The model card cannot be published: {report.problems[0]}",
                          hint="Fix it in the License & card step.")
    if report.todos:
        raise CardProblem(f"The model card still has {len(report.todos)} part(s) to write: "
                          f"{', '.join(report.todos)}.", hint="Fill them in the License & card step.")
    return report


def save_card(folder: Path, text: str, decision: LicenseDecision, info: CardInfo | None = None) -> Path:
    """Save the card as README.md, the license decision as license.json and the form as card.json, atomically.

    Refuses a card the Hub would reject; a card with TODO parts is saved (it is a draft until they are written).
    """
    from .license import save_decision

    report = validate_card(text)
    if report.problems:
        raise CardProblem(f"The model card was not saved: {report.problems[0]}")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / CARD_FILE
    atomic_write_text(target, text if text.endswith("\n") else text + "\n")
    save_decision(decision, folder)
    if info is not None:
        atomic_write_text(folder / CARD_INFO_FILE, json.dumps(info.to_dict(), indent=2, ensure_ascii=False) + "\n")
    return target


def load_card_info(folder: Path) -> CardInfo | None:
    """The card form saved by :func:`save_card`, or None when there is none (or it is unreadable)."""
    try:
        return CardInfo.from_dict(json.loads((folder / CARD_INFO_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def comparison_dict(comparison: Any) -> dict[str, Any]:
    """A Comparison as the dict of ``Comparison.to_dict()`` (dicts pass through), e.g. from ``compare --json``."""
    data = comparison.to_dict() if hasattr(comparison, "to_dict") else comparison
    if not isinstance(data, dict) or not isinstance(data.get("models"), list) or "data" not in data:
        raise CardProblem("The comparison is not one made by `workbench compare --json`.",
                          hint="Run `workbench compare ORIGINAL VARIANT --json > comparison.json` and give that file.")
    return data


def load_comparison(path: Path) -> dict[str, Any]:
    """A comparison saved from ``workbench compare --json``."""
    try:
        return comparison_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise CardProblem(f"There is no comparison file at {path}.", path=path) from None
    except (OSError, ValueError) as exc:
        raise CardProblem(f"The comparison file {path} cannot be read ({one_line(exc)}).", path=path) from exc


# -- sections ----------------------------------------------------------------------------------------------------


def _text_or_todo(text: str, ask: str) -> str:
    return text.strip() if text.strip() else f"> **{TODO}** {ask}"


def _io_section(document: ModelDocument | None) -> list[str]:
    lines = ["## Inputs and outputs", ""]
    if document is None or not (document.inputs or document.outputs):
        return lines + ["The model file does not record its inputs and outputs.", ""]
    lines += ["| | Name | Type | Shape |", "| --- | --- | --- | --- |"]
    for label, values in (("Input", document.inputs), ("Output", document.outputs)):
        for v in values:
            lines.append(f"| {label} | `{_cell(v.name)}` | {v.dtype or 'not recorded'} | {format_shape(v.shape)} |")
    varying = any(not isinstance(d, int) for v in document.inputs + document.outputs for d in v.shape or ())
    return lines + ["", *(["A `?` or a name in a shape is a size that may vary, such as the batch size.", ""]
                          if varying else [])]


def _compression_section(variant: Variant | None) -> list[str]:
    lines = ["## How it was made", ""]
    if variant is None or variant.kind == "original":
        return lines + ["This is the model as it was given to Model Workbench; it was not compressed.", ""]
    result, settings = dict(variant.result), dict(variant.settings)
    versions: dict[str, str] = {}
    if variant.kind == "exported":
        lines.append(f"Exported to ONNX from {result.get('source_label', 'a PyTorch model')} with the "
                     f"{result.get('exporter', '?')} exporter (opset {result.get('opset', '?')}).")
        diffs = result.get("max_abs_diff") or {}
        if diffs:
            lines.append("Checked against PyTorch: largest difference " + ", ".join(
                f"{_cell(k)} {v:.3g}" for k, v in diffs.items()) + ".")
    else:
        from .optimize.recipes import RECIPE_BY_KEY

        recipe = RECIPE_BY_KEY.get(str(settings.get("recipe")))
        if recipe is not None:
            lines += [f"Recipe: **{recipe.label}**. {recipe.explanation}", ""]
        if "attempts" in result:  # accuracy-aware search around a quantization
            lines.append(f"Accuracy-aware search on {result.get('data_source')}: {result.get('message', '')}")
            result = dict(result.get("result") or {})
        lines += _result_rows(result)
    for record in (result, result.get("export") or {}):
        versions.update(record.get("versions") or {})
    warnings = [*result.get("warnings", []), *result.get("notes", [])]
    lines += [""] + [f"- Note: {w}" for w in warnings] + ([""] if warnings else [])
    tools = ", ".join(f"{k} {v}" for k, v in sorted({**versions, "Model Workbench": __version__}.items()))
    return lines + [f"Tools: {tools}.", ""]


def _result_rows(result: dict[str, Any]) -> list[str]:
    rows: list[tuple[str, str]] = []
    if "method_label" in result:
        rows.append(("Method", str(result["method_label"])))
        if result.get("method_reason"):
            rows.append(("Why this method", str(result["method_reason"])))
        rows += [(f"Setting: {k}", str(v)) for k, v in (result.get("settings") or {}).items()]
        rows.append(("Quantized", f"{result.get('quantized')} of {result.get('quantizable')} {result.get('unit', '')}"))
        if result.get("excluded_nodes"):
            rows.append(("Left in float", ", ".join(result["excluded_nodes"])))
    elif "achieved" in result:
        rows += [("Method", f"{result.get('method')} pruning"), ("Requested", f"{result.get('requested'):.0%}"),
                 ("Achieved", f"{result.get('achieved'):.1%}"),
                 ("Parameters", f"{result.get('parameters_before'):,} before, {result.get('parameters_after'):,} after"),
                 ("Non-zero values", f"{result.get('nonzero_before'):,} before, {result.get('nonzero_after'):,} after")]
        if result.get("gzip_before"):
            rows.append(("Compressed (gzip)",
                         f"{format_bytes(result['gzip_before'])} before, {format_bytes(result['gzip_after'])} after"))
    if result.get("size_before") and result.get("size_after"):
        rows.append(("Size on disk",
                     f"{format_bytes(result['size_before'])} before, {format_bytes(result['size_after'])} after"))
    if not rows:
        return ["No record of the compression settings was kept for this file."]
    return ["| | |", "| --- | --- |"] + [f"| {_cell(k)} | {_cell(v)} |" for k, v in rows]


def _figures(comparison: Any, path: Path | None) -> dict[str, Any]:
    data = comparison_dict(comparison)
    models = data["models"]
    if path is None:
        raise CardProblem("The card cannot tell which model of the comparison it describes.")
    wanted = Path(path).resolve()
    mine = next((m for m in models if Path(m["path"]).resolve() == wanted), None)
    if mine is None:
        measured = ", ".join(Path(m["path"]).name for m in models)
        raise CardProblem(f"The comparison did not measure {Path(path).name} (it measured {measured}), so its figures "
                          f"cannot go into this model's card.", hint="Measure this model, then build the card again.")
    original = next((m for m in models if m.get("original")), models[0])
    return {"data": data["data"], "task": data.get("task"), "latency": data.get("latency_settings") or {},
            "warnings": data.get("warnings", []), "mine": mine, "original": original}


def _eval_results(EvalResult: Any, info: CardInfo, figures: dict[str, Any]) -> list[Any] | None:
    data, mine = figures["data"], figures["mine"]
    if data.get("synthetic"):
        return None  # figures on random inputs are not evaluation results
    metrics = []
    if mine.get("accuracy") is not None:
        metrics.append(("accuracy", "Accuracy", mine["accuracy"]))
    elif mine.get("agreement") is not None:
        metrics.append(("agreement", "Top-1 agreement with the original", mine["agreement"]))
    if mine.get("cosine_mean") is not None and not mine.get("original"):
        metrics.append(("cosine_similarity", "Mean cosine similarity to the original's outputs", mine["cosine_mean"]))
    source = str(data.get("source") or "evaluation data")
    dataset_type = next((d.strip() for d in info.datasets if d.strip()), None) or _SLUG_RE.sub(
        "-", source.casefold()).strip("-") or "evaluation-data"
    task = info.pipeline_tag.strip() or str(figures.get("task") or "other")
    return [EvalResult(task_type=task, dataset_type=dataset_type, dataset_name=source, metric_type=kind,
                       metric_name=label, metric_value=value) for kind, label, value in metrics] or None


def _evaluation_section(figures: dict[str, Any] | None) -> list[str]:
    lines = ["## Evaluation", ""]
    if figures is None:
        return lines + ["This model has not been measured yet.", ""]
    data, mine, original = figures["data"], figures["mine"], figures["original"]
    lines.append(f"Measured by Model Workbench on {data.get('source')} ({data.get('samples')} samples"
                 f"{', labelled' if data.get('labelled') else ', no labels'}), against the original model.")
    lines.append("")
    labelled = mine.get("accuracy") is not None
    quality_header = "Accuracy (95% interval)" if labelled else "Agreement with the original"
    lines += [f"| Model | {quality_header} | Size on disk | Latency, median |", "| --- | --- | --- | --- |"]
    rows = [("The original", original)] + ([] if mine is original else [("This model", mine)])
    for label, m in rows:
        if labelled:
            lo, hi = m.get("accuracy_ci") or (None, None)
            quality = f"{m['accuracy']:.2%}" + (f" ({lo:.2%} to {hi:.2%})" if lo is not None else "")
        else:
            quality = "" if m.get("agreement") is None else f"{m['agreement']:.2%}"
        latency = m.get("latency") or {}
        median = f"{latency['median_ms']:.3g} ms" if latency.get("median_ms") is not None else "not measured"
        lines.append(f"| {label} | {quality} | {format_bytes(m['size_bytes'])} | {median} |")
    settings = figures["latency"]
    if settings.get("runs"):
        lines += ["", (f"Latency: {settings.get('runs')} timed runs with batch {settings.get('batch')} on "
                       f"{settings.get('intra_op_threads')} CPU thread(s) of the machine that measured it; "
                       f"yours will differ.")]
    lines += [""] + [f"- {v}" for v in mine.get("verdicts", [])] + [f"- Warning: {w}" for w in figures["warnings"]]
    return lines + [""]


def _license_section(info: CardInfo, decision: LicenseDecision) -> list[str]:
    entry = decision.entry
    name = decision.custom_name.strip() if entry.is_other else entry.name
    lines = ["## License", "", (f"**{_cell(name)}** (SPDX: `{spdx_expression(decision)}`). The full text is in the "
                                f"`LICENSE` file that comes with the model."), ""]
    if not entry.is_other:
        lines += [entry.summary, "", "In short, and not as legal advice:", "",
                  *[f"- May: {x}" for x in entry.may], *[f"- Must: {x}" for x in entry.must],
                  *[f"- May not: {x}" for x in entry.may_not], ""]
    if info.base_model.strip():
        recorded = f" ({decision.base_model_license})" if decision.base_model_license.strip() else ""
        lines += [f"Made from the base model `{info.base_model.strip()}`{recorded}.", ""]
    return lines


def _usage_section(info: CardInfo, document: ModelDocument | None, path: Path | None) -> list[str]:
    package = info.package_name.strip() or info.slug
    project = _SLUG_RE.sub("-", package.casefold()).strip("-") or "model"  # as the wheel normalises it (PEP 503)
    module = project.replace("-", "_")
    repo = info.repo_id.strip() or f"your-username/{info.slug}"
    image = info.image.strip() or f"{info.slug}:latest"
    feed = _example_feed(document)
    filename = Path(path).name if path is not None else "model.onnx"
    return [
        "## How to use", "",
        "### Python package (PyPI)", "", "```bash", f"pip install {package}", "```", "", "```python",
        "import numpy as np", f"from {module} import load, predict", "", "session = load()",
        f"outputs = predict({feed}, session)  # a dict: output name -> array", "```", "",
        "Or from the command line, on a `.npz` file with one array per input name:", "", "```bash",
        f"{project}-predict input.npz", "```", "",
        "### Container image", "",
        "The image runs a prediction on the input file you give it:", "", "```bash",
        f'podman run --rm -v "$PWD:/data" {image} /data/input.npz',
        f'docker run --rm -v "$PWD:/data" {image} /data/input.npz', "```", "",
        "### Hugging Face Hub", "", "```python", "import numpy as np", "import onnxruntime as ort",
        "from huggingface_hub import hf_hub_download", "",
        f'path = hf_hub_download(repo_id="{repo}", filename="{filename}")',
        'session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])',
        f"outputs = session.run(None, {feed})", "```", ""]


def _example_feed(document: ModelDocument | None) -> str:
    """A Python dict literal of zero inputs with the model's names, shapes (varying sizes as 1) and dtypes."""
    if document is None or not document.inputs:
        return "{...}"
    parts = []
    for v in document.inputs:
        shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in (v.shape or ()))
        parts.append(f"{json.dumps(v.name, ensure_ascii=False)}: np.zeros({shape!r}, dtype=np.{v.dtype or 'float32'})")
    return "{" + ", ".join(parts) + "}"


# -- validation helpers ------------------------------------------------------------------------------------------


def _license_problems(metadata: dict[str, Any]) -> list[str]:
    license_id = metadata.get("license")
    if not license_id:
        return ["The card's metadata names no license."]
    if not isinstance(license_id, str) or license_id not in hf_license_ids():
        return [f"The license id '{license_id}' is not one the Hugging Face Hub accepts."]
    if license_id == "other":
        name, link = metadata.get("license_name"), metadata.get("license_link")
        if not name or not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", str(name)):
            return ["With license 'other', the card needs a license_name of lowercase letters, digits, '-' and '.'."]
        if not link:
            return ["With license 'other', the card needs a license_link (the LICENSE file or a web address)."]
    return []


def _index_problems(metadata: dict[str, Any]) -> list[str]:
    problems = []
    for entry in metadata.get("model-index") or []:
        for result in entry.get("results", []):
            task, dataset = result.get("task") or {}, result.get("dataset") or {}
            if not task.get("type") or not dataset.get("type") or not dataset.get("name"):
                problems.append("An evaluation result in model-index lacks its task type or data set.")
            for metric in result.get("metrics", []):
                if not metric.get("type") or not isinstance(metric.get("value"), int | float):
                    problems.append("A metric in model-index lacks its type or a numeric value.")
    return problems


def _todo_sections(body: str) -> list[str]:
    """The sections that still hold a TODO marker, by name ("description" for the part under the title)."""
    found, section = [], "description"
    for line in body.splitlines():
        if line.startswith("#"):
            level, _, title = line.partition(" ")
            section = "description" if level == "#" else title.strip().casefold()
        elif _TODO_RE.match(line) and section not in found:
            found.append(section)
    return found


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _hub() -> tuple[Any, Any, Any]:
    hub = require("huggingface_hub", needed_for="Model cards", label="huggingface_hub", pip="huggingface_hub")
    return hub.ModelCard, hub.ModelCardData, hub.EvalResult
