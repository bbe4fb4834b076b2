"""Compression recipes in plain words, and the one call the GUI makes to turn a recipe into a variant."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..evaluate.datasets import EvalData
from ..jobs import Job
from ..project import Project, Variant


@dataclass(frozen=True)
class RecipeKind:
    key: str
    label: str  # what a non-engineer reads in the list
    explanation: str  # one sentence: what it does and when to pick it
    needs_pytorch: bool = False
    has_amount: bool = False  # a percentage to choose (pruning)
    accuracy_aware: bool = False  # can keep the accuracy drop within a limit


RECIPES: tuple[RecipeKind, ...] = (
    RecipeKind("auto", "Recommended: 8-bit (chosen for this model)",
               "Stores weights as 8-bit integers, picking the best 8-bit method for this kind of model. About 4x "
               "smaller; usually faster.", accuracy_aware=True),
    RecipeKind("static-int8", "8-bit, calibrated on your data (image and conv models)",
               "Measures typical values on the evaluation data, then stores weights and activations as 8-bit "
               "integers. About 4x smaller and often 2-3x faster for convolutional networks.", accuracy_aware=True),
    RecipeKind("dynamic-int8", "8-bit weights for matrix multiplications (text and transformer models)",
               "Stores the weights of MatMul/Gemm layers as 8-bit integers; activations stay in float. Needs no "
               "calibration data."),
    RecipeKind("fp16", "16-bit floating point (half the size)",
               "Stores weights as 16-bit floats: half the size with almost no accuracy change, but usually slower on "
               "a CPU."),
    RecipeKind("int4", "4-bit weights (smallest, for large MatMul-heavy models)",
               "Stores MatMul/Gemm weights in 4 bits. The smallest option; best for large language-style models."),
    RecipeKind("magnitude", "Remove the smallest weights (smaller download)",
               "Sets the given share of the smallest weights to zero. The file keeps its size but compresses much "
               "better; speed does not change.", has_amount=True),
    RecipeKind("channels", "Remove whole channels (PyTorch models: smaller and faster)",
               "Physically removes the given share of channels from each layer. Smaller and faster, but costs "
               "accuracy unless the model is trained further.", needs_pytorch=True, has_amount=True),
)
RECIPE_BY_KEY = {r.key: r for r in RECIPES}
QUANTIZE_KEYS = ("auto", "static-int8", "dynamic-int8", "fp16", "int4")


@dataclass(frozen=True)
class Recipe:
    key: str
    amount: float | None = None  # 0..1, for pruning
    max_drop: float | None = None  # accuracy points as a fraction (0.01 = 1 point), for accuracy-aware 8-bit

    def variant_name(self) -> str:
        name = self.key if self.amount is None else f"{self.key}-{round(self.amount * 100)}pct"
        return name + ("-within" if self.max_drop is not None else "")


def apply_recipe(project: Project, recipe: Recipe, reference: Path, data: EvalData, *,
                 model_class: str | None = None, input_shape: tuple[int, ...] | None = None,
                 job: Job | None = None) -> Variant:
    """Make one variant of the project's model in its output folder and record it in the project.

    ``reference`` is the ONNX form of the original (the source itself, or its export).
    """
    job = job or Job()
    name = project.unique_name(recipe.variant_name())
    out = project.variant_path(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    result: Any
    if recipe.key in QUANTIZE_KEYS and recipe.max_drop is not None:
        from .accuracy_aware import quantize_within

        method = "static-int8" if recipe.key == "auto" else recipe.key
        result = quantize_within(reference, out, max_drop=recipe.max_drop, data=data, method=method, job=job)
        if result.result is None:
            from ..errors import WorkbenchError

            raise WorkbenchError(result.message)
        kind = "quantized"
    elif recipe.key in QUANTIZE_KEYS:
        from .quantize import quantize

        result = quantize(reference, out, method=recipe.key, calibration=None if data.synthetic else data, job=job)
        kind = "quantized"
    elif recipe.key == "magnitude":
        from .prune import prune_onnx_magnitude

        result = prune_onnx_magnitude(reference, out, sparsity=recipe.amount or 0.5, job=job)
        kind = "pruned"
    elif recipe.key == "channels":
        from .prune import prune_structured

        result = prune_structured(project.source, out, ratio=recipe.amount or 0.5, model_class=model_class,
                                  input_shape=input_shape, job=job)
        kind = "pruned"
    else:
        raise ValueError(f"unknown recipe {recipe.key!r}")
    settings = {"recipe": recipe.key, "amount": recipe.amount, "max_drop": recipe.max_drop}
    return project.add(Variant(name, out, kind, settings, result.to_dict()))


def export_reference(project: Project, *, model_class: str | None = None, input_shape: tuple[int, ...] | None = None,
                     trust: bool = False, job: Job | None = None) -> Variant:
    """Export a PyTorch source to ONNX in the project folder: the reference every variant is compared with."""
    from ..export import export_to_onnx

    name = project.unique_name("exported")
    out = project.variant_path(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = export_to_onnx(project.source, out, model_class=model_class, input_shape=input_shape, trust=trust,
                            job=job)
    settings = {"model_class": model_class, "input_shape": list(input_shape) if input_shape else None}
    return project.add(Variant(name, out, "exported", settings, result.to_dict()))
