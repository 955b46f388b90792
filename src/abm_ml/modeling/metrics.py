"""Evaluation metrics for the propensity-to-buy and deal-velocity models.

Every metric comes with a 95 % percentile bootstrap interval, because the hold-out sets of a
B2B pipeline are small (hundreds to a few thousand closed deals) and a point estimate alone
makes a lucky split look like a better model. When rows belong to accounts, whole accounts
are resampled: deals of one account share their outcome drivers, and counting them as
independent rows makes every interval too narrow.

The ROC AUC interval also gates promotion ("no better than chance" when it reaches 0.5), so
it must hold its coverage on small holdouts, where the percentile bootstrap of an AUC is
known to be too narrow (about twice the nominal rate of intervals above 0.5 for a model
trained on shuffled labels, ``bench/bench_gate.py``). Its interval is therefore the hull of
the bootstrap interval and the DeLong interval (clustered by account, Obuchowski 1997), whose
variance is exact in expectation under the null of a score unrelated to the outcome.

Design notes:

* Intervals come from the vectorised bootstrap of :mod:`abm_ml.modeling.bootstrap`: each
  metric is a kernel there, and its point estimate is the same kernel on the full data.
* Ranking metrics (ROC AUC, average precision, top-k metrics) work on groups of tied scores.
  Top-k metrics report the *expected* value under random tie-breaking, so a baseline that
  gives many rows the same score is not flattered (or punished) by the input row order.
* Rows are whatever unit was scored (opportunity, account, lead); "accounts worked" in the
  capacity helpers means rows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from abm_ml.modeling.bootstrap import (
    Kernel,
    Metric,
    TopK,
    as_float,
    as_labels,
    as_probabilities,
    average_precision_kernel,
    bin_ids,
    bootstrap,
    cluster_codes,
    ece_kernel,
    mean_kernel,
    median_kernel,
    roc_auc_kernel,
    safe_ratio,
)

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
    "paired_ece_difference",
    "propensity_metrics",
    "roc_auc_delong",
    "velocity_metrics",
]

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
    groups: object | None = None,
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
        groups: Optional cluster of each row (the account id): the bootstrap then resamples
            whole clusters, and the DeLong variance of the ROC AUC sums over clusters. Rows
            with a missing group are clusters of their own.

    Returns:
        Mapping from metric name to :class:`Metric`:

        * ``roc_auc``, ``pr_auc`` (average precision, sklearn's definition). Resamples with a
          single class are skipped. The ``roc_auc`` interval is the hull of the bootstrap
          interval and the (clustered) DeLong interval, see :func:`roc_auc_delong`.
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
    y = as_labels(y_true)
    n = y.size
    p = as_probabilities(p_pred, n)
    amt = None if amounts is None else as_float("amounts", amounts, n)
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
    clusters = cluster_codes(groups, n)
    clusters = None if clusters is None else clusters[order]

    p_clipped = np.clip(p, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    log_losses = -(y * np.log(p_clipped) + (1 - y) * np.log1p(-p_clipped))
    top = TopK(y, p, amt)

    top_names = ["lift_top_decile", "precision_at_k", "recall_at_k"]
    if amt is not None:
        top_names.append("won_amount_captured_top_k")

    def top_kernel(counts: np.ndarray) -> np.ndarray:
        # One sorted pass serves every top-k metric.
        wins_k, amount_k, n_won, won_amount = top.reached(counts, [decile, k])
        base = n_won / counts.sum(axis=1)
        cols = [
            safe_ratio(wins_k[:, 0] / decile, base),
            wins_k[:, 1] / k,
            safe_ratio(wins_k[:, 1], n_won),
        ]
        if amount_k is not None and won_amount is not None:
            cols.append(safe_ratio(amount_k[:, 1], won_amount))
        return np.column_stack(cols)

    kernels: dict[str, Kernel] = {
        "roc_auc": roc_auc_kernel(y, p),
        "pr_auc": average_precision_kernel(y, p),
        "brier": mean_kernel((p - y) ** 2),
        "log_loss": mean_kernel(log_losses),
        "ece": ece_kernel(y, p, ECE_BINS),
    }
    out = bootstrap(
        kernels, n, n_boot, seed, multi={tuple(top_names): top_kernel}, clusters=clusters
    )
    if n_boot > 0:
        out["roc_auc"] = _with_delong(out["roc_auc"], y, p, clusters)
    n_won = float(y.sum())
    out["base_rate"] = Metric.exact(n_won / n)
    out["n"] = Metric.exact(n)
    out["n_won"] = Metric.exact(n_won)
    out["k"] = Metric.exact(k)
    return out


Z_975 = 1.959963984540054
"""Standard normal 97.5 % quantile: two-sided 95 % intervals, a one-sided 97.5 % chance gate."""


def roc_auc_delong(
    y_true: object, p_pred: object, groups: object | None = None
) -> tuple[float, float]:
    """ROC AUC and its DeLong standard error, clustered when ``groups`` is given.

    DeLong, DeLong & Clarke-Pearson (1988) with Obuchowski's (1997) extension to clustered
    rows: each won row's share of lost rows scored below it (ties count half) and each lost
    row's share of won rows scored above it are summed per cluster; the variance comes from
    the spread of those cluster sums. With one row per cluster it is the plain DeLong
    variance. Ties are handled by the half counts.

    Returns:
        ``(auc, se)``; both NaN when one class is missing, ``se`` NaN when a class sits in a
        single cluster (no spread to estimate from).
    """
    y = as_labels(y_true)
    n = y.size
    p = as_probabilities(p_pred, n)
    codes = cluster_codes(groups, n)
    codes = np.arange(n) if codes is None else codes
    won, lost = y == 1, y == 0
    n_won, n_lost = int(won.sum()), int(lost.sum())
    if n_won == 0 or n_lost == 0:
        return float("nan"), float("nan")
    lost_sorted = np.sort(p[lost])
    won_sorted = np.sort(p[won])
    # Placement values: v10 for won rows, v01 for lost rows (ties count half).
    below = np.searchsorted(lost_sorted, p[won], "left")
    tied = np.searchsorted(lost_sorted, p[won], "right") - below
    v10 = (below + 0.5 * tied) / n_lost
    above = n_won - np.searchsorted(won_sorted, p[lost], "right")
    tied = np.searchsorted(won_sorted, p[lost], "right") - np.searchsorted(
        won_sorted, p[lost], "left"
    )
    v01 = (above + 0.5 * tied) / n_won
    auc = float(v10.mean())
    k = int(codes.max()) + 1
    m_i = np.bincount(codes[won], minlength=k).astype(np.float64)
    n_i = np.bincount(codes[lost], minlength=k).astype(np.float64)
    r10 = np.bincount(codes[won], weights=v10, minlength=k) - m_i * auc
    r01 = np.bincount(codes[lost], weights=v01, minlength=k) - n_i * auc
    k10, k01, k_all = int((m_i > 0).sum()), int((n_i > 0).sum()), int(((m_i + n_i) > 0).sum())
    if min(k10, k01) < 2:
        return auc, float("nan")
    s10 = k10 / ((k10 - 1) * n_won) * np.sum(r10**2)
    s01 = k01 / ((k01 - 1) * n_lost) * np.sum(r01**2)
    s11 = k_all / (k_all - 1) * np.sum(r10 * r01)
    var = s10 / n_won + s01 / n_lost + 2 * s11 / (n_won * n_lost)
    return auc, float(np.sqrt(max(var, 0.0)))


def _with_delong(boot: Metric, y: np.ndarray, p: np.ndarray, clusters: np.ndarray | None) -> Metric:
    """The bootstrap ROC AUC interval widened to the DeLong interval where that is wider.

    The percentile bootstrap is too narrow on small holdouts; the DeLong interval can be too
    narrow or cross [0, 1] near a perfect ranking, where the bootstrap behaves. The hull
    keeps the coverage of whichever holds up on the data at hand.
    """
    auc, se = roc_auc_delong(y, p, clusters)
    if not np.isfinite(se):
        return boot
    low = float(np.clip(auc - Z_975 * se, 0.0, 1.0))
    high = float(np.clip(auc + Z_975 * se, 0.0, 1.0))
    return Metric(boot.value, float(np.fmin(boot.low, low)), float(np.fmax(boot.high, high)))


def paired_ece_difference(
    y_true: object,
    p_new: object,
    p_old: object,
    *,
    n_boot: int = 200,
    seed: int = 0,
    groups: object | None = None,
) -> Metric:
    """ECE of ``p_new`` minus ECE of ``p_old`` on the same rows, with its 95 % interval.

    Both models are measured on each resample (accounts resampled whole when ``groups`` is
    given), so the interval holds the noise of the difference itself, far narrower than the
    two separate intervals. With a few hundred rows the ECE of one model moves by a few
    points from sample to sample; a gate that compares two bare ECEs refuses good models by
    chance.
    """
    y = as_labels(y_true)
    new = ece_kernel(y, as_probabilities(p_new, y.size), ECE_BINS)
    old = ece_kernel(y, as_probabilities(p_old, y.size), ECE_BINS)
    clusters = cluster_codes(groups, y.size)
    kernels = {"difference": lambda counts: new(counts) - old(counts)}
    return bootstrap(kernels, y.size, n_boot, seed, clusters=clusters)["difference"]


def is_no_better_than_chance(metrics: Mapping[str, Metric]) -> bool:
    """True when the ROC AUC interval reaches down to 0.5 (``low <= 0.5``).

    The interval of :func:`propensity_metrics` is built to hold this one-sided 97.5 % bound:
    accounts are resampled as clusters and the DeLong interval backs the bootstrap, so a
    model trained on noise passes in about 2.5 % of draws (``bench/bench_gate.py``).

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
    y = as_labels(y_true)
    p = as_probabilities(p_pred, y.size)
    ids = bin_ids(p, n_bins, strategy)
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
            # Bounds around the observed rate even when a bin is all won or all lost, where
            # rounding puts the Wilson bound a hair past the rate (error bars must not be negative).
            "observed_low": np.minimum(np.clip(centre - half, 0.0, 1.0), rate),
            "observed_high": np.maximum(np.clip(centre + half, 0.0, 1.0), rate),
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
    y = as_labels(y_true)
    n = y.size
    p = as_probabilities(p_pred, n)
    amt = None if amounts is None else as_float("amounts", amounts, n)
    top = TopK(y, p, amt)
    worked = np.arange(n + 1)
    wins, amount, n_won, won_amount = top.curve(worked)
    frame = pd.DataFrame(
        {
            "accounts_worked": worked,
            "fraction_worked": worked / n,
            "wins_reached": wins,
            "fraction_wins": safe_ratio(wins, n_won),
        }
    )
    if amount is not None and won_amount is not None:
        frame["fraction_won_amount"] = safe_ratio(amount, won_amount)
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
    y = as_labels(y_true)
    n = y.size
    p = as_probabilities(p_pred, n)
    amt = None if amounts is None else as_float("amounts", amounts, n)
    if any(int(c) < 1 for c in capacities):
        raise ValueError("capacities must be >= 1")
    ks = [min(int(c), n) for c in capacities]
    wins, amount, n_won, won_amount = TopK(y, p, amt).curve(np.asarray(ks, dtype=np.float64))
    frame = pd.DataFrame(
        {
            "capacity": [int(c) for c in capacities],
            "k": ks,
            "wins_reached": wins,
            "share_of_wins": safe_ratio(wins, n_won),
            "precision": wins / np.asarray(ks, dtype=np.float64),
        }
    )
    if amount is not None and won_amount is not None:
        frame["share_of_won_amount"] = safe_ratio(amount, won_amount)
    return frame


# --------------------------------------------------------------------------------------------
# Velocity
# --------------------------------------------------------------------------------------------


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
    days = as_float("days_true", days, n)
    median = as_float("p50", p50, n)
    if (p10 is None) != (p90 is None):
        raise ValueError("pass both p10 and p90, or neither")

    abs_err = np.abs(days - median)
    kernels: dict[str, Kernel] = {
        "mae_days": mean_kernel(abs_err),
        # Same-day closes would divide by zero; one day is the reporting resolution.
        "median_ape": median_kernel(abs_err / np.maximum(days, 1.0)),
    }
    if p10 is not None and p90 is not None:
        low = as_float("p10", p10, n)
        high = as_float("p90", p90, n)
        inside = ((days >= low) & (days <= high)).astype(np.float64)
        kernels["coverage_p10_p90"] = mean_kernel(inside)
        kernels["interval_width_days"] = median_kernel(high - low)
    if baseline_days is not None:
        base_err = np.abs(days - float(baseline_days))
        model_mae = mean_kernel(abs_err)
        base_mae = mean_kernel(base_err)
        kernels["baseline_mae_days"] = base_mae
        kernels["mae_improvement"] = lambda counts: (
            1.0 - safe_ratio(model_mae(counts), base_mae(counts))
        )
    out = bootstrap(kernels, n, n_boot, seed)
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
    t = as_float("durations", durations, n)
    pred = as_float("predicted_days", predicted_days, n)
    events = None if event_observed is None else as_float("event_observed", event_observed, n)
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
