"""Evaluation data: what the models are run on to measure accuracy or agreement.

Everything is loaded into an :class:`EvalData`: one array per model input (first axis = samples), and
integer class labels when the data has them. :func:`load_data` reads an ``.npz``, a folder of images (one
sub-folder per class), or a CSV table, and checks that it fits the model; with no data it picks the bundled
digits (for models shaped like the sample) or makes random inputs from the model's signature.
"""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..deps import require
from ..document import Dim, ModelDocument, ValueInfo
from ..errors import CorruptFile, FileProblem, ModelNotFound, UnsupportedFormat
from ..jobs import Job

SYNTHETIC_SAMPLES = 64
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
LABEL_COLUMNS = ("label", "y", "target")
_DIGITS_SHAPE = (1, 8, 8)
_DIGITS_CLASSES = 10


@dataclass(frozen=True)
class EvalData:
    """Inputs (and optional labels) to run models on."""

    inputs: dict[str, Any]  # input name -> numpy array, first axis = samples
    labels: Any | None  # numpy int array of class labels, or None
    source: str  # plain words, e.g. "the bundled digits test split (450 images)"
    synthetic: bool = False  # random or made-up inputs: figures say little about real accuracy
    notes: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values()))) if self.inputs else 0

    def batches(self, size: int) -> Iterator[dict[str, Any]]:
        for start in range(0, len(self), size):
            yield {k: v[start:start + size] for k, v in self.inputs.items()}

    def subset(self, n: int) -> EvalData:
        """The first ``n`` samples."""
        return EvalData({k: v[:n] for k, v in self.inputs.items()},
                        None if self.labels is None else self.labels[:n], self.source, self.synthetic, self.notes)


def sample_data() -> EvalData:
    """The bundled, labelled digits test split that goes with the sample model."""
    from ...resources import sample_dir

    data = load_npz(sample_dir() / "digits_test.npz", input_name="image")
    return EvalData(data.inputs, data.labels, f"the bundled digits test split ({len(data)} images)")


def load_npz(path: Path, input_name: str) -> EvalData:
    """An ``.npz`` with ``x`` (inputs) and optionally ``y`` (integer labels)."""
    return _read_npz(Path(path), {input_name: ("x",)})


# --- loading for a model ------------------------------------------------------------------------------


def load_data(path: str | Path | None, model_path: Path, *, job: Job | None = None) -> EvalData:
    """The data at ``path`` (``.npz``, image folder or ``.csv``), made to fit the ONNX model at ``model_path``.

    ``None`` gives the bundled digits when the model's input is [*, 1, 8, 8] float, otherwise random inputs
    shaped like the model's (``synthetic=True``). Raises a :class:`FileProblem` naming the file and the
    mismatch when the data does not fit the model.
    """
    job = job or Job()
    doc = onnx_document(model_path, job=job)
    if path is None:
        data = _default_data(doc)
        where = doc.path
    else:
        where = Path(path)
        if not where.exists():
            raise ModelNotFound(f"There is no data file or folder at {where}.", path=where)
        suffix = where.suffix.lower()
        if where.is_dir():
            data = _load_image_folder(where, doc, job)
        elif suffix == ".npz":
            names = [v.name for v in doc.inputs]
            data = _read_npz(where, {names[0]: ("x", names[0])} if len(names) == 1 else {n: (n,) for n in names})
        elif suffix in (".csv", ".tsv"):
            data = _load_csv(where, doc, job)
        else:
            raise UnsupportedFormat(f"{where.name} is not a kind of data Model Workbench can read.",
                                    hint="Give an .npz file (arrays x and y), a .csv table, or a folder of images "
                                         "with one sub-folder per class.", path=where)
    arrays, notes = fit_inputs(data, doc, path=where)
    _check_labels(data, doc, where)
    return replace(data, inputs=arrays, notes=data.notes + tuple(notes))


def onnx_document(model_path: Path, *, job: Job | None = None) -> ModelDocument:
    """Open ``model_path`` and make sure it is an ONNX model (the only kind evaluation can run)."""
    from ..formats import article, open_model

    doc = open_model(model_path, job=job)
    if doc.format != "onnx":
        raise UnsupportedFormat(f"{doc.path.name} is {article(doc.format_label)}, but models are evaluated with ONNX "
                                f"Runtime.",
                                hint="Export it to ONNX first (workbench export), then compare the .onnx file.",
                                path=doc.path)
    return doc


def fit_inputs(data: EvalData, doc: ModelDocument, *, path: Path | None = None) -> tuple[dict[str, Any], list[str]]:
    """The data's arrays keyed and typed as the model's inputs, plus notes on any conversion.

    Raises :class:`FileProblem` (naming the model, the data and the mismatch) when the data cannot be fed.
    """
    where = path if path is not None else doc.path
    problem = f"{doc.path.name} cannot run on {data.source}"
    if len(data) == 0:
        raise FileProblem(f"{problem}: the data has no samples.", path=where)
    specs = doc.inputs
    if len(specs) == 1 and len(data.inputs) == 1:
        pairs = [(specs[0], next(iter(data.inputs.values())))]
    else:
        missing = [v.name for v in specs if v.name not in data.inputs]
        if missing:
            raise FileProblem(f"{problem}: the model needs the input(s) {', '.join(missing)}, and the data has "
                              f"{', '.join(data.inputs)}.", hint="Name the arrays like the model's inputs.", path=where)
        pairs = [(v, data.inputs[v.name]) for v in specs]
    arrays: dict[str, Any] = {}
    notes: list[str] = []
    for spec, array in pairs:
        _check_shape(spec, array, problem, where)
        arrays[spec.name], note = _cast(spec, array, problem, where)
        if note:
            notes.append(f"{doc.path.name}: {note}")
    return arrays, notes


def numpy_dtype(dtype: str | None) -> Any:
    """The NumPy dtype for an ONNX element type name such as 'float32', or None when NumPy has none."""
    import numpy as np

    if dtype is None or dtype.startswith(("bfloat", "float8", "float4", "int4", "uint4", "string", "complex")):
        return None
    try:
        return np.dtype(dtype)
    except TypeError:
        return None


def class_count(doc: ModelDocument) -> int | None:
    """Number of classes, when the first output is [batch, classes] with a fixed class count."""
    shape = doc.outputs[0].shape if doc.outputs else None
    if shape is not None and len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 0:
        return shape[1]
    return None


def _check_shape(spec: ValueInfo, array: Any, problem: str, where: Path) -> None:
    shape = spec.shape
    if shape is None:
        return
    if not shape:
        raise FileProblem(f"{problem}: its input {spec.name} is a single value with no batch axis, which cannot be "
                          f"evaluated sample by sample.", path=where)
    want = _shape_text(shape)
    if array.ndim != len(shape) or any(isinstance(d, int) and d != n for d, n in zip(shape[1:], array.shape[1:])):
        raise FileProblem(f"{problem}: its input {spec.name} needs shape {want}, but the data has "
                          f"{_shape_text(array.shape)}.",
                          hint="Give data shaped like the model's input (the first axis is the samples).", path=where)


def _cast(spec: ValueInfo, array: Any, problem: str, where: Path) -> tuple[Any, str]:
    import numpy as np

    want = numpy_dtype(spec.dtype)
    if want is None:
        raise FileProblem(f"{problem}: its input {spec.name} has the type {spec.dtype}, which evaluation cannot feed.",
                          path=where)
    have = array.dtype
    if have == want:
        return np.ascontiguousarray(array), ""
    if have.kind not in "biuf":
        raise FileProblem(f"{problem}: the data for input {spec.name} holds {have} values, not numbers.", path=where)
    if want.kind in "biu" and have.kind == "f" and (not np.all(np.isfinite(array))
                                                    or not np.array_equal(array, np.round(array))):
        raise FileProblem(f"{problem}: its input {spec.name} takes whole numbers ({want}), but the data has "
                              f"fractions.", path=where)
    if want.kind in "biu" and have.kind in "iuf":
        info = np.iinfo(want) if want.kind != "b" else None
        if info is not None and array.size and (array.min() < info.min or array.max() > info.max):
            raise FileProblem(f"{problem}: the values for input {spec.name} do not fit its type {want}.", path=where)
    note = ""
    if have.kind in "biu" and want.kind == "f":
        note = f"the integer values for input {spec.name} were converted to {want} as they are (not rescaled)."
    elif have.kind == "f" and want.kind == "f" and want.itemsize < have.itemsize and want.itemsize < 4:
        note = f"the inputs were rounded from {have} to {want}, the type its input {spec.name} takes."
    return np.ascontiguousarray(array.astype(want)), note


def _check_labels(data: EvalData, doc: ModelDocument, where: Path) -> None:
    import numpy as np

    if data.labels is None:
        return
    labels = data.labels
    if len(labels) != len(data):
        raise FileProblem(f"{where.name}: there are {len(data)} samples but {len(labels)} labels.", path=where)
    if labels.size and labels.min() < 0:
        raise FileProblem(f"{where.name}: the labels include {int(labels.min())}; class labels must be 0 or more.",
                          path=where)
    classes = class_count(doc)
    if classes is not None and labels.size and int(np.max(labels)) >= classes and where.is_dir():
        raise FileProblem(f"{where.name} has {int(np.max(labels)) + 1} class folders, but {doc.path.name} has only "
                          f"{classes} classes.", hint="Keep one sub-folder per class the model knows.", path=where)
    if classes is not None and labels.size and int(np.max(labels)) >= classes:
        raise FileProblem(f"{where.name}: the labels go up to {int(np.max(labels))}, but {doc.path.name} has only "
                          f"{classes} classes (0 to {classes - 1}).",
                          hint="Check that the data belongs to this model and that labels count from 0.", path=where)


def _shape_text(shape: tuple[Dim, ...] | tuple[int, ...]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _int_labels(y: Any, path: Path) -> Any:
    import numpy as np

    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.dtype.kind not in "biuf":
        raise CorruptFile(f"{path.name}: the labels must be one whole number per sample (got {y.dtype} values shaped "
                          f"{list(y.shape)}).", path=path)
    if y.dtype.kind == "f" and (not np.all(np.isfinite(y)) or not np.array_equal(y, np.round(y))):
        raise CorruptFile(f"{path.name}: the labels must be whole class numbers, but some have fractions.", path=path)
    return y.astype(np.int64)


# --- the readers ----------------------------------------------------------------------------------------


def _read_npz(path: Path, wanted: dict[str, tuple[str, ...]]) -> EvalData:
    """Arrays from an ``.npz``: for each model input, the first of its acceptable array names; ``y`` = labels."""
    import numpy as np

    if not path.exists():
        raise ModelNotFound(f"There is no data file at {path}.", path=path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            inputs = {}
            for name, keys in wanted.items():
                key = next((k for k in keys if k in npz.files), None)
                if key is None:
                    raise CorruptFile(f"{path.name} has no array named {' or '.join(repr(k) for k in keys)} (it has: "
                                      f"{', '.join(npz.files) or 'nothing'}).",
                                      hint="Save the inputs as x and the labels as y: np.savez(path, x=..., y=...)."
                                      if keys[0] == "x" else "Save one array per model input, named like the input, "
                                      "and the labels as y.", path=path)
                inputs[name] = npz[key]
            y = npz["y"] if "y" in npz.files else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise FileProblem(f"{path.name} is not a readable .npz file ({exc}).", path=path) from None
    lengths = {len(a) if a.ndim else 0 for a in inputs.values()}
    if len(lengths) != 1:
        raise CorruptFile(f"{path.name}: the input arrays have different numbers of samples.", path=path)
    n = lengths.pop()
    if y is not None and len(y) != n:
        raise CorruptFile(f"{path.name}: x has {n} samples but y has {len(y)} labels.", path=path)
    return EvalData(inputs, None if y is None else _int_labels(y, path), f"{path.name} ({n} samples)")


def _default_data(doc: ModelDocument) -> EvalData:
    """The bundled digits for models shaped like the sample, else random inputs made from the signature."""
    import numpy as np

    specs = doc.inputs
    if (len(specs) == 1 and specs[0].shape is not None and len(specs[0].shape) == 4
            and tuple(specs[0].shape[1:]) == _DIGITS_SHAPE and (specs[0].dtype or "").startswith("float")):
        digits = sample_data()
        note = (f"No data was given; {doc.path.name} takes [*, 1, 8, 8] images like the bundled sample, so it was "
                f"run on the bundled digits test split.")
        if class_count(doc) not in (None, _DIGITS_CLASSES):
            return EvalData(digits.inputs, None, digits.source, notes=(
                note + f" Its output does not have {_DIGITS_CLASSES} classes, so the digit labels were not used.",))
        return replace(digits, notes=(note,))
    rng = np.random.default_rng(0)
    inputs = {}
    for spec in specs:
        if spec.shape is None:
            raise FileProblem(f"{doc.path.name} does not record the shape of its input {spec.name}, so no test "
                              f"inputs can be made up for it.", hint="Give data with --data.", path=doc.path)
        shape = [SYNTHETIC_SAMPLES] + [d if isinstance(d, int) else 1 for d in spec.shape[1:]]
        dtype = numpy_dtype(spec.dtype)
        if dtype is None:
            raise FileProblem(f"{doc.path.name}: its input {spec.name} has the type {spec.dtype}, for which no test "
                              f"inputs can be made up.", hint="Give data with --data.", path=doc.path)
        if dtype.kind == "f":
            inputs[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            inputs[spec.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            inputs[spec.name] = rng.integers(0, 10, shape).astype(dtype)
    note = (f"No data was given, so the models were run on {SYNTHETIC_SAMPLES} random inputs made from "
            f"{doc.path.name}'s input shapes (numbers drawn from a normal distribution with mean 0 and standard "
            f"deviation 1; whole-number inputs from 0 to 9; sizes the model leaves open set to 1). How closely a "
            f"variant follows the original on random inputs says little about its accuracy on real data: give real "
            f"data with --data.")
    return EvalData(inputs, None, f"{SYNTHETIC_SAMPLES} random inputs", synthetic=True, notes=(note,))


def _load_image_folder(folder: Path, doc: ModelDocument, job: Job) -> EvalData:
    """A folder with one sub-folder of images per class, converted to the model's image input."""
    import numpy as np

    pil_image = require("PIL.Image", needed_for="Reading a folder of images", label="Pillow", pip="Pillow",
                        hint="Install it with `pip install Pillow`, or save the images as arrays in an .npz file.")
    if len(doc.inputs) != 1:
        raise FileProblem(f"{doc.path.name} has {len(doc.inputs)} inputs; a folder of images can only feed a model "
                          f"with one image input.", hint="Save the inputs as arrays in an .npz file.", path=folder)
    spec = doc.inputs[0]
    layout = _image_layout(spec, doc, folder)
    classes = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise FileProblem(f"{folder.name} has no sub-folders; a folder of images needs one sub-folder per class "
                          f"(named after the class) with that class's images in it.", path=folder)
    files = [(f, i) for i, d in enumerate(classes) for f in sorted(d.iterdir())
             if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise FileProblem(f"The class folders in {folder.name} hold no images "
                          f"({', '.join(sorted(IMAGE_SUFFIXES))}).", path=folder)
    mode = "L" if layout.channels == 1 else "RGB"
    size = layout.size
    images = []
    for done, (file, _) in enumerate(files):
        job.progress(done, len(files), f"Reading {file.name}")
        try:
            with pil_image.open(file) as img:
                img = img.convert(mode)
                size = size or img.size
                if img.size != size:
                    img = img.resize(size, pil_image.Resampling.BILINEAR)
                images.append(np.asarray(img))
        except (OSError, ValueError, pil_image.DecompressionBombError) as exc:
            raise CorruptFile(f"{file.name} in {file.parent.name} is not a readable image ({exc}).", path=file) from None
    job.progress(len(files), len(files), "Images read")
    x = np.stack(images)  # N,H,W or N,H,W,3
    if layout.channels == 1 and layout.channel_axis is not None:
        x = x[..., None]
    if layout.channel_axis == 1:
        x = x.transpose(0, 3, 1, 2)
    want = numpy_dtype(spec.dtype)
    if want is not None and want == np.uint8:
        scaling = "kept as whole numbers 0..255 (the model takes uint8)"
    else:
        x = x.astype(np.float32) / np.float32(255)
        scaling = "scaled from 0..255 to 0..1 (no mean or standard-deviation normalisation)"
    names = ", ".join(f"{i} = {d.name}" for i, d in enumerate(classes[:12])) + (", ..." if len(classes) > 12 else "")
    preprocessing = (f"Images were converted to {'grey-scale' if mode == 'L' else 'RGB'}, resized to "
                     f"{size[0]}x{size[1]} pixels (bilinear) where needed, and {scaling}. If the model was trained "
                     f"with other preprocessing, save preprocessed arrays in an .npz file instead.")
    return EvalData({spec.name: x}, np.array([i for _, i in files], dtype=np.int64),
                    f"the images in {folder.name} ({len(files)} images, {len(classes)} classes)",
                    notes=(preprocessing, f"Classes are numbered by sorted folder name: {names}."))


@dataclass(frozen=True)
class _ImageLayout:
    channels: int  # 1 or 3
    channel_axis: int | None  # 1 (N,C,H,W), 3 (N,H,W,C), or None (N,H,W)
    size: tuple[int, int] | None  # (width, height), or None when the model leaves it open


def _image_layout(spec: ValueInfo, doc: ModelDocument, folder: Path) -> _ImageLayout:
    shape = spec.shape
    if shape is None or len(shape) not in (3, 4):
        raise FileProblem(f"{doc.path.name}'s input {spec.name} is {_shape_text(shape or ())}, not an image "
                          f"([batch, channels, height, width], [batch, height, width, channels] or "
                          f"[batch, height, width]), so {folder.name} cannot feed it.", path=folder)
    if len(shape) == 3:
        channels, axis, h, w = 1, None, shape[1], shape[2]
    elif shape[1] in (1, 3):
        channels, axis, h, w = int(shape[1]), 1, shape[2], shape[3]  # type: ignore[arg-type]
    elif shape[3] in (1, 3):
        channels, axis, h, w = int(shape[3]), 3, shape[1], shape[2]  # type: ignore[arg-type]
    else:
        raise FileProblem(f"{doc.path.name}'s input {spec.name} is {_shape_text(shape)}: no axis has 1 or 3 colour "
                          f"channels, so images cannot be fitted to it.",
                          hint="Save preprocessed arrays in an .npz file instead.", path=folder)
    size = (w, h) if isinstance(w, int) and isinstance(h, int) else None
    return _ImageLayout(channels, axis, size)


def _load_csv(path: Path, doc: ModelDocument, job: Job) -> EvalData:
    """A table: numeric feature columns, and optionally a label column named label, y or target."""
    import numpy as np

    specs = doc.inputs
    if len(specs) != 1 or specs[0].shape is None or len(specs[0].shape) != 2:
        shapes = ", ".join(f"{v.name} {_shape_text(v.shape or ())}" for v in specs)
        raise FileProblem(f"{path.name} is a table, but {doc.path.name} does not take table rows "
                          f"([batch, features]); its input is {shapes}.",
                          hint="Save the inputs as arrays in an .npz file instead.", path=path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            head = f.read(8192)
            f.seek(0)
            try:
                dialect: Any = csv.Sniffer().sniff(head, delimiters=",;\t")
            except csv.Error:
                dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
            rows = [r for r in csv.reader(f, dialect) if any(cell.strip() for cell in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CorruptFile(f"{path.name} is not a readable CSV table ({exc}).", path=path) from None
    if not rows:
        raise FileProblem(f"{path.name} has no rows.", path=path)
    header = rows[0] if not all(_is_number(c) for c in rows[0]) else None
    body = rows[1:] if header else rows
    names = [c.strip() for c in header] if header else [f"column {i + 1}" for i in range(len(rows[0]))]
    label_col = next((i for i, c in enumerate(names) if c.lower() in LABEL_COLUMNS), None)
    values = np.empty((len(body), len(names)), dtype=np.float64)
    for r, row in enumerate(body):
        if r % 1000 == 0:
            job.progress(r, len(body), f"Reading {path.name}")
        if len(row) != len(names):
            raise CorruptFile(f"{path.name}: row {r + 1 + bool(header)} has {len(row)} values, but the table has "
                              f"{len(names)} columns.", path=path)
        for c, cell in enumerate(row):
            try:
                values[r, c] = float(cell)
            except ValueError:
                raise CorruptFile(f"{path.name}: row {r + 1 + bool(header)}, column {names[c]} holds {cell!r}, which "
                                  f"is not a number.", hint="Every column except the label must be numeric.",
                                  path=path) from None
    features = [i for i in range(len(names)) if i != label_col]
    want = specs[0].shape[1]
    if isinstance(want, int) and len(features) != want:
        label_text = f" besides the label column {names[label_col]}" if label_col is not None else ""
        raise FileProblem(f"{path.name} has {len(features)} feature columns{label_text}, but {doc.path.name} takes "
                          f"{want} features per row.", hint=f"Name the label column one of: {', '.join(LABEL_COLUMNS)}.",
                          path=path)
    labels = None if label_col is None else _int_labels(values[:, label_col], path)
    notes = () if label_col is not None else (
        f"{path.name} has no label column ({', '.join(LABEL_COLUMNS)}), so models are compared by agreement only.",)
    return EvalData({specs[0].name: np.ascontiguousarray(values[:, features])}, labels,
                    f"{path.name} ({len(body)} rows)", notes=notes)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
