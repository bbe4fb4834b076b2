"""Fair latency measurement of several models side by side.

Every model gets warm-up runs first; then the timed runs alternate between the models (round by round, with
the starting model rotating), so that a machine getting busier or cooler affects all of them alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..jobs import Job


@dataclass(frozen=True)
class LatencyStats:
    """Wall-clock time of one call, over ``runs`` timed calls, in milliseconds."""

    runs: int
    median_ms: float
    p90_ms: float
    q1_ms: float  # 25th percentile
    q3_ms: float  # 75th percentile

    @property
    def spread_ms(self) -> float:
        """Interquartile range: how much the time of one call varies from run to run."""
        return self.q3_ms - self.q1_ms

    def to_dict(self) -> dict[str, float | int]:
        return {"runs": self.runs, "median_ms": self.median_ms, "p90_ms": self.p90_ms, "q1_ms": self.q1_ms,
                "q3_ms": self.q3_ms}


def summarise(times_ms: Sequence[float]) -> LatencyStats:
    """Median, 90th percentile and quartiles of some timings."""
    if not times_ms:
        raise ValueError("no timings")
    if len(times_ms) == 1:
        t = float(times_ms[0])
        return LatencyStats(1, t, t, t, t)
    q = statistics.quantiles(times_ms, n=20, method="inclusive")  # 5 % steps
    return LatencyStats(len(times_ms), float(statistics.median(times_ms)), q[17], q[4], q[14])


def measure_alternating(calls: Sequence[Callable[[], object]], *, runs: int, warmup: int = 5,
                        job: Job | None = None) -> list[LatencyStats]:
    """Time each call ``runs`` times after ``warmup`` untimed calls, alternating between the calls."""
    job = job or Job()
    if runs < 1:
        raise ValueError("runs must be at least 1")
    total = (warmup + runs) * len(calls)
    done = 0
    for _ in range(warmup):
        for call in calls:
            job.progress(done, total, "Warming up")
            call()
            done += 1
    times: list[list[float]] = [[] for _ in calls]
    order = list(range(len(calls)))
    for r in range(runs):
        for i in order[r % len(order):] + order[:r % len(order)]:
            job.progress(done, total, f"Timing run {r + 1} of {runs}")
            start = time.perf_counter_ns()
            calls[i]()
            times[i].append((time.perf_counter_ns() - start) / 1e6)
            done += 1
    job.progress(total, total, "Timing done")
    return [summarise(t) for t in times]


def within_noise(a: LatencyStats, b: LatencyStats) -> bool:
    """Whether two medians differ by less than the larger run-to-run spread (interquartile range)."""
    return abs(a.median_ms - b.median_ms) <= max(a.spread_ms, b.spread_ms)
