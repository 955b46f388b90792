"""Has the input drifted? A scoring run compared with its reference, and a verdict.

The verdict compares like with like. Once a model version has a monitored scoring run, later
runs are compared with it (the first one, or the previous one with ``reference: previous``):
PSI per feature and for the score, growth of missing and never-seen category values, and the
fall of the ROC AUC estimated without labels. A model's first scoring run has only the training
rows to compare with, which are another population (opportunities at their creation, not
accounts today): its PSI against them is shown as the known difference and never alarms; only
category values the model never saw (a fact about the model, whatever the population) alarm.

Thresholds come from the ``monitoring:`` section of the spec that trained the model
(:class:`abm_ml.data.spec.MonitoringSpec`); :data:`EXIT_DRIFT` is the exit code of a crossed one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from abm_ml.data.spec import MonitoringSpec
from abm_ml.monitoring.profile import (
    SCORE_FEATURE,
    SCORING,
    TRAINING,
    FeatureProfile,
    Profile,
)
from abm_ml.monitoring.stats import psi

EXIT_DRIFT = 3
"""Exit code of ``monitor`` (and ``rank --monitor``, ``retrain``) when a threshold is crossed."""
OK, DRIFT = "ok", "drift"


@dataclass
class MonitorResult:
    """A scoring run's drift table, its verdict and what it was compared with."""

    verdict: str
    reasons: list[str]
    reference: str
    """Which profile the verdict used: "training rows" or "scoring run of YYYY-MM-DD"."""
    table: pd.DataFrame
    current: Profile
    training: Profile
    scoring_reference: Profile | None
    thresholds: dict = field(default_factory=dict)
    unreadable_rows: int = 0
    """Records the reader found cut short or too wide: not profiled (their values are unsure)."""

    @property
    def drifted(self) -> bool:
        return self.verdict == DRIFT

    @property
    def flagged(self) -> list[str]:
        """Features (and ``score``) that crossed a threshold."""
        return self.table.loc[self.table["status"] != OK, "feature"].tolist()

    def to_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "reasons": self.reasons,
            "reference": self.reference,
            "as_of": self.current.as_of,
            "model_version": self.current.model_version,
            "rows": self.current.rows,
            "unreadable_rows": self.unreadable_rows,
            "estimated_roc_auc": _finite(self.current.estimated_roc_auc),
            "reference_estimated_roc_auc": _finite(
                (self.scoring_reference or self.training).estimated_roc_auc
            ),
            "thresholds": self.thresholds,
            "flagged": self.flagged,
            "features": [
                {k: (_finite(v) if isinstance(v, float) else v) for k, v in row.items()}
                for row in self.table.to_dict(orient="records")
            ],
        }


def _finite(value: float) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def thresholds_of(training: Profile, override: MonitoringSpec | None = None) -> MonitoringSpec:
    """The thresholds a verdict uses: ``override`` (a newer spec), else the model's, else defaults."""
    if override is not None:
        return override
    return MonitoringSpec.model_validate(training.thresholds or {})


def _row(
    current: FeatureProfile,
    training: FeatureProfile,
    reference: FeatureProfile | None,
    limits: MonitoringSpec,
    *,
    is_score: bool,
) -> dict:
    """One line of the drift table, with the checks it failed."""
    psi_training = psi(training.shares, current.shares)
    base = reference or training
    problems = []
    value = psi(reference.shares, current.shares) if reference is not None else float("nan")
    psi_limit = limits.score_psi_alert if is_score else limits.psi_alert
    if reference is not None and value >= psi_limit:
        problems.append(f"PSI {value:.2f} >= {psi_limit:g}")
    unseen_growth = current.unseen_share - base.unseen_share
    if unseen_growth >= limits.unseen_share:
        problems.append(f"{current.unseen_share:.1%} values the model never saw")
    missing_growth = current.missing_share - base.missing_share
    if reference is not None and missing_growth >= limits.missing_increase:
        problems.append(f"missing {base.missing_share:.1%} -> {current.missing_share:.1%}")
    return {
        "feature": current.name,
        "type": current.kind,
        "psi": value,
        "psi_vs_training": psi_training,
        "missing_reference": base.missing_share,
        "missing_now": current.missing_share,
        "unseen_now": current.unseen_share,
        "status": DRIFT if problems else OK,
        "why": "; ".join(problems),
    }


def compare(
    current: Profile,
    training: Profile,
    scoring_reference: Profile | None,
    thresholds: MonitoringSpec,
) -> MonitorResult:
    """The drift table and verdict of ``current`` against its reference.

    Args:
        current: the scoring run's profile (made with the training profile's bins).
        training: the model's training profile.
        scoring_reference: the earlier scoring run to compare with; None on a first run.
        thresholds: the limits (:func:`thresholds_of`).
    """
    rows = [
        _row(
            current.features[name],
            training.features[name],
            scoring_reference.features.get(name) if scoring_reference else None,
            thresholds,
            is_score=False,
        )
        for name in training.features
        if name in current.features
    ]
    rows.append(
        _row(
            current.score,
            training.score,
            scoring_reference.score if scoring_reference else None,
            thresholds,
            is_score=True,
        )
    )
    table = pd.DataFrame(rows)
    # Largest shift first: against the scoring reference, or the training rows on a first run.
    shift = table["psi"] if scoring_reference is not None else table["psi_vs_training"]
    ordered = table.assign(_flag=table["status"] != OK, _psi=shift.fillna(-1))
    table = ordered.sort_values(["_flag", "_psi"], ascending=False, kind="stable").drop(
        columns=["_flag", "_psi"]
    )
    table = table.reset_index(drop=True)
    reasons = [f"{row.feature}: {row.why}" for row in table.itertuples() if row.status != OK]
    if scoring_reference is not None:
        drop = scoring_reference.estimated_roc_auc - current.estimated_roc_auc
        if np.isfinite(drop) and drop >= thresholds.auc_drop:
            reasons.append(
                f"estimated ROC AUC {current.estimated_roc_auc:.3f}, down {drop:.3f} from "
                f"{scoring_reference.estimated_roc_auc:.3f} (limit {thresholds.auc_drop:g})"
            )
        reference = f"{SCORING} of {scoring_reference.as_of}"
    else:
        reference = TRAINING
    return MonitorResult(
        verdict=DRIFT if reasons else OK,
        reasons=reasons,
        reference=reference,
        table=table,
        current=current,
        training=training,
        scoring_reference=scoring_reference,
        thresholds=thresholds.model_dump(),
    )


def summary_line(result: MonitorResult) -> str:
    """The verdict in one sentence, naming the reference it used."""
    where = (
        f"against the {result.reference}"
        if result.scoring_reference is not None
        else "against the training rows (first monitored run: only never-seen categories "
        "can alarm; it becomes the reference of later runs)"
    )
    if not result.drifted:
        return f"No drift {where}."
    return f"Drift {where}: " + "; ".join(result.reasons)


__all__ = [
    "DRIFT",
    "EXIT_DRIFT",
    "OK",
    "SCORE_FEATURE",
    "MonitorResult",
    "compare",
    "summary_line",
    "thresholds_of",
]
