"""The packaged account scorer: raw account records in, scores with reasons out.

This is the one place a score is computed. The MLflow pyfunc, the CLI's batch ranking, the
evaluation and the BentoML service all call :meth:`AccountScorer.score`, so training and
serving cannot drift apart. The scorer carries its fitted preprocessing, so it takes records
as a CRM sends them (categories as strings, numbers possibly as text, fields possibly absent)
and never sees LightGBM's category codes from outside.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from abm_ml.config import num_threads
from abm_ml.data.records import InputSpec, ScoringRecords, canonical_records
from abm_ml.modeling import reasons
from abm_ml.modeling.feature_info import FeatureInfo, parse_yes_no
from abm_ml.schema import ACCOUNT_ID, AMOUNT, ROW_ID

TIER_NAMES = ("A", "B", "C", "D")
"""Fit tiers by propensity: A = top 10 % of the holdout, B = next 20 %, C = next 30 %, D = the rest."""
TIER_SHARES = (0.10, 0.30, 0.60)
MAX_CATEGORIES = 256
"""Categories kept per feature (most frequent first); rarer ones are treated like unseen ones."""

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
    return 1.0 / (1.0 + np.exp(-np.clip(x, -35, 35)))


@dataclass
class Preprocessor:
    """Turns raw records into LightGBM's matrix: numbers as float, categories with fixed codes.

    Attributes:
        features: the model's features in column order.
        categories_: per categorical feature, the category values seen in training.
    """

    features: list[FeatureInfo]
    categories_: dict[str, list[str]] = field(default_factory=dict)

    def fit(self, frame: pd.DataFrame) -> Preprocessor:
        for feature in self.features:
            if feature.type == "categorical":
                counts = frame[feature.name].dropna().astype(str).value_counts()
                self.categories_[feature.name] = sorted(counts.index[:MAX_CATEGORIES].tolist())
        return self

    @property
    def categorical_names(self) -> list[str]:
        return [f.name for f in self.features if f.type == "categorical"]

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
                text = column.astype(object)
                values[feature.name] = text.where(text.notna(), np.nan).map(
                    lambda v: (
                        v
                        if isinstance(v, str) or (isinstance(v, float) and np.isnan(v))
                        else str(v)
                    )
                )
            elif feature.type == "boolean":
                values[feature.name] = parse_yes_no(column)
            else:
                values[feature.name] = pd.to_numeric(column, errors="coerce").astype(float)
        return pd.DataFrame(values, index=frame.index)

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """LightGBM's input: float columns and ``pd.Categorical`` with the training categories."""
        raw = self.raw_values(frame)
        for name in self.categorical_names:
            raw[name] = pd.Categorical(raw[name], categories=self.categories_[name])
        return raw


@dataclass
class VelocityModel:
    """Quantile LightGBM models of log(1 + days to close) for won deals."""

    boosters: dict[str, lgb.Booster]  # "p10", "p50", "p90"
    fallback_days: float

    def predict_log(self, matrix: pd.DataFrame) -> dict[str, np.ndarray]:
        preds = {
            q: np.asarray(b.predict(matrix, num_threads=num_threads()))
            for q, b in self.boosters.items()
        }
        # Quantile models are fitted separately and may cross; sort so P10 <= P50 <= P90.
        stacked = np.sort(np.vstack([preds["p10"], preds["p50"], preds["p90"]]), axis=0)
        return {"p10": stacked[0], "p50": stacked[1], "p90": stacked[2]}


@dataclass
class Calibrator:
    """Maps raw log-odds to calibrated probabilities (isotonic or sigmoid, chosen on held-out data)."""

    method: str
    isotonic: IsotonicRegression | None = None
    coef: float = 1.0
    intercept: float = 0.0

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        if self.method == "isotonic" and self.isotonic is not None:
            return np.clip(self.isotonic.predict(raw), 1e-4, 1 - 1e-4)
        if self.method == "sigmoid":
            return _sigmoid(self.coef * raw + self.intercept)
        return _sigmoid(raw)


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
    propensity_booster: lgb.Booster
    calibrator: Calibrator
    velocity: VelocityModel | None
    tier_thresholds: list[float]
    default_amount: float
    default_days: float
    metadata: dict = field(default_factory=dict)
    input_spec: dict | None = None
    """:class:`~abm_ml.data.records.InputSpec` as a dict: how to read the CRM's own export.
    None in models registered before it existed; they read canonical columns only."""

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def input(self) -> InputSpec | None:
        """How the training export was read (None for models older than the carried spec)."""
        spec = getattr(self, "input_spec", None)
        return InputSpec.model_validate(spec) if spec else None

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

        Returns:
            One row per record, in input order, with :data:`OUTPUT_COLUMNS` plus reasons.
        """
        records = self._canonical(records)
        matrix = self.preprocessor.transform(records)
        contrib = reasons.contributions(self.propensity_booster, matrix) if with_reasons else None
        raw = (
            contrib.raw
            if contrib is not None
            else np.asarray(
                self.propensity_booster.predict(matrix, raw_score=True, num_threads=num_threads())
            )
        )
        propensity = self.propensity_from_raw(raw)
        days = self._days(matrix)
        amount = self._amounts(records)
        expected_value = propensity * amount
        if not self.has_amount:
            priority = propensity
        elif self.days_source is None:
            priority = expected_value
        else:
            # Sales velocity: value won per day of selling time.
            priority = expected_value / np.maximum(days["p50"], 1.0)
        out = pd.DataFrame(
            {
                "account_id": _account_ids(records),
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
        )
        if with_reasons and contrib is not None:
            self._add_reasons(out, contrib, records, matrix, k_up, k_down, with_velocity_reasons)
        return out

    def _canonical(self, records: pd.DataFrame) -> pd.DataFrame:
        """Records with canonical columns, parsed through the carried input spec when there is one."""
        prepared = self.prepare(records)
        return prepared.frame if prepared is not None else records.reset_index(drop=True)

    def _days(self, matrix: pd.DataFrame) -> dict[str, np.ndarray]:
        """P10/P50/P90 days to close (never negative), the median days without a model, else NaN."""
        if self.velocity is None:
            days = self.default_days if self.days_source is not None else np.nan
            return {q: np.full(len(matrix), days, dtype=float) for q in ("p10", "p50", "p90")}
        log_days = self.velocity.predict_log(matrix)
        return {q: np.maximum(np.expm1(v), 0.0) for q, v in log_days.items()}

    def _amounts(self, records: pd.DataFrame) -> np.ndarray:
        """Deal amounts, the training median of won deals where unknown; NaN without amounts."""
        if not self.has_amount:
            return np.full(len(records), np.nan)
        if AMOUNT not in records.columns:
            return np.full(len(records), self.default_amount)
        amount = pd.to_numeric(records[AMOUNT], errors="coerce").to_numpy(dtype=float)
        return np.where(np.isnan(amount), self.default_amount, amount)

    def _add_reasons(
        self,
        out: pd.DataFrame,
        contrib: reasons.Contributions,
        records: pd.DataFrame,
        matrix: pd.DataFrame,
        k_up: int,
        k_down: int,
        with_velocity_reasons: bool,
    ) -> None:
        """Add ``reasons`` (in probability points) and ``velocity_reasons`` (in days)."""
        raw_values = self.preprocessor.raw_values(records)

        def probability_effect(with_c: np.ndarray, without_c: np.ndarray) -> np.ndarray:
            return self.propensity_from_raw(with_c) - self.propensity_from_raw(without_c)

        out["reasons"] = reasons.reasons(
            contrib,
            raw_values,
            self.features,
            k_up=k_up,
            k_down=k_down,
            effect=probability_effect,
            effect_unit="probability_points",
        )
        if self.velocity is not None and with_velocity_reasons:
            vcontrib = reasons.contributions(self.velocity.boosters["p50"], matrix)

            def days_effect(with_c: np.ndarray, without_c: np.ndarray) -> np.ndarray:
                return np.expm1(with_c) - np.expm1(without_c)

            out["velocity_reasons"] = reasons.reasons(
                vcontrib,
                raw_values,
                self.features,
                k_up=k_up,
                k_down=k_down,
                effect=days_effect,
                effect_unit="days",
            )

    def explain(self, records: pd.DataFrame) -> Explanation:
        """Every feature's push on each record: the one explanation behind ``explain`` and ``/explain``.

        Contributions are TreeSHAP values in log-odds of the uncalibrated model; each one's
        effect in probability points is the change in the calibrated propensity were that
        contribution removed, all else equal.
        """
        records = self._canonical(records)
        matrix = self.preprocessor.transform(records)
        contrib = reasons.contributions(self.propensity_booster, matrix)
        raw = contrib.raw
        propensity = self.propensity_from_raw(raw)
        without = raw[:, None] - contrib.values
        points = propensity[:, None] - self.propensity_from_raw(without.ravel()).reshape(
            without.shape
        )
        return Explanation(
            features=self.features,
            contributions=contrib.values,
            probability_points=points,
            base_log_odds=contrib.base,
            base_probability=self.propensity_from_raw(contrib.base),
            raw_log_odds=raw,
            propensity=propensity,
            values=self.preprocessor.raw_values(records),
        )


@dataclass(frozen=True)
class Explanation:
    """Every feature's contribution for each explained record (row ``i`` of each array)."""

    features: list[FeatureInfo]
    contributions: np.ndarray
    """(records, features) log-odds of the uncalibrated propensity model."""
    probability_points: np.ndarray
    """(records, features) effect of each contribution on the calibrated propensity."""
    base_log_odds: np.ndarray
    base_probability: np.ndarray
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
