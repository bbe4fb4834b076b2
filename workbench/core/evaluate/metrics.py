"""The statistics behind a comparison: intervals for proportions, the paired accuracy difference, McNemar's
exact test, and how close two models' outputs are (SQNR, cosine similarity).

Plain ``math`` for the counting statistics (no SciPy needed); NumPy, imported inside the functions, for the
array metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


@dataclass(frozen=True)
class PairedCounts:
    """How two models did on the same samples: ``a`` both right, ``b`` only the first (the original) right,
    ``c`` only the second (the variant) right, ``d`` both wrong."""

    a: int
    b: int
    c: int
    d: int

    @property
    def n(self) -> int:
        return self.a + self.b + self.c + self.d


def paired_counts(first_correct: Any, second_correct: Any) -> PairedCounts:
    """Count the four right/wrong combinations of two boolean arrays of the same length."""
    import numpy as np

    r1 = np.asarray(first_correct, dtype=bool)
    r2 = np.asarray(second_correct, dtype=bool)
    if r1.shape != r2.shape:
        raise ValueError(f"paired results must have the same shape, got {r1.shape} and {r2.shape}")
    return PairedCounts(int(np.sum(r1 & r2)), int(np.sum(r1 & ~r2)), int(np.sum(~r1 & r2)), int(np.sum(~r1 & ~r2)))


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``successes / n`` (95 % by default)."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes} of {n}")
    p = successes / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    lower = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the ends, free of rounding
    upper = 1.0 if successes == n else min(1.0, centre + half)
    return lower, upper


def paired_difference_ci(counts: PairedCounts, z: float = Z95) -> tuple[float, float]:
    """Confidence interval for ``p1 - p2``, the first model's accuracy minus the second's, on paired samples.

    Newcombe's (1998) method 10: Wilson intervals for each accuracy, combined through the phi correlation of
    the paired results (with Newcombe's correction: a positive ``ad - bc`` is reduced by ``n/2``, down to 0),
    as worked in Altman et al., *Statistics with Confidence* (2000). Unlike the plain Wald interval it does not
    collapse to zero width when few samples differ.
    """
    a, b, c, d, n = counts.a, counts.b, counts.c, counts.d, counts.n
    if n == 0:
        raise ValueError("no samples")
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_interval(a + b, n, z)
    l2, u2 = wilson_interval(a + c, n, z)
    denom = (a + b) * (c + d) * (a + c) * (b + d)
    cross = a * d - b * c
    cross = max(cross - n / 2, 0.0) if cross > 0 else cross
    phi = cross / math.sqrt(denom) if denom else 0.0
    theta = p1 - p2
    lower = theta - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    upper = theta + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, lower), min(1.0, upper)


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: the binomial test of ``b`` against ``b + c`` discordant pairs at 1/2.

    1.0 when there are no discordant pairs. Summed in log space, so it stays exact to about 12 digits for
    any count.
    """
    if b < 0 or c < 0:
        raise ValueError("counts must be >= 0")
    n = b + c
    k = min(b, c)
    if n == 0:
        return 1.0
    log_half_n = n * math.log(2.0)
    lg_n = math.lgamma(n + 1)
    logs = [lg_n - math.lgamma(i + 1) - math.lgamma(n - i + 1) - log_half_n for i in range(k + 1)]
    top = max(logs)
    tail = math.exp(top) * sum(math.exp(v - top) for v in logs)
    return min(1.0, 2.0 * tail)


def sqnr_db(reference: Any, test: Any) -> float:
    """Signal-to-quantisation-noise ratio of ``test`` against ``reference`` in dB (``inf`` when identical).

    10·log10(Σ reference² / Σ (reference − test)²), over all values; higher means closer.
    """
    import numpy as np

    ref = np.asarray(reference, dtype=np.float64)
    err = ref - np.asarray(test, dtype=np.float64)
    noise = float(np.sum(err * err))
    signal = float(np.sum(ref * ref))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def cosine_similarities(reference: Any, test: Any) -> Any:
    """Cosine similarity per sample (first axis), each sample's values flattened into one vector.

    Two all-zero vectors count as identical (1.0); one all-zero vector against a non-zero one as 0.0.
    """
    import numpy as np

    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    other = np.asarray(test, dtype=np.float64).reshape(len(test), -1)
    dots = np.einsum("ij,ij->i", ref, other)
    n_ref, n_other = np.linalg.norm(ref, axis=1), np.linalg.norm(other, axis=1)
    norms = n_ref * n_other
    cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    return np.clip(np.where((n_ref == 0) & (n_other == 0), 1.0, cos), -1.0, 1.0)
