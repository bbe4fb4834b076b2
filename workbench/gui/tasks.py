"""The one way to run long work off the GUI thread.

``Task(parent, fn, title=...).success(on_ok).failure(on_error).run_in_background()`` runs ``fn(job)`` on
a worker thread of the app's pool; progress, success and failure callbacks run on the GUI thread.
``Cancelled`` is swallowed quietly. The window's progress bar and Cancel button follow the active task.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from ..core.errors import Cancelled
from ..core.jobs import Job, Progress
from .qt import QtCore, Signal

_pool: QtCore.QThreadPool | None = None
_active: set[Task] = set()


def pool() -> QtCore.QThreadPool:
    """The thread pool all tasks share (separate from Qt's global pool, so tests can wait on it)."""
    global _pool
    if _pool is None:
        _pool = QtCore.QThreadPool()
        _pool.setMaxThreadCount(2)
        _pool.setExpiryTimeout(1000)
    return _pool


def active_tasks() -> set[Task]:
    return set(_active)


def wait_for_all(timeout_ms: int = 30_000) -> bool:
    """Cancel nothing; wait until every task has finished and delivered its result. For shutdown and tests."""
    deadline = QtCore.QDeadlineTimer(timeout_ms)
    while _active and not deadline.hasExpired():
        QtCore.QCoreApplication.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
    return pool().waitForDone(max(0, int(deadline.remainingTime()))) and not _active


class _Signals(QtCore.QObject):
    progressed = Signal(object)  # Progress
    done = Signal(object, object)  # result, (exception, traceback text) or None


class _Runnable(QtCore.QRunnable):
    def __init__(self, fn: Callable[[Job], Any], job: Job, signals: _Signals) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self._fn, self._job, self._signals = fn, job, signals

    def run(self) -> None:
        try:
            result = self._fn(self._job)
        except BaseException as exc:  # noqa: BLE001 - delivered to the failure callback on the GUI thread
            self._signals.done.emit(None, (exc, traceback.format_exc()))
        else:
            self._signals.done.emit(result, None)


class Task(QtCore.QObject):
    """A long piece of work with progress and cancellation. Build it, chain callbacks, then run it."""

    progressed = Signal(object)  # Progress, on the GUI thread
    finished = Signal()  # after the success/failure callback, also when cancelled

    def __init__(self, parent: QtCore.QObject | None, fn: Callable[[Job], Any], *, title: str) -> None:
        super().__init__(parent)
        self.title = title
        self._fn = fn
        self._signals = _Signals()
        self.job = Job(self._signals.progressed.emit)
        self._on_success: Callable[[Any], None] | None = None
        self._on_failure: Callable[[BaseException, str], None] | None = None
        self._signals.progressed.connect(self.progressed.emit, QtCore.Qt.ConnectionType.QueuedConnection)
        self._signals.done.connect(self._deliver, QtCore.Qt.ConnectionType.QueuedConnection)
        self.last_progress: Progress | None = None
        self.progressed.connect(self._remember)

    def success(self, callback: Callable[[Any], None]) -> Task:
        self._on_success = callback
        return self

    def failure(self, callback: Callable[[BaseException, str], None]) -> Task:
        """``callback(exception, traceback_text)``; not called for Cancelled."""
        self._on_failure = callback
        return self

    def run_in_background(self) -> Task:
        _active.add(self)
        pool().start(_Runnable(self._fn, self.job, self._signals))
        return self

    def cancel(self) -> None:
        self.job.cancel()

    @property
    def running(self) -> bool:
        return self in _active

    def _remember(self, p: Progress) -> None:
        self.last_progress = p

    def _deliver(self, result: Any, error: tuple[BaseException, str] | None) -> None:
        try:
            if error is None:
                if self._on_success is not None:
                    self._on_success(result)
            elif not isinstance(error[0], Cancelled) and self._on_failure is not None:
                self._on_failure(*error)
        finally:
            _active.discard(self)
            self.finished.emit()
