"""Step 4, License & card: choose a license by answering questions, and write the model card with a live preview.

The card is rebuilt from the form and the records (document, chosen variant, comparison) on every change until
the Markdown is edited by hand; then the hand-made text wins until "Rebuild from the form". Saving writes
README.md, license.json and card.json to the project folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.card import CardInfo, build_card, load_card_info, save_card, validate_card
from ..core.document import ModelDocument
from ..core.errors import WorkbenchError
from ..core.jobs import Job
from ..core.license import (
    DECISION_FILE,
    QUESTIONS,
    LicenseDecision,
    LicenseEntry,
    LicenseProblem,
    check,
    choose,
    conflicts,
    get,
    license_text,
    load_decision,
)
from ..core.project import Project, Variant
from .dialogs import show_error
from .qt import Qt, QtWidgets, Signal
from .tasks import Task

ANSWER_CHOICES = (("No preference", None), ("Yes", True), ("No", False))


class LicensePage(QtWidgets.QWidget):
    """The "License & card" step. Give it the document, the chosen variant and the comparison as they change."""

    saved = Signal(object, str)  # the LicenseDecision and the card's Markdown, once saved to the project

    def __init__(self, start_task: Any, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._start_task = start_task
        self.document: ModelDocument | None = None
        self.variant: Variant | None = None
        self.variant_document: ModelDocument | None = None
        self.comparison: dict[str, Any] | None = None
        self.folder: Path | None = None
        self.card_text = ""
        self.hand_edited = False
        self._updating = False

        self.intro = QtWidgets.QLabel()
        self.intro.setWordWrap(True)
        self.answers: dict[str, QtWidgets.QComboBox] = {}
        questions = QtWidgets.QFormLayout()
        questions.setRowWrapPolicy(QtWidgets.QFormLayout.RowWrapPolicy.WrapAllRows)
        for q in QUESTIONS:
            box = QtWidgets.QComboBox()
            for label, value in ANSWER_CHOICES:
                box.addItem(label, value)
            box.setToolTip(q.explanation)
            self.answers[q.key] = box
            questions.addRow(_wrapped(q.text), box)
        self.search = QtWidgets.QLineEdit(placeholderText="Search all licenses (name, id, words of the summary)")
        self.licenses = QtWidgets.QListWidget()
        self.licenses.setMinimumHeight(140)
        self.summary = QtWidgets.QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.text_button = QtWidgets.QPushButton("Read the full text…")
        self.holder = QtWidgets.QLineEdit(placeholderText="your name or organisation")
        self.custom_name = QtWidgets.QLineEdit(placeholderText="e.g. Acme Model License")
        self.custom_file_label = QtWidgets.QLabel("no file chosen")
        self.custom_file_button = QtWidgets.QPushButton("Choose the license file…")
        self.custom_file = ""
        self.base_license = QtWidgets.QLineEdit(placeholderText="e.g. cc-by-nc-4.0 (leave empty if none)")
        self.data_license = QtWidgets.QLineEdit(placeholderText="e.g. CC-BY-SA-4.0 (leave empty if none)")
        self.conflict_label = QtWidgets.QLabel()
        self.conflict_label.setWordWrap(True)
        self.details = QtWidgets.QFormLayout()
        self.details.addRow("Copyright holder", self.holder)
        self.details.addRow("License name", self.custom_name)
        self.details.addRow(self.custom_file_button, self.custom_file_label)
        self.details.addRow("Base model's license", self.base_license)
        self.details.addRow("Training data's license", self.data_license)

        self.name = QtWidgets.QLineEdit()
        self.description = _text_box("What the model does, in a few sentences.")
        self.intended_use = _text_box("What it is for, and who should use it.")
        self.limitations = _text_box("Where it fails or should not be used.")
        self.base_model = QtWidgets.QLineEdit(placeholderText="Hugging Face id, e.g. google/vit-base (optional)")
        card_form = QtWidgets.QFormLayout()
        card_form.addRow("Name", self.name)
        card_form.addRow("Description", self.description)
        card_form.addRow("Intended use", self.intended_use)
        card_form.addRow("Limitations", self.limitations)
        card_form.addRow("Base model", self.base_model)

        left = QtWidgets.QVBoxLayout()
        left.addWidget(self.intro)
        left.addWidget(QtWidgets.QLabel("<b>License</b>"))
        left.addLayout(questions)
        left.addWidget(self.search)
        left.addWidget(self.licenses)
        left.addWidget(self.summary)
        left.addWidget(self.text_button)
        left.addLayout(self.details)
        left.addWidget(self.conflict_label)
        left.addWidget(QtWidgets.QLabel("<b>Model card</b>"))
        left.addLayout(card_form)
        left.addStretch(1)
        left_box = QtWidgets.QWidget()
        left_box.setLayout(left)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidget(left_box)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(420)

        self.preview = QtWidgets.QTextBrowser()
        self.preview.setOpenExternalLinks(False)
        self.editor = QtWidgets.QPlainTextEdit()
        self.tabs = QtWidgets.QTabWidget()
        self.tabs.addTab(self.preview, "Preview")
        self.tabs.addTab(self.editor, "Edit Markdown")
        self.status = QtWidgets.QLabel()
        self.status.setWordWrap(True)
        self.rebuild_button = QtWidgets.QPushButton("Rebuild from the form")
        self.save_button = QtWidgets.QPushButton("Save with the project")
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.rebuild_button)
        buttons.addStretch(1)
        buttons.addWidget(self.save_button)
        right = QtWidgets.QVBoxLayout()
        right.addWidget(self.tabs, 1)
        right.addWidget(self.status)
        right.addLayout(buttons)
        layout = QtWidgets.QHBoxLayout(self)
        layout.addWidget(scroll)
        layout.addLayout(right, 1)

        for box in self.answers.values():
            box.currentIndexChanged.connect(self._fill_licenses)
        self.search.textChanged.connect(self._fill_licenses)
        self.licenses.currentItemChanged.connect(self._license_changed)
        self.text_button.clicked.connect(self.show_text)
        self.custom_file_button.clicked.connect(self.choose_license_file)
        for edit in (self.holder, self.custom_name, self.base_license, self.data_license, self.name, self.base_model):
            edit.textChanged.connect(self.refresh)
        for box in (self.description, self.intended_use, self.limitations):
            box.textChanged.connect(self.refresh)
        self.editor.textChanged.connect(self._edited)
        self.rebuild_button.clicked.connect(self.rebuild)
        self.save_button.clicked.connect(self.save)
        self._fill_licenses()
        self.set_document(None)

    # -- inputs from the rest of the window ----------------------------------------------------------------------
    def set_document(self, doc: ModelDocument | None) -> None:
        self.document, self.variant, self.variant_document, self.comparison = doc, None, None, None
        self.folder = Project.for_source(doc.path).output_dir if doc is not None else None
        self.hand_edited = False
        self.setEnabled(doc is not None)
        self.intro.setText("Open a model first." if doc is None else
                           f"Choose how others may use <b>{doc.path.name}</b>, and describe it for them.")
        if doc is not None:
            self._restore(doc)
        else:
            self._set_editor("")
        self.refresh()

    def set_variant(self, variant: Variant | None) -> Task | None:
        """The variant to publish; its file is opened in the background for its inputs and outputs."""
        self.variant, self.variant_document = variant, None
        self.refresh()
        if variant is None or self.document is None or variant.path == self.document.path:
            return None
        path = variant.path

        def work(job: Job) -> ModelDocument:
            from ..core.formats import open_model

            return open_model(path, job=job)

        task = Task(self, work, title=f"Reading {path.name}")
        task.success(self._variant_opened).failure(
            lambda exc, tb: show_error(self, exc, tb, doing=f"reading {path.name}"))
        return self._start_task(task)

    def set_comparison(self, comparison: Any) -> None:
        """The latest comparison (a Comparison or its ``to_dict()``), or None."""
        self.comparison = comparison.to_dict() if hasattr(comparison, "to_dict") else comparison
        self.refresh()

    def _variant_opened(self, doc: ModelDocument) -> None:
        if self.variant is not None and doc.path == self.variant.path:
            self.variant_document = doc
            self.refresh()

    def _restore(self, doc: ModelDocument) -> None:
        """Bring back the license and the card form saved for this model, if any."""
        assert self.folder is not None
        self._updating = True
        try:
            info = load_card_info(self.folder) or CardInfo(name=doc.path.stem)
            self.name.setText(info.name)
            self.description.setPlainText(info.description)
            self.intended_use.setPlainText(info.intended_use)
            self.limitations.setPlainText(info.limitations)
            self.base_model.setText(info.base_model)
            try:
                decision = load_decision(self.folder / DECISION_FILE)
                self.select_license(decision.license)
                self.holder.setText(decision.holder)
                self.custom_name.setText(decision.custom_name)
                self._set_custom_file(decision.custom_file)
                self.base_license.setText(decision.base_model_license)
                self.data_license.setText(decision.dataset_license)
            except LicenseProblem:
                pass  # nothing saved yet (or unreadable): start from the defaults
        finally:
            self._updating = False

    # -- the license ---------------------------------------------------------------------------------------------
    def answers_given(self) -> dict[str, bool | None]:
        return {key: box.currentData() for key, box in self.answers.items()}

    def _fill_licenses(self) -> None:
        current = self.current_entry()
        self.licenses.blockSignals(True)
        self.licenses.clear()
        for entry in choose(self.answers_given(), self.search.text()):
            item = QtWidgets.QListWidgetItem(entry.name)
            item.setData(Qt.ItemDataRole.UserRole, entry.key)
            item.setToolTip(entry.summary)
            self.licenses.addItem(item)
        self.licenses.blockSignals(False)
        keys = [self.licenses.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.licenses.count())]
        self.licenses.setCurrentRow(keys.index(current.key) if current and current.key in keys else 0)

    def select_license(self, identifier: str) -> None:
        """Select a license by any id or name, clearing the questions and search if they hide it."""
        key = get(identifier).key
        if key not in self.visible_keys():
            for box in self.answers.values():
                box.setCurrentIndex(0)
            self.search.clear()
        row = self.visible_keys().index(key)
        self.licenses.setCurrentRow(row)

    def visible_keys(self) -> list[str]:
        return [self.licenses.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.licenses.count())]

    def current_entry(self) -> LicenseEntry | None:
        item = self.licenses.currentItem()
        return get(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    def _license_changed(self) -> None:
        entry = self.current_entry()
        if entry is None:
            self.summary.setText("No license fits these answers.")
        else:
            items = "".join(f"<li><b>{label}</b> {text}</li>" for label, values in
                            (("May:", entry.may), ("Must:", entry.must), ("May not:", entry.may_not)) for text in values)
            missing = "" if entry.has_text or entry.is_other else f"<p><i>{entry.text_missing}</i></p>"
            self.summary.setText(f"<p><b>{entry.name}</b> ({entry.spdx or 'your own'}; Hugging Face "
                                 f"<code>{entry.hf}</code>)</p><p>{entry.summary}</p><ul>{items}</ul>{missing}")
        needs_file = entry is not None and not entry.has_text
        self.details.setRowVisible(self.custom_name, entry is not None and entry.is_other)
        self.details.setRowVisible(self.custom_file_button, needs_file)
        self.text_button.setEnabled(entry is not None and entry.has_text)
        self.refresh()

    def decision(self) -> LicenseDecision | None:
        entry = self.current_entry()
        if entry is None:
            return None
        return LicenseDecision(entry.key, holder=self.holder.text().strip(), custom_name=self.custom_name.text().strip(),
                               custom_file=self.custom_file, base_model_license=self.base_license.text().strip(),
                               dataset_license=self.data_license.text().strip())

    def choose_license_file(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Choose your license text", str(Path.home()),
                                                        "Text (*.txt *.md LICENSE*);;All files (*)")
        if path:
            self._set_custom_file(path)
            self.refresh()

    def _set_custom_file(self, path: str) -> None:
        self.custom_file = path
        self.custom_file_label.setText(Path(path).name if path else "no file chosen")

    def show_text(self) -> None:
        entry = self.current_entry()
        if entry is None or not entry.has_text:
            return
        dialog = QtWidgets.QDialog(self)
        dialog.setWindowTitle(entry.name)
        dialog.resize(640, 560)
        text = QtWidgets.QPlainTextEdit(license_text(entry))
        text.setReadOnly(True)
        QtWidgets.QVBoxLayout(dialog).addWidget(text)
        dialog.show()

    # -- the card ------------------------------------------------------------------------------------------------
    def card_info(self) -> CardInfo:
        return CardInfo(name=self.name.text(), description=self.description.toPlainText(),
                        intended_use=self.intended_use.toPlainText(), limitations=self.limitations.toPlainText(),
                        base_model=self.base_model.text().strip())

    def refresh(self) -> None:
        """Rebuild the card from the form (unless edited by hand), and update conflicts and the preview."""
        if self._updating:
            return
        decision = self.decision()
        notes: list[str] = []
        if decision is not None and self.document is not None:
            found = conflicts(decision.entry, base_model=decision.base_model_license, dataset=decision.dataset_license)
            self.conflict_label.setText("".join(
                f"<p style='color:{'#b00020' if c.severity == 'conflict' else '#555'}'>"
                f"{'⚠ ' if c.severity == 'conflict' else ''}{c.message}</p>" for c in found))
            if not self.hand_edited:
                text, notes = self._build(decision)
                self._set_editor(text)
        self._show(self.editor.toPlainText(), notes)

    def _build(self, decision: LicenseDecision) -> tuple[str, list[str]]:
        notes = []
        document = self.variant_document or self.document
        sources: dict[str, Any] = {"document": document, "variant": self.variant,
                                   "model_path": self.variant.path if self.variant else document.path if document else None}
        try:
            check(decision)
        except WorkbenchError as exc:
            notes.append(exc.user_message())
        try:
            return str(build_card(self.card_info(), decision, comparison=self.comparison, **sources)), notes
        except WorkbenchError as exc:
            if self.comparison is None:
                return "", notes + [exc.user_message()]
            notes.append(exc.user_message())  # e.g. the comparison did not measure this file: leave its figures out
        try:
            return str(build_card(self.card_info(), decision, **sources)), notes
        except WorkbenchError as exc:
            return "", notes + [exc.user_message()]

    def _set_editor(self, text: str) -> None:
        self._updating = True
        try:
            self.editor.setPlainText(text)
        finally:
            self._updating = False

    def _edited(self) -> None:
        if not self._updating:
            self.hand_edited = True
            self._show(self.editor.toPlainText(), [])

    def _show(self, text: str, notes: list[str]) -> None:
        self.card_text = text
        report = validate_card(text) if text.strip() else None
        body = text
        if report is not None and report.ok and text.lstrip().startswith("---"):
            _, _, rest = text.lstrip()[3:].partition("\n---")
            body = rest.partition("\n")[2]
        self.preview.setMarkdown(body)
        lines = list(notes)
        if report is not None:
            lines += report.problems
            if report.todos:
                lines.append(f"Still to write before publishing: {', '.join(report.todos)}.")
        if self.hand_edited:
            lines.append("You edited the Markdown by hand; the form no longer changes it (use Rebuild from the form).")
        self.status.setText("<br>".join(lines) if lines else "The card is complete.")
        self.save_button.setEnabled(bool(text.strip()) and self.folder is not None)

    def rebuild(self) -> None:
        self.hand_edited = False
        self.refresh()

    def save(self) -> Path | None:
        """Save README.md, license.json and card.json to the project folder; errors go to the error dialog."""
        decision = self.decision()
        if decision is None or self.folder is None:
            return None
        try:
            check(decision)
            path = save_card(self.folder, self.card_text, decision, self.card_info())
        except WorkbenchError as exc:
            show_error(self, exc, "", doing="saving the model card")
            return None
        self.status.setText(f"Saved to {path} (license in {path.parent / DECISION_FILE}).")
        self.saved.emit(decision, self.card_text)
        return path


def _text_box(placeholder: str) -> QtWidgets.QPlainTextEdit:
    box = QtWidgets.QPlainTextEdit()
    box.setPlaceholderText(placeholder)
    box.setFixedHeight(64)
    return box


def _wrapped(text: str) -> QtWidgets.QLabel:
    label = QtWidgets.QLabel(text)
    label.setWordWrap(True)
    return label

