"""The packaged account scorer: raw account records in, scores with reasons out.

This is the one place a score is computed. The MLflow pyfunc, the CLI's batch ranking, the
evaluation and the BentoML service all call :meth:`AccountScorer.score`, so training and
serving cannot drift apart. The scorer carries its fitted preprocessing, so it takes records
as a CRM sends them (categories as strings, numbers possibly as text, fields possibly absent)
and never sees LightGBM's category codes from outside.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from abm_ml.config import num_threads
from abm_ml.data.parsing import category_value
from abm_ml.data.records import InputSpec, ScoringRecords, canonical_record, canonical_records
from abm_ml.modeling import reasons, single_row
from abm_ml.modeling.feature_info import FeatureInfo, parse_yes_no
from abm_ml.modeling.members import LightGBMMember, PropensityModel
from abm_ml.schema import ACCOUNT_ID, AMOUNT, ROW_ID

TIER_NAMES = ("A", "B", "C", "D")
"""Fit tiers by propensity: A = top 10 % of the holdout, B = next 20 %, C = next 30 %, D = the rest."""
TIER_SHARES = (0.10, 0.30, 0.60)
MAX_CATEGORIES = 10_000
"""Categories kept per feature (most frequent first, ties by value); rarer ones are treated like
unseen ones. The models group rare categories themselves (LightGBM by its ``min_data_per_group``
and ``cat_smooth``, the linear member's one-hot those seen in fewer than 20 rows), so the cap only
bounds the packaged model when a column is nearly an identifier. It was 256, a cut that splits
categories seen equally often at a point set by row order: Olist's 427 landing pages (most seen
once) went half to the rare-category group and half to the missing one, and the logistic
regression baseline fitted on that vocabulary lost 0.004 of test ROC AUC (0.690 against 0.694)."""
_DERIVED = ("_lookups", "_row_plan")
"""What a :class:`Preprocessor` derives from its categories on first use: never pickled."""

OUTPUT_COLUMNS = (
    "account_id",
    "propensity",
    "score",
    "tier",
    "days_to_close_p10",
    "days_to_close_p50",
    "days_to_close_p90",
    "amount",
    "expected_value",
    "priority",
)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # np.minimum/np.maximum: np.clip's result at a fraction of its call cost on one record.
    return 1.0 / (1.0 + np.exp(-np.minimum(np.maximum(x, -35.0), 35.0)))


@dataclass
class Preprocessor:
    """Turns raw records into the models' matrix: numbers as float, categories as fixed codes.

    Attributes:
        features: the model's features in column order.
        categories_: per categorical feature, the category values seen in training; a
            category's code is its position in this list.
    """

    features: list[FeatureInfo]
    categories_: dict[str, list[str]] = field(default_factory=dict)

    def fit(self, frame: pd.DataFrame) -> Preprocessor:
        for feature in self.features:
            if feature.type == "categorical":
                counts = frame[feature.name].dropna().astype(str).value_counts()
                # Most frequent first, ties by value: the kept set never depends on row order.
                counts = counts.sort_index().sort_values(ascending=False, kind="stable")
                self.categories_[feature.name] = sorted(counts.index[:MAX_CATEGORIES])
        for derived in _DERIVED:
            self.__dict__.pop(derived, None)
        return self

    def __getstate__(self) -> dict[str, Any]:
        # The lookups are derived from categories_: rebuilt after loading, never pickled.
        return {k: v for k, v in self.__dict__.items() if k not in _DERIVED}

    @property
    def categorical_names(self) -> list[str]:
        return [f.name for f in self.features if f.type == "categorical"]

    def _lookup(self) -> dict[str, tuple[dict[str, int], pd.Index]]:
        """Per categorical feature, category -> code as a dict (one value) and an Index (columns).

        Built once per loaded scorer (on first use, so scorers pickled before it exist work).
        """
        lookups = self.__dict__.get("_lookups")
        if lookups is None:
            lookups = {
                name: ({c: i for i, c in enumerate(cats)}, pd.Index(cats, dtype=object))
                for name, cats in self.categories_.items()
            }
            self.__dict__["_lookups"] = lookups
        return lookups

    def raw_values(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Feature values as given, coerced to their type (numbers parsed, categories as text)."""
        values = {}
        for feature in self.features:
            # Records may use the model's feature names or the CRM export's own column names.
            if feature.name in frame.columns:
                column = frame[feature.name]
            elif feature.column in frame.columns:
                column = frame[feature.column]
            else:
                column = pd.Series(np.nan, index=frame.index)
            if feature.type == "categorical":
                values[feature.name] = pd.Series(
                    _category_texts(column.to_numpy(dtype=object)), index=frame.index
                )
            elif feature.type == "boolean":
                values[feature.name] = parse_yes_no(column)
            else:
                values[feature.name] = pd.to_numeric(column, errors="coerce").astype(float)
        return pd.DataFrame(values, index=frame.index)

    def matrix(self, values: pd.DataFrame) -> np.ndarray:
        """The models' input from :meth:`raw_values` output: a float64 (rows, features) array.

        Categorical columns hold the category's code (NaN when missing or unseen in
        training), booleans 0/1/NaN, numbers as float; columns in :attr:`features` order.
        LightGBM boosters fitted on ``pd.Categorical`` columns with these categories read the
        codes as the same categories.
        """
        lookups = self._lookup()
        out = np.empty((len(values), len(self.features)), dtype=float)
        for j, feature in enumerate(self.features):
            column = values[feature.name]
            if feature.type == "categorical":
                codes = lookups[feature.name][1].get_indexer(column.to_numpy(dtype=object))
                out[:, j] = np.where(codes >= 0, codes, np.nan)
            else:
                out[:, j] = column.to_numpy(dtype=float, na_value=np.nan)
        return out

    def row(self, values: Mapping[str, Any]) -> np.ndarray:
        """:meth:`matrix` of one record's parsed values (name -> value): a (1, features) array."""
        plan = self.__dict__.get("_row_plan")
        if plan is None:
            # Per feature in column order: its name and, for a category, its code map.
            lookups = self._lookup()
            plan = [
                (f.name, lookups[f.name][0] if f.type == "categorical" else None)
                for f in self.features
            ]
            self.__dict__["_row_plan"] = plan
        row = []
        for name, codes in plan:
            value = values[name]
            if codes is not None:
                code = codes.get(value) if isinstance(value, str) else None
                value = np.nan if code is None else code
            row.append(value)
        # One conversion of a list: setting 48 array cells one by one costs four times more.
        return np.array([row], dtype=float)

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """LightGBM's training input: float columns and ``pd.Categorical`` with the training categories."""
        return self.encode(self.raw_values(frame))

    def encode(self, raw: pd.DataFrame) -> pd.DataFrame:
        """LightGBM's training input from :meth:`raw_values` output (left as it is)."""
        matrix = raw.copy(deep=False)
        for name in self.categorical_names:
            matrix[name] = pd.Categorical(raw[name], categories=self.categories_[name])
        return matrix


def _category_texts(values: np.ndarray) -> np.ndarray:
    """Categories as text (typed values such as numbers become strings), NaN when missing."""
    codes, uniques = pd.factorize(values)
    uniques = np.asarray(uniques, dtype=object)
    if not all(isinstance(u, str) for u in uniques.tolist()):
        # Typed values: factorize takes 1, 1.0 and True for one value; their texts differ.
        return np.array([category_value(v) for v in values], dtype=object)
    # Text and missing values only (parsed records): each distinct text once.
    return np.append(uniques, np.nan).take(codes)  # code -1 (missing) takes the NaN


@dataclass
class VelocityModel:
    """Quantile LightGBM models of log(1 + days to close) for won deals."""

    boosters: dict[str, lgb.Booster]  # "p10", "p50", "p90"
    fallback_days: float
    feature_names: list[str] | None = None
    """The features in X's column order (boosters trained on arrays only know ``Column_i``)."""

    def __getstate__(self) -> dict[str, Any]:
        # LightGBM's single-row handles belong to this process: made again after loading.
        return {k: v for k, v in self.__dict__.items() if k != "_single_row"}

    def predict_log(self, matrix: pd.DataFrame | np.ndarray) -> dict[str, np.ndarray]:
        # Quantile models are fitted separately and may cross; sort so P10 <= P50 <= P90.
        if _one_row(matrix):
            # Three numbers, sorted as such: stacking 1-element arrays costs more than predicting.
            p10, p50, p90 = sorted(
                single_row.predictor(self, self.boosters[q], "normal", matrix.shape[1])(matrix)[0]
                for q in ("p10", "p50", "p90")
            )
            return {"p10": np.array([p10]), "p50": np.array([p50]), "p90": np.array([p90])}
        preds = {
            q: np.asarray(b.predict(matrix, num_threads=num_threads()))
            for q, b in self.boosters.items()
        }
        stacked = np.sort(np.vstack([preds["p10"], preds["p50"], preds["p90"]]), axis=0)
        return {"p10": stacked[0], "p50": stacked[1], "p90": stacked[2]}

    def contributions(self, matrix: np.ndarray) -> reasons.Contributions | None:
        """TreeSHAP of the P50 model in log days: what the velocity reasons explain."""
        booster = self.boosters["p50"]
        if _one_row(matrix):
            out = single_row.predictor(self, booster, "contrib", matrix.shape[1])(matrix)
            names = self.feature_names or booster.feature_name()
            return reasons.Contributions(
                values=out[None, :-1], base=out[-1:], feature_names=list(names)
            )
        return reasons.contributions(booster, matrix, self.feature_names)


class _RecordColumns(Mapping[str, list]):
    """One parsed record as one-value columns (name -> [value]): the reasons' view of it.

    The reasons read only the few features they name; a dict of every feature's column
    would be built for nothing.
    """

    __slots__ = ("_record",)

    def __init__(self, record: Mapping[str, Any]) -> None:
        self._record = record

    def __getitem__(self, name: str) -> list:
        return [self._record[name]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._record)

    def __len__(self) -> int:
        return len(self._record)


def _one_row(matrix: pd.DataFrame | np.ndarray) -> bool:
    """A one-row float array: what LightGBM's single-row fast path predicts (the service's case)."""
    return isinstance(matrix, np.ndarray) and matrix.ndim == 2 and matrix.shape[0] == 1


@dataclass
class Calibrator:
    """Maps raw log-odds to calibrated probabilities: sigmoid, isotonic or none (the model's own
    probability), whichever cross-fitting on held-out data prefers."""

    method: str
    isotonic: IsotonicRegression | None = None
    coef: float = 1.0
    intercept: float = 0.0

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        if self.method == "isotonic" and self.isotonic is not None:
            return np.clip(self.isotonic.predict(raw), 1e-4, 1 - 1e-4)
        if raw.shape == (1,):  # one record: its one number in scalar math
            return np.array([self.one(raw[0])])
        if self.method == "sigmoid":
            return _sigmoid(self.coef * raw + self.intercept)
        return _sigmoid(raw)

    def one(self, raw: float) -> float:
        """The calibrated probability of one raw log-odds: ``self(np.array([raw]))[0]``, exactly.

        Six numpy calls on a 1-element array cost ~5 us; Python arithmetic gives the same
        IEEE results for the products, sums and clamps, and the one transcendental step stays
        numpy's own ``exp`` (``math.exp`` differs from it in the last bit on ~5 % of inputs).
        """
        if self.method == "isotonic" and self.isotonic is not None:
            return float(np.clip(self.isotonic.predict(np.array([raw])), 1e-4, 1 - 1e-4)[0])
        x = float(raw)
        if self.method == "sigmoid":
            x = self.coef * x + self.intercept
        # As np.minimum/np.maximum clamp (NaN stays NaN: no comparison with it is true).
        x = min(max(x, -35.0), 35.0)
        return float(1.0 / (1.0 + np.exp(-x)))


_INPUT_SPECS: dict[int, tuple[dict, InputSpec]] = {}
"""Validated input specs by the id of their dict (held, so the id stays theirs)."""


def _input_spec(spec: dict) -> InputSpec:
    """``InputSpec.model_validate(spec)``, once per spec dict: the one-record path asks each call."""
    cached = _INPUT_SPECS.get(id(spec))
    if cached is None or cached[0] is not spec:
        if len(_INPUT_SPECS) > 64:  # scorers come and go in tests and notebooks
            _INPUT_SPECS.clear()
        cached = (spec, InputSpec.model_validate(spec))
        _INPUT_SPECS[id(spec)] = cached
    return cached[1]


def _account_ids(records: pd.DataFrame) -> np.ndarray:
    """``account_id`` as text, else ``row_id``, else the row position."""
    for column in (ACCOUNT_ID, ROW_ID):
        if column in records.columns:
            return records[column].astype(str).to_numpy(dtype=object)
    return np.array([str(i) for i in range(len(records))], dtype=object)


@dataclass
class AccountScorer:
    """Everything needed to score raw account records: preprocessing, models, calibration, tiers."""

    features: list[FeatureInfo]
    preprocessor: Preprocessor
    propensity_model: PropensityModel
    """A :mod:`~abm_ml.modeling.members` model over X: one member or a log-odds blend."""
    calibrator: Calibrator
    velocity: VelocityModel | None
    tier_thresholds: list[float]
    default_amount: float
    default_days: float
    metadata: dict = field(default_factory=dict)
    base_propensity: float | None = None
    """Mean calibrated propensity over the training rows: the base of every explanation.
    None in scorers packaged before it existed (their base is the calibrated SHAP base)."""
    input_spec: dict | None = None
    """:class:`~abm_ml.data.records.InputSpec` as a dict: how to read the CRM's own export.
    None in models registered before it existed; they read canonical columns only."""

    def __getstate__(self) -> dict[str, Any]:
        # LightGBM's single-row handles belong to this process: made again after loading.
        return {k: v for k, v in self.__dict__.items() if k != "_single_row"}

    def __setstate__(self, state: dict) -> None:
        # Scorers pickled before the members carried a bare LightGBM booster.
        if "propensity_booster" in state:
            booster = state.pop("propensity_booster")
            names = [f.name for f in state["features"]]
            state["propensity_model"] = LightGBMMember(booster, names)
        self.__dict__.update(state)

    @property
    def propensity_booster(self) -> lgb.Booster:
        """The LightGBM booster, when the propensity model is a single LightGBM (older code)."""
        if isinstance(self.propensity_model, LightGBMMember):
            return self.propensity_model.booster
        raise AttributeError(f"the propensity model is a {self.propensity_model.kind} model")

    def _propensity_raw(self, X: np.ndarray) -> np.ndarray:
        """Raw log-odds of the uncalibrated propensity model."""
        model = self.propensity_model
        if _one_row(X) and isinstance(model, LightGBMMember):
            return single_row.predictor(self, model.booster, "raw", X.shape[1])(X)
        return model.raw(X)

    def _propensity_contributions(self, X: np.ndarray) -> reasons.Contributions:
        """Exact per-feature log-odds contributions: ``base + values.sum(1) == raw``."""
        model = self.propensity_model
        if _one_row(X) and isinstance(model, LightGBMMember):
            # The member's own pred_contrib, through LightGBM's single-row fast path.
            out = single_row.predictor(self, model.booster, "contrib", X.shape[1])(X)
            return reasons.Contributions(
                values=out[None, :-1], base=out[-1:], feature_names=model.feature_names
            )
        return model.contributions(X)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def input(self) -> InputSpec | None:
        """How the training export was read (None for models older than the carried spec)."""
        spec = getattr(self, "input_spec", None)
        return _input_spec(spec) if spec else None

    def prepare(self, records: pd.DataFrame) -> ScoringRecords | None:
        """Records parsed as training parsed them, or None for models without a carried spec."""
        spec = self.input
        return canonical_records(records, self.features, spec) if spec else None

    @property
    def has_amount(self) -> bool:
        """Whether training knew deal amounts (else there is no expected value)."""
        return bool(self.metadata.get("amount_known", True))

    @property
    def days_source(self) -> str | None:
        """Where days to close come from: the velocity model, the median-days baseline, or nowhere."""
        if self.velocity is not None:
            return "velocity model"
        if self.default_days is None or not np.isfinite(self.default_days):
            return None
        return "median days to close of won training deals (baseline)"

    def basis(self) -> dict[str, str | None]:
        """What the days, expected value and priority are made of: said next to every ranking."""
        days = self.days_source
        if not self.has_amount:
            priority = "propensity (the training data had no deal amount)"
        elif days is None:
            priority = "expected value (no days to close: the model was trained without dates or a duration)"
        else:
            priority = "expected value per day to close (P50)"
        note = self.metadata.get("velocity_not_used")
        return {
            "days_to_close": days + (f"; {note}" if note and days else "") if days else None,
            "expected_value": "propensity x amount" if self.has_amount else None,
            "priority": priority,
        }

    def propensity_from_raw(self, raw: np.ndarray) -> np.ndarray:
        return self.calibrator(raw)

    def tiers(self, propensity: np.ndarray) -> np.ndarray:
        # thresholds are descending propensity cut-offs for A, B, C.
        idx = np.searchsorted(-np.asarray(self.tier_thresholds), -propensity, side="right")
        return np.asarray(TIER_NAMES, dtype=object)[idx]

    def score(
        self,
        records: pd.DataFrame,
        *,
        k_up: int = 3,
        k_down: int = 1,
        with_reasons: bool = True,
        with_velocity_reasons: bool = True,
        parsed: bool = False,
        structured_reasons: bool = True,
        reason_texts: bool = False,
    ) -> pd.DataFrame:
        """Score raw account records.

        Args:
            records: one row per account, as the CRM exports it (the training spec's columns,
                placeholders and number formats, read through :attr:`input_spec`) or in
                canonical form (feature names, ``account_id`` or ``row_id``, ``amount``).
                Missing feature columns become missing values.
            k_up: factors raising the propensity to return per account.
            k_down: factors lowering it.
            with_reasons: add ``reasons`` (propensity) and ``velocity_reasons`` columns.
            with_velocity_reasons: add velocity reasons when a velocity model exists.
            parsed: the records are already the ``frame`` of :meth:`prepare` (batch ranking
                parses once to find unscorable rows); they are not parsed again.
            structured_reasons: add the ``reasons`` and ``velocity_reasons`` dicts; False
                leaves them out (a ranked list of a million accounts writes texts only).
            reason_texts: also add the reasons as one-line texts: ``top_reasons``, ``risk``
                (empty without reasons) and, with velocity reasons, ``days_reasons``.

        Returns:
            One row per record, in input order, with :data:`OUTPUT_COLUMNS` plus reasons.
        """
        records = records.reset_index(drop=True) if parsed else self._canonical(records)
        # Feature values once: the model's matrix and the reasons' wording both come from them.
        values = self.preprocessor.raw_values(records)
        columns = self._score_matrix(
            self.preprocessor.matrix(values),
            values,
            _account_ids(records),
            self._amounts(records),
            k_up=k_up,
            k_down=k_down,
            with_reasons=with_reasons,
            with_velocity_reasons=with_velocity_reasons,
            structured_reasons=structured_reasons,
            reason_texts=reason_texts,
        )
        return pd.DataFrame(columns)

    def score_record(
        self,
        record: Mapping[str, Any],
        *,
        k_up: int = 3,
        k_down: int = 1,
        with_reasons: bool = True,
        with_velocity_reasons: bool = True,
    ) -> dict[str, Any]:
        """:meth:`score` of one record, without a DataFrame: the one-record (service) path.

        The record is parsed value by value as :meth:`score` parses a one-row frame of it
        (:func:`~abm_ml.data.records.canonical_record`), then goes through the steps of a
        batch in Python numbers (:meth:`_score_row`). Returns the row of :meth:`score` as a
        dict of plain values.
        """
        spec = self.input
        if spec is None:  # models older than the carried spec read records as a frame
            frame = pd.DataFrame.from_records([dict(record)])
            scored = self.score(
                frame,
                k_up=k_up,
                k_down=k_down,
                with_reasons=with_reasons,
                with_velocity_reasons=with_velocity_reasons,
            )
            return scored.to_dict(orient="records")[0]
        parsed = canonical_record(record, self.features, spec)
        return self._score_row(
            self.preprocessor.row(parsed),
            parsed,
            k_up=k_up,
            k_down=k_down,
            with_reasons=with_reasons,
            with_velocity_reasons=with_velocity_reasons,
        )

    def _score_row(
        self,
        X: np.ndarray,
        parsed: Mapping[str, Any],
        *,
        k_up: int,
        k_down: int,
        with_reasons: bool,
        with_velocity_reasons: bool,
    ) -> dict[str, Any]:
        """:meth:`_score_matrix` of one record's row, in Python numbers: the same steps and values.

        On one row every numpy call costs a microsecond or more for a single number, which
        made these columns cost twice the three velocity predictions behind them. The
        products, sums, clamps and rounding are IEEE arithmetic that Python and numpy do
        alike; ``exp`` (:meth:`Calibrator.one`) and ``expm1`` stay numpy's, as ``math``'s
        differ in the last bit. Tested equal to the batch path, row by row.

        Args:
            X: the record's (1, features) row (:meth:`Preprocessor.row`).
            parsed: the record parsed (:func:`~abm_ml.data.records.canonical_record`).
        """
        contrib = self._propensity_contributions(X) if with_reasons else None
        raw = contrib.raw if contrib is not None else self._propensity_raw(X)
        propensity = self.calibrator.one(raw[0])
        p10, p50, p90 = self._days_row(X)
        if not self.has_amount:
            amount = math.nan
        else:
            amount = float(parsed[AMOUNT])
            amount = float(self.default_amount) if math.isnan(amount) else amount
        expected_value = propensity * amount
        if not self.has_amount:
            priority = propensity
        elif self.days_source is None:
            priority = expected_value
        else:
            priority = expected_value / max(p50, 1.0)  # NaN stays NaN, as np.maximum
        # round() rounds half to even, as np.rint; bisect_right is searchsorted(side="right").
        tier = bisect.bisect_right([-t for t in self.tier_thresholds], -propensity)
        out: dict[str, Any] = {
            "account_id": str(parsed.get(ACCOUNT_ID, 0)),  # as in a frame: else the row position
            "propensity": propensity,
            "score": min(max(round(propensity * 100), 1), 99),
            "tier": TIER_NAMES[tier],
            "days_to_close_p10": p10,
            "days_to_close_p50": p50,
            "days_to_close_p90": p90,
            "amount": amount,
            "expected_value": expected_value,
            "priority": priority,
        }
        if contrib is not None:
            columns = self._reasons(
                contrib, _RecordColumns(parsed), X, k_up, k_down, with_velocity_reasons
            )
            out.update((name, rows[0]) for name, rows in columns.items())
        return out

    def _days_row(self, X: np.ndarray) -> list[float]:
        """:meth:`_days` of one row: P10, P50 and P90 days to close as Python floats."""
        if self.velocity is None:
            days = self.default_days if self.days_source is not None else math.nan
            return [float(days)] * 3
        log_days = self.velocity.predict_log(X)
        quantiles = [log_days["p10"][0], log_days["p50"][0], log_days["p90"][0]]
        return np.maximum(np.expm1(quantiles), 0.0).tolist()

    def _score_matrix(
        self,
        X: np.ndarray,
        values: Mapping[str, Any],
        account_ids: np.ndarray,
        amount: np.ndarray,
        *,
        k_up: int,
        k_down: int,
        with_reasons: bool,
        with_velocity_reasons: bool,
        structured_reasons: bool = True,
        reason_texts: bool = False,
    ) -> dict[str, Any]:
        """The output columns for the matrix ``X``: the array code shared by every path.

        Args:
            X: the models' matrix (:meth:`Preprocessor.matrix`).
            values: feature name -> the rows' values as given (for the reasons' wording;
                only the features a reason names are read).
            account_ids: the rows' ids as text.
            amount: the rows' deal amounts (NaN where unknown).
        """
        contrib = self._propensity_contributions(X) if with_reasons else None
        raw = contrib.raw if contrib is not None else self._propensity_raw(X)
        propensity = self.propensity_from_raw(raw)
        days = self._days(X)
        amount = self._known_amounts(amount)
        expected_value = propensity * amount
        if not self.has_amount:
            priority = propensity
        elif self.days_source is None:
            priority = expected_value
        else:
            # Sales velocity: value won per day of selling time.
            priority = expected_value / np.maximum(days["p50"], 1.0)
        out: dict[str, Any] = {
            "account_id": account_ids,
            "propensity": propensity,
            "score": np.clip(np.rint(propensity * 100), 1, 99).astype(int),
            "tier": self.tiers(propensity),
            "days_to_close_p10": days["p10"],
            "days_to_close_p50": days["p50"],
            "days_to_close_p90": days["p90"],
            "amount": amount,
            "expected_value": expected_value,
            "priority": priority,
        }
        if contrib is not None:
            out.update(
                self._reasons(
                    contrib,
                    values,
                    X,
                    k_up,
                    k_down,
                    with_velocity_reasons,
                    structured=structured_reasons,
                    texts=reason_texts,
                )
            )
        elif reason_texts:
            out["top_reasons"] = out["risk"] = np.full(len(X), "", dtype=object)
        return out

    def _canonical(self, records: pd.DataFrame) -> pd.DataFrame:
        """Records with canonical columns, parsed through the carried input spec when there is one."""
        prepared = self.prepare(records)
        return prepared.frame if prepared is not None else records.reset_index(drop=True)

    def _days(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """P10/P50/P90 days to close (never negative), the median days without a model, else NaN."""
        if self.velocity is None:
            days = self.default_days if self.days_source is not None else np.nan
            return {q: np.full(len(X), days, dtype=float) for q in ("p10", "p50", "p90")}
        log_days = self.velocity.predict_log(X)
        return {q: np.maximum(np.expm1(v), 0.0) for q, v in log_days.items()}

    def _amounts(self, records: pd.DataFrame) -> np.ndarray:
        """The records' deal amounts as numbers (NaN where unknown or absent)."""
        if AMOUNT not in records.columns:
            return np.full(len(records), np.nan)
        return pd.to_numeric(records[AMOUNT], errors="coerce").to_numpy(dtype=float)

    def _known_amounts(self, amount: np.ndarray) -> np.ndarray:
        """Deal amounts, the training median of won deals where unknown; NaN without amounts."""
        if not self.has_amount:
            return np.full(len(amount), np.nan)
        return np.where(np.isnan(amount), self.default_amount, amount)

    def _reasons(
        self,
        contrib: reasons.Contributions,
        values: Mapping[str, Any],
        X: np.ndarray,
        k_up: int,
        k_down: int,
        with_velocity_reasons: bool,
        *,
        structured: bool = True,
        texts: bool = False,
    ) -> dict[str, Any]:
        """``reasons`` (in probability points) and ``velocity_reasons`` (in days) when
        ``structured``; with ``texts``, their one-line texts: ``top_reasons`` and ``risk``,
        ``days_reasons``. Both come from one :class:`~abm_ml.modeling.reasons.ReasonTable`."""

        def probability_effect(with_c: np.ndarray, without_c: np.ndarray) -> np.ndarray:
            # One calibrator call for both (it maps each value on its own).
            both = self.propensity_from_raw(np.concatenate([with_c, without_c]))
            return both[: len(with_c)] - both[len(with_c) :]

        def explained(
            of: reasons.Contributions, effect: Callable, unit: str
        ) -> tuple[list | None, reasons.ReasonTable | None]:
            """(dicts, table): the dicts alone take the one-record path of reasons.reasons."""
            options = {"k_up": k_up, "k_down": k_down, "effect": effect, "effect_unit": unit}
            if not texts:
                return reasons.reasons(of, values, self.features, **options), None
            table = reasons.reason_table(of, values, self.features, **options)
            return (table.entries() if structured else None), table

        out: dict[str, Any] = {}
        entries, table = explained(contrib, probability_effect, "probability_points")
        if entries is not None:
            out["reasons"] = entries
        if table is not None:
            out["top_reasons"] = table.texts(down=False)
            out["risk"] = table.texts(up=False)
        vcontrib = (
            self.velocity.contributions(X)
            if self.velocity is not None and with_velocity_reasons
            else None
        )
        if vcontrib is not None:

            def days_effect(with_c: np.ndarray, without_c: np.ndarray) -> np.ndarray:
                return np.expm1(with_c) - np.expm1(without_c)

            entries, table = explained(vcontrib, days_effect, "days")
            if entries is not None:
                out["velocity_reasons"] = entries
            if table is not None:
                out["days_reasons"] = table.texts()
        return out

    def explain(self, records: pd.DataFrame) -> Explanation:
        """Every feature's push on each record: the one explanation behind ``explain`` and ``/explain``.

        Contributions are TreeSHAP values in log-odds of the uncalibrated model. The waterfall
        in probability starts at :attr:`base_propensity` (the average training account) and
        its steps, one per feature, add up exactly to the record's propensity; see
        :func:`probability_steps` for how the steps are allocated.
        """
        records = self._canonical(records)
        values = self.preprocessor.raw_values(records)
        contrib = self._propensity_contributions(self.preprocessor.matrix(values))
        raw = contrib.raw
        propensity = self.propensity_from_raw(raw)
        base = (
            self.base_propensity
            if self.base_propensity is not None
            else float(self.propensity_from_raw(np.mean(contrib.base, keepdims=True))[0])
        )
        base_probability = np.full(len(records), base)
        return Explanation(
            features=self.features,
            contributions=contrib.values,
            probability_points=probability_steps(
                contrib.values, contrib.base, base_probability, propensity, self.calibrator
            ),
            base_log_odds=contrib.base,
            base_probability=base_probability,
            raw_log_odds=raw,
            propensity=propensity,
            values=values,
        )


def probability_steps(
    contributions: np.ndarray,
    base_log_odds: np.ndarray,
    base_probability: np.ndarray,
    propensity: np.ndarray,
    calibrator: Calibrator,
) -> np.ndarray:
    """Each feature's step in probability, so that ``base + sum(steps) == propensity`` exactly.

    1. A path: start at the SHAP base log-odds and add the contributions one by one, strongest
       (largest |log-odds|) first; a feature's path step is the change of the calibrated
       probability as its contribution is added. Path steps have their contribution's sign
       (calibrators are non-decreasing) and sum to ``calibrated(raw) - calibrated(SHAP base)``.
    2. The base is the average training account's propensity, not the calibrated SHAP base
       (the average of probabilities is not the probability of the average log-odds), so the
       path steps miss the distance from base to propensity by a gap. The steps of the side
       that closes the gap are stretched: the raising ones when the propensity lies further up
       than the path reaches, else the lowering ones. Every step keeps its contribution's sign.
    3. When that side has no path step (e.g. a flat stretch of an isotonic calibrator), the
       gap is shared in proportion to |log-odds| among the features pushing that way; only a
       record without any such feature shares it among all features (a step may then flip).

    Args:
        contributions: (records, features) log-odds contributions.
        base_log_odds: (records,) SHAP base value.
        base_probability: (records,) the base of the waterfall.
        propensity: (records,) the calibrated propensity.
        calibrator: maps log-odds to calibrated probability.

    Returns:
        (records, features) steps in probability (0-1, not percent).
    """
    n, k = contributions.shape
    if k == 0:
        return np.zeros((n, 0))
    order = np.argsort(-np.abs(contributions), axis=1, kind="stable")
    ordered = np.take_along_axis(contributions, order, axis=1)
    after = base_log_odds[:, None] + np.cumsum(ordered, axis=1)
    before = np.column_stack([base_log_odds, after[:, :-1]])
    path_ordered = (calibrator(after.ravel()) - calibrator(before.ravel())).reshape(n, k)
    path = np.empty_like(path_ordered)
    np.put_along_axis(path, order, path_ordered, axis=1)
    up = np.where(path > 0, path, 0.0).sum(axis=1)
    down = np.where(path < 0, path, 0.0).sum(axis=1)
    target = propensity - base_probability
    raise_up = (target >= up + down) & (up > 0)
    lower_down = (target < up + down) & (down < 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        up_scale = np.where(raise_up, (target - down) / up, 1.0)
        down_scale = np.where(lower_down & ~raise_up, (target - up) / down, 1.0)
    steps = np.where(path > 0, path * up_scale[:, None], path * down_scale[:, None])
    # What is left (rounding, or rows whose side has no path step): shared in proportion to
    # |log-odds| among the features pushing the same way, else among all features.
    left = target - steps.sum(axis=1)
    same_way = np.where(contributions * left[:, None] > 0, np.abs(contributions), 0.0)
    weight = np.where(same_way.sum(axis=1, keepdims=True) > 0, same_way, np.abs(contributions))
    total = weight.sum(axis=1, keepdims=True)
    weight = np.where(total > 0, weight / np.where(total > 0, total, 1.0), 1.0 / k)
    return steps + left[:, None] * weight


@dataclass(frozen=True)
class Explanation:
    """Every feature's contribution for each explained record (row ``i`` of each array)."""

    features: list[FeatureInfo]
    contributions: np.ndarray
    """(records, features) log-odds of the uncalibrated propensity model."""
    probability_points: np.ndarray
    """(records, features) steps in probability: ``base_probability + sum = propensity``."""
    base_log_odds: np.ndarray
    base_probability: np.ndarray
    """(records,) the average training account's propensity, where the waterfall starts."""
    raw_log_odds: np.ndarray
    propensity: np.ndarray
    values: pd.DataFrame
    """The values the model saw, as given (original category names)."""

    def factors(self, i: int) -> pd.DataFrame:
        """Record ``i``'s factors, strongest first: feature, value, text, log_odds, probability_points."""
        frame = pd.DataFrame(
            {
                "feature": [f.name for f in self.features],
                "value": [
                    reasons.display_value(self.values[f.name].iloc[i]) for f in self.features
                ],
                "text": [
                    reasons.reason_text(f, self.values[f.name].iloc[i]) for f in self.features
                ],
                "log_odds": self.contributions[i],
                "probability_points": self.probability_points[i],
            }
        )
        order = np.argsort(-np.abs(self.contributions[i]), kind="stable")
        return frame.iloc[order].reset_index(drop=True)
