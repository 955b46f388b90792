"""The calibration chosen by cross-fitting: none, Platt's sigmoid or isotonic regression."""

from __future__ import annotations

import numpy as np
import pytest

from abm_ml.modeling.train import choose_calibrator


def _labels(rng: np.random.Generator, log_odds: np.ndarray) -> np.ndarray:
    return (rng.random(len(log_odds)) < 1 / (1 + np.exp(-log_odds))).astype(int)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_model_calibrated_already_is_left_as_it_is(seed):
    """Labels drawn from exactly sigmoid(raw) on a few hundred rows: any recalibration fitted
    on them adds noise, so the model's own probability wins on held-out folds."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(-1.0, 1.2, size=400)
    calibrator, losses = choose_calibrator(raw, _labels(rng, raw), seed=0)
    assert calibrator.method == "none"
    assert losses["calibration_cv_log_loss_none"] == min(losses.values())
    np.testing.assert_allclose(calibrator(raw), 1 / (1 + np.exp(-raw)))


def test_an_overconfident_model_is_recalibrated():
    """Raw scores three times too large: sigmoid(raw) is overconfident, so a fitted
    calibration wins and maps the scores back towards the true probabilities."""
    rng = np.random.default_rng(3)
    true_log_odds = rng.normal(-1.0, 1.2, size=3000)
    y = _labels(rng, true_log_odds)
    raw = 3.0 * true_log_odds
    calibrator, losses = choose_calibrator(raw, y, seed=0)
    assert calibrator.method in {"sigmoid", "isotonic"}
    assert losses["calibration_cv_log_loss_none"] > min(losses.values()) * 1.05
    truth = 1 / (1 + np.exp(-true_log_odds))
    own = 1 / (1 + np.exp(-raw))
    assert np.abs(calibrator(raw) - truth).mean() < 0.5 * np.abs(own - truth).mean()


def test_a_more_complex_calibration_must_be_clearly_better():
    """Isotonic regression wins back its steps only beyond the noise; a true step-shaped
    miscalibration on many rows is what it is for."""
    rng = np.random.default_rng(4)
    # Overconfident but sigmoid-shaped: Platt's two numbers fix it, isotonic's small edge on
    # the training folds is within the noise, so the smooth map (which keeps the order of
    # every account) is kept.
    true_log_odds = rng.normal(-1.0, 1.2, size=3000)
    raw = 3.0 * true_log_odds
    calibrator, losses = choose_calibrator(raw, _labels(rng, true_log_odds), seed=0)
    assert calibrator.method == "sigmoid"
    p = calibrator(raw)
    assert len(np.unique(p)) == len(np.unique(raw))  # no two accounts merged into a step
    # A step: the win rate jumps at raw = 0 and is flat on each side; no sigmoid fits it.
    raw = rng.normal(0.0, 1.0, size=6000)
    y = (rng.random(len(raw)) < np.where(raw > 0, 0.7, 0.1)).astype(int)
    calibrator, losses = choose_calibrator(raw, y, seed=0)
    assert calibrator.method == "isotonic"
    assert losses["calibration_cv_log_loss_isotonic"] < losses["calibration_cv_log_loss_sigmoid"]
