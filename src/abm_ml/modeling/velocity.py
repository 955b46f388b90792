"""Deal velocity: quantile models of days to close on won deals, and the censoring-aware checks.

LightGBM quantile models (P10/P50/P90) of log(1 + days) are fitted on won deals; open deals
are right-censored at the data's end, so they join a concordance check and a log-normal AFT
comparison (lifelines) rather than the fit. The holdout's velocity metrics themselves come
from :func:`abm_ml.modeling.evaluate.evaluate_scorer` on the packaged scorer.
"""

from __future__ import annotations

import warnings

import lightgbm as lgb
import numpy as np
import pandas as pd

from abm_ml.data.split import Split
from abm_ml.data.validate import Dataset
from abm_ml.modeling import metrics as m
from abm_ml.modeling.boosting import TrainConfig, fit_booster
from abm_ml.modeling.feature_info import FeatureInfo
from abm_ml.modeling.scorer import VelocityModel
from abm_ml.schema import CLOSED_AT, CREATED_AT, DAYS_TO_CLOSE, OPEN, OUTCOME, WON

QUANTILES = {"p10": 0.1, "p50": 0.5, "p90": 0.9}


def won_with_days(frame: pd.DataFrame, positions: np.ndarray) -> np.ndarray:
    """The positions among ``positions`` of won deals with a known duration."""
    days = frame[DAYS_TO_CLOSE].to_numpy(dtype=float)
    won = frame[OUTCOME].to_numpy() == WON
    return positions[won[positions] & np.isfinite(days[positions])]


def fit_velocity(
    frame: pd.DataFrame,
    split: Split,
    X: np.ndarray,
    params: dict,
    config: TrainConfig,
    categorical: list[int],
    feature_names: list[str],
) -> tuple[VelocityModel | None, dict[str, int], float]:
    """Quantile models of log(1 + days) on won deals, their best iterations, the median days.

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
        return None, {}, fallback

    boosters: dict[str, lgb.Booster] = {}
    best: dict[str, int] = {}
    target = np.log1p(days)
    for name, alpha in QUANTILES.items():
        qparams = {
            **params,
            "objective": "quantile",
            "alpha": alpha,
            "metric": "quantile",
            "learning_rate": max(config.velocity_learning_rate, params["learning_rate"]),
        }
        boosters[name] = fit_booster(
            qparams,
            config,
            X[train],
            target[train],
            X[valid],
            target[valid],
            categorical,
            None,
        )
        best[f"velocity_{name}"] = int(
            boosters[name].best_iteration or boosters[name].current_iteration()
        )
    model = VelocityModel(boosters=boosters, fallback_days=fallback, feature_names=feature_names)
    return model, best, fallback


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
    """Log-normal AFT (lifelines) on won + censored open deals, as the censoring-aware comparison."""
    from lifelines import LogNormalAFTFitter

    # The model's own columns: features the leakage guard refused are not in X.
    matrix = pd.DataFrame(X, columns=[f.name for f in features])
    categorical = [f.name for f in features if f.type == "categorical"]
    numeric = [c for c in matrix.columns if c not in categorical]

    def design(rows: np.ndarray, reference: pd.DataFrame | None = None) -> pd.DataFrame:
        part = matrix.iloc[rows]
        x = part[numeric].astype(float)
        dummies = [
            pd.get_dummies(part[c].astype(object), prefix=c, dtype=float) for c in categorical
        ]
        x = pd.concat([x, *dummies], axis=1)
        if reference is not None:
            x = x.reindex(columns=reference.columns, fill_value=0.0)
        return x

    fit_rows = np.concatenate([train, older_open])
    x_fit = design(fit_rows)
    keep = x_fit.columns[(x_fit.std() > 0) & (x_fit.notna().mean() > 0.5)][:60]
    x_fit = x_fit[keep]
    means, stds = x_fit.mean(), x_fit.std().replace(0, 1)
    x_fit = ((x_fit - means) / stds).fillna(0.0)
    is_open_fit = np.isin(fit_rows, older_open)
    x_fit["duration"] = np.maximum(np.where(is_open_fit, open_days[fit_rows], days[fit_rows]), 0.5)
    x_fit["won"] = (~is_open_fit).astype(int)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            aft = LogNormalAFTFitter(penalizer=0.1).fit(
                x_fit, duration_col="duration", event_col="won"
            )
        x_eval = (
            (design(eval_rows, x_fit.drop(columns=["duration", "won"])) - means) / stds
        ).fillna(0.0)
        median = np.asarray(aft.predict_median(x_eval)).ravel()
        c_index = m.concordance_index(durations, median, events)
        test_median = median[: len(test)]
        mae = float(np.mean(np.abs(test_median - days[test])))
        return {"velocity_aft_c_index": c_index, "velocity_aft_mae_days": mae}
    except Exception:  # noqa: BLE001 - the comparison is informative, never fatal
        return {"velocity_aft_failed": 1.0}
