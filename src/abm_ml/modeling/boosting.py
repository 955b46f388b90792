"""LightGBM settings and fitting shared by the propensity and the deal-velocity models."""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd

from abm_ml.config import num_threads
from abm_ml.data.split import Split


@dataclass
class TrainConfig:
    """Knobs of one training run; every one is logged as an MLflow param."""

    seed: int = 42
    learning_rate: float = 0.1
    """With early stopping, IBM stops after 426 rounds at 0.1 where 0.05 took 843: half the
    fitting and half the TreeSHAP cost per explained account."""
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
    refit: bool = True
    """Refit the chosen propensity model on train + validation with the early-stopped round
    counts, calibrated on cross-fitted scores (:mod:`abm_ml.modeling.refit`)."""
    search_budget_s: float | None = None
    """Seconds of candidate fitting (``abm-ml train --budget``): candidates are fitted in
    portfolio order while time remains, each charged for its cross-fitted comparison too when
    there is one (:func:`abm_ml.modeling.candidates.search`'s ``charge``). None (the default)
    fits the fixed default candidates, so that the same data, spec and seed give the same model
    on any machine."""
    candidates: tuple[str, ...] | None = None
    """Names of portfolio candidates to try (the defaults, see :func:`candidates.portfolio`,
    when None)."""
    velocity_candidates: tuple[str, ...] | None = None
    """Names of velocity candidates to try (all of :mod:`abm_ml.modeling.velocity`'s when None)."""

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


def with_monotone(params: dict, monotone: list[int] | None) -> dict:
    """``params`` with the monotone constraints, when any feature has one."""
    full = dict(params)
    if monotone and any(monotone):
        full["monotone_constraints"] = monotone
        full["monotone_constraints_method"] = "advanced"
    return full


def fit_booster(
    params: dict,
    config: TrainConfig,
    train_x,
    train_y,
    valid_x,
    valid_y,
    categorical: list[str] | list[int],
    monotone: list[int] | None,
):
    full = with_monotone(params, monotone)
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


def fit_propensity(
    matrix: pd.DataFrame,
    y: np.ndarray,
    split: Split,
    config: TrainConfig,
    categorical: list[str],
    monotone: list[int] | None,
) -> lgb.Booster:
    """The propensity booster (binary log loss), early-stopped on the split's validation rows."""
    return fit_booster(
        {**config.lgb_params(), "objective": "binary", "metric": "binary_logloss"},
        config,
        matrix.iloc[split.train],
        y[split.train],
        matrix.iloc[split.valid],
        y[split.valid],
        categorical,
        monotone,
    )
