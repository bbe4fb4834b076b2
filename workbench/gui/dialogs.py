"""The one error dialog: a plain sentence, what to do next, and the technical details folded away."""

from __future__ import annotations

from ..core.errors import WorkbenchError
from .qt import QtGui, QtWidgets


def user_message(exc: BaseException, doing: str) -> str:
    """The sentence a user sees for an exception raised while ``doing`` something."""
    if isinstance(exc, WorkbenchError):
        return exc.user_message()
    return (f"Something unexpected went wrong while {doing}. The details below can help the developers fix it; "
            f"please include them if you report the problem.")


class ErrorDialog(QtWidgets.QDialog):
    """Shows ``message``; ``details`` (e.g. a traceback) stays hidden until the user asks, with a Copy button."""

    def __init__(self, parent: QtWidgets.QWidget | None, title: str, message: str, details: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setMinimumWidth(480)
        layout = QtWidgets.QVBoxLayout(self)
        row = QtWidgets.QHBoxLayout()
        icon = QtWidgets.QLabel()
        icon.setPixmap(self.style().standardIcon(QtWidgets.QStyle.StandardPixmap.SP_MessageBoxWarning).pixmap(40))
        row.addWidget(icon, 0)
        self.message_label = QtWidgets.QLabel(message)
        self.message_label.setWordWrap(True)
        self.message_label.setTextInteractionFlags(self.message_label.textInteractionFlags()
                                                   | QtGui.Qt.TextInteractionFlag.TextSelectableByMouse)
        row.addWidget(self.message_label, 1)
        layout.addLayout(row)
        self.details = QtWidgets.QPlainTextEdit(details)
        self.details.setReadOnly(True)
        self.details.setVisible(False)
        self.details.setMinimumHeight(160)
        layout.addWidget(self.details)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Ok)
        self.toggle = buttons.addButton("Show details", QtWidgets.QDialogButtonBox.ButtonRole.ActionRole)
        self.copy = buttons.addButton("Copy", QtWidgets.QDialogButtonBox.ButtonRole.ActionRole)
        self.toggle.setVisible(bool(details))
        self.toggle.clicked.connect(self._toggle)
        self.copy.clicked.connect(self._copy)
        buttons.accepted.connect(self.accept)
        layout.addWidget(buttons)
        self._text = message + ("\n\n" + details if details else "")

    def _toggle(self) -> None:
        show = not self.details.isVisible()
        self.details.setVisible(show)
        self.toggle.setText("Hide details" if show else "Show details")
        self.adjustSize()

    def _copy(self) -> None:
        QtWidgets.QApplication.clipboard().setText(self._text)


def show_error(parent: QtWidgets.QWidget | None, exc: BaseException, details: str, *, doing: str) -> ErrorDialog:
    """Open the error dialog (non-blocking) for ``exc`` raised while ``doing`` something."""
    dialog = ErrorDialog(parent, "Model Workbench", user_message(exc, doing), details)
    dialog.setModal(True)
    dialog.show()
    return dialog
