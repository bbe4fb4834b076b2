"""A pip-installable wheel holding an ONNX model, its inference code and a console command.

``plan_wheel`` checks the name (PEP 503), version (PEP 440), license (SPDX, PEP 639) and model, and lays out
every file of the wheel as data; ``build_wheel`` writes that plan to a folder. The wheel is a zip written
directly (no build backend): we control the RECORD hashes, stream the model into the archive without loading
it in memory, and fix every timestamp, permission and the entry order, so the same inputs give the same bytes.

Inside the wheel: ``<module>/__init__.py`` (``load()``, ``predict()``, ``signature()``, ``main()``: see
``inference_template.py``), ``<module>/model/model.onnx`` with its external data, and the ``.dist-info``
with Metadata-Version 2.4 (the model card as the description; ``License-Expression``, ``License-File``s
under ``licenses/``), the console script ``<name>-predict`` and RECORD. Dependencies: numpy and onnxruntime.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import keyword
import os
import re
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ... import __version__
from ..document import ModelDocument, ValueInfo
from ..errors import FileProblem, UnsupportedFormat, WorkbenchError
from ..jobs import Job
from ..text import format_bytes, format_shape

PYPI_FILE_LIMIT = 100 * 1024 * 1024  # PyPI's default upload limit per file (projects may ask for more)
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # every entry's timestamp (the earliest a zip can hold), as SOURCE_DATE_EPOCH would
FILE_MODE = 0o100644  # regular file, rw-r--r--
CHUNK = 1 << 20
REQUIRES = ("numpy", "onnxruntime")
REQUIRES_PYTHON = ">=3.9"
_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)  # PEP 508 / packaging spec
_TEMPLATE = Path(__file__).with_name("inference_template.py")
_TAKEN_MODULES = {"numpy", "onnxruntime", "onnx", "test", "tests"}


class PackageSettingsError(WorkbenchError, ValueError):
    """A name, version, license or other setting of the package is not acceptable."""


@dataclass(frozen=True)
class WheelEntry:
    """One file of the wheel: streamed from ``source`` on disk, or generated ``data``."""

    arcname: str
    size: int
    source: Path | None = None
    data: bytes | None = None


@dataclass
class WheelPlan:
    """Everything the wheel will contain, checked and laid out, before anything is written."""

    model: Path
    name: str  # as the user wrote it (PyPI shows it so)
    project: str  # PEP 503 normalised, e.g. "digits-cnn"
    version: str  # PEP 440 normalised
    import_name: str  # the Python module, e.g. "digits_cnn"
    command: str  # the console script, e.g. "digits-cnn-predict"
    filename: str  # e.g. "digits_cnn-1.0.0-py3-none-any.whl"
    dist_info: str  # e.g. "digits_cnn-1.0.0.dist-info"
    license_expression: str | None
    entries: list[WheelEntry]  # in archive order, RECORD excluded (it is computed while writing)
    model_bytes: int  # the model and its external data
    inputs: list[ValueInfo] = field(default_factory=list)
    outputs: list[ValueInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def content_bytes(self) -> int:
        """Uncompressed size of everything in the wheel."""
        return sum(e.size for e in self.entries)

    @property
    def may_exceed_pypi_limit(self) -> bool:
        return self.model_bytes > PYPI_FILE_LIMIT

    def to_dict(self) -> dict[str, Any]:
        return {"model": str(self.model), "name": self.name, "project": self.project, "version": self.version,
                "import_name": self.import_name, "command": self.command, "filename": self.filename,
                "license_expression": self.license_expression, "model_bytes": self.model_bytes,
                "content_bytes": self.content_bytes, "files": [e.arcname for e in self.entries],
                "warnings": list(self.warnings)}


@dataclass
class WheelResult:
    """A built wheel: where it is and what it holds."""

    path: Path
    name: str
    version: str
    import_name: str
    command: str
    size_bytes: int
    sha256: str
    files: list[str]
    model_bytes: int
    seconds: float
    over_pypi_limit: bool
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "name": self.name, "version": self.version,
                "import_name": self.import_name, "command": self.command, "size_bytes": self.size_bytes,
                "sha256": self.sha256, "files": list(self.files), "model_bytes": self.model_bytes,
                "seconds": round(self.seconds, 3), "over_pypi_limit": self.over_pypi_limit,
                "warnings": list(self.warnings)}


# -- names, versions, licenses -------------------------------------------------------------------------


def normalize_name(name: str) -> str:
    """PEP 503 normal form: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def check_name(name: str) -> str:
    """``name`` (stripped) if it is a valid distribution name that also makes an importable module."""
    name = name.strip()
    if not _NAME.match(name):
        suggestion = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._") or "my-model"
        raise PackageSettingsError(f"'{name}' is not a valid package name: use letters, digits, '.', '_' and '-', "
                                   f"starting and ending with a letter or digit.", hint=f"For example '{suggestion}'.")
    module = import_name_for(name)
    if not module.isidentifier() or keyword.iskeyword(module):
        raise PackageSettingsError(f"The package name '{name}' would give the Python module '{module}', which "
                                   f"cannot be imported.", hint=f"Start it with a letter, e.g. 'model-{name}'.")
    if module in sys.stdlib_module_names or module in _TAKEN_MODULES:
        raise PackageSettingsError(f"The package name '{name}' would hide the Python module '{module}' that "
                                   f"it or its users need.", hint=f"Choose another name, e.g. '{name}-model'.")
    return name


def import_name_for(name: str) -> str:
    return re.sub(r"[-.]+", "_", normalize_name(name))


def check_version(version: str) -> str:
    """The PEP 440 normal form of ``version``."""
    from packaging.version import InvalidVersion, Version

    try:
        return str(Version(version.strip()))
    except InvalidVersion:
        raise PackageSettingsError(f"'{version}' is not a valid version number.",
                                   hint="Use a form like 1.0.0 or 0.2.1 (PEP 440).") from None


def check_license_expression(expression: str) -> str:
    """The canonical SPDX form of ``expression`` (e.g. ``mit`` -> ``MIT``)."""
    from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression

    try:
        return str(canonicalize_license_expression(expression.strip()))
    except InvalidLicenseExpression:
        raise PackageSettingsError(f"'{expression}' is not an SPDX license expression.",
                                   hint="Use identifiers such as MIT, Apache-2.0 or CC-BY-4.0, combined with "
                                        "AND/OR, or LicenseRef-<name> for your own terms.") from None


def _license_entries(files: dict[str, str | Path], dist_info: str) -> list[WheelEntry]:
    entries = []
    for name, content in sorted(files.items()):
        rel = PurePosixPath(name)
        if not name or "\\" in name or rel.is_absolute() or ".." in rel.parts or name != str(rel):
            raise PackageSettingsError(f"The license file name '{name}' must be a plain relative path, like LICENSE "
                                       f"or licenses/MODEL.txt.")
        if isinstance(content, Path):
            try:
                data = content.read_bytes()
            except OSError as exc:
                raise FileProblem(f"Cannot read the license file {content}: {exc.strerror or exc}.",
                                  path=content) from None
        else:
            data = content.encode("utf-8")
        entries.append(WheelEntry(f"{dist_info}/licenses/{rel}", len(data), data=data))
    return entries


# -- planning -------------------------------------------------------------------------------------------


def plan_wheel(model: str | os.PathLike[str], *, name: str, version: str, license_expression: str | None = None,
               license_files: dict[str, str | Path] | None = None, readme_markdown: str | None = None,
               summary: str | None = None, job: Job | None = None) -> WheelPlan:
    """Check the settings and the model, and lay out the wheel (nothing is written).

    ``license_files`` maps a name (``LICENSE``) to its text, or to a Path to read it from; ``readme_markdown``
    is the model card (a short usage page is written when it is None; a leading YAML metadata block, as Hugging
    Face cards have, is left out).
    """
    from ..formats import open_model

    job = job or Job()
    name, version = check_name(name), check_version(version)
    expression = check_license_expression(license_expression) if license_expression else None
    summary = " ".join((summary or f"The {name} model with its inference code, ready to pip install.").split())
    if len(summary) > 512:
        raise PackageSettingsError("The summary is longer than the 512 characters PyPI allows.")
    doc = open_model(model, job=job)
    if doc.format != "onnx":
        raise UnsupportedFormat(f"{doc.path.name} is {doc.format_label.lower()}; only ONNX models can be packaged.",
                                hint="Export it to ONNX first (the Compress step or `workbench export`).",
                                path=doc.path)
    project, module = normalize_name(name), import_name_for(name)
    dist = re.sub(r"[-_.]+", "_", name).lower()
    dist_info = f"{dist}-{version}.dist-info"
    plan = WheelPlan(doc.path, name, project, version, module, f"{project}-predict",
                     f"{dist}-{version}-py3-none-any.whl", dist_info, expression, [], doc.size_bytes,
                     list(doc.inputs), list(doc.outputs))
    readme = _without_front_matter(readme_markdown or "") or default_readme(plan)
    licenses = _license_entries(license_files or {}, dist_info)
    metadata = _metadata(plan, summary, readme, [e.arcname.split("/licenses/", 1)[1] for e in licenses])
    _check_metadata(metadata)
    package = [_generated(f"{module}/__init__.py", _init_source(plan).encode("utf-8")),
               _generated(f"{module}/__main__.py", b"from . import main\n\nraise SystemExit(main())\n"),
               *_model_entries(doc, module)]
    info = [_generated(f"{dist_info}/METADATA", metadata.encode("utf-8")),
            _generated(f"{dist_info}/WHEEL", f"Wheel-Version: 1.0\nGenerator: model-workbench ({__version__})\n"
                                             f"Root-Is-Purelib: true\nTag: py3-none-any\n".encode()),
            _generated(f"{dist_info}/entry_points.txt",
                       f"[console_scripts]\n{plan.command} = {module}:main\n".encode()),
            *licenses]
    plan.entries = sorted(package, key=lambda e: e.arcname) + sorted(info, key=lambda e: e.arcname)
    if not expression:
        plan.warnings.append("No license was given: without one, others may not legally use or share the model.")
    if "+" in version:
        plan.warnings.append(f"PyPI refuses local versions such as {version}; they only suit private indexes.")
    if plan.may_exceed_pypi_limit:
        plan.warnings.append(_size_warning(plan))
    return plan


def _size_warning(plan: WheelPlan, wheel_bytes: int | None = None) -> str:
    what = (f"The model alone is {format_bytes(plan.model_bytes)}" if wheel_bytes is None else
            f"The wheel is {format_bytes(wheel_bytes)}")
    return (f"{what}, over PyPI's default limit of {format_bytes(PYPI_FILE_LIMIT)} per file: PyPI will likely "
            f"refuse it unless the project was granted a higher limit. The Hugging Face Hub suits large models "
            f"better.")


def _without_front_matter(markdown: str) -> str:
    """The card without its leading YAML block (Hugging Face metadata, which PyPI would show as text)."""
    match = re.match(r"\A\s*---\r?\n.*?\r?\n---[ \t]*(\r?\n|\Z)", markdown, re.DOTALL)
    return (markdown[match.end():] if match else markdown).strip("\n")


def _model_entries(doc: ModelDocument, module: str) -> list[WheelEntry]:
    base = doc.path.resolve().parent
    entries = []
    for f in doc.files:
        if f.role == "model":
            arcname = f"{module}/model/model.onnx"
        else:
            rel = f.path.resolve().relative_to(base).as_posix()
            if rel == "model.onnx":
                raise PackageSettingsError(f"{doc.path.name} keeps its weights in a file named model.onnx, the name "
                                           f"the package gives the model itself.",
                                           hint="Save the model with another name for its external data.")
            arcname = f"{module}/model/{rel}"
        entries.append(WheelEntry(arcname, f.path.stat().st_size, source=f.path))
    return entries


def _init_source(plan: WheelPlan) -> str:
    template = _TEMPLATE.read_text(encoding="utf-8")
    body = template[template.index("from __future__ import annotations"):]
    header = (f'"""{plan.name} {plan.version}: the model {plan.model.name} and the code to run it.\n\n'
              f"``load()`` returns an onnxruntime session, ``predict(inputs)`` checks the inputs against the model's\n"
              f"signature and runs it, ``signature()`` describes the inputs and outputs; the command\n"
              f'``{plan.command} FILE.npy|FILE.npz [-o OUT]`` does the same on a file. Made with Model Workbench.\n"""\n\n')
    return header + body


def _metadata(plan: WheelPlan, summary: str, readme: str, license_names: list[str]) -> str:
    lines = ["Metadata-Version: 2.4", f"Name: {plan.name}", f"Version: {plan.version}", f"Summary: {summary}"]
    if plan.license_expression:
        lines.append(f"License-Expression: {plan.license_expression}")
    lines += [f"License-File: {n}" for n in license_names]
    lines += ["Keywords: onnx,model,inference", f"Requires-Python: {REQUIRES_PYTHON}"]
    lines += [f"Requires-Dist: {r}" for r in REQUIRES]
    lines.append("Description-Content-Type: text/markdown; charset=UTF-8")
    return "\n".join(lines) + "\n\n" + readme.rstrip("\n") + "\n"


def _check_metadata(text: str) -> None:
    """Refuse metadata that ``twine check`` (and so PyPI) would refuse: the same parser and the same renderer."""
    from packaging.metadata import ExceptionGroup, Metadata, parse_email

    raw, unparsed = parse_email(text)
    try:
        if unparsed:
            raise ValueError("; ".join(unparsed))
        Metadata.from_raw(raw)
    except (ExceptionGroup, ValueError) as exc:
        problems = "; ".join(str(e) for e in getattr(exc, "exceptions", [exc]))
        raise PackageSettingsError(f"The package description would be refused by PyPI: {problems}.") from None
    try:
        from readme_renderer.markdown import render
    except ImportError:
        return
    if render(raw.get("description", "")) is None:
        raise PackageSettingsError("The model card cannot be shown on PyPI: its Markdown does not render.",
                                   hint="Check the card's Markdown, or install readme-renderer[md].")


def usage_markdown(plan: WheelPlan) -> str:
    """Install and usage instructions for the package, in Markdown (for a model card to include)."""
    if len(plan.inputs) == 1:
        call = "x"
    else:
        call = "{" + ", ".join(f'"{v.name}": x{n}' for n, v in enumerate(plan.inputs)) + "}"
    rows = [f"| {kind} | `{v.name}` | {v.dtype or '?'} | {format_shape(v.shape)} |"
            for kind, values in (("input", plan.inputs), ("output", plan.outputs)) for v in values]
    command_line = (f"Or from the command line: `{plan.command} inputs.npz -o outputs.npz` (a `.npy` file works "
                    f"for a model with one input). `{plan.import_name}.load()` returns the onnxruntime session.")
    return "\n".join([
        "## Install", "", "```", f"pip install {plan.project}", "```", "",
        "## Use", "", "```python", f"import {plan.import_name}", "",
        f"outputs = {plan.import_name}.predict({call})  # a dict: output name -> numpy array", "```", "",
        command_line, "",
        "## Signature", "", "| | name | type | shape |", "|---|---|---|---|", *rows, ""])


def default_readme(plan: WheelPlan) -> str:
    return f"# {plan.name}\n\nThe model `{plan.model.name}`, packaged with its inference code.\n\n" + usage_markdown(plan)


# -- building -------------------------------------------------------------------------------------------


def build_wheel(plan: WheelPlan, out_dir: str | os.PathLike[str], *, job: Job | None = None) -> WheelResult:
    """Write the planned wheel into ``out_dir`` (atomically: a reader never sees half a wheel)."""
    job = job or Job()
    start = time.perf_counter()
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=out_dir, prefix=f".{plan.filename}.", suffix=".part")
    except OSError as exc:
        raise FileProblem(f"Cannot write in {out_dir}: {exc.strerror or exc}.", hint="Choose a folder you can "
                          "write to.", path=out_dir) from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            _write_zip(raw, plan, job)
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o644)
        final = out_dir / plan.filename
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    size = final.stat().st_size
    warnings = [w for w in plan.warnings if w != _size_warning(plan)]  # the estimate gives way to the real size
    if size > PYPI_FILE_LIMIT:
        warnings.append(_size_warning(plan, size))
    return WheelResult(final, plan.name, plan.version, plan.import_name, plan.command, size, file_sha256(final),
                       [e.arcname for e in plan.entries] + [_record_name(plan)], plan.model_bytes,
                       time.perf_counter() - start, size > PYPI_FILE_LIMIT, warnings)


def package_pypi(model: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, name: str, version: str,
                 license_expression: str | None = None, license_files: dict[str, str | Path] | None = None,
                 readme_markdown: str | None = None, summary: str | None = None,
                 job: Job | None = None) -> WheelResult:
    """Plan and build the wheel of ``model`` into ``out_dir`` in one call."""
    plan = plan_wheel(model, name=name, version=version, license_expression=license_expression,
                      license_files=license_files, readme_markdown=readme_markdown, summary=summary, job=job)
    return build_wheel(plan, out_dir, job=job)


def _record_name(plan: WheelPlan) -> str:
    return f"{plan.dist_info}/RECORD"


def _generated(arcname: str, data: bytes) -> WheelEntry:
    return WheelEntry(arcname, len(data), data=data)


def _write_zip(raw: io.BufferedWriter, plan: WheelPlan, job: Job) -> None:
    total = plan.content_bytes or 1
    done = 0
    rows: list[tuple[str, str, str]] = []
    with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for entry in plan.entries:
            digest = hashlib.sha256()
            with archive.open(_zip_info(entry.arcname, entry.size), "w") as out:
                for chunk in _chunks(entry):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    job.progress(done, total, f"Packing {PurePosixPath(entry.arcname).name}")
            rows.append((entry.arcname, "sha256=" + _b64(digest.digest()), str(entry.size)))
        record = io.StringIO()
        csv.writer(record, lineterminator="\n").writerows([*rows, (_record_name(plan), "", "")])
        data = record.getvalue().encode("utf-8")
        with archive.open(_zip_info(_record_name(plan), len(data)), "w") as out:
            out.write(data)
    job.progress(total, total, "Packed")


def _chunks(entry: WheelEntry) -> Iterator[bytes]:
    if entry.data is not None:
        yield entry.data
        return
    assert entry.source is not None
    with open(entry.source, "rb") as fh:
        read = 0
        while chunk := fh.read(CHUNK):
            read += len(chunk)
            yield chunk
    if read != entry.size:
        raise FileProblem(f"{entry.source.name} changed while it was being packed.", hint="Build the package again.",
                          path=entry.source)


def _zip_info(arcname: str, size: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(arcname, date_time=ZIP_EPOCH)
    info.create_system = 3  # Unix, whatever this computer is, so permissions read the same everywhere
    info.external_attr = FILE_MODE << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    info.file_size = size  # decides up front (and so the same way every time) whether zip64 is needed
    return info


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
