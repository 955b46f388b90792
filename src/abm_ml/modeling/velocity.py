"""Deal velocity: candidate models of days to close, chosen on the validation rows.

Candidates (:data:`VELOCITY_CANDIDATES`):

- LightGBM quantile models (P10/P50/P90) of log(1 + days) on won deals, in two sizes;
- a censoring-aware log-normal AFT (lifelines, :class:`LogNormalVelocity`) fitted on won
  deals *and* open deals, right-censored at the data's end (an open deal has been open at
  least that long), when the data have dates and open deals.

The one with the lowest P50 mean absolute error in days on the validation part's won deals
is packaged and served. The holdout's velocity metrics come from
:func:`abm_ml.modeling.evaluate.evaluate_scorer` on the packaged scorer; the C-index with
open deals and the AFT comparison on the holdout are logged next to them.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd

from abm_ml.data.split import Split
from abm_ml.data.validate import Dataset
from abm_ml.modeling import metrics as m
from abm_ml.modeling.boosting import TrainConfig, fit_booster
from abm_ml.modeling.feature_info import FeatureInfo
from abm_ml.modeling.members import parallel_map
from abm_ml.modeling.scorer import VelocityModel
from abm_ml.schema import CLOSED_AT, CREATED_AT, DAYS_TO_CLOSE, OPEN, OUTCOME, WON

logger = logging.getLogger(__name__)
QUANTILES = {"p10": 0.1, "p50": 0.5, "p90": 0.9}
QUANTILE_CONFIGS = {
    "lightgbm_quantile": {},
    "lightgbm_quantile_shallow": {"num_leaves": 8, "max_depth": 3, "min_data_in_leaf": 40},
}
"""LightGBM quantile candidates: overrides of the propensity model's LightGBM settings."""


@dataclass
class LogNormalVelocity:
    """Censoring-aware velocity model: log-normal AFT on standardised numbers and one-hot codes.

    Serves the same interface as :class:`~abm_ml.modeling.scorer.VelocityModel` (P10/P50/P90
    of log(1 + days) from X); it has no per-feature contributions in log(1 + days), so the
    scorer gives no velocity reasons with it.
    """

    features: list[FeatureInfo]
    fallback_days: float
    penalizer: float = 0.1

    def _design(self, X: np.ndarray) -> pd.DataFrame:
        matrix = pd.DataFrame(X, columns=[f.name for f in self.features])
        categorical = [f.name for f in self.features if f.type == "categorical"]
        numeric = matrix[[c for c in matrix.columns if c not in categorical]].astype(float)
        dummies = [
            pd.get_dummies(matrix[c].astype(object), prefix=c, dtype=float) for c in categorical
        ]
        design = pd.concat([numeric, *dummies], axis=1)
        if hasattr(self, "columns_"):
            design = design.reindex(columns=self.columns_, fill_value=0.0)
            design = ((design - self.means_) / self.stds_).fillna(0.0)
        return design

    def fit(self, X: np.ndarray, durations: np.ndarray, won: np.ndarray) -> LogNormalVelocity:
        from lifelines import LogNormalAFTFitter

        design = self._design(X)
        keep = design.columns[(design.std() > 0) & (design.notna().mean() > 0.5)][:60]
        self.columns_ = list(keep)
        self.means_, self.stds_ = design[keep].mean(), design[keep].std().replace(0, 1)
        x = self._design(X)
        x["duration"] = np.maximum(durations, 0.5)
        x["won"] = won.astype(int)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.aft_ = LogNormalAFTFitter(penalizer=self.penalizer).fit(
                x, duration_col="duration", event_col="won"
            )
        return self

    def predict_log(self, X: np.ndarray) -> dict[str, np.ndarray]:
        x = self._design(X)
        # A duration's q-quantile is where the survival function falls to 1 - q.
        return {
            name: np.log1p(np.asarray(self.aft_.predict_percentile(x, p=1 - q)).ravel())
            for name, q in QUANTILES.items()
        }

    def contributions(self, X: np.ndarray) -> None:
        return None


def won_with_days(frame: pd.DataFrame, positions: np.ndarray) -> np.ndarray:
    """The positions among ``positions`` of won deals with a known duration."""
    days = frame[DAYS_TO_CLOSE].to_numpy(dtype=float)
    won = frame[OUTCOME].to_numpy() == WON
    return positions[won[positions] & np.isfinite(days[positions])]


def _censored(frame: pd.DataFrame, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Open deals among ``positions`` and how long each has been open at the data's end."""
    if CREATED_AT not in frame.columns or CLOSED_AT not in frame.columns:
        return np.empty(0, dtype=int), np.empty(0)
    as_of = pd.concat([frame[CREATED_AT], frame[CLOSED_AT]]).max()
    open_days = ((as_of - frame[CREATED_AT]).dt.total_seconds() / 86400.0).to_numpy()
    is_open = frame[OUTCOME].to_numpy() == OPEN
    rows = positions[is_open[positions] & np.isfinite(open_days[positions])]
    return rows, open_days[rows]


def fit_velocity(
    frame: pd.DataFrame,
    split: Split,
    X: np.ndarray,
    params: dict,
    config: TrainConfig,
    categorical: list[int],
    features: list[FeatureInfo],
) -> tuple[VelocityModel | LogNormalVelocity | None, dict[str, int], float, list[dict]]:
    """The velocity candidate with the lowest validation MAE, its rounds, the median days, and
    the candidates' validation figures.

    The model is None when there are too few won deals with a known duration; the median
    days (of won training deals, else of all deals) are the fallback forecast, NaN when no
    duration is known at all (a model trained without dates forecasts no days).
    """
    days = frame[DAYS_TO_CLOSE].to_numpy(dtype=float)
    train, valid, test = (
        won_with_days(frame, rows) for rows in (split.train, split.valid, split.test)
    )
    fallback = (
        float(np.median(days[train]))
        if len(train)
        else float(np.nanmedian(days))
        if np.isfinite(days).any()
        else float("nan")
    )
    if len(train) < 50 or len(valid) < 10 or len(test) < 10:
        return None, {}, fallback, []

    feature_names = [f.name for f in features]
    target = np.log1p(days)
    candidates: dict[str, tuple[object, dict[str, int]]] = {}
    allowed = config.velocity_candidates
    configs = {
        name: overrides
        for name, overrides in QUANTILE_CONFIGS.items()
        if allowed is None or name in allowed
    }
    x_train, x_valid = X[train], X[valid]

    def fit_quantile(job: tuple[str, str]) -> lgb.Booster:
        name, quantile = job
        qparams = {
            **params,
            **configs[name],
            "objective": "quantile",
            "alpha": QUANTILES[quantile],
            "metric": "quantile",
            "learning_rate": max(config.velocity_learning_rate, params["learning_rate"]),
        }
        return fit_booster(
            qparams, config, x_train, target[train], x_valid, target[valid], categorical, None
        )

    # Every (candidate, quantile) booster is independent: fitted side by side on the cores.
    jobs = [(name, quantile) for name in configs for quantile in QUANTILES]
    fitted = dict(zip(jobs, parallel_map(fit_quantile, jobs), strict=True))
    for name in configs:
        boosters = {quantile: fitted[name, quantile] for quantile in QUANTILES}
        best = {
            f"velocity_{quantile}": int(booster.best_iteration or booster.current_iteration())
            for quantile, booster in boosters.items()
        }
        model = VelocityModel(
            boosters=boosters, fallback_days=fallback, feature_names=feature_names
        )
        candidates[name] = (model, best)
    # Censoring-aware: open deals created before the validation part, censored at the data's end.
    valid_start = split.valid_start or split.test_start
    aft_allowed = allowed is None or "lognormal_aft_censored" in allowed
    if config.velocity_aft and aft_allowed and valid_start is not None:
        before = np.flatnonzero((frame[CREATED_AT] < pd.Timestamp(valid_start)).to_numpy())
        open_rows, open_days = _censored(frame, before)
        if len(open_rows):
            rows = np.concatenate([train, open_rows])
            durations = np.concatenate([days[train], open_days])
            won = np.r_[np.ones(len(train), bool), np.zeros(len(open_rows), bool)]
            try:
                aft = LogNormalVelocity(features, fallback).fit(X[rows], durations, won)
                candidates["lognormal_aft_censored"] = (aft, {})
            except Exception as error:  # noqa: BLE001 - a candidate failing to converge is left out
                logger.info("censoring-aware velocity candidate left out: %s", error)
    if not candidates:
        return None, {}, fallback, []
    board = []
    for name, (model, _) in candidates.items():
        p50 = np.expm1(model.predict_log(X[valid])["p50"])
        board.append(
            {"candidate": name, "valid_mae_days": float(np.mean(np.abs(p50 - days[valid])))}
        )
    chosen = min(board, key=lambda row: row["valid_mae_days"])
    for row in board:
        row["chosen"] = row is chosen
    model, best = candidates[chosen["candidate"]]
    return model, best, fallback, board


def velocity_checks(
    dataset: Dataset,
    split: Split,
    X: np.ndarray,
    model: VelocityModel | None,
    config: TrainConfig,
    features: list[FeatureInfo],
) -> dict[str, float]:
    """Row counts and the censoring-aware checks: C-index with open deals, the AFT comparison."""
    if model is None:
        return {"velocity_trained": 0.0}
    frame = dataset.frame
    train, test = won_with_days(frame, split.train), won_with_days(frame, split.test)
    extra: dict[str, float] = {
        "velocity_trained": 1.0,
        "velocity_train_rows": float(len(train)),
        "velocity_test_rows": float(len(test)),
    }
    # Censoring: open deals are right-censored at the data's end; lost deals never close as won.
    is_open = frame[OUTCOME].to_numpy() == OPEN
    if not (dataset.spec.has_dates and is_open.any() and split.test_start is not None):
        return extra
    days = frame[DAYS_TO_CLOSE].to_numpy(dtype=float)
    as_of = pd.concat([frame[CREATED_AT], frame[CLOSED_AT]]).max()
    created = frame[CREATED_AT]
    open_days = ((as_of - created).dt.total_seconds() / 86400.0).to_numpy()
    recent = (created >= pd.Timestamp(split.test_start)).to_numpy()
    recent_open = np.flatnonzero(is_open & recent & np.isfinite(open_days))
    older_open = np.flatnonzero(is_open & ~recent & np.isfinite(open_days))
    eval_rows = np.concatenate([test, recent_open])
    durations = np.where(is_open[eval_rows], open_days[eval_rows], days[eval_rows])
    events = (~is_open[eval_rows]).astype(int)
    p50_all = np.expm1(model.predict_log(X[eval_rows])["p50"])
    extra["velocity_c_index"] = m.concordance_index(durations, p50_all, events)
    extra["velocity_censored_in_test"] = float(len(recent_open))
    extra["velocity_censored_in_train"] = float(len(older_open))
    if config.velocity_aft:
        extra.update(
            _aft_comparison(
                X,
                features,
                train,
                older_open,
                open_days,
                eval_rows,
                durations,
                events,
                days,
                test,
            )
        )
    return extra


def _aft_comparison(
    X, features, train, older_open, open_days, eval_rows, durations, events, days, test
) -> dict[str, float]:
    """Log-normal AFT on won + censored open deals, as the censoring-aware comparison."""
    fit_rows = np.concatenate([train, older_open])
    fit_durations = np.concatenate([days[train], open_days[older_open]])
    won = np.r_[np.ones(len(train), bool), np.zeros(len(older_open), bool)]
    try:
        aft = LogNormalVelocity(features, float("nan")).fit(X[fit_rows], fit_durations, won)
        median = np.expm1(aft.predict_log(X[eval_rows])["p50"])
        c_index = m.concordance_index(durations, median, events)
        mae = float(np.mean(np.abs(median[: len(test)] - days[test])))
        return {"velocity_aft_c_index": c_index, "velocity_aft_mae_days": mae}
    except Exception:  # noqa: BLE001 - the comparison is informative, never fatal
        return {"velocity_aft_failed": 1.0}
