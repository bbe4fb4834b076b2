"""Step 3, Compress: choose a recipe, make variants, and compare them with the original side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.document import ModelDocument
from ..core.errors import WorkbenchError
from ..core.evaluate.compare import Comparison, ModelResult
from ..core.jobs import Job
from ..core.optimize.recipes import RECIPES, Recipe
from ..core.project import Project, Variant
from ..core.text import format_bytes
from .dialogs import show_error
from .qt import Qt, QtGui, QtWidgets, Signal
from .tasks import Task

COLUMNS = ("Variant", "Accuracy", "Change", "Size", "Compressed", "Latency (median / p90)")
PYTORCH_FORMATS = ("torchscript", "torch-export", "pytorch-state-dict", "pytorch-checkpoint", "pytorch-module")


class CompressPage(QtWidgets.QWidget):
    """Runs recipes through the window's task runner; owns the project of the current document."""

    chosen_changed = Signal(object)  # the Variant chosen for publishing, or None
    measured = Signal(object)  # a new Comparison of the original and its variants

    def __init__(self, start_task: Any, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._start_task = start_task  # MainWindow._start: shows progress and Cancel
        self.document: ModelDocument | None = None
        self.project: Project | None = None
        self.comparison: Comparison | None = None
        self.data_path: Path | None = None

        self.intro = QtWidgets.QLabel()
        self.intro.setWordWrap(True)
        self.recipe = QtWidgets.QComboBox()
        for r in RECIPES:
            self.recipe.addItem(r.label, r.key)
        self.explanation = QtWidgets.QLabel()
        self.explanation.setWordWrap(True)
        self.amount = QtWidgets.QSpinBox(suffix=" %", minimum=5, maximum=95, value=50, singleStep=5)
        self.within = QtWidgets.QCheckBox("Keep the accuracy drop within")
        self.max_drop = QtWidgets.QDoubleSpinBox(suffix=" points", minimum=0.0, maximum=20.0, value=1.0,
                                                 singleStep=0.5, decimals=1)
        self.data_label = QtWidgets.QLabel()
        self.data_label.setWordWrap(True)
        self.data_button = QtWidgets.QPushButton("Choose evaluation data…")
        self.model_class = QtWidgets.QLineEdit(placeholderText="model.py:ClassName (for a state_dict)")
        self.input_shape = QtWidgets.QLineEdit(placeholderText="input shape, e.g. 1,3,224,224")
        self.run_button = QtWidgets.QPushButton("Make this variant")
        self.run_button.setDefault(True)
        self.compare_button = QtWidgets.QPushButton("Measure again")
        self.choose_button = QtWidgets.QPushButton("Use for publishing")
        self.remove_button = QtWidgets.QPushButton("Remove")
        self.folder_label = QtWidgets.QLabel()
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        form = QtWidgets.QFormLayout()
        form.addRow("Recipe", self.recipe)
        form.addRow("", self.explanation)
        form.addRow("Amount", self.amount)
        drop_row = QtWidgets.QHBoxLayout()
        drop_row.addWidget(self.within)
        drop_row.addWidget(self.max_drop)
        drop_row.addStretch(1)
        form.addRow("", drop_row)
        form.addRow("Model class", self.model_class)
        form.addRow("Input shape", self.input_shape)
        self.form = form
        form.addRow("Evaluate on", self.data_label)
        form.addRow("", self.data_button)
        left = QtWidgets.QVBoxLayout()
        left.addWidget(self.intro)
        left.addLayout(form)
        left.addWidget(self.run_button)
        left.addStretch(1)
        left.addWidget(self.folder_label)
        left_box = QtWidgets.QWidget()
        left_box.setLayout(left)
        left_box.setMaximumWidth(420)

        self.table = QtWidgets.QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSortingEnabled(False)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.verdict = QtWidgets.QLabel("Select a variant to see what its figures mean.")
        self.verdict.setWordWrap(True)
        self.warnings = QtWidgets.QLabel()
        self.warnings.setWordWrap(True)
        self.plot = QtWidgets.QLabel("The plot appears once variants are measured.")
        self.plot.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.plot.setMinimumHeight(220)
        buttons = QtWidgets.QHBoxLayout()
        for b in (self.choose_button, self.remove_button, self.compare_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        right = QtWidgets.QVBoxLayout()
        right.addWidget(self.table, 2)
        right.addLayout(buttons)
        right.addWidget(self.verdict)
        right.addWidget(self.warnings)
        right.addWidget(self.plot, 3)
        layout = QtWidgets.QHBoxLayout(self)
        layout.addWidget(left_box)
        layout.addLayout(right, 1)

        self.recipe.currentIndexChanged.connect(self._recipe_changed)
        self.within.toggled.connect(self.max_drop.setEnabled)
        self.data_button.clicked.connect(self.choose_data)
        self.run_button.clicked.connect(self.run_recipe)
        self.compare_button.clicked.connect(self.measure)
        self.choose_button.clicked.connect(self.choose_selected)
        self.remove_button.clicked.connect(self.remove_selected)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.set_document(None)

    # -- state ------------------------------------------------------------------------------------
    @property
    def is_pytorch(self) -> bool:
        return bool(self.document and self.document.format in PYTORCH_FORMATS)

    def reference(self) -> Path | None:
        """The ONNX form of the original: the file itself, or its export."""
        if self.document is None or self.project is None:
            return None
        if self.document.format == "onnx":
            return self.document.path
        exported = [v for v in self.project.variants if v.kind == "exported" and v.path.exists()]
        return exported[-1].path if exported else None

    def set_document(self, doc: ModelDocument | None) -> None:
        self.document = doc
        self.comparison = None
        self.project = Project.for_source(doc.path) if doc is not None and self.usable_for(doc) else None
        if doc is None:
            self.intro.setText("Open an ONNX or PyTorch model first.")
        elif self.project is None:
            self.intro.setText(f"{doc.format_label} files cannot be compressed. Export the model to ONNX first.")
        elif self.is_pytorch:
            self.intro.setText(f"<b>{doc.path.name}</b> is a PyTorch model. It is first converted to ONNX (the "
                               f"reference every variant is compared with); give its input shape, and for a "
                               f"state_dict the model class.")
        else:
            self.intro.setText(f"Make smaller or faster versions of <b>{doc.path.name}</b> and see what each costs "
                               f"in accuracy before you publish.")
        self.folder_label.setText(f"Variants are saved in {self.project.output_dir}" if self.project else "")
        self.form.setRowVisible(self.model_class, self.is_pytorch)
        self.form.setRowVisible(self.input_shape, self.is_pytorch)
        for w in (self.recipe, self.run_button, self.data_button):
            w.setEnabled(self.project is not None)
        self._recipe_changed()
        self._refresh_data_label()
        self._fill_table()

    @staticmethod
    def usable_for(doc: ModelDocument) -> bool:
        return doc.format == "onnx" or doc.format in PYTORCH_FORMATS

    def _recipe_changed(self) -> None:
        kind = RECIPES[self.recipe.currentIndex()]
        self.explanation.setText(kind.explanation)
        self.amount.setEnabled(kind.has_amount)
        self.within.setEnabled(kind.accuracy_aware)
        self.max_drop.setEnabled(kind.accuracy_aware and self.within.isChecked())
        if kind.needs_pytorch and not self.is_pytorch and self.document is not None:
            self.explanation.setText(kind.explanation + " Needs a PyTorch model; this one is ONNX.")
        self.run_button.setEnabled(self.project is not None and (not kind.needs_pytorch or self.is_pytorch))

    def _refresh_data_label(self) -> None:
        if self.data_path is not None:
            self.data_label.setText(str(self.data_path))
        elif self.document is not None and self.document.path.parent.name == "sample":
            self.data_label.setText("the bundled digits test split (labelled)")
        else:
            self.data_label.setText("nothing chosen: the bundled sample data if it fits the model, otherwise "
                                    "random inputs (figures then only show agreement, not accuracy)")

    def choose_data(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Choose evaluation data", str(Path.home()),
                                                        "Data (*.npz *.csv);;All files (*)")
        if path:
            self.data_path = Path(path)
            self._refresh_data_label()

    def current_recipe(self) -> Recipe:
        kind = RECIPES[self.recipe.currentIndex()]
        return Recipe(kind.key, self.amount.value() / 100 if kind.has_amount else None,
                      self.max_drop.value() / 100 if kind.accuracy_aware and self.within.isChecked() else None)

    def _pytorch_options(self) -> dict[str, Any]:
        shape_text = self.input_shape.text().strip()
        shape = tuple(int(x) for x in shape_text.replace("x", ",").split(",") if x.strip()) if shape_text else None
        return {"model_class": self.model_class.text().strip() or None, "input_shape": shape}

    # -- running ----------------------------------------------------------------------------------
    def run_recipe(self) -> Task | None:
        """Make the chosen variant, then measure everything side by side, in one background task."""
        if self.project is None:
            return None
        project, recipe, data_path = self.project, self.current_recipe(), self.data_path
        try:
            options = self._pytorch_options() if self.is_pytorch else {}
        except ValueError:
            show_error(self, WorkbenchError(f"The input shape '{self.input_shape.text()}' is not a list of whole "
                                            f"numbers.", hint="Write it like 1,3,224,224."), "",
                       doing="reading the input shape")
            return None
        reference = self.reference()

        def work(job: Job) -> tuple[Variant, Comparison]:
            from ..core.evaluate.datasets import load_data
            from ..core.optimize.recipes import apply_recipe, export_reference

            ref = reference
            if ref is None:
                ref = export_reference(project, trust=bool(self.document and self.document.trusted), job=job,
                                       **options).path
            data = load_data(data_path, ref, job=job)
            variant = apply_recipe(project, recipe, ref, data, job=job, **options)
            return variant, self._compare(project, ref, data, job)

        task = Task(self, work, title=f"Making the variant '{recipe.variant_name()}'")
        task.success(self._variant_made).failure(
            lambda exc, tb: show_error(self, exc, tb, doing="making the variant"))
        return self._start_task(task)

    def measure(self) -> Task | None:
        """Measure the original and all variants again (e.g. on other data)."""
        if self.project is None or self.reference() is None:
            return None
        project, ref, data_path = self.project, self.reference(), self.data_path
        assert ref is not None

        def work(job: Job) -> Comparison:
            from ..core.evaluate.datasets import load_data

            return self._compare(project, ref, load_data(data_path, ref, job=job), job)

        task = Task(self, work, title="Measuring the variants")
        task.success(self._measured).failure(lambda exc, tb: show_error(self, exc, tb, doing="measuring"))
        return self._start_task(task)

    @staticmethod
    def _compare(project: Project, reference: Path, data: Any, job: Job) -> Comparison:
        from ..core.evaluate.compare import compare
        from ..core.evaluate.plot import plot_comparison

        variants = [v.path for v in project.variants if v.kind in ("quantized", "pruned") and v.path.exists()]
        comparison = compare(reference, variants, data, job=job, latency_runs=30)
        plot_comparison(comparison, project.output_dir / "comparison.png")
        return comparison

    def _variant_made(self, result: tuple[Variant, Comparison]) -> None:
        self._measured(result[1])

    def _measured(self, comparison: Comparison) -> None:
        self.comparison = comparison
        self._fill_table()
        if self.project is not None:
            pixmap = QtGui.QPixmap(str(self.project.output_dir / "comparison.png"))
            if not pixmap.isNull():
                self.plot.setPixmap(pixmap.scaled(self.plot.width(), max(self.plot.height(), 220),
                                                  Qt.AspectRatioMode.KeepAspectRatio,
                                                  Qt.TransformationMode.SmoothTransformation))
        self.warnings.setText("".join(f"⚠ {w}<br>" for w in comparison.warnings))
        self.measured.emit(comparison)

    # -- the table --------------------------------------------------------------------------------
    def _fill_table(self) -> None:
        self.table.setRowCount(0)
        if self.project is None:
            return
        measured = {r.path.resolve(): r for r in self.comparison.results} if self.comparison else {}
        rows = [v for v in self.project.variants if v.kind != "exported" or self.is_pytorch]
        reference = self.reference()
        for variant in rows:
            row = self.table.rowCount()
            self.table.insertRow(row)
            result = measured.get(variant.path.resolve())
            if variant.kind == "exported":
                result = measured.get(reference.resolve()) if reference else None
            label = variant.name + ("  ✓ publish" if self.project.chosen == variant.name else "")
            cells = [label, *self._figures(result)]
            meaning = "the original" if result is None or result.is_original else " ".join(result.verdicts)
            for col, text in enumerate(cells):
                item = QtWidgets.QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, variant.name)
                item.setData(Qt.ItemDataRole.UserRole + 1, meaning if result is not None else "")
                item.setToolTip(meaning)
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        if self.table.rowCount():
            self.table.selectRow(self.table.rowCount() - 1)
        self._selection_changed()

    @staticmethod
    def _figures(r: ModelResult | None) -> list[str]:
        if r is None:
            return ["not measured yet", "", "", "", ""]
        if r.accuracy is not None:
            quality = f"{r.accuracy:.1%}"
            change = "" if r.is_original else _points(r.accuracy_drop, r.drop_ci)
        else:
            quality = f"{r.agreement:.1%} agree" if r.agreement is not None else (
                f"cosine {r.cosine_mean:.4f}" if r.cosine_mean is not None else "")
            change = "" if r.is_original or r.flips is None else f"{r.flips} flipped"
        latency = f"{r.latency.median_ms:.2f} / {r.latency.p90_ms:.2f} ms" if r.latency else ""
        return [quality, change, format_bytes(r.size_bytes), format_bytes(r.gzip_size_bytes), latency]

    def selected_name(self) -> str | None:
        items = self.table.selectedItems()
        return items[0].data(Qt.ItemDataRole.UserRole) if items else None

    def _selection_changed(self) -> None:
        name = self.selected_name()
        items = self.table.selectedItems()
        meaning = items[0].data(Qt.ItemDataRole.UserRole + 1) if items else ""
        self.verdict.setText(f"<b>{name}</b>: {meaning}" if name and meaning else
                             "Select a variant to see what its figures mean.")
        self.choose_button.setEnabled(name is not None)
        self.remove_button.setEnabled(name is not None and name != "original")
        self.compare_button.setEnabled(self.reference() is not None)

    def choose_selected(self) -> None:
        name = self.selected_name()
        if self.project is None or name is None:
            return
        self.project.choose(name)
        self._fill_table()
        self.chosen_changed.emit(self.project.get(name))

    def remove_selected(self) -> None:
        name = self.selected_name()
        if self.project is None or name is None or name == "original":
            return
        variant = self.project.get(name)
        self.project.remove(name)
        for f in [variant.path, *(Path(p) for p in variant.result.get("output_files", variant.result.get("files", [])))]:
            if f.parent == self.project.output_dir:
                f.unlink(missing_ok=True)  # only files we made, in our own folder
        if self.comparison is not None:
            self.comparison = None
        self._fill_table()


def _points(drop: float | None, ci: tuple[float, float] | None) -> str:
    if drop is None:
        return ""
    def pts(x: float) -> str:
        return f"{round(x * 100, 1) + 0.0:+.1f}"  # + 0.0 turns -0.0 into 0.0

    text = f"{pts(-drop)} points"
    if ci is not None:
        text += f" ({pts(-ci[1])} to {pts(-ci[0])})"
    return text
