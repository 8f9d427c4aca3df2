"""Vectorised drift statistics over whole columns (NumPy only; no loop over rows).

Binned statistics take the reference's and the current counts in the same bins:

* PSI = sum((q - p) * ln(q / p)) and KL(current || reference) = sum(q * ln(q / p)) replace a
  proportion of 0 (an empty bin) by :data:`EPS` = 1e-4 before taking logarithms, so a bin the
  reference never saw gives a large but finite term instead of infinity (KL renormalises the
  smoothed proportions, as ``scipy.stats.entropy`` does); the outer bins are open-ended, so
  values outside the reference range count in the first or last bin;
* Jensen-Shannon distance (natural log, as ``scipy.spatial.distance.jensenshannon``) and the
  Hellinger distance need no smoothing;
* chi-square is the test of homogeneity of the 2 x k table (``scipy.stats.chi2_contingency``
  with ``correction=False``), over categories seen on either side.

Sample statistics take both samples sorted: the two-sample Kolmogorov-Smirnov statistic and
the 1-Wasserstein distance come from one merge of the sorted samples (equal to
``scipy.stats.ks_2samp`` and ``scipy.stats.wasserstein_distance``).

>>> import numpy as np
>>> round(psi(np.array([50, 50]), np.array([50, 50])), 12)
0.0
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import special, stats

EPS = 1e-4
EXACT_KS_MAX = 10_000  # scipy's 'auto' mode computes the exact p-value up to this sample size

Float = NDArray[np.float64]
Counts = NDArray[np.int64] | Float


def smoothed(counts: Counts) -> Float:
    """Proportions with each empty bin set to :data:`EPS` (not renormalised, as PSI is usually defined)."""
    total = float(np.sum(counts))
    p = np.asarray(counts, dtype=np.float64) / (total if total else 1.0)
    p[p == 0] = EPS
    return p


def psi(ref: Counts, cur: Counts) -> float:
    p, q = smoothed(ref), smoothed(cur)
    return float(np.sum((q - p) * np.log(q / p)))


def kl(ref: Counts, cur: Counts) -> float:
    """KL(current || reference) in nats, on smoothed proportions (= scipy.stats.entropy(q, p))."""
    p, q = smoothed(ref), smoothed(cur)
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(special.rel_entr(q, p)))


def jensenshannon(ref: Counts, cur: Counts) -> float:
    p = np.asarray(ref, dtype=np.float64)
    q = np.asarray(cur, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2.0
    js = np.sum(special.rel_entr(p, m)) + np.sum(special.rel_entr(q, m))
    return float(np.sqrt(max(js, 0.0) / 2.0))


def hellinger(ref: Counts, cur: Counts) -> float:
    p = np.asarray(ref, dtype=np.float64)
    q = np.asarray(cur, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    return float(math.sqrt(max(0.5 * float(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)), 0.0)))


def chi2_homogeneity(ref: Counts, cur: Counts) -> tuple[float, float, int]:
    """(statistic, p-value, degrees of freedom) of the 2 x k homogeneity test; a single category
    gives (0, 1, 0): identical distributions by construction."""
    table = np.vstack([np.asarray(ref, dtype=np.float64), np.asarray(cur, dtype=np.float64)])
    table = table[:, table.sum(axis=0) > 0]
    dof = table.shape[1] - 1
    if dof < 1:
        return 0.0, 1.0, 0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    return stat, float(stats.chi2.sf(stat, dof)), dof


def bin_counts_sorted(ordered: Float, edges: Float) -> NDArray[np.int64]:
    """Counts of a sorted sample in the bins ``(-inf, e0), [e0, e1), ..., [ek, inf)``."""
    pos = np.searchsorted(ordered, edges, side="left")
    return np.diff(np.concatenate([[0], pos, [len(ordered)]])).astype(np.int64)


def ks_wasserstein(a: Float, b: Float) -> tuple[float, float]:
    """(KS statistic, 1-Wasserstein distance) of two sorted, non-empty samples from one merge.

    The merged order comes from a stable argsort of the two sorted runs (linear: timsort merges
    runs), the two ECDFs from a running count of which sample each value came from.
    """
    n1, n2 = len(a), len(b)
    # Same arithmetic as the plain expressions, with each temporary freed (or reused in place)
    # as soon as it is spent: the working set stays near four arrays of n1 + n2.
    both = np.concatenate([a, b])
    order = np.argsort(both, kind="stable")
    values = both[order]
    del both
    c1 = np.cumsum(order < n1)
    del order
    diff = c1 / n1
    c2 = np.arange(1, n1 + n2 + 1)
    c2 -= c1  # the running count of the second sample
    del c1
    diff -= c2 / n2
    del c2
    # Within a run of equal values only the last position is the ECDF at that value (side='right').
    last = np.empty(len(values), dtype=bool)
    np.not_equal(values[1:], values[:-1], out=last[:-1])
    last[-1] = True
    at = diff[last]
    del last
    d = max(float(np.clip(-at.min(), 0, 1)), float(at.max()))
    del at
    gaps = np.diff(values)
    del values
    np.abs(diff, out=diff)
    w = float(np.sum(np.multiply(diff[:-1], gaps, out=gaps)))
    return d, w


def ks_pvalue(a: Float, b: Float, d: float) -> float:
    """Two-sided p-value as scipy's ks_2samp(mode='auto'): exact for small samples, else Smirnov's
    asymptotic distribution."""
    n1, n2 = len(a), len(b)
    if max(n1, n2) <= EXACT_KS_MAX:
        return float(stats.ks_2samp(a, b).pvalue)
    return asymptotic_ks_pvalue(d, n1, n2)


def asymptotic_ks_pvalue(d: float, n1: int, n2: int) -> float:
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    return float(np.clip(stats.kstwo.sf(d, np.round(en)), 0, 1))


def cdf_distance(grid: Float, f1: Float, f2: Float) -> tuple[float, float]:
    """(sup |F1 - F2|, integral |F1 - F2| dx) of two ECDFs evaluated on a sorted grid."""
    delta = np.abs(f1 - f2)
    return float(delta.max()) if len(delta) else 0.0, float(np.sum(delta[:-1] * np.diff(grid)))


def bh_adjust(p: Float) -> Float:
    """Benjamini-Hochberg adjusted p-values (step-up, monotone, capped at 1)."""
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(ranked, 1.0)
    return out
