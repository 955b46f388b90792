"""Training: the propensity-to-buy and deal-velocity models, honestly evaluated.

`train_models(dataset, config)` splits the data (time-based where dates exist, grouped by
account), refuses leaking features, fits

- a LightGBM classifier with early stopping on the validation part, calibrated with isotonic
  or sigmoid regression (whichever has the lower cross-validated log loss on validation rows),
- LightGBM quantile models (P10/P50/P90) of log(1 + days) to close on won deals, compared with
  a censoring-aware log-normal AFT model where open deals exist,
- the baselines (logistic regression, a rule-based fit score, the median-days velocity),

and evaluates all of them on the same test rows with bootstrap intervals. Logging to MLflow
is separate (:mod:`abm_ml.registry.tracking`), so this module is testable without a store.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from abm_ml.config import num_threads
from abm_ml.data.leakage import LeakFinding, check_leakage, refused
from abm_ml.data.split import Split, make_split
from abm_ml.data.validate import Dataset
from abm_ml.modeling import metrics as m
from abm_ml.modeling.baselines import RuleBasedFitScore, as_logistic_input, logistic_baseline
from abm_ml.modeling.reasons import contributions
from abm_ml.modeling.scorer import (
    TIER_SHARES,
    AccountScorer,
    Calibrator,
    Preprocessor,
    VelocityModel,
)
from abm_ml.schema import AMOUNT, CLOSED_AT, CREATED_AT, DAYS_TO_CLOSE, OPEN, OUTCOME, WON

MODEL_NAME = "abm-ml"
QUANTILES = {"p10": 0.1, "p50": 0.5, "p90": 0.9}
SHAP_SAMPLE = 2000


@dataclass
class TrainConfig:
    """Knobs of one training run; every one is logged as an MLflow param."""

    seed: int = 42
    learning_rate: float = 0.05
    num_leaves: int = 31
    """TreeSHAP costs grow with leaves x depth^2 per tree; 31 leaves keep IBM at 0.852 AUC with reasons
    about 1.5x cheaper per account than 63."""
    min_data_in_leaf: int = 20
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    lambda_l2: float = 1.0
    max_bin: int = 1023
    """Fine bins matter for amounts: on IBM win-loss 1023 bins lift holdout ROC AUC from 0.844 to 0.851."""
    max_rounds: int = 3000
    early_stopping_rounds: int = 100
    velocity_learning_rate: float = 0.08
    """Quantile models need fewer, faster rounds: the median-days baseline is a low bar for noise."""
    n_boot: int = 200
    capacity: int | None = None
    """Accounts a sales team can work (k of precision@k); 10 % of the test rows when absent."""
    num_threads: int = field(default_factory=num_threads)
    """LightGBM threads; see :func:`abm_ml.config.num_threads` for why one is the default."""
    velocity_aft: bool = True

    def lgb_params(self) -> dict:
        return {
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1,
            "lambda_l2": self.lambda_l2,
            "max_bin": self.max_bin,
            "cat_smooth": 10.0,
            "cat_l2": 10.0,
            "max_cat_to_onehot": 8,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbose": -1,
        }


@dataclass
class TrainingResult:
    """A trained scorer with everything needed to log, report and compare it."""

    dataset: Dataset
    scorer: AccountScorer
    split: Split
    config: TrainConfig
    leak_findings: list[LeakFinding]
    propensity: dict[str, dict[str, m.Metric]]
    velocity: dict[str, dict[str, m.Metric]]
    velocity_extra: dict[str, float]
    no_better_than_chance: bool
    holdout: pd.DataFrame
    holdout_predictions: pd.DataFrame
    feature_importance: pd.DataFrame
    calibration_choice: dict[str, float]
    best_iterations: dict[str, int]
    shap_sample: tuple[pd.DataFrame, object] | None = None
    """(preprocessed rows, their Contributions) from the holdout, for the SHAP plots."""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def headline(self) -> dict[str, float]:
        main = self.propensity[MODEL_NAME]
        out = {
            "roc_auc": main["roc_auc"].value,
            "roc_auc_low": main["roc_auc"].low,
            "roc_auc_high": main["roc_auc"].high,
            "pr_auc": main["pr_auc"].value,
            "brier": main["brier"].value,
            "lift_top_decile": main["lift_top_decile"].value,
        }
        if MODEL_NAME in self.velocity:
            out["velocity_mae_days"] = self.velocity[MODEL_NAME]["mae_days"].value
        return out


def _labels(frame: pd.DataFrame) -> np.ndarray:
    return (frame[OUTCOME].to_numpy() == WON).astype(int)


def _fit_booster(
    params: dict,
    config: TrainConfig,
    train_x,
    train_y,
    valid_x,
    valid_y,
    categorical: list[str],
    monotone: list[int] | None,
):
    full = dict(params)
    if monotone and any(monotone):
        full["monotone_constraints"] = monotone
        full["monotone_constraints_method"] = "advanced"
    train_set = lgb.Dataset(
        train_x, train_y, categorical_feature=categorical or "auto", free_raw_data=False
    )
    valid_set = lgb.Dataset(
        valid_x, valid_y, reference=train_set, categorical_feature=categorical or "auto"
    )
    return lgb.train(
        full,
        train_set,
        num_boost_round=config.max_rounds,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )


def choose_calibrator(
    raw: np.ndarray, y: np.ndarray, *, seed: int
) -> tuple[Calibrator, dict[str, float]]:
    """Isotonic or sigmoid, whichever has the lower cross-validated log loss on held-out rows."""
    n_splits = int(min(5, max(2, min(np.bincount(y, minlength=2)))))
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    losses: dict[str, list[float]] = {"isotonic": [], "sigmoid": [], "none": []}
    eps = 1e-4
    for fit_idx, eval_idx in folds.split(raw, y):
        iso = IsotonicRegression(out_of_bounds="clip", y_min=eps, y_max=1 - eps).fit(
            raw[fit_idx], y[fit_idx]
        )
        sig = LogisticRegression(C=1e6).fit(raw[fit_idx, None], y[fit_idx])
        candidates = {
            "isotonic": np.clip(iso.predict(raw[eval_idx]), eps, 1 - eps),
            "sigmoid": sig.predict_proba(raw[eval_idx, None])[:, 1],
            "none": 1 / (1 + np.exp(-raw[eval_idx])),
        }
        for name, p in candidates.items():
            p = np.clip(p, eps, 1 - eps)
            losses[name].append(
                float(-np.mean(y[eval_idx] * np.log(p) + (1 - y[eval_idx]) * np.log(1 - p)))
            )
    mean_loss = {name: float(np.mean(v)) for name, v in losses.items()}
    best = min(("isotonic", "sigmoid"), key=lambda k: mean_loss[k])
    if best == "isotonic":
        calibrator = Calibrator(
            "isotonic",
            isotonic=IsotonicRegression(out_of_bounds="clip", y_min=eps, y_max=1 - eps).fit(raw, y),
        )
    else:
        sig = LogisticRegression(C=1e6).fit(raw[:, None], y)
        calibrator = Calibrator(
            "sigmoid", coef=float(sig.coef_[0, 0]), intercept=float(sig.intercept_[0])
        )
    return calibrator, {f"calibration_cv_log_loss_{k}": v for k, v in mean_loss.items()}


def _velocity(
    dataset: Dataset,
    split: Split,
    matrix: pd.DataFrame,
    params: dict,
    config: TrainConfig,
    categorical: list[str],
) -> tuple[
    VelocityModel | None, dict[str, dict[str, m.Metric]], dict[str, float], dict[str, int], float
]:
    frame = dataset.frame
    days = frame[DAYS_TO_CLOSE].to_numpy(dtype=float)
    won = frame[OUTCOME].to_numpy() == WON

    def won_rows(positions: np.ndarray) -> np.ndarray:
        return positions[won[positions] & np.isfinite(days[positions])]

    train, valid, test = won_rows(split.train), won_rows(split.valid), won_rows(split.test)
    fallback = (
        float(np.median(days[train]))
        if len(train)
        else float(np.nanmedian(days))
        if np.isfinite(days).any()
        else 30.0
    )
    if len(train) < 50 or len(valid) < 10 or len(test) < 10:
        return None, {}, {"velocity_trained": 0.0}, {}, fallback

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
        boosters[name] = _fit_booster(
            qparams,
            config,
            matrix.iloc[train],
            target[train],
            matrix.iloc[valid],
            target[valid],
            categorical,
            None,
        )
        best[f"velocity_{name}"] = int(
            boosters[name].best_iteration or boosters[name].current_iteration()
        )
    model = VelocityModel(boosters=boosters, fallback_days=fallback)
    pred = {q: np.expm1(v) for q, v in model.predict_log(matrix.iloc[test]).items()}
    results = {
        MODEL_NAME: m.velocity_metrics(
            days[test],
            pred["p50"],
            pred["p10"],
            pred["p90"],
            baseline_days=fallback,
            n_boot=config.n_boot,
            seed=config.seed,
        ),
        "median_days_baseline": m.velocity_metrics(
            days[test], np.full(len(test), fallback), n_boot=config.n_boot, seed=config.seed
        ),
    }
    extra: dict[str, float] = {
        "velocity_trained": 1.0,
        "velocity_train_rows": float(len(train)),
        "velocity_test_rows": float(len(test)),
    }

    # Censoring: open deals are right-censored at the data's end; lost deals never close as won.
    is_open = frame[OUTCOME].to_numpy() == OPEN
    if dataset.spec.has_dates and is_open.any() and split.test_start is not None:
        as_of = pd.concat([frame[CREATED_AT], frame[CLOSED_AT]]).max()
        created = frame[CREATED_AT]
        open_days = ((as_of - created).dt.total_seconds() / 86400.0).to_numpy()
        recent_open = np.flatnonzero(
            is_open
            & (created >= pd.Timestamp(split.test_start)).to_numpy()
            & np.isfinite(open_days)
        )
        older_open = np.flatnonzero(
            is_open & (created < pd.Timestamp(split.test_start)).to_numpy() & np.isfinite(open_days)
        )
        eval_rows = np.concatenate([test, recent_open])
        durations = np.where(is_open[eval_rows], open_days[eval_rows], days[eval_rows])
        events = (~is_open[eval_rows]).astype(int)
        p50_all = np.expm1(model.predict_log(matrix.iloc[eval_rows])["p50"])
        extra["velocity_c_index"] = m.concordance_index(durations, p50_all, events)
        extra["velocity_censored_in_test"] = float(len(recent_open))
        extra["velocity_censored_in_train"] = float(len(older_open))
        if config.velocity_aft:
            extra.update(
                _aft_comparison(
                    dataset,
                    matrix,
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
    return model, results, extra, best, fallback


def _aft_comparison(
    dataset, matrix, train, older_open, open_days, eval_rows, durations, events, days, test
) -> dict[str, float]:
    """Log-normal AFT (lifelines) on won + censored open deals, as the censoring-aware comparison."""
    from lifelines import LogNormalAFTFitter

    numeric = [f.name for f in dataset.features if f.type != "categorical"]
    categorical = [f.name for f in dataset.features if f.type == "categorical"]

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


def train_models(dataset: Dataset, config: TrainConfig | None = None) -> TrainingResult:
    """Fit, calibrate and evaluate the propensity and velocity models on ``dataset``."""
    config = config or TrainConfig()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    frame = dataset.frame
    split = make_split(frame, dataset.spec, seed=config.seed)
    if min(len(split.train), len(split.valid), len(split.test)) == 0:
        from abm_ml.errors import AbmInputError

        raise AbmInputError(
            "too few closed deals to split into train, validation and test",
            source=dataset.spec.name,
        )

    findings = check_leakage(frame.iloc[split.train], dataset.features, dataset.spec)
    dropped = refused(findings)
    features = [f for f in dataset.features if f.name not in dropped]
    if not features:
        from abm_ml.errors import AbmInputError

        raise AbmInputError(
            "every feature was refused by the leakage guard", source=dataset.spec.name
        )

    preprocessor = Preprocessor(features).fit(frame.iloc[split.train])
    matrix = preprocessor.transform(frame)
    categorical = preprocessor.categorical_names
    y = _labels(frame)
    params = config.lgb_params()
    monotone = [f.monotone for f in features]

    booster = _fit_booster(
        {**params, "objective": "binary", "metric": "binary_logloss"},
        config,
        matrix.iloc[split.train],
        y[split.train],
        matrix.iloc[split.valid],
        y[split.valid],
        categorical,
        monotone,
    )
    best = {"propensity": int(booster.best_iteration or booster.current_iteration())}
    timings["propensity_fit_s"] = time.perf_counter() - started

    raw_valid = np.asarray(booster.predict(matrix.iloc[split.valid], raw_score=True))
    calibrator, calibration_losses = choose_calibrator(raw_valid, y[split.valid], seed=config.seed)
    propensity_valid = calibrator(raw_valid)
    thresholds = [float(np.quantile(propensity_valid, 1 - share)) for share in TIER_SHARES]

    t0 = time.perf_counter()
    velocity, velocity_results, velocity_extra, velocity_best, fallback_days = _velocity(
        dataset, split, matrix, params, config, categorical
    )
    best.update(velocity_best)
    timings["velocity_fit_s"] = time.perf_counter() - t0

    amounts = frame[AMOUNT].to_numpy(dtype=float)
    won_train = split.train[y[split.train] == 1]
    known = amounts[won_train][np.isfinite(amounts[won_train])]
    default_amount = float(np.median(known)) if known.size else 1.0

    scorer = AccountScorer(
        features=features,
        preprocessor=preprocessor,
        propensity_booster=booster,
        calibrator=calibrator,
        velocity=velocity,
        tier_thresholds=thresholds,
        default_amount=default_amount,
        default_days=fallback_days,
        metadata={
            "dataset": dataset.spec.name,
            "dataset_sha256": dataset.sha256,
            "amount_known": bool(known.size),
            "calibration": calibrator.method,
            "trained_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        },
    )

    # Evaluate model and baselines on the same test rows.
    t0 = time.perf_counter()
    test = split.test
    y_test = y[test]
    raw_test = np.asarray(booster.predict(matrix.iloc[test], raw_score=True))
    p_model = calibrator(raw_test)
    fit_rows = np.concatenate([split.train, split.valid])
    logistic = logistic_baseline(features, seed=config.seed).fit(
        as_logistic_input(frame.iloc[fit_rows], features), y[fit_rows]
    )
    p_logistic = logistic.predict_proba(as_logistic_input(frame.iloc[test], features))[:, 1]
    rules = RuleBasedFitScore(dict(dataset.spec.icp)).fit(frame.iloc[fit_rows], y[fit_rows])
    p_rules = rules.predict_proba(frame.iloc[test])[:, 1]
    test_amounts = amounts[test] if np.isfinite(amounts[test]).all() else None
    capacity = config.capacity
    propensity_results = {
        name: m.propensity_metrics(
            y_test, p, k=capacity, n_boot=config.n_boot, seed=config.seed, amounts=test_amounts
        )
        for name, p in (
            (MODEL_NAME, p_model),
            ("logistic_regression", p_logistic),
            ("rule_based_fit", p_rules),
        )
    }
    timings["evaluate_s"] = time.perf_counter() - t0

    # SHAP on a sample: TreeSHAP is the costly part of explaining (~3 ms per row on IBM's trees).
    sample = (
        test
        if len(test) <= SHAP_SAMPLE
        else np.sort(np.random.default_rng(config.seed).choice(test, SHAP_SAMPLE, replace=False))
    )
    contrib = contributions(booster, matrix.iloc[sample])
    importance = pd.DataFrame(
        {"feature": contrib.feature_names, "mean_abs_shap": np.abs(contrib.values).mean(axis=0)}
    ).sort_values("mean_abs_shap", ascending=False, ignore_index=True)

    keep_columns = [
        "row_id",
        "account_id",
        OUTCOME,
        CREATED_AT,
        CLOSED_AT,
        DAYS_TO_CLOSE,
        AMOUNT,
    ] + [f.name for f in features]
    holdout = frame.iloc[test][keep_columns].reset_index(drop=True)
    holdout_predictions = pd.DataFrame(
        {
            "row_id": holdout["row_id"],
            "won": y_test,
            MODEL_NAME: p_model,
            "logistic_regression": p_logistic,
            "rule_based_fit": p_rules,
        }
    )
    timings["total_s"] = time.perf_counter() - started
    return TrainingResult(
        dataset=dataset,
        scorer=scorer,
        split=split,
        config=config,
        leak_findings=findings,
        propensity=propensity_results,
        velocity=velocity_results,
        velocity_extra=velocity_extra,
        no_better_than_chance=m.is_no_better_than_chance(propensity_results[MODEL_NAME]),
        holdout=holdout,
        holdout_predictions=holdout_predictions,
        feature_importance=importance,
        calibration_choice=calibration_losses,
        best_iterations=best,
        shap_sample=(matrix.iloc[sample].reset_index(drop=True), contrib),
        timings=timings,
    )
