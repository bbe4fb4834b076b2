"""The license catalog (real texts, canonical ids), the chooser, conflict warnings and the one license decision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

from workbench.core import license as lic
from workbench.core.license import LicenseDecision, LicenseProblem

# A phrase each official text has (its title, or for the untitled BSD texts, a clause only that license has).
MARKERS = {
    "Apache-2.0": "Apache License\nVersion 2.0, January 2004",
    "MIT": "MIT License",
    "BSD-2-Clause": "Redistribution and use in source and binary forms",
    "BSD-3-Clause": "Neither the name of the copyright holder nor the names of its",
    "MPL-2.0": "Mozilla Public License Version 2.0",
    "GPL-3.0-only": "GNU GENERAL PUBLIC LICENSE\nVersion 3, 29 June 2007",
    "GPL-3.0-or-later": "GNU GENERAL PUBLIC LICENSE\nVersion 3, 29 June 2007",
    "LGPL-3.0-only": "GNU LESSER GENERAL PUBLIC LICENSE\nVersion 3, 29 June 2007",
    "LGPL-3.0-or-later": "GNU LESSER GENERAL PUBLIC LICENSE\nVersion 3, 29 June 2007",
    "AGPL-3.0-only": "GNU AFFERO GENERAL PUBLIC LICENSE\nVersion 3, 19 November 2007",
    "AGPL-3.0-or-later": "GNU AFFERO GENERAL PUBLIC LICENSE\nVersion 3, 19 November 2007",
    "CC0-1.0": "CC0 1.0 Universal",
    "CC-BY-4.0": "Creative Commons Attribution 4.0 International",
    "CC-BY-SA-4.0": "Creative Commons Attribution-ShareAlike 4.0 International",
    "CC-BY-NC-4.0": "Creative Commons Attribution-NonCommercial 4.0 International",
    "CC-BY-NC-SA-4.0": "Creative Commons Attribution-NonCommercial-ShareAlike 4.0 International",
    "CC-BY-ND-4.0": "Creative Commons Attribution-NoDerivatives 4.0 International",
    "CC-BY-NC-ND-4.0": "Creative Commons Attribution-NonCommercial-NoDerivatives 4.0 International",
    "creativeml-openrail-m": "CreativeML Open RAIL-M\ndated August 22, 2022",
    "openrail++": "CreativeML Open RAIL++-M License\ndated November 24, 2022",
    "Unlicense": "This is free and unencumbered software released into the public domain.",
}
NOT_SHIPPED = {"bigscience-openrail-m", "bigcode-openrail-m", "openrail", "other"}
REQUIRED = {"Apache-2.0", "MIT", "BSD-2-Clause", "BSD-3-Clause", "MPL-2.0", "GPL-3.0-only", "GPL-3.0-or-later",
            "LGPL-3.0-only", "AGPL-3.0-only", "CC0-1.0", "CC-BY-4.0", "CC-BY-SA-4.0", "CC-BY-NC-4.0", "CC-BY-NC-SA-4.0",
            "CC-BY-ND-4.0", "CC-BY-NC-ND-4.0", "openrail", "openrail++", "creativeml-openrail-m",
            "bigscience-openrail-m", "bigcode-openrail-m", "Unlicense", "other"}


def test_catalog_covers_the_licenses_model_authors_use() -> None:
    keys = {e.key for e in lic.catalog()}
    assert REQUIRED <= keys
    assert set(MARKERS) | NOT_SHIPPED == keys
    assert lic.catalog()[-1].is_other


@pytest.mark.parametrize("key", sorted(MARKERS))
def test_every_shipped_text_is_the_full_license(key: str) -> None:
    entry = lic.get(key)
    path = lic.licenses_dir() / str(entry.text_file)
    assert path.is_file()
    text = lic.license_text(entry)
    assert " ".join(MARKERS[key].split()) in " ".join(text.split())
    floor = 1000 if key in ("MIT", "BSD-2-Clause", "BSD-3-Clause", "Unlicense") else 6000
    assert len(text) > floor  # the whole text, not a summary
    # each text ends where the official one does
    endings = {"Apache-2.0": "limitations under the License.", "MIT": "SOFTWARE.",
               "creativeml-openrail-m": "arbitrarily-targeted use).", "openrail++": "arbitrarily-targeted use).",
               "GPL-3.0-only": "<https://www.gnu.org/philosophy/why-not-lgpl.html>."}
    if key in endings:
        assert text.rstrip().endswith(endings[key])


def test_entries_without_a_text_say_why_and_what_to_do() -> None:
    for key in NOT_SHIPPED:
        entry = lic.get(key)
        assert not entry.has_text and entry.text_missing
        with pytest.raises(LicenseProblem):
            lic.license_text(entry)
    assert "https://huggingface.co/spaces/bigscience/license" in str(lic.get("bigscience-openrail-m").text_missing)


def test_ids_are_canonical_spdx_and_accepted_by_the_hub() -> None:
    from packaging.licenses import canonicalize_license_expression

    for entry in lic.catalog():
        assert entry.hf in lic.hf_license_ids(), entry.key
        if entry.spdx is None:
            assert entry.is_other
            continue
        assert canonicalize_license_expression(entry.spdx) == entry.spdx
        assert entry.spdx.startswith("LicenseRef-") == (entry.family == "responsible-ai")
        if not entry.spdx.startswith("LicenseRef-"):
            assert entry.key == entry.spdx  # SPDX licenses are known by their SPDX id


@pytest.mark.parametrize(("typed", "key"), [
    ("apache-2.0", "Apache-2.0"), ("MIT", "MIT"), ("cc-by-nc-sa-4.0", "CC-BY-NC-SA-4.0"), ("Unlicense", "Unlicense"),
    ("gpl-3.0", "GPL-3.0-only"), ("GPL-3.0+", "GPL-3.0-or-later"), ("LGPL-3.0", "LGPL-3.0-only"),
    ("OPENRAIL++", "openrail++"), ("CreativeML Open RAIL-M", "creativeml-openrail-m"),
    ("LicenseRef-BigCode-OpenRAIL-M-v1", "bigcode-openrail-m"), ("  The   Unlicense ", "Unlicense"),
])
def test_ids_names_and_hub_ids_resolve(typed: str, key: str) -> None:
    assert lic.get(typed).key == key


def test_unknown_and_malformed_licenses_get_close_matches() -> None:
    with pytest.raises(LicenseProblem, match="Did you mean Apache-2.0"):
        lic.get("apache 2")
    with pytest.raises(LicenseProblem, match="Did you mean CC-BY-NC-4.0"):
        lic.get("cc by nc")
    with pytest.raises(LicenseProblem, match="not a valid SPDX license expression"):
        lic.canonical_spdx("MIT AND (")
    with pytest.raises(LicenseProblem, match="valid SPDX license expression, but not one"):
        lic.get("zlib")  # real SPDX, but no text shipped: the user is told to use 'other'
    with pytest.raises(LicenseProblem, match="No license was given"):
        lic.get("   ")
    assert lic.canonical_spdx("mit or apache-2.0") == "MIT OR Apache-2.0"


def test_questions_narrow_the_list_and_search_covers_everything() -> None:
    non_commercial = lic.choose({"commercial": False})
    assert [e.key for e in non_commercial[:-1]] == ["CC-BY-NC-4.0", "CC-BY-NC-SA-4.0", "CC-BY-NC-ND-4.0"]
    assert non_commercial[-1].is_other  # your own license is always offered
    copyleft = {e.key for e in lic.choose({"commercial": True, "share_alike": True})}
    assert {"GPL-3.0-only", "AGPL-3.0-only", "MPL-2.0", "CC-BY-SA-4.0"} <= copyleft and "MIT" not in copyleft
    assert {e.key for e in lic.choose({"attribution": False})} == {"CC0-1.0", "Unlicense", "other"}
    rail = {e.key for e in lic.choose({"use_restrictions": True})} - {"other"}
    assert rail == {"creativeml-openrail-m", "openrail++", "bigscience-openrail-m", "bigcode-openrail-m", "openrail"}
    assert len(lic.choose({})) == len(lic.catalog())
    assert [e.key for e in lic.choose({}, "mozilla")] == ["MPL-2.0", "other"]
    assert [e.key for e in lic.search("affero later")] == ["AGPL-3.0-or-later"]
    with pytest.raises(ValueError):
        lic.choose({"price": True})


def _severities(chosen: str, **upstream: str) -> list[tuple[str, str]]:
    return [(c.source, c.severity) for c in lic.conflicts(chosen, **upstream)]


def test_conflicts_with_the_base_model_and_data_set() -> None:
    found = lic.conflicts("MIT", base_model="cc-by-nc-4.0")
    assert [c.severity for c in found] == ["conflict"]
    assert "forbids commercial use" in found[0].message and "CC-BY-NC-4.0" in found[0].message
    assert _severities("MIT", base_model="CC-BY-SA-4.0") == [("base model", "conflict")]  # share-alike lost
    assert _severities("Apache-2.0", base_model="CC-BY-ND-4.0") == [("base model", "conflict")]  # no derivatives
    assert _severities("MIT", base_model="creativeml-openrail-m") == [("base model", "conflict")]  # restrictions lost
    assert _severities("CC-BY-NC-SA-4.0", base_model="CC-BY-SA-4.0")[0] == ("base model", "conflict")
    assert _severities("MIT", dataset="CC-BY-NC-4.0") == [("data set", "conflict")]
    assert _severities("GPL-3.0-only", base_model="GPL-3.0-or-later") == [("base model", "note")]
    assert _severities("GPL-3.0-or-later", base_model="GPL-3.0-only") == [("base model", "conflict")]
    assert _severities("CC-BY-NC-4.0", base_model="CC-BY-NC-4.0") == [("base model", "note")]  # give credit
    assert _severities("MIT", base_model="MIT") == [("base model", "note")]
    assert _severities("MIT", base_model="CC0-1.0") == []
    assert _severities("MIT", base_model="llama2") == [("base model", "note")]  # unknown: check it yourself
    assert _severities("MIT", base_model="", dataset="  ") == []
    both = lic.conflicts("MIT", base_model="CC-BY-NC-4.0", dataset="CC-BY-SA-4.0")
    assert [c.source for c in both] == ["base model", "data set"]


def test_one_decision_applied_everywhere() -> None:
    decision = lic.decide("mit", holder="Ada Lovelace", year=2025)
    text = lic.license_file_text(decision)
    assert text.startswith("MIT License\n\nCopyright (c) 2025 Ada Lovelace\n")
    assert "<" not in text.split("\n")[2]
    assert lic.card_metadata(decision) == {"license": "mit"}
    assert lic.wheel_license_fields(decision) == ("MIT", ("LICENSE",))
    assert lic.oci_license_label(decision) == "MIT"
    rail = lic.decide("openrail++")
    assert lic.card_metadata(rail) == {"license": "openrail++"}
    assert lic.wheel_license_fields(rail)[0] == lic.oci_license_label(rail) == "LicenseRef-CreativeML-OpenRAIL-PlusPlus-M"
    assert "CreativeML Open RAIL++-M License" in lic.license_file_text(rail)
    bsd = lic.decide("BSD-3-Clause", holder="Acme", year=2024)
    assert lic.license_file_text(bsd).startswith("Copyright (c) 2024 Acme.")


def test_decisions_that_cannot_be_applied_say_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(LicenseProblem, match="copyright holder"):
        lic.decide("MIT")
    with pytest.raises(LicenseProblem, match="needs a name"):
        lic.decide("other", custom_file=str(tmp_path / "x.txt"))
    with pytest.raises(LicenseProblem, match="does not exist"):
        lic.decide("other", custom_name="Acme License", custom_file=str(tmp_path / "missing.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(LicenseProblem, match="is empty"):
        lic.decide("other", custom_name="Acme License", custom_file=str(empty))
    binary = tmp_path / "weights.bin"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(LicenseProblem, match="not plain text"):
        lic.decide("other", custom_name="Acme License", custom_file=str(binary))
    with pytest.raises(LicenseProblem, match="bigscience/license"):
        lic.decide("bigscience-openrail-m")  # no shipped text: the user must give the official file
    own = tmp_path / "LICENSE.txt"
    own.write_text("BigScience Open RAIL-M License\n(the official text)\n", encoding="utf-8")
    given = lic.decide("bigscience-openrail-m", custom_file=str(own))
    assert lic.license_file_text(given).startswith("BigScience Open RAIL-M License")
    assert lic.card_metadata(given) == {"license": "bigscience-openrail-m"}
    with pytest.raises(LicenseProblem, match="not a web address"):
        lic.decide("other", custom_name="Acme", custom_file=str(own), custom_link="LICENSE please")


def test_own_license_in_any_language_round_trips(tmp_path: Path) -> None:
    text_file = tmp_path / "许可证.txt"
    text_file.write_text("示例公司模型许可证\n\n仅限研究使用。\n", encoding="utf-8")
    decision = lic.decide("other", custom_name="示例公司模型许可证", custom_file=str(text_file), holder="张三",
                          base_model_license="cc-by-nc-4.0")
    meta = lic.card_metadata(decision)
    assert meta["license"] == "other" and meta["license_link"] == "LICENSE"
    assert meta["license_name"].startswith("custom-") and meta["license_name"].isascii()
    expression = lic.spdx_expression(decision)
    assert expression.startswith("LicenseRef-custom-") and lic.canonical_spdx(expression) == expression
    assert lic.license_file_text(decision) == "示例公司模型许可证\n\n仅限研究使用。\n"
    ascii_name = lic.decide("other", custom_name="Acme Model License v2", custom_file=str(text_file))
    assert lic.card_metadata(ascii_name)["license_name"] == "acme-model-license-v2"
    assert lic.oci_license_label(ascii_name) == "LicenseRef-Acme-Model-License-v2"
    saved = lic.save_decision(decision, tmp_path / "project")
    assert "示例公司模型许可证" in saved.read_text(encoding="utf-8")  # stored as text, not \u escapes
    assert lic.load_decision(saved) == decision
    assert not list((tmp_path / "project").glob("*.part"))


def test_damaged_saved_decisions_are_reported(tmp_path: Path) -> None:
    bad = tmp_path / "license.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(LicenseProblem, match="cannot be read"):
        lic.load_decision(bad)
    bad.write_text(json.dumps({"holder": "x"}), encoding="utf-8")
    with pytest.raises(LicenseProblem, match="names no license"):
        lic.load_decision(bad)
    with pytest.raises(LicenseProblem, match="no saved license decision"):
        lic.load_decision(tmp_path / "none.json")
    assert LicenseDecision.from_dict({"license": "MIT", "unknown_field": 1}).license == "MIT"


def test_cli_lists_and_shows_licenses() -> None:
    listed = run_cli("license", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {e["id"] for e in json.loads(listed.stdout)} == {e.key for e in lic.catalog()}
    narrowed = run_cli("license", "list", "--commercial", "no", "--share-alike", "yes")
    assert narrowed.returncode == 0
    assert narrowed.stdout.split()[0] == "CC-BY-NC-SA-4.0" and "MIT" not in narrowed.stdout
    shown = run_cli("license", "show", "apache-2.0")
    assert shown.returncode == 0
    assert "Apache License 2.0" in shown.stdout and "END OF TERMS AND CONDITIONS" in shown.stdout
    unknown = run_cli("license", "show", "apache")
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert "Did you mean Apache-2.0" in unknown.stderr and "Traceback" not in unknown.stderr
