"""The main window: Open → Inspect → Compress → License & card → Publish, left to right."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.document import ModelDocument
from ..core.errors import DangerousPickle, UnsupportedFormat, UntrustedPickle
from ..core.jobs import Job, Progress
from .compress_page import CompressPage
from .dialogs import show_error
from .graph_view import GraphView
from .license_page import LicensePage
from .publish_page import PublishPage
from .qt import Qt, QtCore, QtGui, QtWidgets, Signal
from .summary import SummaryPanel
from .tasks import Task
from .tensor_table import TensorTable

MAX_RECENT = 10
# Files netron can display although Model Workbench cannot work on them (view only).
VIEW_ONLY_SUFFIXES = (".tflite", ".lite", ".pb", ".pbtxt", ".h5", ".hdf5", ".keras", ".mlmodel", ".mlpackage",
                      ".caffemodel", ".prototxt", ".tmfile", ".ncnn", ".param", ".paddle", ".pdmodel", ".nb",
                      ".om", ".xml", ".mnn", ".rknn", ".armnn", ".circle", ".uff", ".engine", ".gguf")
STEPS = ("Open", "Inspect", "Compress", "License & card", "Publish")


def settings() -> QtCore.QSettings:
    """Persistent settings, stored where the OS expects them (e.g. ~/.config/ModelWorkbench on Linux)."""
    return QtCore.QSettings("ModelWorkbench", "Model Workbench")


class OpenPage(QtWidgets.QWidget):
    """Step 1: a drop area, buttons, and the recent files."""

    open_requested = Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        hint = QtWidgets.QLabel("<h2>Open a model</h2><p>Drop a model file on this window, or choose one. "
                                "Supported: ONNX, PyTorch (.pt, .pth, .ckpt, .pt2, TorchScript), safetensors and "
                                "Hugging Face model folders. TensorFlow Lite, Keras, Core ML and other files "
                                "open view-only.</p>")
        hint.setWordWrap(True)
        layout.addWidget(hint)
        buttons = QtWidgets.QHBoxLayout()
        self.open_button = QtWidgets.QPushButton("Open a model file…")
        self.folder_button = QtWidgets.QPushButton("Open a model folder…")
        self.sample_button = QtWidgets.QPushButton("Open the sample model")
        for b in (self.open_button, self.folder_button, self.sample_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        layout.addWidget(QtWidgets.QLabel("<b>Recent files</b>"))
        self.recent = QtWidgets.QListWidget()
        self.recent.itemActivated.connect(lambda item: self.open_requested.emit(item.data(Qt.ItemDataRole.UserRole)))
        layout.addWidget(self.recent, 1)

    def set_recent(self, paths: list[str]) -> None:
        self.recent.clear()
        for p in paths:
            item = QtWidgets.QListWidgetItem(f"{Path(p).name}    —    {Path(p).parent}")
            item.setData(Qt.ItemDataRole.UserRole, p)
            self.recent.addItem(item)


class MainWindow(QtWidgets.QMainWindow):
    document_loaded = Signal(object)  # ModelDocument, or None for a view-only file
    graph_settled = Signal()  # the graph tab has rendered, or said why it cannot

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Model Workbench")
        self.setAcceptDrops(True)
        self.document: ModelDocument | None = None
        self.current_task: Task | None = None
        self._open_generation = 0

        self.steps = QtWidgets.QTabWidget()
        self.steps.setDocumentMode(True)
        self.open_page = OpenPage()
        self.summary = SummaryPanel()
        self.tensors = TensorTable()
        self.graph = GraphView()
        self.details = QtWidgets.QTabWidget()
        self.details.addTab(self.graph, "Graph")
        self.details.addTab(self.tensors, "Tensors")
        self.splitter = QtWidgets.QSplitter()
        self.splitter.addWidget(self.summary)
        self.splitter.addWidget(self.details)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setSizes([340, 900])
        self.steps.addTab(self.open_page, f"1  {STEPS[0]}")
        self.steps.addTab(self.splitter, f"2  {STEPS[1]}")
        self.compress_page = CompressPage(self._start)
        self.steps.addTab(self.compress_page, f"3  {STEPS[2]}")
        self.license_page = LicensePage(self._start)
        self.steps.addTab(self.license_page, f"4  {STEPS[3].replace('&', '&&')}")
        self.compress_page.chosen_changed.connect(self.license_page.set_variant)
        self.compress_page.measured.connect(self.license_page.set_comparison)
        self.publish_page = PublishPage(self._start)
        self.steps.addTab(self.publish_page, f"5  {STEPS[4]}")
        self.compress_page.chosen_changed.connect(self.publish_page.set_variant)
        self.license_page.saved.connect(self._license_saved)
        self.setCentralWidget(self.steps)

        self._build_status_bar()
        self._build_actions()
        self._connect()
        self._restore_settings()

    # -- construction -----------------------------------------------------------------------
    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.progress_label = QtWidgets.QLabel()
        self.progress = QtWidgets.QProgressBar()
        self.progress.setMaximumWidth(240)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        for w in (self.progress_label, self.progress, self.cancel_button):
            bar.addPermanentWidget(w)
            w.setVisible(False)

    def _build_actions(self) -> None:
        style = self.style()
        sp = QtWidgets.QStyle.StandardPixmap
        self.open_action = QtGui.QAction(style.standardIcon(sp.SP_DialogOpenButton), "&Open…", self)
        self.open_action.setShortcut(QtGui.QKeySequence.StandardKey.Open)
        self.open_action.setToolTip("Open a model file (Ctrl+O)")
        self.open_folder_action = QtGui.QAction(style.standardIcon(sp.SP_DirOpenIcon), "Open &Folder…", self)
        self.sample_action = QtGui.QAction("Open the &Sample Model", self)
        self.quit_action = QtGui.QAction("&Quit", self)
        self.quit_action.setShortcut(QtGui.QKeySequence("Ctrl+Q"))  # StandardKey.Quit is empty on some platforms
        self.quit_action.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)
        self.fullscreen_action = QtGui.QAction("&Full Screen", self, checkable=True)
        self.fullscreen_action.setShortcut(QtGui.QKeySequence("F11"))
        self.find_action = QtGui.QAction("&Find…", self)
        self.find_action.setShortcut(QtGui.QKeySequence.StandardKey.Find)
        self.about_action = QtGui.QAction("&About Model Workbench", self)
        self.recent_menu = QtWidgets.QMenu("Open &Recent", self)

        file_menu = self.menuBar().addMenu("&File")
        file_menu.addActions([self.open_action, self.open_folder_action])
        file_menu.addMenu(self.recent_menu)
        file_menu.addAction(self.sample_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        view_menu = self.menuBar().addMenu("&View")
        view_menu.addActions([self.find_action, self.fullscreen_action])
        self.menuBar().addMenu("&Help").addAction(self.about_action)

        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("main-toolbar")
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        toolbar.addActions([self.open_action, self.open_folder_action])
        for a in (self.open_action, self.open_folder_action, self.sample_action, self.quit_action,
                  self.fullscreen_action, self.find_action):
            self.addAction(a)  # shortcuts work even when the menu bar is hidden (full screen)

    def _connect(self) -> None:
        self.open_action.triggered.connect(self.choose_file)
        self.open_folder_action.triggered.connect(self.choose_folder)
        self.sample_action.triggered.connect(self.open_sample)
        self.quit_action.triggered.connect(self.close)
        self.fullscreen_action.toggled.connect(self.set_full_screen)
        self.find_action.triggered.connect(self.focus_search)
        self.about_action.triggered.connect(self.show_about)
        self.open_page.open_button.clicked.connect(self.choose_file)
        self.open_page.folder_button.clicked.connect(self.choose_folder)
        self.open_page.sample_button.clicked.connect(self.open_sample)
        self.open_page.open_requested.connect(self.open_path)
        self.cancel_button.clicked.connect(self.cancel_task)
        self.tensors.sparsity_button.clicked.connect(self.count_zeros)
        self.graph.loaded.connect(lambda _n: self.graph_settled.emit())
        self.graph.failed.connect(lambda _m: self.graph_settled.emit())
        self.graph.outline_shown.connect(lambda _m: self.graph_settled.emit())

    # -- opening ----------------------------------------------------------------------------
    def choose_file(self) -> None:
        start = str(Path(self.recent_files()[0]).parent) if self.recent_files() else str(Path.home())
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open a model", start,
            "Models (*.onnx *.pt *.pth *.pt2 *.bin *.ckpt *.safetensors *.tflite *.pb *.h5 *.keras *.mlmodel);;"
            "All files (*)")
        if path:
            self.open_path(path)

    def choose_folder(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Open a model folder", str(Path.home()))
        if path:
            self.open_path(path)

    def open_sample(self) -> None:
        from ..resources import sample_model

        self.open_path(str(sample_model()))

    def open_path(self, path: str, *, trust: bool = False) -> Task:
        """Open a model in the background; the current model stays until the new one is fully loaded."""
        from ..core.formats import open_model

        self.cancel_task()
        self._open_generation += 1
        generation = self._open_generation

        def work(job: Job) -> ModelDocument:
            return open_model(path, trust=trust, job=job)

        task = Task(self, work, title=f"Opening {Path(path).name}")
        task.success(lambda doc: self._opened(doc, generation)).failure(
            lambda exc, tb: self._open_failed(path, exc, tb, generation))
        return self._start(task)

    def _opened(self, doc: ModelDocument, generation: int) -> None:
        if generation != self._open_generation:
            return
        self.document = doc
        self.summary.set_document(doc)
        self.tensors.set_document(doc)
        self.graph.show_document(doc)
        self.compress_page.set_document(doc)
        self.license_page.set_document(doc)
        self.publish_page.set_document(doc)
        project = self.compress_page.project
        if project is not None and project.chosen:
            self.license_page.set_variant(project.get(project.chosen))
            self.publish_page.set_variant(project.get(project.chosen))
        self.add_recent(str(doc.path))
        self.setWindowTitle(f"{doc.path.name} — Model Workbench")
        self.steps.setCurrentIndex(1)
        self.document_loaded.emit(doc)

    def _open_failed(self, path: str, exc: BaseException, details: str, generation: int) -> None:
        if generation != self._open_generation:
            return
        if isinstance(exc, UnsupportedFormat) and Path(path).suffix.lower() in VIEW_ONLY_SUFFIXES:
            self._show_view_only(Path(path), str(exc.message))
            return
        if isinstance(exc, UntrustedPickle) and not isinstance(exc, DangerousPickle) and self._ask_trust(path, exc):
            self.open_path(path, trust=True)
            return
        show_error(self, exc, details, doing=f"opening {Path(path).name}")

    def _ask_trust(self, path: str, exc: UntrustedPickle) -> bool:
        box = QtWidgets.QMessageBox(self)
        box.setIcon(QtWidgets.QMessageBox.Icon.Warning)
        box.setWindowTitle("Open a file that runs code?")
        box.setText(f"{exc.message}\n\nOpening it runs code from the file on this computer. Only continue if you "
                    f"trust where it came from.")
        box.setDetailedText("The file would import:\n" + "\n".join(exc.imports))
        run = box.addButton("Trust and open", QtWidgets.QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QtWidgets.QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QtWidgets.QMessageBox.StandardButton.Cancel)
        box.exec()
        return box.clickedButton() is run

    def _show_view_only(self, path: Path, reason: str) -> None:
        self.document = None
        self.summary.show_view_only(path.name, path.stat().st_size, reason)
        self.tensors.set_document(None)
        self.compress_page.set_document(None)
        self.license_page.set_document(None)
        self.publish_page.set_document(None)
        self.graph.show_file(path)
        self.add_recent(str(path))
        self.setWindowTitle(f"{path.name} (view only) — Model Workbench")
        self.steps.setCurrentIndex(1)
        self.details.setCurrentWidget(self.graph)
        self.document_loaded.emit(None)

    def _license_saved(self, decision: Any, card_markdown: str) -> None:
        """One license decision applied to the package: its SPDX expression, LICENSE file and README."""
        from ..core.license import license_file_text, wheel_license_fields

        expression, names = wheel_license_fields(decision)
        text = license_file_text(decision)
        self.publish_page.set_license(expression, {name: text for name in names})
        self.publish_page.set_card(card_markdown)

    # -- background work ----------------------------------------------------------------------
    def _start(self, task: Task) -> Task:
        self.current_task = task
        self.progress_label.setText(task.title + "…")
        self.progress.setRange(0, 0)
        for w in (self.progress_label, self.progress, self.cancel_button):
            w.setVisible(True)
        task.progressed.connect(self._show_progress)
        task.finished.connect(lambda: self._task_finished(task))
        return task.run_in_background()

    def _show_progress(self, p: Progress) -> None:
        if p.fraction is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(p.fraction * 1000))
        if p.message:
            self.progress_label.setText(p.message)

    def _task_finished(self, task: Task) -> None:
        if task.job.cancelled:
            self.statusBar().showMessage("Cancelled.", 4000)
        if self.current_task is task:
            self.current_task = None
            for w in (self.progress_label, self.progress, self.cancel_button):
                w.setVisible(False)

    def cancel_task(self) -> None:
        if self.current_task is not None:
            self.current_task.cancel()

    def count_zeros(self) -> None:
        doc = self.document
        if doc is None:
            return
        task = Task(self, doc.compute_sparsity, title="Counting zeros in the weights")
        task.success(lambda _r: self.tensors.set_document(doc) if doc is self.document else None).failure(
            lambda exc, tb: show_error(self, exc, tb, doing="reading the weights"))
        self._start(task)

    # -- recent files, settings -----------------------------------------------------------------
    def recent_files(self) -> list[str]:
        value: Any = settings().value("recent_files", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def add_recent(self, path: str) -> None:
        path = str(Path(path).resolve())
        recent = [path] + [p for p in self.recent_files() if p != path]
        settings().setValue("recent_files", recent[:MAX_RECENT])
        self._refresh_recent()

    def _refresh_recent(self) -> None:
        recent = [p for p in self.recent_files() if Path(p).exists()]
        self.open_page.set_recent(recent)
        self.recent_menu.clear()
        for p in recent:
            action = self.recent_menu.addAction(Path(p).name)
            action.setToolTip(p)
            action.triggered.connect(lambda _checked=False, p=p: self.open_path(p))
        self.recent_menu.setEnabled(bool(recent))

    def _restore_settings(self) -> None:
        s = settings()
        geometry = s.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 800)
        state = s.value("window/state")
        if state is not None:
            self.restoreState(state)
        splitter = s.value("window/splitter")
        if splitter is not None:
            self.splitter.restoreState(splitter)
        self._refresh_recent()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        s = settings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("window/splitter", self.splitter.saveState())
        self.cancel_task()
        self.graph.shutdown()
        super().closeEvent(event)

    # -- misc -------------------------------------------------------------------------------------
    def set_full_screen(self, on: bool) -> None:
        self.showFullScreen() if on else self.showNormal()

    def focus_search(self) -> None:
        self.steps.setCurrentIndex(1)
        if self.details.currentWidget() is self.graph:
            self.graph.focus_search()
        else:
            self.tensors.filter.setFocus()
            self.tensors.filter.selectAll()

    def show_about(self) -> None:
        from .. import __version__

        QtWidgets.QMessageBox.about(self, "About Model Workbench",
                                    f"<b>Model Workbench {__version__}</b><p>Open, inspect, compress and publish "
                                    f"trained neural networks, offline. The graph view uses Netron.</p>")

    # -- drag and drop ----------------------------------------------------------------------------
    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if files:
            event.acceptProposedAction()
            self.open_path(files[0])
