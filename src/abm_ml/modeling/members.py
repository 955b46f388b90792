"""Propensity models over the scorer's matrix X, each with exact additive explanations.

Every member takes the float64 array X of :meth:`Preprocessor.matrix` (columns in the
scorer's feature order, categories as integer codes, NaN for missing or unseen) and gives

- ``raw(X)``: log-odds of the uncalibrated model,
- ``contributions(X)``: per-feature log-odds contributions whose sum plus the base is ``raw``
  exactly, so the reasons and the waterfall work the same whatever model was chosen.

Members: LightGBM (native TreeSHAP, ``pred_contrib``), CatBoost (its ``ShapValues``), and a
regularised logistic regression on one-hot categories and spline (or plain scaled) numerics,
whose SHAP values are exact in closed form (an additive model's contribution of a feature is
its term minus the term's training mean). :class:`Blend` is a weighted sum of members in
log-odds space; its contributions are the same weighted sum of the members' contributions.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import lightgbm as lgb
import numpy as np
import pandas as pd
import scipy.sparse as sp
from joblib import Parallel, delayed
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    QuantileTransformer,
    SplineTransformer,
    StandardScaler,
)

from abm_ml.config import num_threads
from abm_ml.modeling.reasons import Contributions


def parallel_map(fn: Callable, items: Sequence) -> list:
    """``[fn(item) for item in items]``, side by side in threads, one per core at most.

    The fits release the GIL (LightGBM, CatBoost, scipy's solvers) and each uses
    :func:`~abm_ml.config.num_threads` threads itself, so independent fits (cross-fitting
    folds, candidates) use a 2-core machine's second core; results are in input order and do
    not depend on the number of cores.
    """
    jobs = max(1, min(len(items), os.cpu_count() or 1))
    if jobs == 1:
        return [fn(item) for item in items]
    return Parallel(n_jobs=jobs, prefer="threads")(delayed(fn)(item) for item in items)


class PropensityModel(Protocol):
    """What the scorer needs of a propensity model (a single member or a blend)."""

    kind: str
    name: str
    feature_names: list[str]

    def raw(self, X: np.ndarray) -> np.ndarray: ...

    def contributions(self, X: np.ndarray) -> Contributions: ...


@dataclass
class LightGBMMember:
    """A LightGBM booster trained on X (categorical columns declared by index)."""

    booster: lgb.Booster
    feature_names: list[str]
    kind: str = "lightgbm"
    name: str = ""

    def raw(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(X, raw_score=True, num_threads=num_threads()))

    def contributions(self, X: np.ndarray) -> Contributions:
        out = np.asarray(self.booster.predict(X, pred_contrib=True, num_threads=num_threads()))
        return Contributions(values=out[:, :-1], base=out[:, -1], feature_names=self.feature_names)


def catboost_frame(X: np.ndarray, categorical: Sequence[int]) -> pd.DataFrame:
    """X as CatBoost takes it: category codes as integers (-1 for missing), numbers as float."""
    frame = pd.DataFrame(X, columns=[str(i) for i in range(X.shape[1])])
    for j in categorical:
        codes = X[:, j]
        frame[str(j)] = np.where(np.isnan(codes), -1, codes).astype(np.int64)
    return frame


@dataclass
class CatBoostMember:
    """A CatBoost classifier trained on X; explained by CatBoost's own exact ``ShapValues``."""

    model: object  # catboost.CatBoostClassifier (imported lazily: it is a heavy import)
    feature_names: list[str]
    categorical: list[int]
    kind: str = "catboost"
    name: str = ""

    def _pool(self, X: np.ndarray):
        from catboost import Pool

        return Pool(catboost_frame(X, self.categorical), cat_features=self.categorical)

    def raw(self, X: np.ndarray) -> np.ndarray:
        pool = self._pool(X)
        return np.asarray(
            self.model.predict(pool, prediction_type="RawFormulaVal", thread_count=num_threads())
        )

    def contributions(self, X: np.ndarray) -> Contributions:
        out = np.asarray(
            self.model.get_feature_importance(
                self._pool(X), type="ShapValues", thread_count=num_threads()
            )
        )
        return Contributions(values=out[:, :-1], base=out[:, -1], feature_names=self.feature_names)


def _numeric_basis(column: np.ndarray) -> Pipeline | FeatureUnion:
    """Missing indicator plus a cubic spline of the value's training quantile (robust to heavy
    tails such as deal amounts); a plain linear term when the column has too few values."""
    finite = column[np.isfinite(column)]
    indicator = MissingIndicator(features="all", error_on_new=False)
    if np.unique(finite).size < 3:
        value = SimpleImputer(strategy="constant", fill_value=0.0, keep_empty_features=True)
        return FeatureUnion([("missing", indicator), ("value", value)])
    spline = make_pipeline(
        SimpleImputer(strategy="median"),
        QuantileTransformer(n_quantiles=min(200, finite.size), subsample=100_000, random_state=0),
        SplineTransformer(n_knots=5, degree=3, extrapolation="constant"),
    )
    return FeatureUnion([("missing", indicator), ("spline", spline)])


def _linear_basis(column: np.ndarray) -> FeatureUnion:
    """Missing indicator plus the value itself, median-imputed and scaled: one slope per
    feature, as the plain logistic regression baseline has (:mod:`abm_ml.modeling.baselines`)."""
    del column  # same signature as the spline basis; a slope needs nothing fitted beforehand
    value = make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()
    )
    return FeatureUnion(
        [("missing", MissingIndicator(features="all", error_on_new=False)), ("value", value)]
    )


def _spline_block(basis: object, values: np.ndarray) -> np.ndarray | None:
    """The spline basis's columns for ``values`` (missing flag, then the B-splines), computed
    from its fitted parts as their ``transform`` computes them, without scikit-learn's checks
    on every call: about 0.5 ms per call, which made each number a served record had not met
    before cost half a millisecond. None for any other basis (then ``transform`` is used)."""
    try:
        (_, indicator), (_, spline) = basis.transformer_list  # type: ignore[attr-defined]
        (_, imputer), (_, quantile), (_, splines) = spline.steps
    except (AttributeError, TypeError, ValueError):
        return None
    if not (
        isinstance(indicator, MissingIndicator)
        and isinstance(imputer, SimpleImputer)
        and isinstance(quantile, QuantileTransformer)
        and isinstance(splines, SplineTransformer)
        and quantile.output_distribution == "uniform"
        and splines.extrapolation == "constant"
        and splines.include_bias
        and not splines.sparse_output
    ):
        return None
    missing = np.isnan(values)
    x = np.where(missing, imputer.statistics_[0], values).astype(float)
    x = quantile._transform_col(x, quantile.quantiles_[:, 0], inverse=False)
    bspline, degree = splines.bsplines_[0], splines.degree
    low, high = bspline.t[degree], bspline.t[-degree - 1]
    block = np.zeros((len(values), 1 + bspline.c.shape[1]))
    block[:, 0] = missing
    inside = (low <= x) & (x <= high)
    block[inside, 1:] = bspline(x[inside])
    # Beyond the knots the first (last) degree splines keep their boundary values.
    block[x < low, 1 : 1 + degree] = bspline(low)[:degree]
    block[x > high, block.shape[1] - degree :] = bspline(high)[-degree:]
    return block


def _slope_block(basis: object, values: np.ndarray) -> np.ndarray | None:
    """The one-slope basis's columns for ``values`` (missing flag, then the value imputed and
    scaled; imputed only for a column of fewer than three values), computed from its fitted
    parts as :func:`_spline_block` does. None for any other basis."""
    try:
        (_, indicator), (_, value) = basis.transformer_list  # type: ignore[attr-defined]
        steps = [step for _, step in value.steps] if isinstance(value, Pipeline) else [value]
    except (AttributeError, TypeError, ValueError):
        return None
    imputer, *rest = steps
    scaler = rest[0] if rest else None
    if not (
        isinstance(indicator, MissingIndicator)
        and isinstance(imputer, SimpleImputer)
        and len(rest) <= 1
        and (scaler is None or isinstance(scaler, StandardScaler))
        and (scaler is None or (scaler.with_mean and scaler.with_std))
    ):
        return None
    missing = np.isnan(values)
    # (A column missing in every training row has the statistic 0: ``keep_empty_features``.)
    x = np.where(missing, imputer.statistics_[0], values).astype(float)
    if scaler is not None:
        x = (x - scaler.mean_[0]) / scaler.scale_[0]
    return np.column_stack([missing.astype(float), x])


def _fast_block(basis: object, values: np.ndarray) -> np.ndarray | None:
    """A numeric basis's columns from its fitted parts (the same bits as ``transform``), or
    None for a basis neither :func:`_spline_block` nor :func:`_slope_block` knows."""
    block = _spline_block(basis, values)
    return block if block is not None else _slope_block(basis, values)


NUMERIC_BASES = {"spline": _numeric_basis, "linear": _linear_basis}
REMEMBER_ROWS = 64
"""Calls of at most this many rows (one record, a small request) remember their terms."""
REMEMBER_VALUES = 50_000
"""Distinct values remembered per feature before the memory starts again."""
"""How a :class:`LinearMember` expands a numeric column, by the name its ``basis`` gives."""


def _missing_as_level(codes: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(codes), -1.0, codes)


def _categorical_basis() -> Pipeline:
    """One-hot category codes; missing and unseen (NaN) share one level, rare ones are grouped."""
    return make_pipeline(
        FunctionTransformer(_missing_as_level),
        OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20, sparse_output=True),
    )


@dataclass
class LinearMember:
    """Regularised logistic regression, additive per feature, so its SHAP values are exact.

    Numeric columns enter as cubic splines of their quantile (``basis="spline"``) or as one
    scaled slope (``basis="linear"``, the plain logistic regression); categories one-hot.
    The log-odds are ``intercept + sum_j term_j(x_j)``; with the training rows as background,
    feature j's SHAP value is ``term_j(x_j) - mean(term_j)`` (an additive model has no
    interactions), and the base is ``intercept + sum_j mean(term_j)``.
    """

    feature_names: list[str]
    categorical: list[int]
    C: float = 0.5
    seed: int = 0
    basis: str = "spline"
    """A key of :data:`NUMERIC_BASES` (members pickled before it existed were splines)."""
    kind: str = "linear"
    name: str = ""

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearMember:
        self.bases_ = []
        blocks = []
        numeric_basis = NUMERIC_BASES[self.basis]
        for j in range(X.shape[1]):
            column = X[:, j : j + 1]
            basis = _categorical_basis() if j in self.categorical else numeric_basis(column[:, 0])
            blocks.append(sp.csr_matrix(basis.fit_transform(column)))
            self.bases_.append(basis)
        design = sp.hstack(blocks, format="csr")
        self.model_ = LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed)
        self.model_.fit(design, y)
        bounds = np.cumsum([0, *(b.shape[1] for b in blocks)])
        self.slices_ = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        self.term_means_ = self._terms_from(blocks).mean(axis=0)
        return self

    def _terms_from(self, blocks: list) -> np.ndarray:
        coef = self.model_.coef_[0]
        return np.column_stack(
            [np.asarray(block @ coef[s]).ravel() for block, s in zip(blocks, self.slices_)]
        )

    def __getstate__(self) -> dict:
        # The remembered terms are rebuilt on use, never pickled with the model.
        return {k: v for k, v in self.__dict__.items() if k != "_remembered"}

    def terms(self, X: np.ndarray) -> np.ndarray:
        """(rows, features) each feature's term of the log-odds.

        A feature's term depends on its own value only, so each column is transformed once per
        distinct value. The terms of the values of small calls (one record) are remembered,
        so a record costs a dict lookup per feature instead of a scikit-learn transform per
        feature (about 0.5 ms each). Every value is transformed and multiplied on its own, so
        the terms are the same bits whichever rows share the call.
        """
        remembered = self.__dict__.get("_remembered")
        if remembered is None:
            remembered = self.__dict__["_remembered"] = [{} for _ in self.bases_]
        out = np.empty((len(X), len(self.bases_)))
        for j in range(len(self.bases_)):
            column = X[:, j]
            if len(column) > REMEMBER_ROWS:
                values, inverse = np.unique(column, return_inverse=True)
                out[:, j] = self._column_terms(j, values)[inverse]
                continue
            known = remembered[j]
            # NaN (missing) is one key: NaN != NaN would miss every time.
            keys = [None if math.isnan(v) else float(v) for v in column.tolist()]
            new = [k for k in dict.fromkeys(keys) if k not in known]
            if new:
                values = np.array([np.nan if k is None else k for k in new])
                if len(known) + len(new) > REMEMBER_VALUES:
                    known.clear()
                known.update(zip(new, self._column_terms(j, values).tolist()))
            out[:, j] = [known[k] for k in keys]
        return out

    def _column_terms(self, j: int, values: np.ndarray) -> np.ndarray:
        """Feature ``j``'s term for each of ``values``."""
        coef = self.model_.coef_[0][self.slices_[j]]
        # Each row is summed the same way however many rows there are (a row-wise sum, a
        # sparse product; not BLAS, whose order depends on the shape): one record's terms are
        # the bits of the same record's in a batch.
        block = None if j in self.categorical else _fast_block(self.bases_[j], values)
        if block is not None:
            return (block * coef).sum(axis=1)
        block = sp.csr_matrix(self.bases_[j].transform(values.reshape(-1, 1)))
        return np.asarray(block @ coef).ravel()

    def raw(self, X: np.ndarray) -> np.ndarray:
        return self.contributions(X).raw

    def contributions(self, X: np.ndarray) -> Contributions:
        values = self.terms(X) - self.term_means_
        base = float(self.model_.intercept_[0] + self.term_means_.sum())
        return Contributions(
            values=values, base=np.full(len(X), base), feature_names=self.feature_names
        )


@dataclass
class Blend:
    """``intercept + sum_i weight_i * raw_i`` in log-odds; contributions weighted the same way."""

    members: list[PropensityModel]
    weights: list[float]
    intercept: float
    feature_names: list[str]
    kind: str = "blend"
    name: str = ""

    def raw(self, X: np.ndarray) -> np.ndarray:
        return self.intercept + sum(w * m.raw(X) for w, m in zip(self.weights, self.members))

    def contributions(self, X: np.ndarray) -> Contributions:
        parts = [m.contributions(X) for m in self.members]
        values = sum(w * c.values for w, c in zip(self.weights, parts))
        base = self.intercept + sum(w * c.base for w, c in zip(self.weights, parts))
        return Contributions(values=values, base=base, feature_names=self.feature_names)

    @property
    def description(self) -> str:
        return " + ".join(
            f"{w:.2f} x {m.name or m.kind}" for w, m in zip(self.weights, self.members)
        )
