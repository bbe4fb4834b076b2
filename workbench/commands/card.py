"""`workbench card MODEL --license ID -o README.md`: write the model card (Hugging Face format) for a model file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .common import print_json


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("card", help="write the model card (Hugging Face README.md) for a model file",
                       description="Write a model card from what was done to the model: inputs and outputs, how it "
                                   "was compressed (from its project, or --compression), the measured figures "
                                   "(--comparison) and the license. What only you know (description, intended use, "
                                   "limitations) is left as a marked TODO when not given.")
    p.add_argument("model", type=Path, help="the model file the card describes")
    p.add_argument("--license", required=True, metavar="ID",
                   help="SPDX id, Hugging Face id or name (see `workbench license list`), or 'other'")
    p.add_argument("--holder", default="", help="copyright holder, for licenses with a copyright line (MIT, BSD)")
    p.add_argument("--license-name", default="", help="with --license other: your license's name")
    p.add_argument("--license-file", default="", metavar="FILE",
                   help="your own license text (needed for 'other' and for licenses whose text is not shipped)")
    p.add_argument("--license-link", default="", metavar="URL", help="with --license other: where it can be read")
    p.add_argument("--name", default=None, help="the model's name (default: the file name)")
    p.add_argument("--description", default="", help="what the model does, in a few sentences")
    p.add_argument("--intended-use", default="", help="what the model is for, and for whom")
    p.add_argument("--limitations", default="", help="where it fails or should not be used")
    p.add_argument("--comparison", type=Path, metavar="FILE", help="JSON from `workbench compare --json`")
    p.add_argument("--compression", type=Path, metavar="FILE",
                   help="JSON from `workbench quantize --json` or `workbench prune --json` (default: the project "
                        "record next to the model, if any)")
    p.add_argument("--base-model", default="", metavar="HF_ID", help="Hugging Face id of the model this one came from")
    p.add_argument("--base-model-license", default="", metavar="ID", help="the base model's license, to check for "
                                                                        "conflicts")
    p.add_argument("--dataset-license", default="", metavar="ID", help="the training data's license, to check for "
                                                                      "conflicts")
    p.add_argument("--pipeline-tag", default="", metavar="TASK", help="Hugging Face task, e.g. image-classification")
    p.add_argument("-o", "--output", type=Path, metavar="README.md", help="where to write the card (default: print it)")
    p.add_argument("--json", action="store_true", help="print JSON (path, metadata, TODOs, license conflicts)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.card import CardInfo, load_comparison, render_card, validate_card
    from ..core.formats import open_model
    from ..core.license import conflicts, decide
    from ..core.project import atomic_write_text

    decision = decide(args.license, holder=args.holder, custom_name=args.license_name,
                      custom_file=args.license_file, custom_link=args.license_link,
                      base_model_license=args.base_model_license, dataset_license=args.dataset_license)
    document = open_model(args.model)
    info = CardInfo(name=args.name if args.name is not None else args.model.stem, description=args.description,
                    intended_use=args.intended_use, limitations=args.limitations, base_model=args.base_model,
                    pipeline_tag=args.pipeline_tag)
    comparison = load_comparison(args.comparison) if args.comparison else None
    text = render_card(info, decision, model_path=args.model, document=document,
                       variant=_variant(args.model, args.compression), comparison=comparison)
    report = validate_card(text)
    found = conflicts(decision.entry, base_model=decision.base_model_license, dataset=decision.dataset_license)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.output, text)
    if args.json:
        print_json({"path": None if args.output is None else str(args.output), "metadata": report.metadata,
                    "todos": list(report.todos), "conflicts": [c.to_dict() for c in found],
                    **({"card": text} if args.output is None else {})})
    elif args.output is None:
        sys.stdout.write(text)
    else:
        print(f"Wrote the model card to {args.output}.")
    for c in found:
        print(f"workbench: {'license conflict' if c.severity == 'conflict' else 'note'}: {c.message}", file=sys.stderr)
    if report.todos:
        print(f"workbench: the card still has {len(report.todos)} part(s) to write before publishing: "
              f"{', '.join(report.todos)}.", file=sys.stderr)
    return 0


def _variant(model: Path, compression: Path | None) -> Any:
    """The record of how ``model`` was made: from --compression, or from the project folder it lives in."""
    from ..core.card import CardProblem
    from ..core.project import PROJECT_FILE, Project, Variant

    if compression is not None:
        try:
            result = json.loads(compression.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CardProblem(f"The compression record {compression} cannot be read ({exc}).",
                              path=compression) from exc
        if not isinstance(result, dict):
            raise CardProblem(f"{compression.name} is not a record printed by `workbench quantize --json` or "
                              f"`workbench prune --json`.", path=compression)
        kind = ("quantized" if "method_label" in result or "attempts" in result else
                "pruned" if "achieved" in result else "exported" if "exporter" in result else "original")
        return Variant(model.stem, model, kind, {}, result)
    project_file = model.parent / PROJECT_FILE
    if not project_file.exists():
        return None
    try:
        project = Project.load(project_file)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return next((v for v in project.variants if Path(v.path).resolve() == model.resolve()), None)
