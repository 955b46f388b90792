"""The vectorised bootstrap behind every metric's 95 % interval, and the kernels it evaluates.

A resample is a matrix of per-row counts (``counts[b, i]`` = how often row ``i`` was drawn in
resample ``b``) and every metric is a *kernel* mapping such a matrix to one value per resample.
The point estimate is the same kernel on a matrix of ones, so the code checked against
scikit-learn in the tests is the code that produces the intervals. The public metric functions
built on these kernels live in :mod:`abm_ml.modeling.metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

CI_LEVEL = 0.95
"""Coverage of the percentile bootstrap intervals."""

_MAX_CHUNK_CELLS = 4_000_000
"""Upper bound on ``resamples x rows`` held in memory at once (~32 MB of float64)."""

Kernel = Callable[[np.ndarray], np.ndarray]
"""Maps a ``(n_resamples, n_rows)`` count matrix to one metric value per resample."""


@dataclass(frozen=True)
class Metric:
    """A point estimate with a 95 % bootstrap interval.

    Attributes:
        value: Estimate on the full evaluation set.
        low: Lower bound of the interval (equal to ``value`` for plain counts).
        high: Upper bound of the interval (equal to ``value`` for plain counts).
    """

    value: float
    low: float
    high: float

    @classmethod
    def exact(cls, value: float) -> Metric:
        """A value without sampling uncertainty (row counts, base rate, chosen ``k``)."""
        value = float(value)
        return cls(value, value, value)

    def to_dict(self) -> dict[str, float]:
        """Plain dict for JSON reports."""
        return {"value": self.value, "low": self.low, "high": self.high}

    def __str__(self) -> str:
        if self.low == self.value == self.high:
            if float(self.value).is_integer():
                return str(int(self.value))
            return f"{self.value:.3f}"
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


# --------------------------------------------------------------------------------------------
# Input validation and bootstrap machinery
# --------------------------------------------------------------------------------------------


def as_labels(y_true: object) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1 or y.size == 0:
        raise ValueError("y_true must be a non-empty 1-D array")
    if y.dtype == bool:
        return y.astype(np.float64)
    y = y.astype(np.float64)
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("y_true must contain only 0/1 (lost/won)")
    return y


def as_float(name: str, values: object, n: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def as_probabilities(p_pred: object, n: int) -> np.ndarray:
    p = as_float("p_pred", p_pred, n)
    if np.any((p < 0) | (p > 1)):
        raise ValueError("p_pred must be probabilities in [0, 1]")
    return p


def cluster_codes(groups: object | None, n: int) -> np.ndarray | None:
    """Cluster ids ``0..G-1`` per row from any labels (e.g. account ids), or None.

    Rows with a missing label are clusters of their own. None (or one row per cluster) means
    rows are independent and the plain row bootstrap applies.
    """
    if groups is None:
        return None
    values = np.asarray(groups, dtype=object)
    if values.shape != (n,):
        raise ValueError(f"groups must have shape ({n},), got {values.shape}")
    missing = np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in values])
    labels = np.where(missing, [f"\0row{i}" for i in range(n)], values.astype(str))
    codes = np.unique(labels, return_inverse=True)[1].astype(np.int64)
    return None if codes.max() + 1 == n else codes


def _count_chunks(
    n: int, n_boot: int, seed: int, clusters: np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """Yield bootstrap resamples as float count matrices, in chunks that bound memory.

    With ``clusters`` (codes from :func:`cluster_codes`) whole clusters are drawn with
    replacement and each row counts as often as its cluster: deals of one account move
    together, so their correlated outcomes do not pass for independent evidence.
    The chunk size depends only on ``n``, so the same seed and data give the same intervals.
    """
    rng = np.random.default_rng(seed)
    units = n if clusters is None else int(clusters.max()) + 1
    chunk = max(1, min(n_boot, _MAX_CHUNK_CELLS // max(n, units)))
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        idx = rng.integers(0, units, size=(b, units))
        # Offsetting each resample's indices lets one bincount produce all count rows.
        idx += (np.arange(b) * units)[:, None]
        counts = np.bincount(idx.ravel(), minlength=b * units).reshape(b, units)
        if clusters is not None:
            counts = counts[:, clusters]
        yield counts.astype(np.float64)
        done += b


def bootstrap(
    kernels: Mapping[str, Kernel],
    n: int,
    n_boot: int,
    seed: int,
    multi: Mapping[tuple[str, ...], Kernel] | None = None,
    clusters: np.ndarray | None = None,
) -> dict[str, Metric]:
    """Evaluate kernels on the full data and on ``n_boot`` resamples; build intervals.

    ``clusters`` (codes from :func:`cluster_codes`, aligned with the rows) resamples whole
    clusters instead of rows.

    ``multi`` holds kernels returning several metrics at once as columns of a
    ``(n_resamples, len(names))`` array, for metrics that share an expensive pass.
    Resamples where a metric is undefined (NaN, e.g. AUC with one class) are skipped for that
    metric only.
    """
    if n_boot < 0:
        raise ValueError("n_boot must be >= 0")
    groups: list[tuple[tuple[str, ...], Kernel]] = [
        ((name,), lambda counts, kernel=kernel: kernel(counts)[:, None])
        for name, kernel in kernels.items()
    ]
    groups.extend((multi or {}).items())
    ones = np.ones((1, n))
    values = [kernel(ones)[0] for _, kernel in groups]
    draws: list[list[np.ndarray]] = [[] for _ in groups]
    if n_boot > 0:
        for counts in _count_chunks(n, n_boot, seed, clusters):
            for draw, (_, kernel) in zip(draws, groups):
                draw.append(kernel(counts))
    alpha = (1 - CI_LEVEL) / 2 * 100
    out: dict[str, Metric] = {}
    for (names, _), value, draw in zip(groups, values, draws):
        boot = np.concatenate(draw) if draw else np.empty((0, len(names)))
        for j, name in enumerate(names):
            column = boot[:, j][np.isfinite(boot[:, j])]
            if column.size == 0:
                low = high = float("nan")
            else:
                low, high = (float(q) for q in np.percentile(column, [alpha, 100 - alpha]))
            out[name] = Metric(float(value[j]), low, high)
    return out


def safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _tie_groups(sorted_scores: np.ndarray) -> np.ndarray:
    """Start index of each run of equal scores in a sorted array."""
    return np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])


class _Ranked:
    """Rows ordered by descending score, with tie groups; shared by the ranking kernels.

    Gathering a ``(resamples, rows)`` matrix and summing one-row groups dominate the runtime,
    so both are skipped when the input is already sorted or has no ties.
    """

    def __init__(self, p: np.ndarray) -> None:
        self.order = np.argsort(-p, kind="stable")
        self.sorted = bool(np.all(self.order == np.arange(p.size)))
        self.starts = _tie_groups(p[self.order])
        self.no_ties = self.starts.size == p.size

    def permute(self, counts: np.ndarray) -> np.ndarray:
        return counts if self.sorted else counts[:, self.order]

    def group_sum(self, x: np.ndarray) -> np.ndarray:
        return x if self.no_ties else np.add.reduceat(x, self.starts, axis=1)


# --------------------------------------------------------------------------------------------
# Propensity kernels
# --------------------------------------------------------------------------------------------


def roc_auc_kernel(y: np.ndarray, p: np.ndarray) -> Kernel:
    # Mann-Whitney form: AUC = P(score_won > score_lost) + 0.5 P(tie), summed over tie groups
    # taken from the highest score down (descending like the other ranking kernels).
    ranked = _Ranked(p)
    ys = y[ranked.order]

    def kernel(counts: np.ndarray) -> np.ndarray:
        c = ranked.permute(counts)
        pos_g = ranked.group_sum(c * ys)
        neg_g = ranked.group_sum(c) - pos_g
        n_neg = neg_g.sum(axis=1, keepdims=True)
        neg_below = n_neg - np.cumsum(neg_g, axis=1)
        num = np.sum(pos_g * (neg_below + 0.5 * neg_g), axis=1)
        return safe_ratio(num, pos_g.sum(axis=1) * n_neg[:, 0])

    return kernel


def average_precision_kernel(y: np.ndarray, p: np.ndarray) -> Kernel:
    # Same definition as sklearn.metrics.average_precision_score: sum_k (R_k - R_{k-1}) P_k
    # over distinct score thresholds, highest first.
    ranked = _Ranked(p)
    ys = y[ranked.order]

    def kernel(counts: np.ndarray) -> np.ndarray:
        c = ranked.permute(counts)
        tp_g = ranked.group_sum(c * ys)
        all_g = ranked.group_sum(c)
        # Counts are whole numbers, so max(., 1) only touches thresholds nobody in the resample
        # sits at; those add no recall (tp_g == 0) and must not contribute NaN.
        precision = np.cumsum(tp_g, axis=1) / np.maximum(np.cumsum(all_g, axis=1), 1.0)
        n_pos = tp_g.sum(axis=1)
        ap = safe_ratio(np.sum(tp_g * precision, axis=1), n_pos)
        n_all = all_g.sum(axis=1)
        return np.where((n_pos > 0) & (n_pos < n_all), ap, np.nan)

    return kernel


def mean_kernel(values: np.ndarray) -> Kernel:
    def kernel(counts: np.ndarray) -> np.ndarray:
        return (counts @ values) / counts.sum(axis=1)

    return kernel


def bin_ids(p: np.ndarray, n_bins: int, strategy: str) -> np.ndarray:
    """Assign each probability to a calibration bin (ids are 0..n_used_bins-1)."""
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    if strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        raise ValueError("strategy must be 'quantile' or 'uniform'")
    # Inner edges only: values on an edge go to the upper bin, the maximum stays in the last.
    ids = np.searchsorted(edges[1:-1], p, side="right")
    # Compact so empty uniform bins do not leave gaps.
    return np.unique(ids, return_inverse=True)[1]


def ece_kernel(y: np.ndarray, p: np.ndarray, n_bins: int) -> Kernel:
    # ECE = sum_b (n_b / n) |mean(y)_b - mean(p)_b| = sum_b |sum_b(y - p)| / n.
    ids = bin_ids(p, n_bins, "quantile")
    weights = np.zeros((p.size, ids.max() + 1))
    weights[np.arange(p.size), ids] = y - p

    def kernel(counts: np.ndarray) -> np.ndarray:
        return np.abs(counts @ weights).sum(axis=1) / counts.sum(axis=1)

    return kernel


class TopK:
    """Expected wins / won amount among the ``k`` highest-scored rows of a (re)sample.

    Rows are ranked by score, ties as groups: a tie group straddling the cut-off contributes
    in proportion to the share of it that fits, i.e. the expectation under random
    tie-breaking.
    """

    def __init__(self, y: np.ndarray, p: np.ndarray, amounts: np.ndarray | None) -> None:
        self.ranked = _Ranked(p)
        self.won = y[self.ranked.order]
        self.won_amount = None if amounts is None else (y * amounts)[self.ranked.order]

    def _groups(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        c = self.ranked.permute(counts)
        size = self.ranked.group_sum(c)
        wins = self.ranked.group_sum(c * self.won)
        amount = None if self.won_amount is None else self.ranked.group_sum(c * self.won_amount)
        return size, wins, amount

    def reached(
        self, counts: np.ndarray, ks: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]:
        """Return (wins in top k, won amount in top k, total wins, total won amount).

        The first two have shape ``(n_resamples, len(ks))``, the totals ``(n_resamples,)``.
        """
        size, wins, amount = self._groups(counts)
        before = np.cumsum(size, axis=1) - size
        if self.ranked.no_ties:
            # One row per group: the group's win rate is the row's label whatever its count.
            win_rate: np.ndarray = self.won
            amount_rate = self.won_amount
        else:
            # Counts are whole numbers; max(., 1) only guards groups absent from the resample.
            nonempty = np.maximum(size, 1.0)
            win_rate = wins / nonempty
            amount_rate = None if amount is None else amount / nonempty
        wins_k = np.empty((counts.shape[0], len(ks)))
        amount_k = None if amount is None else np.empty_like(wins_k)
        for j, k in enumerate(ks):
            if j > 0 and k == ks[j - 1]:  # e.g. default k equals the decile
                wins_k[:, j] = wins_k[:, j - 1]
                if amount_k is not None:
                    amount_k[:, j] = amount_k[:, j - 1]
                continue
            taken = np.clip(k - before, 0.0, size)
            wins_k[:, j] = taken @ win_rate if win_rate.ndim == 1 else np.sum(taken * win_rate, 1)
            if amount_k is not None and amount_rate is not None:
                amount_k[:, j] = (
                    taken @ amount_rate
                    if amount_rate.ndim == 1
                    else np.sum(taken * amount_rate, axis=1)
                )
        total_amount = None if amount is None else amount.sum(axis=1)
        return wins_k, amount_k, wins.sum(axis=1), total_amount

    def curve(self, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, float, float | None]:
        """Like :meth:`reached` on the full data, vectorised over many ``ks`` (gains curves)."""
        size, wins, amount = self._groups(np.ones((1, self.won.size)))
        size, wins = size[0], wins[0]
        end = np.cumsum(size)
        before = end - size
        # Tie group holding position k (the k-th worked row); k = 0 maps to the first group.
        g = np.minimum(np.searchsorted(end, ks, side="left"), size.size - 1)
        partial = np.clip(ks - before[g], 0.0, size[g]) / size[g]
        wins_before = np.cumsum(wins) - wins
        wins_k = wins_before[g] + partial * wins[g]
        if amount is None:
            return wins_k, None, float(wins.sum()), None
        amount = amount[0]
        amount_k = (np.cumsum(amount) - amount)[g] + partial * amount[g]
        return wins_k, amount_k, float(wins.sum()), float(amount.sum())


def median_kernel(values: np.ndarray) -> Kernel:
    # Median of a resample from counts: position j of the sorted resample is the first sorted
    # value whose cumulative count exceeds j; average the two middle positions like np.median.
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]

    def kernel(counts: np.ndarray) -> np.ndarray:
        cum = np.cumsum(counts[:, order], axis=1)
        total = cum[:, -1:]
        lower = np.sum(cum <= np.floor((total - 1) / 2), axis=1)
        upper = np.sum(cum <= np.floor(total / 2), axis=1)
        return (sorted_values[lower] + sorted_values[upper]) / 2

    return kernel
