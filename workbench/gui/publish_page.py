"""Step 5, Publish: send the chosen variant where people get models. Target now: a Python package on PyPI.

The page builds the wheel and uploads it in one background task (progress and Cancel in the window's status
bar). Tokens go into the keychain through "Save token…" and are never shown, logged or written to settings;
"Test connection" asks the index whether it takes them, publishing nothing.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..core import credentials as cr
from ..core.document import ModelDocument
from ..core.errors import WorkbenchError
from ..core.jobs import Job
from ..core.project import Variant, default_output_dir
from ..core.text import format_bytes
from .dialogs import show_error
from .qt import Qt, QtCore, QtWidgets, Signal
from .tasks import Task

INDEX_CHOICES = (("PyPI", cr.PYPI_UPLOAD_URL), ("TestPyPI (for trying things out)", cr.TESTPYPI_UPLOAD_URL),
                 ("Another index…", None))
SETTINGS_PREFIX = "publish/pypi/"


def _settings() -> QtCore.QSettings:
    """The window's settings (the same file as MainWindow's): only addresses and usernames, never secrets."""
    return QtCore.QSettings("ModelWorkbench", "Model Workbench")


class PyPIPanel(QtWidgets.QWidget):
    """The PyPI target: package name and version, the index, its credentials, and the actions."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = QtWidgets.QLineEdit(placeholderText="e.g. digits-cnn")
        self.version = QtWidgets.QLineEdit("0.1.0")
        self.license = QtWidgets.QLineEdit(placeholderText="SPDX, e.g. MIT or Apache-2.0 (from the License step)")
        self.index = QtWidgets.QComboBox()
        for label, url in INDEX_CHOICES:
            self.index.addItem(label, url)
        self.url = QtWidgets.QLineEdit(placeholderText="upload address, e.g. https://pypi.example.com/legacy/")
        self.username = QtWidgets.QLineEdit(cr.TOKEN_USERNAME)
        self.credential_label = QtWidgets.QLabel()
        self.credential_label.setWordWrap(True)
        self.save_token_button = QtWidgets.QPushButton("Save token…")
        self.test_button = QtWidgets.QPushButton("Test connection")
        self.build_button = QtWidgets.QPushButton("Build wheel only")
        self.publish_button = QtWidgets.QPushButton("Publish")
        self.publish_button.setDefault(True)

        form = QtWidgets.QFormLayout()
        form.addRow("Package name", self.name)
        form.addRow("Version", self.version)
        form.addRow("License", self.license)
        form.addRow("Index", self.index)
        form.addRow("Upload address", self.url)
        form.addRow("Username", self.username)
        form.addRow("Credentials", self.credential_label)
        self.form = form
        credential_buttons = QtWidgets.QHBoxLayout()
        credential_buttons.addWidget(self.save_token_button)
        credential_buttons.addWidget(self.test_button)
        credential_buttons.addStretch(1)
        form.addRow("", credential_buttons)
        actions = QtWidgets.QHBoxLayout()
        actions.addStretch(1)
        actions.addWidget(self.build_button)
        actions.addWidget(self.publish_button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addLayout(actions)
        layout.addStretch(1)

        s = _settings()
        self.index.setCurrentIndex(max(0, self.index.findText(str(s.value(SETTINGS_PREFIX + "index", "PyPI")))))
        self.url.setText(str(s.value(SETTINGS_PREFIX + "url", "")))
        self.username.setText(str(s.value(SETTINGS_PREFIX + "username", cr.TOKEN_USERNAME)))
        self.index.currentIndexChanged.connect(self._index_changed)
        self.url.editingFinished.connect(self.refresh_credentials)
        self.username.editingFinished.connect(self.refresh_credentials)
        self._index_changed()

    def upload_url(self) -> str:
        return self.index.currentData() or self.url.text().strip()

    def user(self) -> str:
        if self.index.currentData() is not None:
            return cr.TOKEN_USERNAME
        return self.username.text().strip() or cr.TOKEN_USERNAME

    def key(self) -> cr.CredentialKey:
        target = "testpypi" if self.upload_url() == cr.TESTPYPI_UPLOAD_URL else "pypi"
        return cr.key_for(target, self.upload_url() or None, self.user())

    def remember(self) -> None:
        """Keep the index choice for next time (an address holding a password is never kept)."""
        s = _settings()
        s.setValue(SETTINGS_PREFIX + "index", self.index.currentText())
        parts = urlsplit(self.url.text().strip())
        if not (parts.username or parts.password):
            s.setValue(SETTINGS_PREFIX + "url", self.url.text().strip())
        s.setValue(SETTINGS_PREFIX + "username", self.username.text().strip())

    def _index_changed(self) -> None:
        custom = self.index.currentData() is None
        self.form.setRowVisible(self.url, custom)
        self.form.setRowVisible(self.username, custom)
        if self.isVisible():  # the keychain is read only once the user is here (it may ask to be unlocked)
            self.refresh_credentials()

    def refresh_credentials(self) -> None:
        """Say whether a secret is saved for the current index, and where secrets are kept."""
        info = cr.backend_info()
        if self.index.currentData() is None and not self.url.text().strip():
            text = "Give the index's upload address."
        else:
            try:
                key = self.key()
                state = "saved" if cr.has_secret(key) else "not saved yet"
                text = f"{key.secret_label[0].upper()}{key.secret_label[1:]} for {html.escape(key.username)}: {state}."
            except WorkbenchError as exc:
                text = html.escape(exc.user_message())
        if info.secure:
            text += f" {html.escape(info.message)}"
        else:
            text += f"<br><b>Warning:</b> {html.escape(info.message)} {html.escape(info.hint or '')}"
        self.credential_label.setText(text)


class PublishPage(QtWidgets.QWidget):
    """The Publish step. Give it the document and the chosen variant; the License step gives the license and
    card through ``set_license`` and ``set_card``."""

    published = Signal(object)  # the PublishResult
    built = Signal(object)  # the WheelResult (also after "Build wheel only")

    def __init__(self, start_task: Any, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._start_task = start_task  # MainWindow._start: shows progress and Cancel
        self.document: ModelDocument | None = None
        self.variant: Variant | None = None
        self.license_files: dict[str, str | Path] = {}
        self.card: str | None = None
        self.last_task: Task | None = None  # the latest background task (tests wait on it)

        self.intro = QtWidgets.QLabel()
        self.intro.setWordWrap(True)
        self.target = QtWidgets.QComboBox()
        self.target.addItem("Python package on a package index (pip install)", "pypi")
        self.panels = QtWidgets.QStackedWidget()
        self.pypi = PyPIPanel()
        self.panels.addWidget(self.pypi)
        self.notes = QtWidgets.QLabel()
        self.notes.setWordWrap(True)
        self.result = QtWidgets.QLabel()
        self.result.setWordWrap(True)
        self.result.setOpenExternalLinks(True)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)

        top = QtWidgets.QFormLayout()
        top.addRow("Publish as", self.target)
        column = QtWidgets.QVBoxLayout()
        column.addWidget(self.intro)
        column.addLayout(top)
        column.addWidget(self.panels)
        column.addWidget(self.notes)
        column.addWidget(self.result)
        column.addStretch(1)
        box = QtWidgets.QWidget()
        box.setLayout(column)
        box.setMinimumWidth(520)
        box.setMaximumWidth(760)
        layout = QtWidgets.QHBoxLayout(self)
        layout.addWidget(box, 3)
        layout.addStretch(1)
        for label in (self.intro, self.notes, self.result, self.pypi.credential_label):
            label.setTextFormat(Qt.TextFormat.RichText)

        self.target.currentIndexChanged.connect(self.panels.setCurrentIndex)
        self.pypi.save_token_button.clicked.connect(lambda: self.save_token())
        self.pypi.test_button.clicked.connect(self.test_connection)
        self.pypi.build_button.clicked.connect(self.build_only)
        self.pypi.publish_button.clicked.connect(self.publish)
        self.set_document(None)

    # -- inputs from the other steps ----------------------------------------------------------------
    def set_document(self, doc: ModelDocument | None) -> None:
        self.document = doc
        self.variant = None
        if doc is not None:
            self.pypi.name.setText(_suggest_name(doc.path))
        self._refresh()

    def set_variant(self, variant: Variant | None) -> None:
        self.variant = variant
        self._refresh()

    def set_license(self, expression: str | None, files: dict[str, str | Path] | None = None) -> None:
        """The license chosen in the License step: an SPDX expression, and texts (name -> text or path)."""
        self.pypi.license.setText(expression or "")
        self.license_files = dict(files or {})
        self._refresh()

    def set_card(self, markdown: str | None) -> None:
        """The model card (Markdown): the package's description on PyPI."""
        self.card = markdown
        self._refresh()

    def model_path(self) -> Path | None:
        """The ONNX file to publish: the chosen variant, else the opened model itself."""
        if self.variant is not None and self.variant.path.suffix.lower() == ".onnx":
            return self.variant.path
        if self.document is not None and self.document.format == "onnx":
            return self.document.path
        return None

    def _refresh(self) -> None:
        model = self.model_path()
        if self.document is None:
            self.intro.setText("Open a model first.")
        elif model is None:
            self.intro.setText(f"{html.escape(self.document.format_label)} files are published as ONNX: export "
                               f"the model in the Compress step and choose the variant to publish.")
        else:
            which = f"the variant <b>{html.escape(self.variant.name)}</b>" if self.variant else "the opened model"
            size = "" if model != self.document.path else f" ({format_bytes(self.document.size_bytes)} with its data)"
            self.intro.setText(f"Publishing {which}: {html.escape(model.name)}{size}. The wheel is built in "
                               f"{html.escape(str(default_output_dir(self.document.path) / 'dist'))}.")
        notes = []
        if not self.card:
            notes.append("No model card yet: the package page will show a short usage text (write the card in the "
                         "License &amp; card step).")
        if self.license_files:
            notes.append("License files: " + ", ".join(html.escape(n) for n in sorted(self.license_files)) + ".")
        self.notes.setText("<br>".join(notes))
        for button in (self.pypi.build_button, self.pypi.publish_button):
            button.setEnabled(model is not None)
        if self.isVisible():
            self.pypi.refresh_credentials()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self.pypi.refresh_credentials()

    # -- actions ------------------------------------------------------------------------------------
    def save_token(self, secret: str | None = None) -> bool:
        """Ask for the token (hidden) and save it in the keychain; ``secret`` skips the question (tests)."""
        try:
            key = self.pypi.key()
        except WorkbenchError as exc:
            show_error(self, exc, "", doing="saving the token")
            return False
        if secret is None:
            secret, ok = QtWidgets.QInputDialog.getText(
                self, "Save token", f"{key.secret_label[0].upper()}{key.secret_label[1:]} for {key.username} at "
                                    f"{key.service}.\nIt is kept in the keychain and never shown again.",
                QtWidgets.QLineEdit.EchoMode.Password)
            if not ok or not secret:
                return False
        try:
            cr.save_secret(key, secret)
        except WorkbenchError as exc:
            show_error(self, exc, "", doing="saving the token")
            return False
        self.pypi.remember()
        self.pypi.refresh_credentials()
        return True

    def test_connection(self) -> Task:
        from ..core.publish.pypi import check_connection

        url, user = self.pypi.upload_url(), self.pypi.user()
        self.pypi.remember()
        task = Task(self, lambda job: check_connection(url, username=user), title="Testing the connection")
        task.success(lambda check: self.result.setText("✓ " + html.escape(check.message))).failure(
            lambda exc, tb: self._failed(exc, tb, "testing the connection"))
        self.last_task = task
        return self._start_task(task)

    def build_only(self) -> Task | None:
        """Build the wheel into the project's dist folder (after the size question, if any); upload nothing."""
        return self._plan_then(self._start_build)

    def publish(self) -> Task | None:
        """Build the wheel and upload it to the chosen index (not with an unfinished model card)."""
        if self.card:
            from ..core.card import check_publishable

            try:
                check_publishable(self.card)
            except WorkbenchError as exc:
                self._failed(exc, "", "checking the model card")
                return None
        return self._plan_then(self._start_publish)

    def _plan_then(self, then: Any) -> Task | None:
        """Check the settings and lay out the wheel in the background; then ask about any size warning and go on
        with ``then(plan)`` (which starts the build or publish task)."""
        from ..core.package.wheel import check_name, check_version

        model = self.model_path()
        if model is None:
            return None
        try:
            check_name(self.pypi.name.text())
            check_version(self.pypi.version.text())
        except WorkbenchError as exc:
            self._failed(exc, "", "checking the package settings")
            return None
        settings = self._wheel_settings()
        self.pypi.remember()

        def work(job: Job) -> Any:
            from ..core.package.wheel import plan_wheel

            return plan_wheel(model, job=job, **settings)

        task = Task(self, work, title="Checking the model and the package settings")
        task.success(lambda plan: then(plan) if self._accept_size(plan) else None).failure(
            lambda exc, tb: self._failed(exc, tb, "checking the package settings"))
        self.last_task = task
        return self._start_task(task)

    def _accept_size(self, plan: Any) -> bool:
        from ..core.package.wheel import PYPI_FILE_LIMIT

        if not plan.may_exceed_pypi_limit:
            return True
        answer = QtWidgets.QMessageBox.question(
            self, "Large model",
            f"The model is {format_bytes(plan.model_bytes)}, over PyPI's default limit of "
            f"{format_bytes(PYPI_FILE_LIMIT)} per file: PyPI will likely refuse the wheel unless the project was "
            f"granted a higher limit. The Hugging Face Hub suits large models better.\n\nBuild the wheel anyway?")
        return answer == QtWidgets.QMessageBox.StandardButton.Yes

    def _start_build(self, plan: Any) -> Task:
        out_dir = self._out_dir()

        def work(job: Job) -> Any:
            from ..core.package.wheel import build_wheel

            return build_wheel(plan, out_dir, job=job)

        task = Task(self, work, title=f"Building {plan.filename}")
        task.success(self._built).failure(lambda exc, tb: self._failed(exc, tb, "building the wheel"))
        self.last_task = task
        return self._start_task(task)

    def _start_publish(self, plan: Any) -> Task:
        out_dir, url, user = self._out_dir(), self.pypi.upload_url(), self.pypi.user()

        def work(job: Job) -> Any:
            from ..core.publish.pypi import build_and_publish

            return build_and_publish(plan, out_dir, repository_url=url, username=user, job=job)

        task = Task(self, work, title=f"Publishing {plan.name} {plan.version}")
        task.success(self._published).failure(lambda exc, tb: self._failed(exc, tb, "publishing"))
        self.last_task = task
        return self._start_task(task)

    # -- helpers ------------------------------------------------------------------------------------
    def _wheel_settings(self) -> dict[str, Any]:
        return {"name": self.pypi.name.text(), "version": self.pypi.version.text(),
                "license_expression": self.pypi.license.text().strip() or None,
                "license_files": dict(self.license_files), "readme_markdown": self.card}

    def _out_dir(self) -> Path:
        assert self.document is not None
        return default_output_dir(self.document.path) / "dist"

    def _built(self, result: Any) -> None:
        self.built.emit(result)
        warnings = "".join(f"<br>⚠ {html.escape(w)}" for w in result.warnings)
        self.result.setText(f"Built {html.escape(str(result.path))} ({format_bytes(result.size_bytes)}).{warnings}")

    def _published(self, results: Any) -> None:
        built, published = results
        self.built.emit(built)
        self.published.emit(published)
        url = html.escape(published.project_url)
        warnings = "".join(f"<br>⚠ {html.escape(w)}" for w in published.warnings)
        self.result.setText(f"✓ {html.escape(published.headline)}: "
                            f'<a href="{url}">{url}</a><br>Install with: <code>'
                            f"{html.escape(published.install_command)}</code>{warnings}")

    def _failed(self, exc: BaseException, tb: str, doing: str) -> None:
        self.result.setText("✗ " + html.escape(exc.user_message() if isinstance(exc, WorkbenchError) else str(exc)))
        show_error(self, exc, tb, doing=doing)


def _suggest_name(path: Path) -> str:
    from ..core.package.wheel import normalize_name

    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in path.stem).strip("-_.")
    return normalize_name(stem) if stem and stem[0].isalpha() else f"model-{normalize_name(stem or 'onnx')}"
