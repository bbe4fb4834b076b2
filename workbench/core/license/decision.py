"""One license decision, applied the same way everywhere: LICENSE file, model card, wheel metadata, image label.

A :class:`LicenseDecision` is saved with the project (``license.json``). Publishers call
:func:`license_file_text`, :func:`card_metadata`, :func:`wheel_license_fields` and :func:`oci_license_label`
instead of reading the decision themselves, so the four can never disagree.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..project import atomic_write_text
from .catalog import LicenseEntry, LicenseProblem, canonical_spdx, get, has_placeholders, license_text

DECISION_FILE = "license.json"
LICENSE_FILE = "LICENSE"
MAX_LICENSE_BYTES = 1_000_000
_REF_CHARS = re.compile(r"[^A-Za-z0-9.-]+")
_SLUG_CHARS = re.compile(r"[^a-z0-9.-]+")


@dataclass(frozen=True)
class LicenseDecision:
    """The license the user chose, with what it needs: a copyright holder for template texts (MIT, BSD), and a
    name and file for their own license. The base model's and data set's licenses are kept for the conflict check.
    """

    license: str  # catalog key, e.g. "Apache-2.0", "creativeml-openrail-m", "other"
    holder: str = ""  # copyright holder, fills the copyright line of MIT and BSD texts
    year: int = field(default_factory=lambda: datetime.date.today().year)
    custom_name: str = ""  # "other": the license's name
    custom_file: str = ""  # the user's own license text (needed for "other" and for entries with no shipped text)
    custom_link: str = ""  # "other": where the license can be read (default: the LICENSE file next to the model)
    base_model_license: str = ""
    dataset_license: str = ""

    @property
    def entry(self) -> LicenseEntry:
        return get(self.license)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LicenseDecision:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        if "license" not in known:
            raise LicenseProblem("The saved license decision names no license.")
        return cls(**known)


def decide(license_id: str, **details: Any) -> LicenseDecision:
    """A decision for ``license_id`` (any id, expression or name :func:`catalog.get` understands), checked."""
    decision = LicenseDecision(get(license_id).key, **details)
    check(decision)
    return decision


def check(decision: LicenseDecision) -> None:
    """Raise LicenseProblem if the decision cannot be applied everywhere yet (one sentence saying what is missing)."""
    entry = decision.entry
    if not 1970 <= int(decision.year) <= 9999:
        raise LicenseProblem(f"The copyright year {decision.year} is not a year.", hint="Give a year such as 2025.")
    if entry.is_other and not decision.custom_name.strip():
        raise LicenseProblem("Your own license needs a name.", hint="Give it a short name, e.g. 'Acme Model License'.")
    if decision.custom_link and not re.match(r"https?://\S+$", decision.custom_link.strip()):
        raise LicenseProblem(f"The license link '{decision.custom_link}' is not a web address.",
                             hint="Give an address starting with https://, or leave it empty to link the LICENSE file.")
    license_file_text(decision)  # the text must be there (and a template needs its copyright holder)
    spdx_expression(decision)


def spdx_expression(decision: LicenseDecision) -> str:
    """The SPDX license expression for the decision (a ``LicenseRef-`` id for licenses outside the SPDX list)."""
    entry = decision.entry
    if entry.spdx is not None:
        return canonical_spdx(entry.spdx)
    name = decision.custom_name.strip()
    ref = _REF_CHARS.sub("-", name).strip("-.")
    if not ref or not name.isascii():
        ref = "custom-" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:10]
    return canonical_spdx(f"LicenseRef-{ref}")


def license_file_text(decision: LicenseDecision) -> str:
    """The content of the LICENSE file shipped with every package: the full text, copyright line filled in."""
    entry = decision.entry
    if decision.custom_file:
        return read_license_file(Path(decision.custom_file))
    if not entry.has_text:
        raise LicenseProblem(entry.text_missing or f"{entry.name} needs your own license file.")
    text = license_text(entry)
    if has_placeholders(text):
        holder = " ".join(decision.holder.split())
        if not holder:
            raise LicenseProblem(f"The {entry.name} text has a copyright line that needs the copyright holder's name.",
                                 hint="Give your name or your organisation's name as the copyright holder.")
        filled = f"{decision.year} {holder}"
        text = text.replace("<year> <copyright holders>", filled).replace("<year> <owner>", filled)
    return text


def read_license_file(path: Path) -> str:
    """The text of the user's own license file, checked to be non-empty UTF-8 text."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LicenseProblem(f"The license file {path} does not exist.", hint="Choose the file again.",
                             path=path) from None
    except OSError as exc:
        raise LicenseProblem(f"The license file {path} cannot be read ({exc.strerror}).", path=path) from exc
    if len(data) > MAX_LICENSE_BYTES:
        raise LicenseProblem(f"The license file {path.name} is {len(data):,} bytes; a license text is far smaller.",
                             hint="Check that you chose the license text, not another file.", path=path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LicenseProblem(f"The license file {path.name} is not plain text in UTF-8.",
                             hint="Save it as UTF-8 text (.txt or .md) and choose it again.", path=path) from None
    if not text.strip():
        raise LicenseProblem(f"The license file {path.name} is empty.", hint="Choose the file with your license's "
                             "text.", path=path)
    return text if text.endswith("\n") else text + "\n"


def card_metadata(decision: LicenseDecision) -> dict[str, str]:
    """The Hugging Face model card fields: ``license``, and for your own license ``license_name``/``license_link``."""
    entry = decision.entry
    if not entry.is_other:
        return {"license": entry.hf}
    link = decision.custom_link.strip() or LICENSE_FILE
    return {"license": "other", "license_name": hf_license_name(decision), "license_link": link}


def hf_license_name(decision: LicenseDecision) -> str:
    """The Hub's ``license_name`` for your own license: lowercase letters, digits, '-' and '.' (as the Hub uses)."""
    name = decision.custom_name.strip()
    slug = _SLUG_CHARS.sub("-", name.casefold()).strip("-.")
    return slug or "custom-" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:10]


def wheel_license_fields(decision: LicenseDecision) -> tuple[str, tuple[str, ...]]:
    """PEP 639 core metadata: the ``License-Expression`` value and the ``License-File`` paths (``LICENSE``)."""
    check(decision)
    return spdx_expression(decision), (LICENSE_FILE,)


def oci_license_label(decision: LicenseDecision) -> str:
    """The value of the image label ``org.opencontainers.image.licenses`` (an SPDX expression)."""
    check(decision)
    return spdx_expression(decision)


def save_decision(decision: LicenseDecision, folder: Path) -> Path:
    """Write the decision as ``license.json`` in ``folder`` (atomically); returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / DECISION_FILE
    atomic_write_text(target, json.dumps(decision.to_dict(), indent=2, ensure_ascii=False) + "\n")
    return target


def load_decision(path: Path) -> LicenseDecision:
    """Read a decision saved by :func:`save_decision`."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LicenseProblem(f"There is no saved license decision at {path}.", path=path) from None
    except (OSError, ValueError) as exc:
        raise LicenseProblem(f"The saved license decision {path} cannot be read ({exc}).",
                             hint="Choose the license again; it will be saved anew.", path=path) from exc
    if not isinstance(data, dict):
        raise LicenseProblem(f"The saved license decision {path} is not a decision.", path=path)
    try:
        return LicenseDecision.from_dict(data)
    except TypeError as exc:
        raise LicenseProblem(f"The saved license decision {path} is damaged ({exc}).", path=path) from exc

