"""Simple baselines every model is compared with, on the same split.

- Logistic regression on one-hot categories and scaled numbers (with missing indicators).
- A rule-based fit score of the kind teams use today: a point for each ideal-customer-profile
  rule the account meets (ICP industry, size, engagement), turned into a probability by the win
  rate of training rows with the same number of points.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from abm_ml.modeling.feature_info import FeatureInfo

_RULE = re.compile(r"^\s*(>=|<=|>|<|==)\s*(-?[\d.]+)\s*$")


def logistic_baseline(features: list[FeatureInfo], *, seed: int = 0) -> Pipeline:
    """Logistic regression with one-hot categories (rare ones grouped) and scaled numbers."""
    categorical = [f.name for f in features if f.type == "categorical"]
    numeric = [f.name for f in features if f.type != "categorical"]
    transformers = []
    if numeric:
        transformers.append(
            (
                "numeric",
                make_pipeline(
                    SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                    StandardScaler(),
                ),
                numeric,
            )
        )
    if categorical:
        transformers.append(
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(
                        strategy="constant", fill_value="__missing__", keep_empty_features=True
                    ),
                    OneHotEncoder(
                        handle_unknown="infrequent_if_exist", min_frequency=20, sparse_output=True
                    ),
                ),
                categorical,
            )
        )
    return Pipeline(
        [
            ("prepare", ColumnTransformer(transformers)),
            ("model", LogisticRegression(max_iter=2000, C=1.0, random_state=seed)),
        ]
    )


def as_logistic_input(frame: pd.DataFrame, features: list[FeatureInfo]) -> pd.DataFrame:
    """Categorical columns as object text (SimpleImputer needs one dtype), numbers as float."""
    out = {}
    for f in features:
        if f.type == "categorical":
            out[f.name] = frame[f.name].astype(object).where(frame[f.name].notna(), np.nan)
        else:
            out[f.name] = pd.to_numeric(frame[f.name], errors="coerce").astype(float)
    return pd.DataFrame(out, index=frame.index)


class RuleBasedFitScore(ClassifierMixin, BaseEstimator):
    """Points for each ICP rule met; probability = training win rate at that many points.

    Args:
        rules: per feature, either a list of ICP category values or a comparison such as
            ``">= 200"`` for numbers. Features absent from the data are ignored.
    """

    def __init__(self, rules: dict[str, list[str] | str] | None = None):
        self.rules = rules

    def points(self, frame: pd.DataFrame) -> np.ndarray:
        total = np.zeros(len(frame))
        for feature, rule in (self.rules or {}).items():
            if feature not in frame.columns:
                continue
            column = frame[feature]
            if isinstance(rule, str) and _RULE.match(rule):
                op, threshold = _RULE.match(rule).groups()  # type: ignore[union-attr]
                values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
                t = float(threshold)
                met = {
                    ">=": values >= t,
                    "<=": values <= t,
                    ">": values > t,
                    "<": values < t,
                    "==": values == t,
                }[op]
            else:
                allowed = {str(v) for v in (rule if isinstance(rule, list) else [rule])}
                met = column.astype(str).isin(allowed).to_numpy()
            total += np.nan_to_num(met.astype(float))
        return total

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> RuleBasedFitScore:
        points = self.points(X)
        y = np.asarray(y, dtype=float)
        self.classes_ = np.array([0, 1])
        self.base_rate_ = float(y.mean())
        frame = pd.DataFrame({"points": points, "won": y})
        # Laplace-smoothed win rate per number of points.
        grouped = frame.groupby("points")["won"].agg(["sum", "count"])
        self.rate_by_points_ = (
            (grouped["sum"] + self.base_rate_ * 2) / (grouped["count"] + 2)
        ).to_dict()
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        points = self.points(X)
        p = np.array([self.rate_by_points_.get(v, self.base_rate_) for v in points])
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)
