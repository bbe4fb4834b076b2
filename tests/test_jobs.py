"""Progress and cancellation, the one API every long task uses."""

from __future__ import annotations

import threading

import pytest

from workbench.core.errors import Cancelled, WorkbenchError
from workbench.core.jobs import Job, Progress


def test_progress_reports_reach_the_callback() -> None:
    seen: list[Progress] = []
    job = Job(seen.append, min_interval=0)
    for _ in job.iterate(range(4), message="counting"):
        pass
    assert [p.done for p in seen] == [0, 1, 2, 3, 4]
    assert seen[-1].fraction == 1.0 and seen[-1].message == "counting"


def test_final_report_is_never_rate_limited() -> None:
    seen: list[Progress] = []
    job = Job(seen.append, min_interval=3600)
    for i in range(100):
        job.progress(i, 100)
    job.progress(100, 100)
    assert seen[-1].done == 100 and len(seen) <= 2


def test_cancel_from_another_thread() -> None:
    job = Job()
    started = threading.Event()

    def work() -> None:
        started.set()
        while True:
            job.progress(0, None, "waiting")

    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except Cancelled as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    started.wait(5)
    job.cancel()
    t.join(5)
    assert not t.is_alive() and isinstance(errors[0], Cancelled)
    assert isinstance(errors[0], WorkbenchError)


def test_check_raises_only_after_cancel() -> None:
    job = Job()
    job.check()
    job.cancel()
    assert job.cancelled
    with pytest.raises(Cancelled):
        job.check()


def test_sub_job_fills_its_slice_and_shares_cancellation() -> None:
    from workbench.core.jobs import SubJob

    seen: list[Progress] = []
    parent = Job(seen.append, min_interval=0)
    stage = SubJob(parent, 0.25, 0.75)
    stage.progress(1, 2, "half")
    stage.progress(2, 2, "done")
    assert [round(p.done, 3) for p in seen] == [0.5, 0.75] and seen[0].total == 1.0
    parent.cancel()
    assert stage.cancelled
    with pytest.raises(Cancelled):
        stage.check()
