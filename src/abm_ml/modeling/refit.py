"""The final propensity booster: the chosen configuration refitted on train + validation rows.

Early stopping on the validation rows picks the number of boosting rounds; the packaged
booster is then fitted with that many rounds on train + validation, so no closed deal before
the holdout is wasted (the holdout stays untouched). The calibrator must still learn from
scores of rows the booster did not train on, so each train + validation row also gets a
*cross-fitted* raw score: folds grouped by account (no account on both sides of a fold), a
booster with the same rounds on the other folds, its score on this fold. The calibrator and
the tier thresholds are fitted on those scores and applied to the refitted booster, as
scikit-learn's ``CalibratedClassifierCV(ensemble=False)`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from abm_ml.config import num_threads

CROSS_FIT_FOLDS = 3
"""Folds of the cross-fitted scores: each fold booster trains on two thirds of the rows."""
MIN_ROWS_PER_FOLD_CLASS = 5
"""Below this many won (or lost) rows per fold, cross-fitting is not attempted."""


@dataclass(frozen=True)
class Refit:
    """The refitted booster, and cross-fitted raw scores of the rows it was fitted on."""

    booster: lgb.Booster
    rows: np.ndarray
    """Row positions (train then validation) the booster was fitted on."""
    cross_fitted_raw: np.ndarray
    """Raw log-odds of each of ``rows`` from a booster that did not see that row's account."""
    rounds: int


def _train(params: dict, x: pd.DataFrame, y: np.ndarray, rounds: int, categorical: list[str]):
    data = lgb.Dataset(x, y, categorical_feature=categorical or "auto", free_raw_data=False)
    return lgb.train(params, data, num_boost_round=rounds)


def _folds(y: np.ndarray, groups: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Account-grouped, outcome-stratified folds; empty when the data are too few to fold."""
    minority = int(min(np.bincount(y, minlength=2)))
    n_splits = min(CROSS_FIT_FOLDS, minority // MIN_ROWS_PER_FOLD_CLASS, len(np.unique(groups)))
    if n_splits < 2:
        return []
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(folds.split(np.zeros(len(y)), y, groups))


def refit_propensity(
    params: dict,
    matrix: pd.DataFrame,
    y: np.ndarray,
    rows: np.ndarray,
    groups: np.ndarray,
    rounds: int,
    categorical: list[str],
    *,
    seed: int,
) -> Refit | None:
    """Refit on ``rows`` with ``rounds`` rounds, with cross-fitted scores for calibration.

    Args:
        params: LightGBM parameters of the early-stopped booster (monotone constraints included).
        matrix: the preprocessed feature matrix of every dataset row.
        y: 1 for won, 0 for lost, per dataset row.
        rows: positions of the train + validation rows.
        groups: account id per dataset row (folds never split an account).
        rounds: the early-stopped booster's best iteration.
        categorical: categorical feature names.
        seed: fold shuffling seed.

    Returns:
        The refit, or None when the rows are too few to cross-fit (then the early-stopped
        booster and its validation-fitted calibrator are kept).
    """
    fit_y = y[rows]
    folds = _folds(fit_y, np.asarray(groups)[rows].astype(str), seed)
    if not folds:
        return None
    rounds = max(int(rounds), 1)
    x = matrix.iloc[rows]
    cross_fitted = np.empty(len(rows))
    for fit_part, score_part in folds:
        fold_booster = _train(params, x.iloc[fit_part], fit_y[fit_part], rounds, categorical)
        cross_fitted[score_part] = fold_booster.predict(
            x.iloc[score_part], raw_score=True, num_threads=num_threads()
        )
    booster = _train(params, x, fit_y, rounds, categorical)
    return Refit(booster=booster, rows=rows, cross_fitted_raw=cross_fitted, rounds=rounds)
