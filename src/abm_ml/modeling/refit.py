"""The final propensity model: the chosen candidate(s) refitted on train + validation rows.

Early stopping on the validation rows picks the number of boosting rounds of each chosen
member (and the blend weights, when a blend was chosen); the packaged model is then fitted with that many rounds on train + validation, so no closed deal before
the holdout is wasted (the holdout stays untouched). The calibrator must still learn from
scores of rows the booster did not train on, so each train + validation row also gets a
*cross-fitted* raw score: folds grouped by account (no account on both sides of a fold), a
model with the same settings on the other folds, its score on this fold. The calibrator and
the tier thresholds are fitted on those scores and applied to the refitted model, as
scikit-learn's ``CalibratedClassifierCV(ensemble=False)`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from abm_ml.modeling.members import PropensityModel

CROSS_FIT_FOLDS = 3
"""Folds of the cross-fitted scores: each fold booster trains on two thirds of the rows."""
MIN_ROWS_PER_FOLD_CLASS = 5
"""Below this many won (or lost) rows per fold, cross-fitting is not attempted."""


@dataclass(frozen=True)
class Refit:
    """The refitted model, and cross-fitted raw scores of the rows it was fitted on."""

    model: PropensityModel
    rows: np.ndarray
    """Row positions (train then validation) the model was fitted on."""
    cross_fitted_raw: np.ndarray
    """Raw log-odds of each of ``rows`` from a model that did not see that row's account."""

    @property
    def booster(self) -> lgb.Booster:
        """The LightGBM booster of a single-LightGBM refit (as :attr:`AccountScorer.propensity_booster`)."""
        return self.model.booster


def cross_fit_folds(
    y: np.ndarray, groups: np.ndarray, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Account-grouped, outcome-stratified folds; empty when the data are too few to fold."""
    minority = int(min(np.bincount(y, minlength=2)))
    accounts = len(np.unique(groups))
    n_splits = min(CROSS_FIT_FOLDS, minority // MIN_ROWS_PER_FOLD_CLASS, accounts)
    if n_splits < 2:
        return []
    if accounts == len(groups):
        # Every account has one row (e.g. an export without account ids): no fold can split
        # an account, so plain stratified folds are the same constraint. StratifiedGroupKFold
        # would place the rows one by one in Python (several CPU seconds for 60k rows).
        folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        return list(folds.split(np.zeros(len(y)), y))
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(folds.split(np.zeros(len(y)), y, groups))


def refit_propensity(
    fit: Callable[[np.ndarray], PropensityModel],
    rows: np.ndarray,
    cross_fitted: Callable[[], np.ndarray],
) -> Refit:
    """Refit on ``rows`` with the chosen settings, beside its cross-fitted scores.

    Args:
        fit: fits the chosen model (a member or a blend with fixed weights, with the
            early-stopped round counts) on the given row positions.
        rows: positions of the train + validation rows.
        cross_fitted: gives the chosen model's cross-fitted raw scores of ``rows``
            (:func:`abm_ml.modeling.candidates.cross_fit`, or the ones the candidates were
            compared on); they are computed while another thread fits the final model.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="abm-ml-refit") as pool:
        final = pool.submit(fit, rows)
        raw = cross_fitted()
        return Refit(model=final.result(), rows=rows, cross_fitted_raw=raw)
