"""The license catalog: the licenses model authors use, each with its full text, a plain summary and its ids.

Entries come from ``resources/licenses/catalog.json``. SPDX identifiers are validated and put in canonical form
by ``packaging.licenses`` (which carries the SPDX License List). Licenses the SPDX list does not have (the Open
RAIL family) get ``LicenseRef-`` identifiers, which SPDX reserves for licenses outside its list; the Hugging Face
id of each entry is kept beside it and checked against the ids the Hub accepts.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import WorkbenchError

PLACEHOLDERS = ("<year>", "<copyright holders>", "<owner>")
# deprecated SPDX ids (still accepted by the SPDX tools) -> the ids that replaced them
DEPRECATED = {f"{name}-3.0{old}": f"{name}-3.0-{new}" for name in ("GPL", "LGPL", "AGPL")
              for old, new in (("", "only"), ("+", "or-later"))}


class LicenseProblem(WorkbenchError, ValueError):
    """A license id, expression, name or file that cannot be used as it is."""


@dataclass(frozen=True)
class LicenseEntry:
    """One license of the catalog. Yes/no properties are None for "other" (they depend on the user's text)."""

    key: str  # what users type and what is saved: the SPDX id, or the Hugging Face id for non-SPDX licenses
    name: str
    spdx: str | None  # SPDX id or LicenseRef-; None for "other" (made from the user's license name)
    hf: str  # Hugging Face Hub license id ("other" for the user's own)
    text_file: str | None  # in resources/licenses; None when not shipped
    text_missing: str | None  # why there is no text, and what the user can do
    url: str | None
    family: str  # permissive, weak-copyleft, copyleft, public-domain, creative-commons, responsible-ai, custom
    commercial: bool | None  # others may use it commercially
    share_alike: bool | None  # changed versions must be shared under the same terms
    attribution: bool | None  # users must give credit / keep notices
    derivatives: bool | None  # changed versions may be shared at all
    use_restrictions: bool | None  # forbids listed uses, and the list carries over to derived models
    summary: str
    may: tuple[str, ...]
    must: tuple[str, ...]
    may_not: tuple[str, ...]

    @property
    def is_other(self) -> bool:
        return self.key == OTHER

    @property
    def has_text(self) -> bool:
        return self.text_file is not None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.key, "name": self.name, "spdx": self.spdx, "hf": self.hf, "url": self.url,
                "family": self.family, "text_shipped": self.has_text, "text_missing": self.text_missing,
                "commercial": self.commercial, "share_alike": self.share_alike, "attribution": self.attribution,
                "derivatives": self.derivatives, "use_restrictions": self.use_restrictions,
                "summary": self.summary, "may": list(self.may), "must": list(self.must),
                "may_not": list(self.may_not)}


OTHER = "other"


def licenses_dir() -> Path:
    """``resources/licenses``: the texts, the catalog and the Hub's license ids."""
    from ...resources import resources_dir

    return resources_dir() / "licenses"


@lru_cache(maxsize=1)
def catalog() -> tuple[LicenseEntry, ...]:
    """Every license on offer, in the order they are presented ("other" last)."""
    data = json.loads((licenses_dir() / "catalog.json").read_text(encoding="utf-8"))
    return tuple(LicenseEntry(
        key=e["key"], name=e["name"], spdx=e["spdx"], hf=e["hf"], text_file=e["text"],
        text_missing=e.get("text_missing"), url=e["url"], family=e["family"], commercial=e["commercial"],
        share_alike=e["share_alike"], attribution=e["attribution"], derivatives=e["derivatives"],
        use_restrictions=e["use_restrictions"], summary=e["summary"], may=tuple(e["may"]), must=tuple(e["must"]),
        may_not=tuple(e["may_not"])) for e in data["licenses"])


@lru_cache(maxsize=1)
def hf_license_ids() -> frozenset[str]:
    """The license ids a Hugging Face model card may name (from the Hub's documentation)."""
    data = json.loads((licenses_dir() / "hf_license_ids.json").read_text(encoding="utf-8"))
    return frozenset(data["ids"])


def canonical_spdx(expression: str) -> str:
    """``expression`` as a canonical SPDX license expression ("apache-2.0 or mit" -> "Apache-2.0 OR MIT").

    Raises LicenseProblem for anything the SPDX License List and its expression syntax do not allow.
    """
    from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression

    text = " ".join(str(expression).split())
    if not text:
        raise LicenseProblem("No license was given.", hint="Give an SPDX id such as Apache-2.0 or MIT.")
    try:
        return canonicalize_license_expression(text)
    except InvalidLicenseExpression:
        raise LicenseProblem(f"'{text}' is not a valid SPDX license expression.",
                             hint=_suggestion(text)) from None


def get(identifier: str) -> LicenseEntry:
    """The catalog entry for an SPDX id or expression, a Hugging Face id, a catalog key or a license's name.

    Case and spacing do not matter. Raises LicenseProblem naming the closest catalog entries otherwise.
    """
    entry = find(identifier)
    if entry is not None:
        return entry
    text = " ".join(str(identifier).split())
    if not text:
        raise LicenseProblem("No license was given.", hint="Run `workbench license list` to see the choices.")
    try:
        canonical = canonical_spdx(text)
    except LicenseProblem as exc:
        raise LicenseProblem(f"'{text}' is not a license Model Workbench knows.", hint=exc.hint) from None
    raise LicenseProblem(f"'{canonical}' is a valid SPDX license expression, but not one of the licenses Model "
                         f"Workbench ships a text for.",
                         hint="Choose 'other' and give your own license file, or pick one from "
                              "`workbench license list`.")


def find(identifier: str) -> LicenseEntry | None:
    """Like :func:`get`, but None when nothing matches."""
    text = " ".join(str(identifier).split())
    if not text:
        return None
    folded = text.casefold()
    for entry in catalog():
        if folded in {entry.key.casefold(), entry.name.casefold(), (entry.spdx or "").casefold()}:
            return entry
    # the Hub's gpl-3.0, lgpl-3.0 and agpl-3.0 do not say "only" or "or later": they resolve to "only"
    by_hf = next((e for e in catalog() if e.hf.casefold() == folded), None)
    if by_hf is not None:
        return by_hf
    try:
        canonical = canonical_spdx(text)
    except LicenseProblem:
        return None
    canonical = DEPRECATED.get(canonical, canonical)
    return next((e for e in catalog() if e.spdx == canonical), None)


def search(query: str) -> list[LicenseEntry]:
    """Entries whose id, name, Hugging Face id, family or summary contain every word of ``query``."""
    words = query.casefold().split()
    if not words:
        return list(catalog())
    found = []
    for entry in catalog():
        haystack = " ".join([entry.key, entry.name, entry.spdx or "", entry.hf, entry.family, entry.summary]).casefold()
        if all(w in haystack for w in words):
            found.append(entry)
    return found


def license_text(entry: LicenseEntry) -> str:
    """The full official text shipped for ``entry`` (templates keep their placeholders)."""
    if entry.text_file is None:
        raise LicenseProblem(entry.text_missing or f"There is no text for {entry.name}.")
    path = licenses_dir() / entry.text_file
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LicenseProblem(f"The text of {entry.name} is missing from this installation ({path}).",
                             hint="Reinstall Model Workbench.", path=path) from exc


def has_placeholders(text: str) -> bool:
    """Whether a license text still has a template copyright line (MIT, BSD)."""
    return any(p in text for p in PLACEHOLDERS)


def close_matches(text: str, limit: int = 3) -> list[str]:
    """Catalog keys that look like ``text`` (by id, Hugging Face id or name)."""
    folded = re.sub(r"[\s_]+", "-", text.casefold())
    names: dict[str, str] = {}
    for entry in catalog():
        for alias in (entry.key, entry.hf, entry.name, entry.spdx or ""):
            if alias:
                names.setdefault(re.sub(r"[\s_]+", "-", alias.casefold()), entry.key)
    hits = difflib.get_close_matches(folded, list(names), n=limit * 3, cutoff=0.5)
    hits += [alias for alias in names if folded and folded in alias]
    keys: list[str] = []
    for alias in hits:
        if names[alias] not in keys:
            keys.append(names[alias])
    return keys[:limit]


def _suggestion(text: str) -> str:
    matches = close_matches(text)
    if matches:
        return "Did you mean " + " or ".join(matches) + "? Run `workbench license list` to see all choices."
    return "Run `workbench license list` to see the choices."
