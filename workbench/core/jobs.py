"""Progress reporting and cancellation shared by every long task, in the CLI and the GUI alike.

A long task takes a ``Job`` and calls ``job.progress(done, total, message)`` as it goes and
``job.check()`` at safe points; ``check()`` raises :class:`Cancelled` once someone called
``job.cancel()`` (from any thread). Callers that do not care pass nothing and get ``Job()``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from .errors import Cancelled

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One progress report: ``done`` out of ``total`` units (``total`` is None when unknown)."""

    done: float
    total: float | None
    message: str

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return max(0.0, min(1.0, self.done / self.total))


ProgressCallback = Callable[[Progress], None]


class Job:
    """Progress sink and cancellation flag for one long task. Thread-safe."""

    def __init__(self, on_progress: ProgressCallback | None = None, *, min_interval: float = 0.05) -> None:
        self._on_progress = on_progress
        self._cancel = threading.Event()
        self._min_interval = min_interval
        self._last_report = 0.0
        self._lock = threading.Lock()
        self.last: Progress | None = None

    # -- cancellation -------------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the task to stop at its next ``check()``."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if cancellation was requested."""
        if self._cancel.is_set():
            raise Cancelled()

    # -- progress -----------------------------------------------------------------------------
    def progress(self, done: float, total: float | None = None, message: str = "") -> None:
        """Report progress and check for cancellation. Reports are rate-limited except the last."""
        self.check()
        report = Progress(done, total, message)
        with self._lock:
            self.last = report
            now = time.monotonic()
            final = total is not None and done >= total
            if self._on_progress is None or (not final and now - self._last_report < self._min_interval):
                return
            self._last_report = now
        self._on_progress(report)

    def iterate(self, items: Iterable[T], total: int | None = None, message: str = "") -> Iterator[T]:
        """Yield ``items`` while reporting progress and checking for cancellation."""
        if total is None and hasattr(items, "__len__"):
            total = len(items)  # type: ignore[arg-type]
        self.progress(0, total, message)
        for i, item in enumerate(items, 1):
            yield item
            self.progress(i, total, message)


class SubJob(Job):
    """One stage of a longer job: its own 0..total progress fills ``start``..``end`` (fractions) of the
    parent's bar; cancelling the parent cancels it."""

    def __init__(self, parent: Job, start: float, end: float) -> None:
        super().__init__()
        self.parent, self.start, self.end = parent, start, end

    @property
    def cancelled(self) -> bool:
        return self.parent.cancelled

    def cancel(self) -> None:
        self.parent.cancel()

    def check(self) -> None:
        self.parent.check()

    def progress(self, done: float, total: float | None = None, message: str = "") -> None:
        fraction = min(1.0, done / total) if total else 0.0
        value = self.end if fraction >= 1.0 else self.start + (self.end - self.start) * fraction
        self.parent.progress(value, 1.0, message)
