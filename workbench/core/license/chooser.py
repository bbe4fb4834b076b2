"""Choosing a license by answering plain questions, and spotting conflicts with the base model's or data's license.

The questions narrow the catalog; nothing is hidden for good (searching always covers the whole list). The
conflict check compares the chosen license with a license recorded for the base model or the training data and
says, in one sentence each, what does not fit and what would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .catalog import LicenseEntry, catalog, find, get


@dataclass(frozen=True)
class Question:
    """A yes/no question; ``key`` is the LicenseEntry property it filters on."""

    key: str
    text: str
    explanation: str


QUESTIONS: tuple[Question, ...] = (
    Question("commercial", "May others use it commercially?",
             "Yes: companies may build products with it or sell it. No: only non-commercial use is allowed."),
    Question("share_alike", "Must changed versions be shared under the same terms?",
             "Yes (\"copyleft\" or \"share-alike\"): whoever shares a changed model must use your license too. No: "
             "they may choose their own terms."),
    Question("attribution", "Must users give you credit?",
             "Yes: copies must name you and keep the license notice. No: no conditions at all (public domain)."),
    Question("derivatives", "May others share changed versions (for example fine-tuned or compressed)?",
             "No means the model may only be passed on unchanged."),
    Question("use_restrictions", "Do you want to forbid specific harmful uses?",
             "Yes: a responsible-AI (OpenRAIL) license lists uses that are not allowed, and the list carries over to "
             "every model made from yours."),
)
QUESTION_KEYS = tuple(q.key for q in QUESTIONS)


def choose(answers: Mapping[str, bool | None], query: str = "") -> list[LicenseEntry]:
    """The catalog entries that fit every answered question (None = no preference) and contain ``query``.

    "Your own license" (other) is always offered last, since its terms are whatever the user's text says.
    """
    unknown = set(answers) - set(QUESTION_KEYS)
    if unknown:
        raise ValueError(f"unknown questions {sorted(unknown)}; known: {QUESTION_KEYS}")
    words = query.casefold().split()
    fits = []
    for entry in catalog():
        if entry.is_other:
            continue
        if any(value is not None and getattr(entry, key) is not value for key, value in answers.items()):
            continue
        text = " ".join([entry.key, entry.name, entry.spdx or "", entry.hf, entry.family, entry.summary]).casefold()
        if all(w in text for w in words):
            fits.append(entry)
    return fits + [e for e in catalog() if e.is_other]


@dataclass(frozen=True)
class Conflict:
    """One finding: ``severity`` is "conflict" (the choice breaks the other license's terms as summarised) or
    "note" (something to check or do)."""

    source: str  # "base model" or "data set"
    recorded: str  # the license as recorded for it
    severity: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"source": self.source, "recorded": self.recorded, "severity": self.severity, "message": self.message}


def conflicts(chosen: LicenseEntry | str, *, base_model: str | None = None,
              dataset: str | None = None) -> list[Conflict]:
    """What the chosen license conflicts with, or needs checking against, in the base model's and data's licenses."""
    entry = chosen if isinstance(chosen, LicenseEntry) else get(chosen)
    found: list[Conflict] = []
    for source, recorded in (("base model", base_model), ("data set", dataset)):
        if recorded and recorded.strip():
            found += _against(entry, source, recorded.strip())
    return found


def _against(chosen: LicenseEntry, source: str, recorded: str) -> list[Conflict]:
    upstream = find(recorded)
    the = f"The {source}'s license"

    def item(severity: str, message: str) -> Conflict:
        return Conflict(source, recorded, severity, message)

    if upstream is None or upstream.is_other:
        return [item("note", f"{the}, '{recorded}', is not one Model Workbench can check; read its terms to make sure "
                             f"they allow publishing a model made from it under {chosen.name}.")]
    if chosen.is_other:
        return [item("note", f"{the} is {upstream.name}; check that your own license keeps its conditions "
                             f"({upstream.summary})")]
    name = upstream.name
    data = source == "data set"
    out = []
    if upstream.commercial is False and chosen.commercial is not False:
        if data:
            out.append(item("conflict", f"{the}, {name}, forbids commercial use, but {chosen.name} would let others "
                                        f"use a model made from that data commercially. Check the data set's terms, "
                                        f"or choose a non-commercial license such as {_suggest(upstream)}."))
        else:
            out.append(item("conflict", f"{the}, {name}, forbids commercial use, so you cannot let others use your "
                                        f"version commercially as {chosen.name} would. Choose a non-commercial "
                                        f"license such as {_suggest(upstream)}."))
    if upstream.derivatives is False:
        what = ("Check whether a model trained on it counts as adapted material" if data else
                "A compressed or fine-tuned model is a changed version, so it may not be published without the "
                "licensor's permission")
        out.append(item("conflict", f"{the}, {name}, does not allow sharing changed versions. {what}."))
    if upstream.share_alike and not _same_terms(upstream, chosen):
        out.append(item("conflict", f"{the}, {name}, requires changed versions to be shared under the same terms, "
                                    f"but you chose {chosen.name}. Choose {upstream.key} instead."))
    if upstream.use_restrictions:
        if not chosen.use_restrictions:
            out.append(item("conflict", f"{the}, {name}, requires its use restrictions to carry over to every model "
                                        f"made from it, but {chosen.name} has none. Choose {upstream.key}, or a "
                                        f"license that includes the same restrictions."))
        elif chosen.key != upstream.key:
            out.append(item("note", f"{the} is {name}: make sure {chosen.name} includes all of its use restrictions."))
    if upstream.attribution and not out:
        out.append(item("note", f"{the}, {name}, requires credit: name the {source} and its license in the model "
                                f"card."))
    return out


def _same_terms(upstream: LicenseEntry, chosen: LicenseEntry) -> bool:
    if chosen.key == upstream.key:
        return True
    # the "only" and "or later" forms share a text: "or later" upstream lets you pick "only", not the reverse
    return chosen.text_file == upstream.text_file and upstream.key.endswith("-or-later")


def _suggest(upstream: LicenseEntry) -> str:
    """A non-commercial license that keeps the upstream's other conditions."""
    if not upstream.derivatives:
        return "CC-BY-NC-ND-4.0"
    if upstream.share_alike:
        return upstream.key if upstream.commercial is False else "CC-BY-NC-SA-4.0"
    return "CC-BY-NC-4.0"
