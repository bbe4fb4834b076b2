"""`workbench license list|show`: the licenses on offer, with plain summaries and full texts."""

from __future__ import annotations

import argparse
import sys

from .common import print_json

ANSWERS = {"yes": True, "no": False, "any": None}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("license", help="list the licenses on offer, or show one's summary and full text",
                       description="The licenses Model Workbench can apply to a published model.")
    actions = p.add_subparsers(dest="action", required=True, metavar="{list,show}")
    ls = actions.add_parser("list", help="list the licenses, optionally narrowed by questions or a search",
                            description="List the licenses. The questions narrow the list; --search looks in names, "
                                        "ids and summaries.")
    for flag, text in (("--commercial", "may others use it commercially?"),
                       ("--share-alike", "must changed versions be shared under the same terms?"),
                       ("--credit", "must users give credit?"),
                       ("--changes", "may others share changed versions?"),
                       ("--use-restrictions", "should it forbid specific harmful uses (OpenRAIL)?")):
        ls.add_argument(flag, choices=tuple(ANSWERS), default="any", help=text)
    ls.add_argument("--search", default="", metavar="WORDS", help="only licenses whose name or summary has these words")
    ls.add_argument("--json", action="store_true", help="print JSON instead of text")
    ls.set_defaults(func=run_list)
    show = actions.add_parser("show", help="show a license's summary and full text")
    show.add_argument("id", help="SPDX id, Hugging Face id or name, e.g. Apache-2.0, cc-by-nc-4.0, openrail++")
    show.add_argument("--json", action="store_true", help="print JSON (summary, ids and text) instead of text")
    show.set_defaults(func=run_show)


def run_list(args: argparse.Namespace) -> int:
    from ..core.license import choose

    answers = {"commercial": ANSWERS[args.commercial], "share_alike": ANSWERS[args.share_alike],
               "attribution": ANSWERS[args.credit], "derivatives": ANSWERS[args.changes],
               "use_restrictions": ANSWERS[args.use_restrictions]}
    entries = choose(answers, args.search)
    if args.json:
        print_json([e.to_dict() for e in entries])
        return 0
    width = max(len(e.key) for e in entries)
    for e in entries:
        commercial = {True: "commercial use", False: "non-commercial", None: "your terms"}[e.commercial]
        missing = "" if e.has_text or e.is_other else "  (text not shipped: give your own file)"
        print(f"{e.key:<{width}}  {e.name}  [{commercial}; Hugging Face: {e.hf}]{missing}")
    if len(entries) == 1:
        print("No license in the catalog fits all those answers; 'other' lets you use your own.", file=sys.stderr)
    return 0


def run_show(args: argparse.Namespace) -> int:
    from ..core.license import get, license_text

    entry = get(args.id)
    text = license_text(entry) if entry.has_text else None
    if args.json:
        print_json({**entry.to_dict(), "text": text})
        return 0
    print(f"{entry.name}  (id {entry.key}; SPDX {entry.spdx or 'LicenseRef- made from your name'}; "
          f"Hugging Face {entry.hf})")
    print()
    print(entry.summary)
    for label, items in (("May", entry.may), ("Must", entry.must), ("May not", entry.may_not)):
        for item in items:
            print(f"  {label}: {item}")
    if entry.url:
        print(f"  Read more: {entry.url}")
    print()
    print(text if text is not None else entry.text_missing)
    return 0
