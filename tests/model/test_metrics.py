"""Tests for abm_ml.modeling.metrics: agreement with scikit-learn, bootstrap behaviour, hand examples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)

from abm_ml.modeling import bootstrap as B
from abm_ml.modeling.metrics import (
    Metric,
    calibration_curve_points,
    capacity_table,
    concordance_index,
    cumulative_gains,
    flatten_for_mlflow,
    is_no_better_than_chance,
    metrics_table,
    propensity_metrics,
    velocity_metrics,
)


def _signal_data(n: int, strength: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    p = 1 / (1 + np.exp(-(strength * x - 1.0)))
    y = (rng.random(n) < p).astype(int)
    return y, p


# --- agreement with scikit-learn ------------------------------------------------------------


@pytest.mark.parametrize("rounding", [None, 1])
def test_point_estimates_match_sklearn(rounding: int | None) -> None:
    y, p = _signal_data(3000, seed=1)
    if rounding is not None:
        p = np.round(p, rounding)  # heavy ties exercise the tie-group code paths
    # Away from 0/1, where sklearn and this module clip log loss at different epsilons.
    p = np.clip(p, 0.01, 0.99)
    m = propensity_metrics(y, p, n_boot=0)
    assert m["roc_auc"].value == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert m["pr_auc"].value == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert m["brier"].value == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    assert m["log_loss"].value == pytest.approx(log_loss(y, p), abs=1e-12)
    assert m["base_rate"].value == pytest.approx(y.mean())
    assert m["n"].value == 3000 and m["n_won"].value == y.sum()


def test_log_loss_clips_certain_misses() -> None:
    m = propensity_metrics([1, 0, 1, 0], [0.0, 1.0, 0.9, 0.1], n_boot=0)
    assert math.isfinite(m["log_loss"].value) and m["log_loss"].value > 10


def test_weighted_kernels_match_sklearn_on_expanded_resample() -> None:
    # The bootstrap feeds count matrices to the kernels; a resample with duplicates must give
    # the same numbers as sklearn on the physically resampled rows.
    y, p = _signal_data(400, seed=2)
    p = np.round(p, 2)
    rng = np.random.default_rng(5)
    idx = rng.integers(0, y.size, y.size)
    counts = np.bincount(idx, minlength=y.size).astype(float)[None, :]
    auc = B.roc_auc_kernel(y.astype(float), p)(counts)[0]
    ap = B.average_precision_kernel(y.astype(float), p)(counts)[0]
    assert auc == pytest.approx(roc_auc_score(y[idx], p[idx]), abs=1e-12)
    assert ap == pytest.approx(average_precision_score(y[idx], p[idx]), abs=1e-12)


def test_weighted_median_matches_numpy() -> None:
    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 50):
        v = np.round(rng.gamma(2, 10, n))
        idx = rng.integers(0, n, n)
        counts = np.bincount(idx, minlength=n).astype(float)[None, :]
        assert B.median_kernel(v)(counts)[0] == pytest.approx(np.median(v[idx]))


# --- bootstrap intervals --------------------------------------------------------------------


def test_interval_contains_value_and_shrinks_with_more_rows() -> None:
    small = propensity_metrics(*_signal_data(500, seed=3), n_boot=200, seed=0)
    large = propensity_metrics(*_signal_data(8000, seed=3), n_boot=200, seed=0)
    for name in ("roc_auc", "pr_auc", "brier", "log_loss", "precision_at_k", "recall_at_k"):
        for m in (small, large):
            assert m[name].low <= m[name].value <= m[name].high, name
            assert m[name].low < m[name].high, name
        width_small = small[name].high - small[name].low
        width_large = large[name].high - large[name].low
        assert width_large < 0.6 * width_small, name


def test_resamples_draw_from_all_rows() -> None:
    # Rows sorted by outcome: a resampler that favoured part of the rows would centre the
    # interval away from the estimate. Brier is a mean, so its width is known analytically.
    n = 2000
    y = np.r_[np.zeros(n // 2), np.ones(n // 2)].astype(int)
    p = np.full(n, 0.3)
    brier = propensity_metrics(y, p, n_boot=2000, seed=0)["brier"]
    losses = (p - y) ** 2
    half_width = 1.96 * losses.std() / np.sqrt(n)
    assert brier.value == pytest.approx(0.29)
    assert (brier.low + brier.high) / 2 == pytest.approx(brier.value, abs=0.2 * half_width)
    assert (brier.high - brier.low) / 2 == pytest.approx(half_width, rel=0.07)


def test_same_seed_same_intervals_different_seed_differs() -> None:
    y, p = _signal_data(1000, seed=4)
    a = propensity_metrics(y, p, n_boot=100, seed=7)
    b = propensity_metrics(y, p, n_boot=100, seed=7)
    c = propensity_metrics(y, p, n_boot=100, seed=8)
    assert a == b
    assert a["roc_auc"] != c["roc_auc"]


def test_single_class_resamples_are_skipped() -> None:
    # With one win in 40 rows many resamples contain no win; AUC must still get an interval.
    y = np.zeros(40, dtype=int)
    y[0] = 1
    p = np.linspace(1, 0, 40)
    m = propensity_metrics(y, p, n_boot=200, seed=0)
    assert m["roc_auc"].value == 1.0
    assert m["roc_auc"].low == 1.0 and m["roc_auc"].high == 1.0


def test_single_class_evaluation_set_gives_nan_auc() -> None:
    m = propensity_metrics([0, 0, 0], [0.1, 0.2, 0.3], n_boot=20)
    assert math.isnan(m["roc_auc"].value) and math.isnan(m["roc_auc"].low)
    assert is_no_better_than_chance(m)


# --- chance detection -----------------------------------------------------------------------


def test_random_scores_are_no_better_than_chance() -> None:
    rng = np.random.default_rng(10)
    y = (rng.random(2000) < 0.3).astype(int)
    m = propensity_metrics(y, rng.random(2000), n_boot=200, seed=0)
    assert m["roc_auc"].low <= 0.5 <= m["roc_auc"].high
    assert is_no_better_than_chance(m)


def test_chance_rule_boundary() -> None:
    assert is_no_better_than_chance({"roc_auc": Metric(0.6, 0.5, 0.7)})
    assert not is_no_better_than_chance({"roc_auc": Metric(0.6, 0.501, 0.7)})


def test_strong_signal_beats_chance() -> None:
    m = propensity_metrics(*_signal_data(2000, strength=2.0, seed=11), n_boot=200)
    assert m["roc_auc"].low > 0.7
    assert not is_no_better_than_chance(m)


# --- lift, precision/recall at k ------------------------------------------------------------


def test_perfect_ranking_lift_is_inverse_base_rate() -> None:
    # 20 % win rate > 10 %: the whole top decile is won, lift = 1 / base_rate = 5.
    y = np.r_[np.ones(200), np.zeros(800)].astype(int)
    p = np.r_[np.linspace(0.99, 0.9, 200), np.linspace(0.5, 0.01, 800)]
    m = propensity_metrics(y, p, n_boot=50)
    assert m["lift_top_decile"].value == pytest.approx(5.0)


def test_perfect_ranking_lift_is_capped_by_the_decile() -> None:
    # 5 % win rate < 10 %: at most half the top decile can be won, lift = n / decile = 10.
    y = np.r_[np.ones(50), np.zeros(950)].astype(int)
    p = np.r_[np.linspace(0.99, 0.9, 50), np.linspace(0.5, 0.01, 950)]
    m = propensity_metrics(y, p, n_boot=0)
    assert m["lift_top_decile"].value == pytest.approx(10.0)
    assert m["recall_at_k"].value == pytest.approx(1.0)


def test_precision_and_recall_at_k_hand_example() -> None:
    y = [1, 0, 1, 0, 0, 1, 0, 0, 0, 0]
    p = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    amounts = [100, 50, 300, 10, 10, 600, 10, 10, 10, 10]
    m = propensity_metrics(y, p, k=3, n_boot=0, amounts=amounts)
    assert m["precision_at_k"].value == pytest.approx(2 / 3)
    assert m["recall_at_k"].value == pytest.approx(2 / 3)
    assert m["won_amount_captured_top_k"].value == pytest.approx(400 / 1000)
    assert m["k"].value == 3
    # Default k is 10 % of rows, at least 1: the top row only.
    m_default = propensity_metrics(y, p, n_boot=0)
    assert m_default["k"].value == 1
    assert m_default["precision_at_k"].value == 1.0
    assert m_default["recall_at_k"].value == pytest.approx(1 / 3)


def test_top_k_ties_use_expected_value_not_row_order() -> None:
    # A constant-score baseline must score the base rate whatever the row order.
    y = np.r_[np.ones(30), np.zeros(70)].astype(int)
    flat = np.full(100, 0.3)
    forward = propensity_metrics(y, flat, k=10, n_boot=0)
    backward = propensity_metrics(y[::-1], flat, k=10, n_boot=0)
    for m in (forward, backward):
        assert m["precision_at_k"].value == pytest.approx(0.3)
        assert m["lift_top_decile"].value == pytest.approx(1.0)
        assert m["roc_auc"].value == pytest.approx(0.5)


# --- calibration ----------------------------------------------------------------------------


def test_ece_small_when_calibrated_large_when_not() -> None:
    rng = np.random.default_rng(12)
    p = rng.random(20000)
    y = (rng.random(20000) < p).astype(int)
    calibrated = propensity_metrics(y, p, n_boot=0)["ece"].value
    miscalibrated = propensity_metrics(y, p**3, n_boot=0)["ece"].value
    assert calibrated < 0.02
    assert miscalibrated > 0.2


def test_ece_does_not_let_over_and_under_confidence_cancel() -> None:
    # Overconfident scores are too low below 0.5 and too high above: the signed errors cancel
    # overall, the per-bin absolute errors must not.
    rng = np.random.default_rng(16)
    p = rng.random(20000)
    y = (rng.random(20000) < p).astype(int)
    logit = np.log(p / (1 - p))
    overconfident = 1 / (1 + np.exp(-3 * logit))
    assert abs(np.mean(y - overconfident)) < 0.01
    assert propensity_metrics(y, overconfident, n_boot=0)["ece"].value > 0.1


def test_calibration_curve_points() -> None:
    rng = np.random.default_rng(13)
    p = rng.random(5000)
    y = (rng.random(5000) < p).astype(int)
    curve = calibration_curve_points(y, p, n_bins=10)
    assert len(curve) == 10
    assert curve["n"].sum() == 5000
    assert (curve["n"] == 500).all()  # equal-frequency by default
    assert np.all(np.diff(curve["mean_predicted"]) > 0)
    assert np.allclose(curve["observed_rate"], curve["mean_predicted"], atol=0.08)
    assert (curve["observed_low"] <= curve["observed_rate"]).all()
    assert (curve["observed_rate"] <= curve["observed_high"]).all()
    uniform = calibration_curve_points(y, p * 0.5, n_bins=10, strategy="uniform")
    assert len(uniform) == 5  # empty equal-width bins above 0.5 are dropped
    assert uniform["mean_predicted"].max() < 0.5


# --- gains and capacity ---------------------------------------------------------------------


def test_cumulative_gains_perfect_and_amounts() -> None:
    y = [1, 1, 0, 0]
    p = [0.9, 0.8, 0.2, 0.1]
    gains = cumulative_gains(y, p, amounts=[30, 10, 5, 5])
    assert list(gains["accounts_worked"]) == [0, 1, 2, 3, 4]
    assert list(gains["fraction_worked"]) == [0, 0.25, 0.5, 0.75, 1.0]
    assert list(gains["fraction_wins"]) == [0, 0.5, 1, 1, 1]
    assert list(gains["fraction_won_amount"]) == [0, 0.75, 1, 1, 1]
    assert "fraction_won_amount" not in cumulative_gains(y, p).columns


def test_capacity_table_hand_example() -> None:
    y = [1, 0, 1, 0, 0, 1, 0, 0]
    p = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    amounts = [100, 999, 300, 999, 999, 600, 999, 999]
    table = capacity_table(y, p, capacities=(1, 3, 6, 50), amounts=amounts)
    expected = pd.DataFrame(
        {
            "capacity": [1, 3, 6, 50],
            "k": [1, 3, 6, 8],
            "wins_reached": [1.0, 2.0, 3.0, 3.0],
            "share_of_wins": [1 / 3, 2 / 3, 1.0, 1.0],
            "precision": [1.0, 2 / 3, 0.5, 3 / 8],
            "share_of_won_amount": [0.1, 0.4, 1.0, 1.0],
        }
    )
    pd.testing.assert_frame_equal(table, expected)
    assert "share_of_won_amount" not in capacity_table(y, p, capacities=(2,)).columns


# --- velocity -------------------------------------------------------------------------------


def test_velocity_metrics_hand_example() -> None:
    days = np.array([10.0, 20.0, 30.0, 40.0, 0.0])
    p50 = np.array([12.0, 20.0, 24.0, 50.0, 2.0])
    p10 = np.array([5.0, 21.0, 20.0, 30.0, 0.0])
    p90 = np.array([15.0, 30.0, 30.0, 39.0, 5.0])
    m = velocity_metrics(days, p50, p10, p90, baseline_days=25.0, n_boot=100)
    assert m["mae_days"].value == pytest.approx((2 + 0 + 6 + 10 + 2) / 5)
    # APE: 0.2, 0, 0.2, 0.25, 2 (same-day close divides by 1 day) -> median 0.2
    assert m["median_ape"].value == pytest.approx(0.2)
    # inside [p10, p90]: yes, no (20 < 21), yes (edge), no (40 > 39), yes
    assert m["coverage_p10_p90"].value == pytest.approx(3 / 5)
    assert m["interval_width_days"].value == pytest.approx(9.0)  # widths 10, 9, 10, 9, 5
    assert m["baseline_mae_days"].value == pytest.approx((15 + 5 + 5 + 15 + 25) / 5)
    assert m["mae_improvement"].value == pytest.approx(1 - 4 / 13)
    assert m["n"].value == 5
    assert "coverage_p10_p90" not in velocity_metrics(days, p50, n_boot=0)


def test_velocity_interval_and_improvement_sign() -> None:
    rng = np.random.default_rng(14)
    days = rng.gamma(2.0, 30.0, 3000)
    good = days * rng.lognormal(0, 0.2, 3000)
    m = velocity_metrics(days, good, baseline_days=float(np.median(days)), n_boot=200)
    assert m["mae_improvement"].low > 0.3
    assert m["mae_days"].low <= m["mae_days"].value <= m["mae_days"].high


def test_concordance_direction_with_censoring() -> None:
    rng = np.random.default_rng(15)
    durations = rng.gamma(2.0, 30.0, 500)
    closed = rng.random(500) < 0.7  # 30 % still open, durations are days open so far
    assert concordance_index(durations, durations, closed) > 0.99
    assert concordance_index(durations, -durations, closed) < 0.01
    noisy = durations * rng.lognormal(0, 0.3, 500)
    assert 0.7 < concordance_index(durations, noisy, closed) < 0.99
    assert concordance_index(durations, rng.random(500), closed) == pytest.approx(0.5, abs=0.06)


# --- reporting ------------------------------------------------------------------------------


def test_metric_str_and_dict() -> None:
    assert str(Metric(0.8531, 0.8412, 0.8659)) == "0.853 [0.841, 0.866]"
    assert str(Metric.exact(20000)) == "20000"
    assert str(Metric.exact(0.2)) == "0.200"
    assert Metric(1.0, 0.5, 2.0).to_dict() == {"value": 1.0, "low": 0.5, "high": 2.0}


def test_metrics_table_side_by_side() -> None:
    table = metrics_table(
        {
            "model": {"roc_auc": Metric(0.8531, 0.8412, 0.8659), "n": Metric.exact(10)},
            "prior": {"roc_auc": Metric(0.5, 0.48, 0.52), "extra": Metric.exact(1)},
        }
    )
    assert list(table.columns) == ["model", "prior"]
    assert list(table.index) == ["roc_auc", "n", "extra"]
    assert table.loc["roc_auc", "model"] == "0.853 [0.841, 0.866]"
    assert table.loc["roc_auc", "prior"] == "0.500 [0.480, 0.520]"
    assert table.loc["extra", "model"] == ""


def test_flatten_for_mlflow_keys_are_valid() -> None:
    flat = flatten_for_mlflow("val:set", {"roc_auc": Metric(0.8, 0.7, 0.9), "p@k": Metric.exact(3)})
    assert flat == {
        "val_set_roc_auc": 0.8,
        "val_set_roc_auc_low": 0.7,
        "val_set_roc_auc_high": 0.9,
        "val_set_p_k": 3.0,
        "val_set_p_k_low": 3.0,
        "val_set_p_k_high": 3.0,
    }
    import re

    assert all(re.fullmatch(r"[A-Za-z0-9_\-. /]+", key) for key in flat)


# --- input validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("y", "p"),
    [([0, 1, 2], [0.1, 0.2, 0.3]), ([0, 1], [0.1, 1.2]), ([0, 1], [0.1]), ([0, 1], [0.1, np.nan])],
)
def test_invalid_inputs_raise(y: list[int], p: list[float]) -> None:
    with pytest.raises(ValueError):
        propensity_metrics(y, p, n_boot=0)
