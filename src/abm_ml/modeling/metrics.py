"""Evaluation metrics for the propensity-to-buy and deal-velocity models.

Every metric comes with a 95 % percentile bootstrap interval, because the hold-out sets of a
B2B pipeline are small (hundreds to a few thousand closed deals) and a point estimate alone
makes a lucky split look like a better model.

Design notes:

* The bootstrap is vectorised: a resample is represented by a matrix of per-row counts
  (``counts[b, i]`` = how often row ``i`` was drawn in resample ``b``) and every metric is a
  "kernel" mapping such a matrix to one value per resample. The point estimate is the same
  kernel evaluated on a matrix of ones, so the code checked against scikit-learn in the tests
  is the code that produces the intervals.
* Ranking metrics (ROC AUC, average precision, top-k metrics) work on groups of tied scores.
  Top-k metrics report the *expected* value under random tie-breaking, so a baseline that
  gives many rows the same score is not flattered (or punished) by the input row order.
* Rows are whatever unit was scored (opportunity, account, lead); "accounts worked" in the
  capacity helpers means rows.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "Metric",
    "calibration_curve_points",
    "capacity_table",
    "concordance_index",
    "cumulative_gains",
    "direction",
    "flatten_for_mlflow",
    "is_better",
    "is_no_better_than_chance",
    "metrics_table",
    "propensity_metrics",
    "velocity_metrics",
]

CI_LEVEL = 0.95
"""Coverage of the percentile bootstrap intervals."""
LOG_LOSS_EPS = 1e-15
"""Probabilities are clipped to ``[eps, 1 - eps]`` so a confident miss costs ~34.5 nats, not inf."""
ECE_BINS = 10

HIGHER_IS_BETTER = frozenset(
    {
        "roc_auc",
        "pr_auc",
        "lift_top_decile",
        "precision_at_k",
        "recall_at_k",
        "won_amount_captured_top_k",
        "mae_improvement",
        "c_index",
    }
)
LOWER_IS_BETTER = frozenset({"brier", "log_loss", "ece", "mae_days", "median_ape"})
"""The one table of metric directions: reports, promotion and benchmarks all read it."""


def direction(metric: str) -> int:
    """+1 when a higher value of ``metric`` is better, -1 when lower is better, 0 when neither.

    Names with a prefix (``propensity.ece``) or suffix (``roc_auc_low``) are looked up by the
    known name they contain.
    """
    for name in (metric, metric.rsplit(".", 1)[-1]):
        if name in HIGHER_IS_BETTER:
            return 1
        if name in LOWER_IS_BETTER:
            return -1
    return 0


def is_better(metric: str, candidate: float, reference: float) -> bool:
    """Whether ``candidate`` is strictly better than ``reference`` on ``metric``.

    Raises:
        ValueError: the metric has no direction (e.g. ``n`` or an interval width).
    """
    sign = direction(metric)
    if sign == 0:
        raise ValueError(f"metric {metric!r} has no better direction")
    return (candidate - reference) * sign > 0


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


def _as_labels(y_true: object) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1 or y.size == 0:
        raise ValueError("y_true must be a non-empty 1-D array")
    if y.dtype == bool:
        return y.astype(np.float64)
    y = y.astype(np.float64)
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("y_true must contain only 0/1 (lost/won)")
    return y


def _as_float(name: str, values: object, n: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _as_probabilities(p_pred: object, n: int) -> np.ndarray:
    p = _as_float("p_pred", p_pred, n)
    if np.any((p < 0) | (p > 1)):
        raise ValueError("p_pred must be probabilities in [0, 1]")
    return p


def _count_chunks(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Yield bootstrap resamples as float count matrices, in chunks that bound memory.

    The chunk size depends only on ``n``, so the same seed and data give the same intervals.
    """
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, _MAX_CHUNK_CELLS // n))
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        idx = rng.integers(0, n, size=(b, n))
        # Offsetting each resample's indices lets one bincount produce all count rows.
        idx += (np.arange(b) * n)[:, None]
        yield np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        done += b


def _bootstrap(
    kernels: Mapping[str, Kernel],
    n: int,
    n_boot: int,
    seed: int,
    multi: Mapping[tuple[str, ...], Kernel] | None = None,
) -> dict[str, Metric]:
    """Evaluate kernels on the full data and on ``n_boot`` resamples; build intervals.

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
        for counts in _count_chunks(n, n_boot, seed):
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


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
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


def _roc_auc_kernel(y: np.ndarray, p: np.ndarray) -> Kernel:
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
        return _safe_ratio(num, pos_g.sum(axis=1) * n_neg[:, 0])

    return kernel


def _average_precision_kernel(y: np.ndarray, p: np.ndarray) -> Kernel:
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
        ap = _safe_ratio(np.sum(tp_g * precision, axis=1), n_pos)
        n_all = all_g.sum(axis=1)
        return np.where((n_pos > 0) & (n_pos < n_all), ap, np.nan)

    return kernel


def _mean_kernel(values: np.ndarray) -> Kernel:
    def kernel(counts: np.ndarray) -> np.ndarray:
        return (counts @ values) / counts.sum(axis=1)

    return kernel


def _bin_ids(p: np.ndarray, n_bins: int, strategy: str) -> np.ndarray:
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


def _ece_kernel(y: np.ndarray, p: np.ndarray, n_bins: int) -> Kernel:
    # ECE = sum_b (n_b / n) |mean(y)_b - mean(p)_b| = sum_b |sum_b(y - p)| / n.
    ids = _bin_ids(p, n_bins, "quantile")
    weights = np.zeros((p.size, ids.max() + 1))
    weights[np.arange(p.size), ids] = y - p

    def kernel(counts: np.ndarray) -> np.ndarray:
        return np.abs(counts @ weights).sum(axis=1) / counts.sum(axis=1)

    return kernel


class _TopK:
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


def _default_k(n: int) -> int:
    # Integer ceiling: 0.1 * n in floating point can land just above an integer.
    return max(1, -(-n // 10))


def propensity_metrics(
    y_true: object,
    p_pred: object,
    *,
    k: int | None = None,
    n_boot: int = 200,
    seed: int = 0,
    amounts: object | None = None,
) -> dict[str, Metric]:
    """Discrimination, calibration and capacity metrics of a win-probability model.

    Args:
        y_true: 1 for won, 0 for lost deals (open deals must be excluded beforehand).
        p_pred: Predicted win probabilities in [0, 1].
        k: Sales capacity for ``precision_at_k`` / ``recall_at_k``: how many top-scored rows
            a team can work. Defaults to 10 % of rows (at least 1); capped at the row count.
        n_boot: Bootstrap resamples for the 95 % percentile intervals (0 disables them; the
            intervals are then NaN).
        seed: Seed of the numpy Generator drawing the resamples.
        amounts: Optional deal amounts; adds ``won_amount_captured_top_k``.

    Returns:
        Mapping from metric name to :class:`Metric`:

        * ``roc_auc``, ``pr_auc`` (average precision, sklearn's definition). Resamples with a
          single class are skipped.
        * ``brier``; ``log_loss`` with probabilities clipped to ``[1e-15, 1 - 1e-15]``.
        * ``ece``: expected calibration error over 10 **equal-frequency** bins (edges are
          quantiles of ``p_pred`` on the full set and kept fixed in resamples). Equal-frequency
          because propensity scores crowd into the low range, where equal-width bins would put
          most rows in one or two bins. ECE sums absolute values, so resampling noise only
          adds to it: for a well-calibrated model the interval sits above the point estimate
          and may not contain it.
        * ``lift_top_decile``: win rate in the top 10 % (ceil) of rows by score over the base
          rate. Its maximum is ``min(1 / base_rate, n / decile_size)``.
        * ``precision_at_k``, ``recall_at_k``; ``won_amount_captured_top_k`` when amounts are
          given (share of the won amount in the top ``k``).
        * ``base_rate``, ``n``, ``n_won``, ``k``: exact values (interval equals the value).

        Top-k metrics use the expectation under random tie-breaking of equal scores.

    Raises:
        ValueError: On mismatched lengths, non-binary labels, probabilities outside [0, 1],
            NaNs, or ``k < 1``.
    """
    y = _as_labels(y_true)
    n = y.size
    p = _as_probabilities(p_pred, n)
    amt = None if amounts is None else _as_float("amounts", amounts, n)
    if k is None:
        k = _default_k(n)
    if k < 1:
        raise ValueError("k must be >= 1")
    k = min(int(k), n)
    decile = _default_k(n)

    # Sorting once by descending score lets every ranking kernel skip its per-resample gather.
    # Resampling is exchangeable over rows, so this changes no distribution, only which rows a
    # given seed draws.
    order = np.argsort(-p, kind="stable")
    y, p = y[order], p[order]
    amt = None if amt is None else amt[order]

    p_clipped = np.clip(p, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    log_losses = -(y * np.log(p_clipped) + (1 - y) * np.log1p(-p_clipped))
    top = _TopK(y, p, amt)

    top_names = ["lift_top_decile", "precision_at_k", "recall_at_k"]
    if amt is not None:
        top_names.append("won_amount_captured_top_k")

    def top_kernel(counts: np.ndarray) -> np.ndarray:
        # One sorted pass serves every top-k metric.
        wins_k, amount_k, n_won, won_amount = top.reached(counts, [decile, k])
        base = n_won / counts.sum(axis=1)
        cols = [
            _safe_ratio(wins_k[:, 0] / decile, base),
            wins_k[:, 1] / k,
            _safe_ratio(wins_k[:, 1], n_won),
        ]
        if amount_k is not None and won_amount is not None:
            cols.append(_safe_ratio(amount_k[:, 1], won_amount))
        return np.column_stack(cols)

    kernels: dict[str, Kernel] = {
        "roc_auc": _roc_auc_kernel(y, p),
        "pr_auc": _average_precision_kernel(y, p),
        "brier": _mean_kernel((p - y) ** 2),
        "log_loss": _mean_kernel(log_losses),
        "ece": _ece_kernel(y, p, ECE_BINS),
    }
    out = _bootstrap(kernels, n, n_boot, seed, multi={tuple(top_names): top_kernel})
    n_won = float(y.sum())
    out["base_rate"] = Metric.exact(n_won / n)
    out["n"] = Metric.exact(n)
    out["n_won"] = Metric.exact(n_won)
    out["k"] = Metric.exact(k)
    return out


def is_no_better_than_chance(metrics: Mapping[str, Metric]) -> bool:
    """True when the ROC AUC interval reaches down to 0.5 (``low <= 0.5``).

    An undefined interval (NaN, e.g. a single-class evaluation set) also counts as no better
    than chance, since nothing shows the model ranks wins above losses.
    """
    low = metrics["roc_auc"].low
    return bool(np.isnan(low) or low <= 0.5)


def calibration_curve_points(
    y_true: object, p_pred: object, n_bins: int = 10, *, strategy: str = "quantile"
) -> pd.DataFrame:
    """Reliability-diagram points: mean predicted probability vs observed win rate per bin.

    Args:
        y_true: 1 for won, 0 for lost.
        p_pred: Predicted win probabilities.
        n_bins: Number of bins (fewer when quantile edges coincide or uniform bins are empty).
        strategy: ``"quantile"`` (equal-frequency, the binning behind ``ece``) or
            ``"uniform"`` (equal-width on [0, 1]).

    Returns:
        One row per non-empty bin with ``mean_predicted``, ``observed_rate``, ``n`` and a 95 %
        Wilson interval ``observed_low`` / ``observed_high`` for error bars.
    """
    y = _as_labels(y_true)
    p = _as_probabilities(p_pred, y.size)
    ids = _bin_ids(p, n_bins, strategy)
    n_used = ids.max() + 1
    count = np.bincount(ids, minlength=n_used).astype(np.float64)
    wins = np.bincount(ids, weights=y, minlength=n_used)
    rate = wins / count
    z = 1.959963984540054
    centre = (rate + z**2 / (2 * count)) / (1 + z**2 / count)
    half = z * np.sqrt(rate * (1 - rate) / count + z**2 / (4 * count**2)) / (1 + z**2 / count)
    return pd.DataFrame(
        {
            "mean_predicted": np.bincount(ids, weights=p, minlength=n_used) / count,
            "observed_rate": rate,
            "observed_low": np.clip(centre - half, 0.0, 1.0),
            "observed_high": np.clip(centre + half, 0.0, 1.0),
            "n": count.astype(np.int64),
        }
    )


def cumulative_gains(y_true: object, p_pred: object, amounts: object | None = None) -> pd.DataFrame:
    """Cumulative gains curve: share of wins (and won revenue) reached vs share of rows worked.

    Rows are worked from the highest score down; within ties wins are spread evenly
    (expected value under random tie-breaking).

    Returns:
        ``n + 1`` rows starting at (0, 0) with ``accounts_worked``, ``fraction_worked``,
        ``wins_reached``, ``fraction_wins`` and, when amounts are given,
        ``fraction_won_amount``. The random-targeting baseline is the diagonal.
    """
    y = _as_labels(y_true)
    n = y.size
    p = _as_probabilities(p_pred, n)
    amt = None if amounts is None else _as_float("amounts", amounts, n)
    top = _TopK(y, p, amt)
    worked = np.arange(n + 1)
    wins, amount, n_won, won_amount = top.curve(worked)
    frame = pd.DataFrame(
        {
            "accounts_worked": worked,
            "fraction_worked": worked / n,
            "wins_reached": wins,
            "fraction_wins": _safe_ratio(wins, n_won),
        }
    )
    if amount is not None and won_amount is not None:
        frame["fraction_won_amount"] = _safe_ratio(amount, won_amount)
    return frame


def capacity_table(
    y_true: object,
    p_pred: object,
    capacities: Sequence[int] = (10, 50, 100, 500),
    amounts: object | None = None,
) -> pd.DataFrame:
    """What working the top ``k`` rows would have reached, for several team capacities.

    Args:
        y_true: 1 for won, 0 for lost.
        p_pred: Predicted win probabilities (any score works; only the order matters).
        capacities: Numbers of top-scored rows a team could work; each is capped at ``n``.
        amounts: Optional deal amounts; adds ``share_of_won_amount``.

    Returns:
        One row per capacity with ``capacity`` (requested), ``k`` (after capping),
        ``wins_reached``, ``share_of_wins``, ``precision`` (wins / k) and, with amounts,
        ``share_of_won_amount``. Ties straddling the cut-off count in expectation, so
        ``wins_reached`` can be fractional.
    """
    y = _as_labels(y_true)
    n = y.size
    p = _as_probabilities(p_pred, n)
    amt = None if amounts is None else _as_float("amounts", amounts, n)
    if any(int(c) < 1 for c in capacities):
        raise ValueError("capacities must be >= 1")
    ks = [min(int(c), n) for c in capacities]
    wins, amount, n_won, won_amount = _TopK(y, p, amt).curve(np.asarray(ks, dtype=np.float64))
    frame = pd.DataFrame(
        {
            "capacity": [int(c) for c in capacities],
            "k": ks,
            "wins_reached": wins,
            "share_of_wins": _safe_ratio(wins, n_won),
            "precision": wins / np.asarray(ks, dtype=np.float64),
        }
    )
    if amount is not None and won_amount is not None:
        frame["share_of_won_amount"] = _safe_ratio(amount, won_amount)
    return frame


# --------------------------------------------------------------------------------------------
# Velocity
# --------------------------------------------------------------------------------------------


def _median_kernel(values: np.ndarray) -> Kernel:
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


def velocity_metrics(
    days_true: object,
    p50: object,
    p10: object | None = None,
    p90: object | None = None,
    *,
    baseline_days: float | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, Metric]:
    """Error and interval-quality metrics of the days-to-close model on closed deals.

    Open (censored) deals have no true close date, so pass closed deals only; use
    :func:`concordance_index` to include open deals in a ranking check.

    Args:
        days_true: Observed days from opportunity creation to close.
        p50: Predicted median days.
        p10: Predicted 10th percentile (with ``p90`` adds coverage and width).
        p90: Predicted 90th percentile.
        baseline_days: A constant forecast to compare against, e.g. the training median
            cycle length; adds ``baseline_mae_days`` and ``mae_improvement``.
        n_boot: Bootstrap resamples for the 95 % percentile intervals.
        seed: Seed of the numpy Generator drawing the resamples.

    Returns:
        ``mae_days``, ``median_ape`` (median of ``|true - p50| / max(true, 1)``, a fraction),
        ``n`` and, if available, ``coverage_p10_p90`` (share of true days within
        ``[p10, p90]``, target 0.8), ``interval_width_days`` (median ``p90 - p10``),
        ``baseline_mae_days``, ``mae_improvement`` (``1 - mae / baseline_mae``).
    """
    days = np.asarray(days_true, dtype=np.float64)
    if days.ndim != 1 or days.size == 0:
        raise ValueError("days_true must be a non-empty 1-D array")
    n = days.size
    days = _as_float("days_true", days, n)
    median = _as_float("p50", p50, n)
    if (p10 is None) != (p90 is None):
        raise ValueError("pass both p10 and p90, or neither")

    abs_err = np.abs(days - median)
    kernels: dict[str, Kernel] = {
        "mae_days": _mean_kernel(abs_err),
        # Same-day closes would divide by zero; one day is the reporting resolution.
        "median_ape": _median_kernel(abs_err / np.maximum(days, 1.0)),
    }
    if p10 is not None and p90 is not None:
        low = _as_float("p10", p10, n)
        high = _as_float("p90", p90, n)
        inside = ((days >= low) & (days <= high)).astype(np.float64)
        kernels["coverage_p10_p90"] = _mean_kernel(inside)
        kernels["interval_width_days"] = _median_kernel(high - low)
    if baseline_days is not None:
        base_err = np.abs(days - float(baseline_days))
        model_mae = _mean_kernel(abs_err)
        base_mae = _mean_kernel(base_err)
        kernels["baseline_mae_days"] = base_mae
        kernels["mae_improvement"] = lambda counts: (
            1.0 - _safe_ratio(model_mae(counts), base_mae(counts))
        )
    out = _bootstrap(kernels, n, n_boot, seed)
    out["n"] = Metric.exact(n)
    return out


def concordance_index(
    durations: object, predicted_days: object, event_observed: object | None = None
) -> float:
    """Harrell's C for right-censored deal durations.

    Args:
        durations: Days to close for closed deals, days open so far for open deals.
        predicted_days: Predicted days to close (e.g. P50). Higher means a longer cycle, which
            is lifelines' convention (higher score = longer survival), so no sign flip.
        event_observed: 1 when the deal closed (won or lost), 0 when still open (censored).
            ``None`` treats every deal as closed.

    Returns:
        Share of comparable pairs ordered correctly (ties in prediction count half): 1 is a
        perfect ordering, 0.5 random, 0 reversed.
    """
    from lifelines.utils import concordance_index as _lifelines_c  # heavy import, used here only

    n = np.asarray(durations).size
    t = _as_float("durations", durations, n)
    pred = _as_float("predicted_days", predicted_days, n)
    events = None if event_observed is None else _as_float("event_observed", event_observed, n)
    return float(_lifelines_c(t, pred, events))


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def metrics_table(named: Mapping[str, Mapping[str, Metric]]) -> pd.DataFrame:
    """Side-by-side table of several models' metrics (e.g. model vs baselines).

    Args:
        named: Model name -> metrics from :func:`propensity_metrics` / :func:`velocity_metrics`.

    Returns:
        Rows are metric names (in first-seen order), columns model names, cells strings like
        ``"0.853 [0.841, 0.866]"``; a metric a model lacks is an empty string.
    """
    rows: list[str] = []
    for metrics in named.values():
        rows.extend(name for name in metrics if name not in rows)
    data = {
        model: [str(metrics[row]) if row in metrics else "" for row in rows]
        for model, metrics in named.items()
    }
    return pd.DataFrame(data, index=pd.Index(rows, name="metric"), columns=list(named))


_MLFLOW_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")


def flatten_for_mlflow(prefix: str, metrics: Mapping[str, Metric]) -> dict[str, float]:
    """Flatten metrics into MLflow metric keys ``{prefix}_{name}`` plus ``_low`` / ``_high``.

    Characters MLflow rejects (anything but alphanumerics, ``_ - . /`` and space) become ``_``.
    An empty prefix gives bare metric names.
    """
    out: dict[str, float] = {}
    for name, metric in metrics.items():
        key = _MLFLOW_UNSAFE.sub("_", f"{prefix}_{name}" if prefix else name)
        out[key] = float(metric.value)
        out[f"{key}_low"] = float(metric.low)
        out[f"{key}_high"] = float(metric.high)
    return out
