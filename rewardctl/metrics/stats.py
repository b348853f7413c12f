"""Statistics of one score over a run: mean, standard error, a 95% bootstrap CI, std,
percentiles, pass rate at a threshold."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

PERCENTILES = (5, 25, 50, 75, 95)
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_MAX_ROWS = 20_000  # continuous values beyond this: the normal approximation (as good, far cheaper)
MULTINOMIAL_MAX_DISTINCT = 2_000


def bootstrap_ci(values: Any, *, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES,
                 level: float = 0.95) -> tuple[float, float, str]:
    """Percentile bootstrap CI of the mean (seeded: the same values give the same interval)."""
    # numpy costs start-up time that only this computation needs.
    import numpy as np

    a = np.asarray(values, dtype=np.float64)
    n = len(a)
    alpha = (1 - level) / 2
    if n == 1:
        return float(a[0]), float(a[0]), "bootstrap"
    rng = np.random.default_rng(seed)
    distinct, counts = np.unique(a, return_counts=True)
    if len(distinct) <= MULTINOMIAL_MAX_DISTINCT:
        # Resampling n rows with replacement draws each distinct value a multinomial number of
        # times: the same distribution of means, in O(resamples x distinct) instead of O(resamples x n).
        draws = rng.multinomial(n, counts / n, size=resamples)
        means = draws @ distinct / n
    elif n <= BOOTSTRAP_MAX_ROWS:
        means = np.empty(resamples)
        chunk = max(1, 2_000_000 // n)  # bound the index matrix to ~16 MB
        for start in range(0, resamples, chunk):
            stop = min(resamples, start + chunk)
            idx = rng.integers(0, n, size=(stop - start, n))
            means[start:stop] = a[idx].mean(axis=1)
    else:
        half = 1.959963984540054 * a.std(ddof=1) / math.sqrt(n)
        return float(a.mean() - half), float(a.mean() + half), "normal"
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi), "bootstrap"


def describe(values: Sequence[float], *, excluded: int = 0, pass_threshold: float | None = 0.5,
             seed: int = 0) -> dict[str, Any]:
    # numpy costs start-up time that only this computation needs.
    import numpy as np

    n = len(values)
    out: dict[str, Any] = {"count": n, "excluded": excluded}
    if n == 0:
        out.update(mean=None, std=None, stderr=None, ci95=None, min=None, max=None,
                   percentiles=None, pass_rate=None, pass_threshold=pass_threshold)
        return out
    a = np.asarray(values, dtype=np.float64)
    std = float(a.std(ddof=1)) if n > 1 else 0.0
    lo, hi, method = bootstrap_ci(a, seed=seed)
    out.update(
        mean=float(math.fsum(values) / n), std=std, stderr=std / math.sqrt(n),
        ci95=[lo, hi], ci_method=method, min=float(a.min()), max=float(a.max()),
        percentiles={f"p{p}": float(v) for p, v in zip(PERCENTILES, np.percentile(a, PERCENTILES), strict=True)},
        pass_threshold=pass_threshold,
        pass_rate=float((a >= pass_threshold).mean()) if pass_threshold is not None else None,
    )
    return out
