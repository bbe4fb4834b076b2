"""Licenses: the catalog with full texts and plain summaries, the chooser, conflict checks, and the one decision
that every publisher applies (LICENSE file, model card metadata, wheel License-Expression, OCI label)."""

from __future__ import annotations

from .catalog import (
    OTHER,
    LicenseEntry,
    LicenseProblem,
    canonical_spdx,
    catalog,
    close_matches,
    find,
    get,
    hf_license_ids,
    license_text,
    licenses_dir,
    search,
)
from .chooser import QUESTIONS, Conflict, Question, choose, conflicts
from .decision import (
    DECISION_FILE,
    LICENSE_FILE,
    LicenseDecision,
    card_metadata,
    check,
    decide,
    hf_license_name,
    license_file_text,
    load_decision,
    oci_license_label,
    read_license_file,
    save_decision,
    spdx_expression,
    wheel_license_fields,
)

__all__ = [
    "DECISION_FILE", "LICENSE_FILE", "OTHER", "QUESTIONS", "Conflict", "LicenseDecision", "LicenseEntry",
    "LicenseProblem", "Question", "canonical_spdx", "card_metadata", "catalog", "check", "choose", "close_matches",
    "conflicts", "decide", "find", "get", "hf_license_ids", "hf_license_name", "license_file_text", "license_text",
    "licenses_dir", "load_decision", "oci_license_label", "read_license_file", "save_decision", "search",
    "spdx_expression", "wheel_license_fields",
]
