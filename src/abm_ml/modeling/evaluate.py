"""Evaluation of a packaged scorer on labelled rows: the one place a model's quality is measured.

Training (the holdout metrics logged to MLflow, the model card and the chance gate),
``abm-ml evaluate`` and ``promote`` (challenger against champion on the same rows) all call
:func:`evaluate_scorer`, which scores the rows with :meth:`AccountScorer.score`, the code that
serves. A model is therefore judged on exactly what it would return in production.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from abm_ml.errors import AbmInputError
from abm_ml.modeling import metrics as m
from abm_ml.modeling.scorer import AccountScorer
from abm_ml.schema import ACCOUNT_ID, AMOUNT, DAYS_TO_CLOSE, LOST, OUTCOME, WON

MIN_WON_FOR_VELOCITY = 10
"""Fewer won deals with a known duration than this give no velocity metrics (too noisy)."""

PROPENSITY_METRICS = (
    "roc_auc",
    "pr_auc",
    "brier",
    "log_loss",
    "ece",
    "lift_top_decile",
    "precision_at_k",
    "recall_at_k",
    "won_amount_captured_top_k",
)
"""Propensity metrics that have a better direction (in :data:`m.HIGHER_IS_BETTER` or
:data:`m.LOWER_IS_BETTER`): the names ``promote --metric`` accepts."""


@dataclass(frozen=True)
class Evaluation:
    """A scorer's metrics on one set of labelled rows.

    Attributes:
        propensity: :func:`~abm_ml.modeling.metrics.propensity_metrics` of the calibrated
            propensity against won (1) / lost (0).
        velocity: :func:`~abm_ml.modeling.metrics.velocity_metrics` of the predicted days on
            won rows with a known duration (empty when fewer than
            :data:`MIN_WON_FOR_VELOCITY`).
        velocity_baseline: the same metrics of the scorer's constant median-days forecast.
        scored: the scorer's output, one row per evaluated row, in order.
        labels: 1 for won, 0 for lost, aligned with ``scored``.
    """

    propensity: dict[str, m.Metric]
    velocity: dict[str, m.Metric]
    velocity_baseline: dict[str, m.Metric]
    scored: pd.DataFrame
    labels: np.ndarray

    @property
    def no_better_than_chance(self) -> bool:
        """The gate: the ROC AUC interval reaches down to 0.5 (see :func:`m.is_no_better_than_chance`)."""
        return m.is_no_better_than_chance(self.propensity)


def won_labels(frame: pd.DataFrame) -> np.ndarray:
    """1 for won, 0 otherwise, from the normalised ``outcome`` column."""
    return (frame[OUTCOME].to_numpy() == WON).astype(int)


def account_groups(frame: pd.DataFrame) -> np.ndarray | None:
    """The account of each row, for intervals that resample accounts (None without accounts).

    Deals of one account share their outcome drivers; resampled as independent rows they make
    intervals too narrow and let a model trained on noise clear the chance gate.
    """
    return frame[ACCOUNT_ID].to_numpy() if ACCOUNT_ID in frame.columns else None


def known_amounts(frame: pd.DataFrame) -> np.ndarray | None:
    """Deal amounts when every row has one (value metrics need them all), else None."""
    if AMOUNT not in frame.columns:
        return None
    amounts = pd.to_numeric(frame[AMOUNT], errors="coerce").to_numpy(dtype=float)
    return amounts if np.isfinite(amounts).all() else None


def check_metric(metric: str) -> str:
    """``metric`` if it is a propensity metric with a better direction.

    Raises:
        AbmInputError: naming the allowed metrics.
    """
    if metric not in PROPENSITY_METRICS:
        raise AbmInputError(
            f"unknown metric {metric!r}; use one of: {', '.join(PROPENSITY_METRICS)}",
            field="metric",
        )
    return metric


def evaluate_scorer(
    scorer: AccountScorer,
    frame: pd.DataFrame,
    *,
    k: int | None = None,
    n_boot: int = 200,
    seed: int = 0,
    where: str | None = None,
) -> Evaluation:
    """Score won and lost rows with ``scorer`` and measure propensity and deal velocity.

    Args:
        scorer: the packaged scorer, as trained or as loaded from the registry.
        frame: labelled rows (``outcome`` of ``won`` / ``lost``; open rows are left out) with
            the feature columns, and optionally ``amount`` and ``days_to_close``.
        k: accounts a sales team can work (precision@k); 10 % of the rows when None.
        n_boot: bootstrap resamples for the 95 % intervals (0: point estimates only).
        seed: seed of the resamples.
        where: which rows these are, for the error message (e.g. "the training run's holdout").

    Raises:
        AbmInputError: no won and lost rows to evaluate on.
    """
    closed = frame[frame[OUTCOME].isin([WON, LOST])].reset_index(drop=True)
    labels = won_labels(closed)
    if closed.empty or len(np.unique(labels)) < 2:
        raise AbmInputError(
            "no won and lost deals to evaluate on" + (f" ({where})" if where else ""),
            field=OUTCOME,
        )
    scored = scorer.score(closed, with_reasons=False)
    propensity = m.propensity_metrics(
        labels,
        scored["propensity"].to_numpy(),
        k=k,
        n_boot=n_boot,
        seed=seed,
        amounts=known_amounts(closed),
        groups=account_groups(closed),
    )
    velocity: dict[str, m.Metric] = {}
    baseline: dict[str, m.Metric] = {}
    if DAYS_TO_CLOSE in closed.columns:
        days = pd.to_numeric(closed[DAYS_TO_CLOSE], errors="coerce").to_numpy(dtype=float)
        won = (labels == 1) & np.isfinite(days)
        if won.sum() >= MIN_WON_FOR_VELOCITY:
            velocity = m.velocity_metrics(
                days[won],
                scored["days_to_close_p50"].to_numpy()[won],
                scored["days_to_close_p10"].to_numpy()[won],
                scored["days_to_close_p90"].to_numpy()[won],
                baseline_days=scorer.default_days,
                n_boot=n_boot,
                seed=seed,
            )
            baseline = m.velocity_metrics(
                days[won], np.full(int(won.sum()), scorer.default_days), n_boot=n_boot, seed=seed
            )
    return Evaluation(propensity, velocity, baseline, scored, labels)
