"""The sortable, filterable tensor table (name, shape, dtype, size, sparsity)."""

from __future__ import annotations

from typing import Any

from ..core.document import ModelDocument, TensorInfo
from ..core.text import format_bytes, format_shape
from .qt import Qt, QtCore, QtWidgets

COLUMNS = ("Name", "Shape", "Type", "Size", "Zeros")
SORT_ROLE = Qt.ItemDataRole.UserRole + 1


class TensorModel(QtCore.QAbstractTableModel):
    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self._tensors: list[TensorInfo] = []
        self._sparsity: dict[str, float] = {}

    def set_document(self, doc: ModelDocument | None) -> None:
        self.beginResetModel()
        self._tensors = list(doc.tensors) if doc else []
        self._sparsity = dict(doc.sparsity or {}) if doc else {}
        self.endResetModel()

    def rowCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._tensors)

    def columnCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: QtCore.QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        t = self._tensors[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return t.name
            if col == 1:
                return format_shape(t.shape)
            if col == 2:
                return t.dtype
            if col == 3:
                return format_bytes(t.nbytes)
            if col == 4:
                return f"{self._sparsity[t.name]:.1%}" if t.name in self._sparsity else ""
        if role == SORT_ROLE:
            return (t.name, t.numel, t.dtype, t.nbytes, self._sparsity.get(t.name, -1.0))[col]
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (3, 4):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole and col == 1:
            return f"{t.numel:,} values"
        return None


class TensorTable(QtWidgets.QWidget):
    """A filter box over a sortable table of the document's tensors."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = TensorModel(self)
        self.proxy = QtCore.QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setFilterKeyColumn(0)
        self.filter = QtWidgets.QLineEdit(placeholderText="Filter tensors by name (Ctrl+F)")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.sparsity_button = QtWidgets.QPushButton("Count zeros")
        self.sparsity_button.setToolTip("Read the weights and count how many values are exactly zero (sparsity).")
        self.view = QtWidgets.QTableView()
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(3, Qt.SortOrder.DescendingOrder)
        self.view.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setAlternatingRowColors(True)
        self.view.verticalHeader().setVisible(False)
        header = self.view.horizontalHeader()
        header.setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Stretch)
        for col in range(1, len(COLUMNS)):
            header.setSectionResizeMode(col, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.filter, 1)
        top.addWidget(self.sparsity_button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.view)

    def set_document(self, doc: ModelDocument | None) -> None:
        self.model.set_document(doc)
        self.sparsity_button.setEnabled(bool(doc and doc.read_tensor and doc.tensors))

    def visible_names(self) -> list[str]:
        return [self.proxy.index(r, 0).data() for r in range(self.proxy.rowCount())]
