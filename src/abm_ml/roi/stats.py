"""Two-group comparisons with intervals, and the sample size a comparison would need.

Intervals are percentile bootstraps over accounts (or deals) drawn by the project's vectorised
bootstrap (:func:`abm_ml.modeling.bootstrap.bootstrap`): both groups are resampled together, so
a resample's group sizes vary as they would in a new sample of the same population. The
p-value of a difference in rates is Fisher's exact test and the sample size is the usual
normal approximation for two proportions (both from scipy).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from abm_ml.modeling.bootstrap import Metric, bootstrap, median_kernel

N_BOOT = 2000
ALPHA = 0.05
POWER = 0.8


def _group_kernel(values: np.ndarray, in_group: np.ndarray, statistic: str):
    """Kernel of a statistic over one group's rows of a count matrix (NaN when the group is absent)."""
    subset = values[in_group]
    median = median_kernel(subset) if statistic == "median" and subset.size else None

    def kernel(counts: np.ndarray) -> np.ndarray:
        part = counts[:, in_group]
        total = part.sum(axis=1)
        if subset.size == 0:
            return np.full(counts.shape[0], np.nan)
        if statistic == "mean":
            value = (part @ subset) / np.where(total > 0, total, 1.0)
            return np.where(total > 0, value, np.nan)
        # The median kernel indexes past the end of an empty resample: evaluate present ones only.
        value = np.full(counts.shape[0], np.nan)
        present = total > 0
        if present.any():
            value[present] = median(part[present])
        return value

    return kernel


def compare(
    values: np.ndarray,
    treated: np.ndarray,
    statistic: str = "mean",
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, Metric]:
    """The statistic in each group and their difference (treated minus untreated), with intervals.

    Args:
        values: One value per row (e.g. 1/0 opened an opportunity, days to close, revenue).
        treated: True for rows of the treated group (pilot arm, touched deals).
        statistic: ``"mean"`` or ``"median"``.
        n_boot: Bootstrap resamples.
        seed: Bootstrap seed.

    Returns:
        ``treated``, ``untreated`` and ``difference`` as :class:`Metric` (NaN when a group is empty).
    """
    if statistic not in {"mean", "median"}:
        raise ValueError("statistic must be 'mean' or 'median'")
    values = np.asarray(values, dtype=float)
    treated = np.asarray(treated, dtype=bool)
    if values.size == 0:
        nan = Metric(math.nan, math.nan, math.nan)
        return {"treated": nan, "untreated": nan, "difference": nan}
    on = _group_kernel(values, treated, statistic)
    off = _group_kernel(values, ~treated, statistic)
    return bootstrap(
        {"treated": on, "untreated": off, "difference": lambda c: on(c) - off(c)},
        n=values.size,
        n_boot=n_boot,
        seed=seed,
    )


def fisher_p_value(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float:
    """Two-sided Fisher exact test that two rates are equal."""
    if n_a == 0 or n_b == 0:
        return math.nan
    table = [[hits_a, n_a - hits_a], [hits_b, n_b - hits_b]]
    return float(stats.fisher_exact(table).pvalue)


def accounts_needed(
    rate_control: float, rate_pilot: float, *, alpha: float = ALPHA, power: float = POWER
) -> int | None:
    """Accounts per arm to detect ``rate_pilot - rate_control`` (two-sided, normal approximation).

    Returns None when the two rates are equal (no sample size detects a zero difference).
    """
    difference = abs(rate_pilot - rate_control)
    if not difference or math.isnan(difference):
        return None
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    variance = rate_control * (1 - rate_control) + rate_pilot * (1 - rate_pilot)
    return math.ceil(float(z * z * variance / difference**2))
