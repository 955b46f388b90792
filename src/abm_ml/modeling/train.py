"""Training: the propensity-to-buy and deal-velocity models, packaged, then honestly evaluated.

`train_models(dataset, config)` splits the data (time-based where dates exist, grouped by
account), refuses leaking features, fits

- a portfolio of propensity candidates (LightGBM configurations, CatBoost, a regularised
  logistic regression; :mod:`abm_ml.modeling.candidates`) early-stopped on the validation
  part, keeps the best by validation log loss or a log-odds blend of the best two or three,
  refits it with the same rounds and weights on train + validation
  (:mod:`abm_ml.modeling.refit`), calibrated with isotonic
  or sigmoid regression or left as it is (whichever has the lowest cross-validated log loss)
  on cross-fitted scores of those rows; the holdout stays untouched,
- the deal-velocity quantile models (:mod:`abm_ml.modeling.velocity`),
- the baselines (logistic regression, a rule-based fit score, the median-days velocity),

packages the models as one :class:`~abm_ml.modeling.scorer.AccountScorer`, and evaluates the
package (:func:`~abm_ml.modeling.evaluate.evaluate_scorer`, the code that serves) and the
baselines on the same test rows with bootstrap intervals. Logging to MLflow is separate
(:mod:`abm_ml.registry.tracking`), so this module is testable without a store."""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from abm_ml.data.leakage import LeakFinding, check_leakage, refused
from abm_ml.data.records import InputSpec
from abm_ml.data.split import Split, make_split
from abm_ml.data.validate import Dataset
from abm_ml.errors import AbmInputError
from abm_ml.modeling import candidates as cand
from abm_ml.modeling import metrics as m
from abm_ml.modeling.baselines import RuleBasedFitScore, as_logistic_input, logistic_baseline
from abm_ml.modeling.boosting import TrainConfig
from abm_ml.modeling.evaluate import (
    Evaluation,
    account_groups,
    evaluate_scorer,
    known_amounts,
    won_labels,
)
from abm_ml.modeling.members import PropensityModel
from abm_ml.modeling.refit import cross_fit_folds, refit_propensity
from abm_ml.modeling.scorer import (
    TIER_SHARES,
    AccountScorer,
    Calibrator,
    Preprocessor,
)
from abm_ml.modeling.velocity import fit_velocity, velocity_checks
from abm_ml.schema import (
    ACCOUNT_ID,
    AMOUNT,
    CLOSED_AT,
    CREATED_AT,
    DAYS_TO_CLOSE,
    OUTCOME,
    ROW_ID,
)

MODEL_NAME = "abm-ml"
SHAP_SAMPLE = 1000
"""Holdout rows explained for the SHAP plots and importance (mean |SHAP| settles well before)."""
HOLDOUT_COLUMNS = (ROW_ID, ACCOUNT_ID, OUTCOME, CREATED_AT, CLOSED_AT, DAYS_TO_CLOSE, AMOUNT)
"""Columns of the logged holdout next to the features: enough to score and evaluate it again."""
DAYS_COLUMNS = ("days_to_close_p10", "days_to_close_p50", "days_to_close_p90")


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
    leaderboard: list[dict] = field(default_factory=list)
    """Propensity candidates on the validation rows, best first (:func:`candidates.leaderboard`)."""
    propensity_choice: str = ""
    """The packaged propensity model: a candidate's name or the blend's weighted members."""
    velocity_leaderboard: list[dict] = field(default_factory=list)
    """Velocity candidates' P50 MAE in days on the validation part's won deals; one is chosen."""
    charts: dict[str, bytes] | None = field(default=None, init=False, repr=False, compare=False)
    """The run's PNG charts by file name, drawn once on first use
    (:func:`abm_ml.reporting.training_report.training_charts`): MLflow and the report share them.
    Not an init field, so a copy made with ``dataclasses.replace`` draws its own."""

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


def _platt(raw: np.ndarray, y: np.ndarray) -> LogisticRegression:
    """Sigmoid (Platt) calibration: an (almost) unpenalised logistic regression on the raw score.

    Newton-Cholesky is the solver made for many rows and few features: on one feature and
    62k rows it converges in half lbfgs's time, to the same coefficients (to 1e-5).
    """
    return LogisticRegression(C=1e6, solver="newton-cholesky").fit(raw[:, None], y)


def choose_calibrator(
    raw: np.ndarray, y: np.ndarray, *, seed: int
) -> tuple[Calibrator, dict[str, float]]:
    """The simplest calibration no other is clearly better than, on held-out rows.

    ``none`` (the model's own probability, ``sigmoid(raw)``) competes with Platt's sigmoid
    and isotonic regression: a model fitted on log loss is often calibrated already, and a
    recalibration fitted on a few hundred rows then only adds noise. Each method's log loss
    is cross-validated per row; a more complex method (none, then sigmoid, then isotonic)
    replaces the simpler one only when it is :func:`~abm_ml.modeling.candidates.clearly_better`
    (by more than the candidates' tie tolerance and one standard error of the paired
    difference), the rule a blend must pass too. Isotonic regression is a step function: it
    gives every account of a step the same probability, so the ranking within a step is lost
    (on Olist's holdout, a ROC AUC of 0.688 became 0.681 for a cross-validated log loss 0.15 %
    lower); it must pay for that beyond the noise.

    Returns:
        The calibrator fitted on all of ``raw``, and each method's cross-validated log loss.
    """
    n_splits = int(min(5, max(2, min(np.bincount(y, minlength=2)))))
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    methods = ("none", "sigmoid", "isotonic")  # simplest first
    row_losses = {name: np.empty(len(y)) for name in methods}
    eps = 1e-4
    for fit_idx, eval_idx in folds.split(raw, y):
        iso = IsotonicRegression(out_of_bounds="clip", y_min=eps, y_max=1 - eps).fit(
            raw[fit_idx], y[fit_idx]
        )
        sig = _platt(raw[fit_idx], y[fit_idx])
        candidates = {
            "isotonic": iso.predict(raw[eval_idx]),
            "sigmoid": sig.predict_proba(raw[eval_idx, None])[:, 1],
            "none": 1 / (1 + np.exp(-raw[eval_idx])),
        }
        for name, p in candidates.items():
            p = np.clip(p, eps, 1 - eps)
            row_losses[name][eval_idx] = -(
                y[eval_idx] * np.log(p) + (1 - y[eval_idx]) * np.log(1 - p)
            )
    mean_loss = {name: float(np.mean(losses)) for name, losses in row_losses.items()}
    best = methods[0]
    for name in methods[1:]:
        if cand.clearly_better(
            mean_loss[name], mean_loss[best], row_losses[name], row_losses[best]
        ):
            best = name
    if best == "none":
        calibrator = Calibrator("none")
    elif best == "isotonic":
        calibrator = Calibrator(
            "isotonic",
            isotonic=IsotonicRegression(out_of_bounds="clip", y_min=eps, y_max=1 - eps).fit(raw, y),
        )
    else:
        sig = _platt(raw, y)
        calibrator = Calibrator(
            "sigmoid", coef=float(sig.coef_[0, 0]), intercept=float(sig.intercept_[0])
        )
    return calibrator, {f"calibration_cv_log_loss_{k}": v for k, v in mean_loss.items()}


def _split_and_guard(dataset: Dataset, config: TrainConfig):
    """The split, the leakage findings on training rows, and the features the guard kept."""
    split = make_split(dataset.frame, dataset.spec, seed=config.seed)
    if min(len(split.train), len(split.valid), len(split.test)) == 0:
        raise AbmInputError(
            "too few closed deals to split into train, validation and test",
            source=dataset.spec.name,
        )
    findings = check_leakage(dataset.frame.iloc[split.train], dataset.features, dataset.spec)
    dropped = refused(findings)
    features = [f for f in dataset.features if f.name not in dropped]
    if not features:
        raise AbmInputError(
            "every feature was refused by the leakage guard", source=dataset.spec.name
        )
    return split, findings, features


@dataclass(frozen=True)
class FinalPropensity:
    """The packaged propensity model, its calibrator and what they were fitted on."""

    model: PropensityModel
    calibrator: Calibrator
    calibration_losses: dict[str, float]
    tier_thresholds: list[float]
    training_rows: np.ndarray
    """Rows the packaged model was fitted on (the base of explanations averages over them)."""
    refitted: bool
    """Whether the model was refitted on train + validation (else the early-stopped one)."""


def _calibrate(raw: np.ndarray, y: np.ndarray, seed: int):
    """The calibrator chosen on held-out raw scores, its CV losses, and the A/B/C thresholds."""
    calibrator, losses = choose_calibrator(raw, y, seed=seed)
    propensity = calibrator(raw)
    thresholds = [float(np.quantile(propensity, 1 - share)) for share in TIER_SHARES]
    return calibrator, losses, thresholds


def _final_propensity(
    choice: cand.Choice,
    X: np.ndarray,
    y: np.ndarray,
    split: Split,
    setup: cand.FitSetup,
    folds: list[tuple[np.ndarray, np.ndarray]],
) -> FinalPropensity:
    """Refit on :attr:`Split.fit_rows` (train + validation + the rows held out only for the
    validation's sake), calibrated on cross-fitted scores, when configured and the data allow
    (``folds``: :func:`cross_fit_folds` of those rows, empty when not);
    else the early-stopped model calibrated on the validation rows."""
    config = setup.config
    if not folds:
        model = choice.package([f.member for f in choice.members], setup.feature_names)
        raw_valid = model.raw(X[split.valid])
        calibrator, losses, thresholds = _calibrate(raw_valid, y[split.valid], config.seed)
        return FinalPropensity(model, calibrator, losses, thresholds, split.train, False)

    def fit(rows: np.ndarray) -> PropensityModel:
        members = [
            f.candidate.fit(X[rows], y[rows], setup, rounds=f.rounds)[0] for f in choice.members
        ]
        for member, f in zip(members, choice.members):
            member.name = f.candidate.name
        return choice.package(members, setup.feature_names)

    rows = split.fit_rows
    refit = refit_propensity(fit, rows, lambda: choice.cross_fitted(X, y, rows, folds, setup))
    calibrator, losses, thresholds = _calibrate(refit.cross_fitted_raw, y[refit.rows], config.seed)
    return FinalPropensity(refit.model, calibrator, losses, thresholds, refit.rows, True)


def _mean_propensity(model: PropensityModel, calibrator: Calibrator, rows: np.ndarray) -> float:
    """The average training account's calibrated propensity: the base of every explanation."""
    return float(np.mean(calibrator(model.raw(rows))))


def _default_amount(frame: pd.DataFrame, won_train: np.ndarray) -> tuple[float, bool]:
    """Median amount of won training deals (1.0 when none is known), and whether any was."""
    amounts = frame[AMOUNT].to_numpy(dtype=float)[won_train]
    known = amounts[np.isfinite(amounts)]
    return (float(np.median(known)) if known.size else 1.0), bool(known.size)


def _baseline_predictions(
    dataset: Dataset, split: Split, features: list, y: np.ndarray, seed: int
) -> dict[str, np.ndarray]:
    """Test-row probabilities of the baselines, fitted on the rows the model is refitted on
    (:attr:`Split.fit_rows`).

    Both see only ``features``, the ones the leakage guard kept: an ICP rule on a refused
    column is dropped, or the rule-based baseline would score with the leak the model may not use.
    """
    frame = dataset.frame
    fit_rows = split.fit_rows
    logistic = logistic_baseline(features, seed=seed).fit(
        as_logistic_input(frame.iloc[fit_rows], features), y[fit_rows]
    )
    kept = {f.name for f in features}
    refused_names = {n for f in dataset.features if f.name not in kept for n in (f.name, f.column)}
    icp = {rule: value for rule, value in dataset.spec.icp.items() if rule not in refused_names}
    rules = RuleBasedFitScore(icp).fit(frame.iloc[fit_rows], y[fit_rows])
    test = frame.iloc[split.test]
    return {
        "logistic_regression": logistic.predict_proba(as_logistic_input(test, features))[:, 1],
        "rule_based_fit": rules.predict_proba(test)[:, 1],
    }


def _shap_importance(
    model: PropensityModel,
    preprocessor: Preprocessor,
    values: pd.DataFrame,
    X: np.ndarray,
    test: np.ndarray,
    seed: int,
) -> tuple[pd.DataFrame, object, pd.DataFrame]:
    """SHAP on a holdout sample: (sample rows, their Contributions, mean |SHAP| per feature).

    A sample because TreeSHAP is the costly part of explaining.
    """
    sample = (
        test
        if len(test) <= SHAP_SAMPLE
        else np.sort(np.random.default_rng(seed).choice(test, SHAP_SAMPLE, replace=False))
    )
    contrib = model.contributions(X[sample])
    importance = pd.DataFrame(
        {"feature": contrib.feature_names, "mean_abs_shap": np.abs(contrib.values).mean(axis=0)}
    ).sort_values("mean_abs_shap", ascending=False, ignore_index=True)
    rows = preprocessor.encode(values.iloc[sample]).reset_index(drop=True)
    return rows, contrib, importance


def _metadata(dataset: Dataset, calibrator: Calibrator, amount_known: bool, choice: str) -> dict:
    return {
        "dataset": dataset.spec.name,
        "propensity_model": choice,
        "dataset_sha256": dataset.sha256,
        "amount_known": amount_known,
        "calibration": calibrator.method,
        "trained_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
    }


def _holdout_predictions(
    holdout: pd.DataFrame, evaluation: Evaluation, baselines: dict[str, np.ndarray]
) -> pd.DataFrame:
    """Per holdout row: the label, the served propensity and days, the baselines' probabilities."""
    scored = evaluation.scored
    return pd.DataFrame(
        {
            ROW_ID: holdout[ROW_ID],
            "won": evaluation.labels,
            MODEL_NAME: scored["propensity"],
            **baselines,
            **{column: scored[column] for column in DAYS_COLUMNS},
        }
    )


def _compare_on_holdout(
    scorer: AccountScorer,
    holdout: pd.DataFrame,
    dataset: Dataset,
    split: Split,
    features: list,
    y: np.ndarray,
    config: TrainConfig,
) -> tuple[Evaluation, dict[str, np.ndarray], dict[str, dict[str, m.Metric]]]:
    """The packaged scorer and the baselines on the same holdout rows, with the same settings."""
    evaluation = evaluate_scorer(
        scorer, holdout, k=config.capacity, n_boot=config.n_boot, seed=config.seed
    )
    baselines = _baseline_predictions(dataset, split, features, y, config.seed)
    propensity_results = {MODEL_NAME: evaluation.propensity} | {
        name: m.propensity_metrics(
            evaluation.labels,
            p,
            k=config.capacity,
            n_boot=config.n_boot,
            seed=config.seed,
            amounts=known_amounts(holdout),
            # Like the model's: whole accounts resampled, so the intervals compare like for like.
            groups=account_groups(holdout),
        )
        for name, p in baselines.items()
    }
    return evaluation, baselines, propensity_results


def _velocity_beats_baseline(scorer: AccountScorer, evaluation: Evaluation) -> bool:
    """Whether the velocity model's holdout MAE is below the median-days baseline's.

    Without the comparison (too few won holdout deals with a duration) the model is not trusted.
    """
    model, baseline = (
        evaluation.velocity.get("mae_days"),
        evaluation.velocity_baseline.get("mae_days"),
    )
    if model is None or baseline is None:
        scorer.metadata["velocity_not_used"] = (
            "too few won holdout deals with a duration to check the velocity model"
        )
        return False
    if model.value < baseline.value:
        return True
    scorer.metadata["velocity_not_used"] = (
        f"the velocity model (MAE {model.value:.1f} days on the holdout) was not better than "
        f"the median-days baseline (MAE {baseline.value:.1f} days)"
    )
    return False


def _serve_baseline_days(scorer: AccountScorer, evaluation: Evaluation) -> Evaluation:
    """Drop a velocity model that lost to the baseline: days and priority use the median days."""
    scorer.velocity = None
    scored = evaluation.scored.copy()
    for column in DAYS_COLUMNS:
        scored[column] = scorer.default_days
    return dataclasses.replace(evaluation, scored=scored)


@contextmanager
def _timed(timings: dict[str, float], step: str, *, cpu: bool = True) -> Iterator[None]:
    """Record ``<step>_s`` (wall) and ``<step>_cpu_s`` (CPU of all this process's threads).

    Both, because on a shared machine the wall time measures the neighbours too, and the CPU
    time shows what the parallel fits cost in total. The CPU time of a step includes what a
    step running alongside it spent meanwhile, so a step in a background thread records its
    wall time only (``cpu=False``).
    """
    wall, cpu_start = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        timings[f"{step}_s"] = time.perf_counter() - wall
        if cpu:
            timings[f"{step}_cpu_s"] = time.process_time() - cpu_start


def train_models(dataset: Dataset, config: TrainConfig | None = None) -> TrainingResult:
    """Fit, calibrate and package the propensity and velocity models, then evaluate the package.

    The holdout metrics come from :func:`~abm_ml.modeling.evaluate.evaluate_scorer` on the
    packaged :class:`AccountScorer`, the code that serves; the baselines are scored on the
    same rows with the same metric settings.
    """
    config = config or TrainConfig()
    timings: dict[str, float] = {}
    with _timed(timings, "total"):
        # The result holds this dict: the total is in it once the step is timed.
        return _train(dataset, config, timings)


def _train(dataset: Dataset, config: TrainConfig, timings: dict[str, float]) -> TrainingResult:
    frame = dataset.frame
    with _timed(timings, "propensity_fit"):
        with _timed(timings, "prepare"):
            split, findings, features = _split_and_guard(dataset, config)
            # The category vocabulary (no labels) covers the rows the packaged model is
            # refitted on: on a time split the newest categories appear only in validation.
            preprocessor = Preprocessor(features).fit(frame.iloc[split.fit_rows])
            values = preprocessor.raw_values(frame)
            X = preprocessor.matrix(values)
            y = won_labels(frame)
        setup = cand.FitSetup(
            feature_names=[f.name for f in features],
            categorical=[j for j, f in enumerate(features) if f.type == "categorical"],
            monotone=[f.monotone for f in features],
            config=config,
        )

        def fit_velocity_timed():
            with _timed(timings, "velocity_fit", cpu=False):
                return fit_velocity(
                    frame, split, X, config.lgb_params(), config, setup.categorical, features
                )

        # The velocity models need nothing from the propensity model: their boosters fill the
        # cores the propensity fits leave idle (LightGBM releases the GIL) instead of waiting
        # for them. Each booster has fixed threads and seed, so the result is the same.
        with ThreadPoolExecutor(1, thread_name_prefix="abm-ml-velocity") as background:
            velocity_job = background.submit(fit_velocity_timed)
            with _timed(timings, "propensity_search"):
                fit_rows = split.fit_rows
                folds = (
                    cross_fit_folds(
                        y[fit_rows], frame[ACCOUNT_ID].to_numpy()[fit_rows].astype(str), config.seed
                    )
                    if config.refit
                    else []
                )
                cross_fitted = bool(folds) and cand.needs_cross_fit(y[split.valid])
                ranked = cand.search(
                    X,
                    y,
                    split.train,
                    split.valid,
                    setup,
                    budget_s=config.search_budget_s,
                    portfolio=cand.portfolio(config.candidates, budget_s=config.search_budget_s),
                    charge=1.0 + len(folds) if cross_fitted else 1.0,
                )
                compared_on = split.valid
                if cross_fitted:
                    ranked = cand.rank(cand.cross_fit(ranked, X, y, fit_rows, folds, setup))
                    compared_on = fit_rows
                choice = cand.choose_blend(ranked, y[compared_on], config.seed)
                leaderboard = cand.leaderboard(ranked, choice, y[compared_on])
            best = {f"propensity_{f.candidate.name}": f.rounds for f in choice.members}
            with _timed(timings, "propensity_refit"):
                final = _final_propensity(choice, X, y, split, setup, folds)
            with _timed(timings, "velocity_wait"):
                velocity, velocity_best, fallback_days, velocity_board = velocity_job.result()
    if final.refitted:
        best["propensity_refitted"] = 1
    model, calibrator, thresholds = final.model, final.calibrator, final.tier_thresholds
    best.update(velocity_best)

    default_amount, amount_known = _default_amount(frame, split.train[y[split.train] == 1])
    scorer = AccountScorer(
        features=features,
        preprocessor=preprocessor,
        propensity_model=model,
        calibrator=calibrator,
        velocity=velocity,
        tier_thresholds=thresholds,
        default_amount=default_amount,
        default_days=fallback_days,
        metadata=_metadata(dataset, calibrator, amount_known, choice.name),
        base_propensity=_mean_propensity(model, calibrator, X[final.training_rows]),
        input_spec=InputSpec.from_dataset_spec(dataset.spec).model_dump(),
    )

    # A copy of the model, made here: one LightGBM booster must not be used by two threads at
    # once (LightGBM issue #5482), and the evaluation predicts with the packaged one.
    explained = copy.deepcopy(model)

    def shap_sample_timed():
        with _timed(timings, "shap_sample", cpu=False):
            return _shap_importance(explained, preprocessor, values, X, split.test, config.seed)

    # TreeSHAP of the holdout sample runs in LightGBM or CatBoost without the GIL: alongside
    # the evaluation's Python on the other core instead of after it.
    with ThreadPoolExecutor(1, thread_name_prefix="abm-ml-shap") as background:
        shap_job = background.submit(shap_sample_timed)
        # The packaged scorer and the baselines, on the same test rows with the same settings.
        with _timed(timings, "evaluate"):
            holdout = frame.iloc[split.test][[*HOLDOUT_COLUMNS, *scorer.feature_names]]
            holdout = holdout.reset_index(drop=True)
            evaluation, baselines, propensity_results = _compare_on_holdout(
                scorer, holdout, dataset, split, features, y, config
            )
            velocity_results = (
                {
                    MODEL_NAME: evaluation.velocity,
                    "median_days_baseline": evaluation.velocity_baseline,
                }
                if velocity is not None and evaluation.velocity
                else {}
            )
            velocity_extra = velocity_checks(dataset, split, X, velocity, config, features)
            if velocity is not None and not _velocity_beats_baseline(scorer, evaluation):
                evaluation = _serve_baseline_days(scorer, evaluation)
        sample, contrib, importance = shap_job.result()

    return TrainingResult(
        dataset=dataset,
        scorer=scorer,
        split=split,
        config=config,
        leak_findings=findings,
        propensity=propensity_results,
        velocity=velocity_results,
        velocity_extra=velocity_extra,
        no_better_than_chance=evaluation.no_better_than_chance,
        holdout=holdout,
        holdout_predictions=_holdout_predictions(holdout, evaluation, baselines),
        feature_importance=importance,
        calibration_choice=final.calibration_losses,
        best_iterations=best,
        shap_sample=(sample, contrib),
        timings=timings,
        leaderboard=leaderboard,
        propensity_choice=choice.name,
        velocity_leaderboard=velocity_board,
    )
