"""Leakage guard: refuse features that are only known after the outcome.

Four checks, each naming the column and why:

1. the spec marks the column ``known_after_outcome``;
2. the column alone separates won from lost almost perfectly (single-feature ROC AUC at or
   above the spec's threshold, 0.95 by default, on the training rows; missing values count as
   a value of their own, since "blank unless won" is the commonest leak in CRM joins);
3. it tracks the deal's closing duration (|Spearman| at or above 0.9), which is only known
   once the deal has closed;
4. its name says it describes the sales process up to the close ("stage", "elapsed",
   "closing", "duration", "outcome", ...). On the IBM win-loss data no single stage column is a
   strong predictor alone (single-feature AUC 0.61 to 0.74), yet together they lift the model's
   AUC from 0.84 to 0.94; only their meaning gives them away, so the guard reads names too.

A column listed in ``leakage.allow`` is kept despite a finding; the finding is still reported.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from abm_ml.data.spec import DatasetSpec
from abm_ml.modeling.feature_info import FeatureInfo
from abm_ml.schema import DAYS_TO_CLOSE, LOST, OUTCOME, WON

POST_OUTCOME_WORDS = frozenset(
    {
        "stage",
        "stages",
        "elapsed",
        "close",
        "closed",
        "closing",
        "closure",
        "duration",
        "outcome",
        "result",
        "won_date",
        "lost_date",
    }
)
POST_OUTCOME_PHRASES = (
    ("total", "days"),
    ("ratio", "days"),
    ("days", "to", "close"),
    ("close", "date"),
    ("close", "value"),
)


@dataclass(frozen=True)
class LeakFinding:
    """One reason to believe a column is known only after the outcome."""

    feature: str
    column: str
    rule: str
    detail: str
    allowed: bool

    def message(self) -> str:
        verdict = "kept (allowed by the spec)" if self.allowed else "refused as a feature"
        return f"{self.column!r}: {self.detail}; {verdict}"

    def to_dict(self) -> dict:
        return asdict(self)


def _words(name: str) -> list[str]:
    return re.findall(r"[a-z]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", name).lower())


def name_suggests_post_outcome(column: str) -> str | None:
    """The word or phrase in a column name that marks it as known only after the outcome."""
    words = _words(column)
    for word in words:
        if word in POST_OUTCOME_WORDS:
            return word
    for phrase in POST_OUTCOME_PHRASES:
        n = len(phrase)
        if any(tuple(words[i : i + n]) == phrase for i in range(len(words) - n + 1)):
            return " ".join(phrase)
    return None


def single_feature_auc(values: pd.Series, won: np.ndarray, kind: str, *, bins: int = 20) -> float:
    """How well the column alone separates won from lost: max(AUC, 1 - AUC) of its binned win rate."""
    if kind == "categorical":
        groups = values.astype(object).where(values.notna(), "__missing__")
    else:
        numeric = pd.to_numeric(values, errors="coerce")
        ranks = numeric.rank(method="dense")
        n_bins = int(min(bins, max(ranks.max() if ranks.notna().any() else 1, 1)))
        groups = pd.Series(
            np.where(
                numeric.isna(), -1, np.floor((ranks.fillna(1) - 1) / max(ranks.max(), 1) * n_bins)
            ),
            index=values.index,
        )
    from sklearn.metrics import roc_auc_score  # lazy: keeps `abm-ml validate` on a bad spec fast

    rate = (
        pd.Series(won, index=values.index).groupby(groups).transform("mean").to_numpy(dtype=float)
    )
    if np.unique(rate).size < 2:
        return 0.5
    auc = roc_auc_score(won, rate)
    return float(max(auc, 1.0 - auc))


def check_leakage(
    frame: pd.DataFrame, features: list[FeatureInfo], spec: DatasetSpec
) -> list[LeakFinding]:
    """Run the four checks on closed rows of ``frame`` (use the training rows only)."""
    closed = frame[frame[OUTCOME].isin([WON, LOST])]
    won = (closed[OUTCOME] == WON).to_numpy(dtype=int)
    allowed = set(spec.leakage.allow)
    marked = {f.column for f in spec.features if f.known_after_outcome}
    findings: list[LeakFinding] = []
    has_two_classes = won.size > 0 and 0 < won.sum() < won.size
    for feature in features:
        is_allowed = feature.column in allowed or feature.name in allowed

        def add(
            rule: str, detail: str, feature: FeatureInfo = feature, is_allowed: bool = is_allowed
        ) -> None:
            findings.append(LeakFinding(feature.name, feature.column, rule, detail, is_allowed))

        if feature.column in marked:
            add("spec", "the spec marks it as known only after the outcome")
            continue
        if has_two_classes:
            auc = single_feature_auc(closed[feature.name], won, feature.type)
            if auc >= spec.leakage.auc_threshold:
                add(
                    "single_feature_auc",
                    f"alone it separates won from lost with ROC AUC {auc:.3f} (threshold {spec.leakage.auc_threshold})",
                )
                continue
        if (
            DAYS_TO_CLOSE in closed
            and feature.type != "categorical"
            and closed[DAYS_TO_CLOSE].notna().sum() > 30
        ):
            rho = closed[feature.name].corr(closed[DAYS_TO_CLOSE], method="spearman")
            if pd.notna(rho) and abs(rho) >= spec.leakage.duration_proxy_threshold:
                add(
                    "duration_proxy",
                    f"it tracks the days to close (Spearman {rho:+.2f}), known only once the deal closes",
                )
                continue
        if spec.leakage.name_patterns:
            word = name_suggests_post_outcome(feature.column)
            if word:
                add("name", f"its name ({word!r}) says it describes the deal up to its close")
    return findings


def refused(findings: list[LeakFinding]) -> set[str]:
    """Feature names to drop: every finding not allowed by the spec."""
    return {f.feature for f in findings if not f.allowed}
